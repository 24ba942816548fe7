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

use tokio::sync::watch;
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
    entries: HashMap<Uuid, Entry>,
    /// Insertion order, for eviction; may hold ids already taken or replaced.
    order: VecDeque<Uuid>,
}

enum Entry {
    /// The row as this instance last wrote it.
    Row(Box<Generation>),
    /// A callback took the row and is being applied; it tells here whether it finished the
    /// generation (see `settled`).
    Taken(watch::Sender<Option<bool>>),
}

impl Submitted {
    /// Remembers `g` as it is stored now — unless a callback for it is being applied.
    pub fn remember(&self, g: Generation) {
        let mut inner = self.inner.lock().expect("submitted cache");
        let id = g.id;
        match inner.entries.get_mut(&id) {
            Some(Entry::Taken(_)) => return,
            Some(entry) => *entry = Entry::Row(Box::new(g)),
            None => {
                inner.entries.insert(id, Entry::Row(Box::new(g)));
                inner.order.push_back(id);
            }
        }
        while inner.entries.len() > CAPACITY || inner.order.len() > 2 * CAPACITY {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&old);
        }
    }

    /// Forgets the row remembered for `id` (it changed in a way not remembered here).
    pub fn forget(&self, id: Uuid) {
        let mut inner = self.inner.lock().expect("submitted cache");
        if let Some(Entry::Row(_)) = inner.entries.get(&id) {
            inner.entries.remove(&id);
        }
    }

    /// Takes the row remembered for a callback of `id` (`None` when there is none, or another
    /// callback holds it); a taken row awaits `settled`.
    pub fn take(&self, id: Uuid) -> Option<Generation> {
        let mut inner = self.inner.lock().expect("submitted cache");
        let entry = inner.entries.get_mut(&id)?;
        if let Entry::Taken(_) = entry {
            return None;
        }
        let (tx, _) = watch::channel(None);
        match std::mem::replace(entry, Entry::Taken(tx)) {
            Entry::Row(g) => Some(*g),
            Entry::Taken(_) => None,
        }
    }

    /// The callback that took `id`'s row is done: `finished` if it committed a terminal state.
    pub fn settled(&self, id: Uuid, finished: bool) {
        let mut inner = self.inner.lock().expect("submitted cache");
        if let Some(Entry::Taken(tx)) = inner.entries.get(&id) {
            tx.send_replace(Some(finished));
            inner.entries.remove(&id);
        }
    }

    /// fal has answered the submit of `id`. When fal's result for it already arrived here and
    /// is being applied, returns where that callback will say whether it finished the
    /// generation: then recording the answer would only wait behind it, for nothing.
    pub fn answered(&self, id: Uuid) -> Option<watch::Receiver<Option<bool>>> {
        match self.inner.lock().expect("submitted cache").entries.get(&id) {
            Some(Entry::Taken(tx)) => Some(tx.subscribe()),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(id: Uuid) -> Generation {
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
        let taken: Vec<_> = [ids[0], ids[1], ids[2], ids[CAPACITY + 1]]
            .into_iter()
            .map(|id| s.take(id))
            .collect();
        assert!(
            taken[0].is_none() && taken[1].is_none(),
            "the oldest were evicted"
        );
        assert_eq!(taken[2].as_ref().map(|g| g.id), Some(ids[2]));
        assert_eq!(taken[3].as_ref().map(|g| g.id), Some(ids[CAPACITY + 1]));
        assert!(s.take(ids[2]).is_none(), "taken once");
        s.forget(ids[3]);
        assert!(s.take(ids[3]).is_none());
    }

    #[tokio::test]
    async fn a_submit_answered_while_its_callback_applies_hears_how_it_ended() {
        let s = Submitted::default();
        let id = Uuid::now_v7();
        s.remember(row(id));
        assert!(
            s.answered(id).is_none(),
            "no callback yet: record the answer"
        );
        assert!(s.take(id).is_some());
        assert!(s.take(id).is_none(), "a second callback reads the database");
        s.remember(row(id));
        s.forget(id);
        let mut rx = s.answered(id).expect("the callback holds it");
        s.settled(id, true);
        assert_eq!(*rx.wait_for(|v| v.is_some()).await.unwrap(), Some(true));
        assert!(s.answered(id).is_none());
    }
}
