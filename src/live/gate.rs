//! Who may hold a live stream open, and for how long: at most `FLUXGATE_MAX_STREAMS_PER_TENANT`
//! per tenant on this instance, and only while the credential that opened it stands (an API key,
//! or a browser token that is neither revoked nor expired). Each stream holds an [`Admission`];
//! the hub rechecks the credentials of open streams every few seconds (`reader.rs`), and
//! revoking one closes every stream it opened.
use crate::domain::ids::{CredentialId, TenantId};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio_util::sync::CancellationToken;

/// Revoked credentials remembered, so a stream that was admitted while its credential's
/// revocation was being noticed is refused or closed all the same.
const REMEMBERED_REVOCATIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this account already holds {0} live streams on this instance")]
    TooMany(usize),
    #[error("this credential has been revoked or has expired")]
    Revoked,
}

pub struct Gate {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    per_tenant: HashMap<TenantId, usize>,
    /// Streams per credential, and the token that closes them all.
    held: HashMap<CredentialId, (usize, CancellationToken)>,
    revoked: HashSet<CredentialId>,
    revoked_order: VecDeque<CredentialId>,
}

/// A stream's place at the gate: counted until dropped; `closed()` fires when its key is revoked.
pub struct Admission {
    gate: Arc<Gate>,
    tenant_id: TenantId,
    credential: CredentialId,
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
        if let Some((n, _)) = inner.held.get_mut(&self.credential) {
            *n -= 1;
            if *n == 0 {
                inner.held.remove(&self.credential);
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
        credential: CredentialId,
    ) -> Result<Admission, Refusal> {
        let mut inner = self.lock();
        if inner.revoked.contains(&credential) {
            return Err(Refusal::Revoked);
        }
        let held = inner.per_tenant.entry(tenant_id).or_default();
        if *held >= self.cap {
            return Err(Refusal::TooMany(self.cap));
        }
        *held += 1;
        let (n, token) = inner.held.entry(credential).or_default();
        *n += 1;
        let closed = token.clone();
        Ok(Admission {
            gate: self.clone(),
            tenant_id,
            credential,
            closed,
        })
    }

    /// The credentials that hold streams open now.
    pub fn credentials(&self) -> Vec<CredentialId> {
        self.lock().held.keys().copied().collect()
    }

    /// Closes every stream `credential` opened, and refuses it from now on.
    pub fn revoke(&self, credential: CredentialId) {
        let mut inner = self.lock();
        if let Some((_, token)) = inner.held.get(&credential) {
            token.cancel();
        }
        if inner.revoked.insert(credential) {
            inner.revoked_order.push_back(credential);
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
    use crate::domain::ids::ApiKeyId;

    #[test]
    fn a_tenant_holds_at_most_its_cap_and_a_closed_stream_frees_its_place() {
        let gate = Arc::new(Gate::new(2));
        let (t, k) = (TenantId::new(), CredentialId::Key(ApiKeyId::new()));
        let a = gate.admit(t, k).unwrap();
        let _b = gate.admit(t, k).unwrap();
        assert_eq!(gate.admit(t, k).err(), Some(Refusal::TooMany(2)));
        // Another tenant is not counted against this one.
        assert!(gate
            .admit(TenantId::new(), CredentialId::Key(ApiKeyId::new()))
            .is_ok());
        drop(a);
        assert_eq!(gate.held_by(t), 1);
        assert!(gate.admit(t, k).is_ok());
    }

    #[tokio::test]
    async fn revoking_a_key_closes_its_streams_and_refuses_new_ones() {
        let gate = Arc::new(Gate::new(10));
        let (t, k, other) = (
            TenantId::new(),
            CredentialId::Key(ApiKeyId::new()),
            CredentialId::Key(ApiKeyId::new()),
        );
        let a = gate.admit(t, k).unwrap();
        let b = gate.admit(t, other).unwrap();
        gate.revoke(k);
        a.closed().await;
        assert!(!b.closed.is_cancelled());
        assert_eq!(gate.admit(t, k).err(), Some(Refusal::Revoked));
        assert_eq!(gate.credentials().len(), 2);
    }
}
