//! The short way from a callback to its subscribers. When this instance's delivery loop has
//! room, the callback's transaction creates its deliveries already leased to this instance
//! (within each subscription's in-flight cap) and hands them straight to the loop once it has
//! committed: no wake-up, no claim round trip. Should the instance die first, the leases expire
//! and any instance's loop takes the deliveries over.
use crate::domain::ids::DeliveryId;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, Notify};

use crate::storage::{self, delivery_queue::Claimed};

/// Callbacks in one batch above which the loop's ordinary claims are the better path: a burst
/// fills the loop anyway, and leasing would only move the claim into the callback's statement.
const MAX_CALLBACKS: usize = 16;

/// The callbacks' side.
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::UnboundedSender<Vec<Claimed>>,
    /// Attempts the loop has under way (it publishes the count after each step).
    busy: Arc<AtomicUsize>,
    concurrency: usize,
    lease: Duration,
    /// Held by whatever counts a subscription's free slots and leases into them in this process
    /// — a leasing callback batch until it commits, or the loop's sweep — so neither fills
    /// slots the other has taken but not yet committed.
    lease_lock: LeaseLock,
    /// Wakes this instance's delivery loop to claim what was not leased to it.
    wake: Arc<Notify>,
}

/// See `Handoff::lease_lock`.
pub type LeaseLock = Arc<tokio::sync::Mutex<()>>;

/// The loop's side. Dropping it (no delivery loop in this process) turns hand-offs off.
pub struct Inbox {
    pub rx: mpsc::UnboundedReceiver<Vec<Claimed>>,
    pub busy: Arc<AtomicUsize>,
    pub lease_lock: LeaseLock,
}

pub fn channel(concurrency: usize, lease: Duration, wake: Arc<Notify>) -> (Handoff, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let busy = Arc::new(AtomicUsize::new(0));
    let lease_lock = LeaseLock::default();
    (
        Handoff {
            tx,
            busy: busy.clone(),
            concurrency,
            lease,
            lease_lock: lease_lock.clone(),
            wake,
        },
        Inbox {
            rx,
            busy,
            lease_lock,
        },
    )
}

impl Handoff {
    /// The lease (seconds) for the deliveries of a batch of `callbacks`, or `None` to leave
    /// them to the loop's claims: the batch is a burst, the loop is busy, or it is not running.
    pub fn lease_for(&self, callbacks: usize) -> Option<f64> {
        let room = self.busy.load(Ordering::Relaxed) < self.concurrency;
        (callbacks <= MAX_CALLBACKS && room && !self.tx.is_closed())
            .then_some(self.lease.as_secs_f64())
    }

    /// Taken for a leasing batch, from before its transaction counts slots until it commits.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lease_lock.lock().await
    }

    /// After a commit: sends what was leased to this instance to its loop (releasing it should
    /// the loop be gone), and wakes the loop if `unleased` deliveries are left to claim.
    pub async fn dispatch(&self, pool: &sqlx::PgPool, leased: Vec<Claimed>, unleased: i64) {
        if let Err(unsent) = self.send(leased) {
            let ids: Vec<DeliveryId> = unsent.iter().map(|c| c.id).collect();
            if let Err(e) = storage::delivery_queue::release(pool, &ids, 0.0).await {
                tracing::warn!(error = %e, "releasing leased deliveries failed; their leases will expire");
            }
            self.wake.notify_one();
        }
        if unleased > 0 {
            self.wake.notify_one();
        }
    }

    /// Wakes this instance's delivery loop.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Gives committed, leased deliveries to the loop; hands them back if it has stopped.
    pub fn send(&self, claimed: Vec<Claimed>) -> Result<(), Vec<Claimed>> {
        if claimed.is_empty() {
            return Ok(());
        }
        self.tx.send(claimed).map_err(|e| e.0)
    }
}
