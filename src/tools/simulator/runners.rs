//! Runner slots: how many requests run at once (fal's per-account concurrency, 2 to 40 running
//! requests), and in which order the queued ones get a slot that frees up — every `normal`
//! request before any `low` one (`X-Fal-Queue-Priority`), each in submission order. Without a
//! limit (the default) every request runs as soon as its queue delay has passed.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A request's place in line: normal before low, then by submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub low: bool,
    pub seq: u64,
}

struct Waiter {
    place: Place,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.place.cmp(&other.place)
    }
}

struct Slots {
    free: usize,
    waiting: BinaryHeap<Reverse<Waiter>>,
}

#[derive(Clone)]
pub(crate) struct Runners {
    slots: Option<Arc<Mutex<Slots>>>,
}

/// A held slot; dropping it hands the slot to the first in line.
pub(crate) struct Slot {
    slots: Option<Arc<Mutex<Slots>>>,
}

impl Runners {
    /// `None`: no limit.
    pub fn new(concurrency: Option<usize>) -> Runners {
        Runners {
            slots: concurrency.map(|n| {
                Arc::new(Mutex::new(Slots {
                    free: n.max(1),
                    waiting: BinaryHeap::new(),
                }))
            }),
        }
    }

    /// Waits for a slot in `place`'s turn.
    pub async fn acquire(&self, place: Place) -> Slot {
        let Some(slots) = &self.slots else {
            return Slot { slots: None };
        };
        let wait = {
            let mut s = slots.lock().expect("runner slots lock");
            if s.free > 0 && s.waiting.is_empty() {
                s.free -= 1;
                None
            } else {
                let (wake, woken) = oneshot::channel();
                s.waiting.push(Reverse(Waiter { place, wake }));
                Some(InLine {
                    woken,
                    slots: slots.clone(),
                })
            }
        };
        if let Some(mut in_line) = wait {
            // A waiter is only ever dropped after it was sent its slot.
            let _ = (&mut in_line.woken).await;
        }
        Slot {
            slots: Some(slots.clone()),
        }
    }
}

/// A place in line. Dropped before its turn (the request's start timeout passed, or the
/// simulator is stopping), it gives back a slot that was handed to it meanwhile.
struct InLine {
    woken: oneshot::Receiver<()>,
    slots: Arc<Mutex<Slots>>,
}

impl Drop for InLine {
    fn drop(&mut self) {
        // `Ok` only if the slot was sent and not yet taken by `acquire`.
        if self.woken.try_recv().is_ok() {
            drop(Slot {
                slots: Some(self.slots.clone()),
            });
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(slots) = self.slots.take() else {
            return;
        };
        let mut s = slots.lock().expect("runner slots lock");
        // The slot passes straight to the first waiter still waiting (one whose lifecycle ended,
        // by the simulator stopping, has dropped its receiver: skip it).
        while let Some(Reverse(next)) = s.waiting.pop() {
            if next.wake.send(()).is_ok() {
                return;
            }
        }
        s.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_slot_goes_to_normal_work_before_low_and_otherwise_in_submission_order() {
        let runners = Runners::new(Some(1));
        let held = runners.acquire(Place { low: false, seq: 0 }).await;
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiting = Vec::new();
        for place in [
            Place { low: true, seq: 1 },
            Place { low: true, seq: 2 },
            Place { low: false, seq: 3 },
        ] {
            let (mine, tx) = (runners.clone(), tx.clone());
            waiting.push(tokio::spawn(async move {
                let slot = mine.acquire(place).await;
                tx.send(place.seq).unwrap();
                drop(slot);
            }));
            // Each is in line before the next is spawned.
            while runners
                .slots
                .as_ref()
                .unwrap()
                .lock()
                .unwrap()
                .waiting
                .len()
                < waiting.len()
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for task in waiting {
            task.await.unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(seq) = order.recv().await {
            got.push(seq);
        }
        assert_eq!(got, [3, 1, 2]);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_waiting_does_not_keep_the_slot_it_was_handed() {
        let runners = Runners::new(Some(1));
        let held = runners.acquire(Place { low: false, seq: 0 }).await;
        let mut gave_up = Box::pin(runners.acquire(Place { low: false, seq: 1 }));
        assert!(futures_util::FutureExt::now_or_never(&mut gave_up).is_none());
        drop(held); // handed to the one in line…
        drop(gave_up); // …which is gone before it took it
        let again = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            runners.acquire(Place { low: true, seq: 2 }),
        )
        .await;
        assert!(
            again.is_ok(),
            "the slot was lost with the request that gave up"
        );
    }

    #[tokio::test]
    async fn without_a_limit_every_request_runs_at_once() {
        let runners = Runners::new(None);
        let a = runners.acquire(Place { low: true, seq: 0 }).await;
        let b = runners.acquire(Place { low: false, seq: 1 }).await;
        drop((a, b));
    }
}
