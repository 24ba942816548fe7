//! The generations this instance has just sent to fal, as it last wrote them, so that fal's
//! callback — usually taken by the same instance moments later — is applied without first
//! reading its generation back: the callback's write is guarded by the version remembered here
//! (`generations::finish_guarded_sql`), and anything that changed the row meanwhile sends the
//! callback the careful way. A miss (another instance submitted it, a restart, the bound below)
//! only costs that read. Bounded: the oldest entries go first.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use uuid::Uuid;

use crate::storage::generations::Generation;

/// Generations remembered at most: at 5,000 callbacks/s, 10 s of fal latency.
const CAPACITY: usize = 50_000;

#[derive(Clone, Default)]
pub struct Submitted {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    rows: HashMap<Uuid, Generation>,
    /// Insertion order, for eviction; may hold ids already taken or replaced.
    order: VecDeque<Uuid>,
}

impl Submitted {
    /// Remembers `g` as it is stored now (replacing what was remembered of it).
    pub fn remember(&self, g: Generation) {
        let mut inner = self.inner.lock().expect("submitted cache");
        let id = g.id;
        if inner.rows.insert(id, g).is_none() {
            inner.order.push_back(id);
        }
        while inner.rows.len() > CAPACITY || inner.order.len() > 2 * CAPACITY {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.rows.remove(&old);
        }
    }

    /// Forgets `id` (its stored row changed in a way not remembered here).
    pub fn forget(&self, id: Uuid) {
        self.inner.lock().expect("submitted cache").rows.remove(&id);
    }

    /// Takes what is remembered of each of `ids`, in order; `None` where nothing is.
    pub fn take(&self, ids: &[Uuid]) -> Vec<Option<Generation>> {
        let mut inner = self.inner.lock().expect("submitted cache");
        ids.iter().map(|id| inner.rows.remove(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: Uuid) -> Generation {
        let now = chrono::Utc::now();
        Generation {
            id,
            tenant_id: id,
            status: "accepted".into(),
            model: "fal-ai/flux-2".into(),
            input: sqlx::types::Json(serde_json::json!({})),
            webhook_url: None,
            metadata: None,
            end_user: None,
            estimated_cost_micros: 0,
            cost_micros: None,
            fal_request_id: None,
            status_url: None,
            response_url: None,
            cancel_url: None,
            seed: None,
            result: None,
            error: None,
            submit_attempts: 1,
            transient_failures: 0,
            created_at: now,
            updated_at: now,
            submitted_at: None,
            finished_at: None,
            cancel_requested_at: None,
            cached: false,
            budget_day: None,
            reserved_micros: 0,
        }
    }

    #[test]
    fn a_taken_row_is_gone_and_the_oldest_go_first() {
        let s = Submitted::default();
        let ids: Vec<Uuid> = (0..CAPACITY + 2).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            s.remember(row(*id));
        }
        let taken = s.take(&[ids[0], ids[1], ids[2], ids[CAPACITY + 1]]);
        assert!(
            taken[0].is_none() && taken[1].is_none(),
            "the oldest were evicted"
        );
        assert_eq!(taken[2].as_ref().map(|g| g.id), Some(ids[2]));
        assert_eq!(taken[3].as_ref().map(|g| g.id), Some(ids[CAPACITY + 1]));
        assert!(s.take(&[ids[2]])[0].is_none(), "taken once");
        s.forget(ids[3]);
        assert!(s.take(&[ids[3]])[0].is_none());
    }
}
