//! Who may hold a live stream open, and for how long: at most `FLUXGATE_MAX_STREAMS_PER_TENANT`
//! per tenant on this instance, and only while the API key that opened it stands. Each stream
//! holds an [`Admission`]; the hub rechecks the keys of open streams every few seconds
//! (`reader.rs`), and revoking a key closes every stream it opened.
use crate::domain::ids::{ApiKeyId, TenantId};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio_util::sync::CancellationToken;

/// Revoked keys remembered, so a stream that was admitted while its key's revocation was being
/// noticed is refused or closed all the same.
const REMEMBERED_REVOCATIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this account already holds {0} live streams on this instance")]
    TooMany(usize),
    #[error("this API key has been revoked")]
    Revoked,
}

pub struct Gate {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    per_tenant: HashMap<TenantId, usize>,
    /// Streams per key, and the token that closes them all.
    keys: HashMap<ApiKeyId, (usize, CancellationToken)>,
    revoked: HashSet<ApiKeyId>,
    revoked_order: VecDeque<ApiKeyId>,
}

/// A stream's place at the gate: counted until dropped; `closed()` fires when its key is revoked.
pub struct Admission {
    gate: Arc<Gate>,
    tenant_id: TenantId,
    key_id: ApiKeyId,
    closed: CancellationToken,
}

impl Admission {
    /// Resolves once the key that opened the stream is revoked.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.closed.clone().cancelled_owned()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        if let Some(n) = inner.per_tenant.get_mut(&self.tenant_id) {
            *n -= 1;
            if *n == 0 {
                inner.per_tenant.remove(&self.tenant_id);
            }
        }
        if let Some((n, _)) = inner.keys.get_mut(&self.key_id) {
            *n -= 1;
            if *n == 0 {
                inner.keys.remove(&self.key_id);
            }
        }
    }
}

impl Gate {
    pub fn new(cap: usize) -> Gate {
        Gate {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn admit(
        self: &Arc<Self>,
        tenant_id: TenantId,
        key_id: ApiKeyId,
    ) -> Result<Admission, Refusal> {
        let mut inner = self.lock();
        if inner.revoked.contains(&key_id) {
            return Err(Refusal::Revoked);
        }
        let held = inner.per_tenant.entry(tenant_id).or_default();
        if *held >= self.cap {
            return Err(Refusal::TooMany(self.cap));
        }
        *held += 1;
        let (n, token) = inner.keys.entry(key_id).or_default();
        *n += 1;
        let closed = token.clone();
        Ok(Admission {
            gate: self.clone(),
            tenant_id,
            key_id,
            closed,
        })
    }

    /// The keys that hold streams open now.
    pub fn keys(&self) -> Vec<ApiKeyId> {
        self.lock().keys.keys().copied().collect()
    }

    /// Closes every stream `key_id` opened, and refuses it from now on.
    pub fn revoke(&self, key_id: ApiKeyId) {
        let mut inner = self.lock();
        if let Some((_, token)) = inner.keys.get(&key_id) {
            token.cancel();
        }
        if inner.revoked.insert(key_id) {
            inner.revoked_order.push_back(key_id);
            if inner.revoked_order.len() > REMEMBERED_REVOCATIONS {
                if let Some(old) = inner.revoked_order.pop_front() {
                    inner.revoked.remove(&old);
                }
            }
        }
    }

    /// Streams open for `tenant_id` on this instance.
    #[cfg(test)]
    pub fn held_by(&self, tenant_id: TenantId) -> usize {
        self.lock().per_tenant.get(&tenant_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain counters: still consistent after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_cap_and_a_closed_stream_frees_its_place() {
        let gate = Arc::new(Gate::new(2));
        let (t, k) = (TenantId::new(), ApiKeyId::new());
        let a = gate.admit(t, k).unwrap();
        let _b = gate.admit(t, k).unwrap();
        assert_eq!(gate.admit(t, k).err(), Some(Refusal::TooMany(2)));
        // Another tenant is not counted against this one.
        assert!(gate.admit(TenantId::new(), ApiKeyId::new()).is_ok());
        drop(a);
        assert_eq!(gate.held_by(t), 1);
        assert!(gate.admit(t, k).is_ok());
    }

    #[tokio::test]
    async fn revoking_a_key_closes_its_streams_and_refuses_new_ones() {
        let gate = Arc::new(Gate::new(10));
        let (t, k, other) = (TenantId::new(), ApiKeyId::new(), ApiKeyId::new());
        let a = gate.admit(t, k).unwrap();
        let b = gate.admit(t, other).unwrap();
        gate.revoke(k);
        a.closed().await;
        assert!(!b.closed.is_cancelled());
        assert_eq!(gate.admit(t, k).err(), Some(Refusal::Revoked));
        assert_eq!(gate.keys().len(), 2);
    }
}
