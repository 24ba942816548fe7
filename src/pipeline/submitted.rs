//! The generations this instance has just sent to fal, as it last wrote them, so that fal's
//! callback — usually taken by the same instance moments later — is applied without first
//! reading its generation back: the callback's write is guarded by the version remembered here
//! (`generations::finish_guarded_sql`), and anything that changed the row meanwhile sends the
//! callback the careful way. A miss (another instance submitted it, a restart, the bound below)
//! only costs that read. Bounded: the oldest entries go first.
//!
//! It is also where a submitter hears of its generation's callback (`Callback`): fal's answer
//! to the submit need not be recorded when the result already finished the generation.
use crate::domain::ids::GenerationId;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use crate::storage::generations::Generation;

/// Generations remembered at most: at 5,000 callbacks/s, 10 s of fal latency.
const CAPACITY: usize = 50_000;

#[derive(Clone, Default)]
pub struct Submitted {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<GenerationId, Entry>,
    /// Insertion order, for eviction; may hold ids already taken or replaced.
    order: VecDeque<GenerationId>,
}

/// Where fal's result for a remembered generation is, as its submitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// Not arrived (at this instance).
    Awaited,
    /// Arrived; it took the row and is being applied.
    Applying,
    /// Applied: `finished` if it committed a terminal state.
    Settled { finished: bool },
}

enum Entry {
    /// The row as this instance last wrote it.
    Row(Box<Generation>, watch::Sender<Callback>),
    /// A callback took the row and is being applied; it tells here how that ended (`settled`).
    Taken(watch::Sender<Callback>),
}

impl Submitted {
    /// Remembers `g` as it is stored now — unless a callback for it is being applied. Returns
    /// where the submitter hears of its callback.
    pub fn remember(&self, g: Generation) -> watch::Receiver<Callback> {
        let mut inner = self.inner.lock().expect("submitted cache");
        let id = g.id;
        let heard = match inner.entries.get_mut(&id) {
            Some(Entry::Taken(tx)) => return tx.subscribe(),
            Some(Entry::Row(row, tx)) => {
                **row = g;
                tx.subscribe()
            }
            None => {
                let (tx, rx) = watch::channel(Callback::Awaited);
                inner.entries.insert(id, Entry::Row(Box::new(g), tx));
                inner.order.push_back(id);
                rx
            }
        };
        while inner.entries.len() > CAPACITY || inner.order.len() > 2 * CAPACITY {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&old);
        }
        heard
    }

    /// Forgets the row remembered for `id` (it changed in a way not remembered here).
    pub fn forget(&self, id: GenerationId) {
        let mut inner = self.inner.lock().expect("submitted cache");
        if let Some(Entry::Row(..)) = inner.entries.get(&id) {
            inner.entries.remove(&id);
        }
    }

    /// Takes the row remembered for a callback of `id` (`None` when there is none, or another
    /// callback holds it); a taken row awaits `settled`.
    pub fn take(&self, id: GenerationId) -> Option<Generation> {
        let mut inner = self.inner.lock().expect("submitted cache");
        if !matches!(inner.entries.get(&id), Some(Entry::Row(..))) {
            return None;
        }
        let Some(Entry::Row(g, tx)) = inner.entries.remove(&id) else {
            unreachable!("checked above, under the same lock");
        };
        tx.send_replace(Callback::Applying);
        inner.entries.insert(id, Entry::Taken(tx));
        Some(*g)
    }

    /// The callback that took `id`'s row is done: `finished` if it committed a terminal state.
    pub fn settled(&self, id: GenerationId, finished: bool) {
        let mut inner = self.inner.lock().expect("submitted cache");
        if let Some(Entry::Taken(tx)) = inner.entries.get(&id) {
            tx.send_replace(Callback::Settled { finished });
            inner.entries.remove(&id);
        }
    }

    /// Whether a callback holds `id`'s row: it arrived and is being applied.
    #[cfg(test)]
    pub(crate) fn applying(&self, id: GenerationId) -> bool {
        matches!(
            self.inner.lock().expect("submitted cache").entries.get(&id),
            Some(Entry::Taken(_))
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::states::GenerationStatus;

    pub(crate) fn row(id: GenerationId) -> Generation {
        let now = chrono::Utc::now();
        Generation {
            id,
            tenant_id: crate::domain::ids::TenantId::from_uuid(id.uuid()),
            status: GenerationStatus::Accepted,
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
            reservation_held_since: None,
            batch_id: None,
            priority: crate::domain::states::Priority::Normal,
            start_timeout_secs: None,
            cached: false,
            budget_day: None,
            reserved_micros: 0,
        }
    }

    #[test]
    fn a_taken_row_is_gone_and_the_oldest_go_first() {
        let s = Submitted::default();
        let ids: Vec<GenerationId> = (0..CAPACITY + 2).map(|_| GenerationId::new()).collect();
        for id in &ids {
            let _ = s.remember(row(*id));
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
    async fn a_submitter_hears_when_its_callback_arrives_and_how_it_ended() {
        let s = Submitted::default();
        let id = GenerationId::new();
        let mut heard = s.remember(row(id));
        assert_eq!(*heard.borrow(), Callback::Awaited);
        assert!(!s.applying(id), "no callback yet: record the answer");
        // Remembering the row again (as queued) keeps the same channel.
        let _ = s.remember(row(id));
        assert!(s.take(id).is_some());
        assert_eq!(*heard.borrow_and_update(), Callback::Applying);
        assert!(s.take(id).is_none(), "a second callback reads the database");
        let _ = s.remember(row(id));
        s.forget(id);
        assert!(s.applying(id), "the callback still holds it");
        s.settled(id, true);
        let ended = *heard.wait_for(|c| *c != Callback::Applying).await.unwrap();
        assert_eq!(ended, Callback::Settled { finished: true });
        assert!(!s.applying(id));
    }

    #[tokio::test]
    async fn a_forgotten_row_tells_its_submitter_nothing_is_coming() {
        let s = Submitted::default();
        let id = GenerationId::new();
        let mut heard = s.remember(row(id));
        s.forget(id);
        assert!(heard.wait_for(|c| *c != Callback::Awaited).await.is_err());
    }
}
