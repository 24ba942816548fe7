//! The delivery loop. One task owns the conversation with the queue: each turn records the
//! outcomes that have arrived and, in the same statement, leases the deliveries that take the
//! in-flight slots they freed (or, after a NOTIFY or on the timer, sweeps for any due work).
//! Outcomes that arrive while a turn runs make up the next one. Leases commit before any HTTP call; each claimed delivery is then
//! signed and sent by a task of its own, whose outcome comes back here. The global
//! `concurrency` bounds those tasks, and each subscription's `max_in_flight` is counted by the
//! database across instances.
use crate::domain::ids::DeliveryId;
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use chrono::Utc;
use futures_util::{stream::FuturesUnordered, StreamExt};
use sqlx::PgPool;
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    attempt::Outcome,
    client::SafeClient,
    handoff::Inbox,
    keys::OutboundKeys,
    retry::RetrySchedule,
    turns::{Plan, Turn, Turns},
};
use crate::{
    metrics::Metrics,
    secrets::Keyring,
    storage::{self, delivery_queue::Claimed},
};

/// The most outcomes recorded in one statement.
const BATCH: usize = 512;
/// Turns whose statements may be under way at once. One: side by side, turns refilling the
/// same subscriptions reach for the same oldest rows and skip each other's locks (measured
/// slower at 2 and 3). While a turn runs, the loop still gathers outcomes and wake-ups.
const PIPELINE: usize = 1;
/// The longest sleep without looking at the queue (other instances' retries and leases).
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Everything the delivery worker needs.
#[derive(Clone)]
pub struct Deliverer {
    pub pool: PgPool,
    pub client: SafeClient,
    pub schedule: RetrySchedule,
    pub keys: Option<Arc<OutboundKeys>>,
    /// Opens the stored signing secrets.
    pub keyring: Arc<Keyring>,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
    pub concurrency: usize,
    pub disable_after: Duration,
    pub drain: Duration,
    pub lease: Duration,
}

/// The settings the delivery loop runs by (`Settings::delivery`).
pub struct DeliveryOptions {
    pub schedule: RetrySchedule,
    pub keys: Option<Arc<OutboundKeys>>,
    pub keyring: Arc<Keyring>,
    pub concurrency: usize,
    pub disable_after: Duration,
    pub drain: Duration,
    pub lease: Duration,
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        client: SafeClient,
        options: DeliveryOptions,
        metrics: Metrics,
        wake: Arc<Notify>,
    ) -> Self {
        let DeliveryOptions {
            schedule,
            keys,
            keyring,
            concurrency,
            disable_after,
            drain,
            lease,
        } = options;
        Deliverer {
            pool,
            client,
            schedule,
            keys,
            keyring,
            metrics,
            wake,
            concurrency,
            disable_after,
            drain,
            lease,
        }
    }

    /// Runs until cancelled; on stop, in-flight attempts finish (and are recorded) within the
    /// drain time and the leases of the rest are released for the next instance.
    pub async fn run(self, stop: CancellationToken, mut inbox: Inbox) {
        let me = Arc::new(self);
        let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let mut turns = Turns::new(inbox.lease_lock.clone());
        let mut running = FuturesUnordered::<Turn>::new();
        let mut batch = Vec::with_capacity(BATCH);
        while !stop.is_cancelled() {
            inbox.busy.store(turns.in_flight.len(), Ordering::Relaxed);
            if running.len() < PIPELINE {
                // Whatever has arrived joins the next turn.
                while batch.len() < BATCH {
                    let Ok(o) = rx.try_recv() else { break };
                    batch.push(o);
                }
                if let Some(turn) = turns.start(&me, &mut batch) {
                    running.push(turn);
                    continue;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((plan, result)) = running.next(), if !running.is_empty() => {
                    me.finish(&mut turns, plan, result, &tx).await;
                }
                _ = rx.recv_many(&mut batch, BATCH), if running.len() < PIPELINE => {}
                Some(claimed) = inbox.rx.recv() => me.dispatch(&mut turns, claimed, &tx).await,
                _ = me.wake.notified() => turns.sweep = true,
                _ = tokio::time::sleep_until(turns.deadline) => {
                    // The sweep sets the next deadline; until then (all slots may be busy)
                    // this timer must not fire again at once.
                    turns.sweep = true;
                    turns.deadline = Instant::now() + MAX_SLEEP;
                }
            }
        }
        drop(tx);
        // Hand-offs that came too late go back to the queue for the next instance.
        inbox.rx.close();
        while let Ok(claimed) = inbox.rx.try_recv() {
            let ids: Vec<DeliveryId> = claimed.iter().map(|c| c.id).collect();
            me.release(&ids).await;
        }
        me.drain(turns, running, rx, batch).await;
    }

    /// Hands a finished turn's claims to attempts, and decides when to look for work next.
    async fn finish(
        self: &Arc<Self>,
        turns: &mut Turns,
        plan: Plan,
        result: Result<Vec<Claimed>, sqlx::Error>,
        tx: &mpsc::UnboundedSender<Outcome>,
    ) {
        turns.reserved -= plan.limit;
        turns.sweeping &= !plan.sweep;
        let Ok(claimed) = result else {
            turns.sweep = true;
            turns.deadline = Instant::now() + Duration::from_secs(1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        };
        let got = claimed.len() as i64;
        if plan.sweep {
            turns.backlog = got == plan.limit;
        }
        // All that the global limit allowed: more may be due than this turn could take. Or a
        // refill came back short while work may be waiting for slots (`Turns::backlog`): its
        // slots are free now and only a sweep takes free slots.
        if (plan.bounded && plan.limit > 0 && got == plan.limit)
            || (!plan.sweep && got < plan.limit && turns.backlog)
        {
            turns.sweep = true;
        } else if plan.sweep {
            let due = self.next_due().await;
            turns.deadline = turns.retry_since_sweep.map_or(due, |r| r.min(due));
        }
        self.dispatch(turns, claimed, tx).await;
    }

    /// The next moment something may become due, at most [`MAX_SLEEP`] away.
    async fn next_due(&self) -> Instant {
        let wait = match storage::delivery_queue::next_due(&self.pool).await {
            Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            _ => MAX_SLEEP,
        };
        Instant::now() + wait.min(MAX_SLEEP)
    }

    /// Starts an attempt for each claimed delivery; those a rate limit holds back go back to
    /// the queue for a moment.
    async fn dispatch(
        self: &Arc<Self>,
        turns: &mut Turns,
        claimed: Vec<Claimed>,
        tx: &mpsc::UnboundedSender<Outcome>,
    ) {
        if claimed.is_empty() {
            return;
        }
        let (ready, held) = match turns
            .targets
            .resolve(&self.pool, &self.keyring, claimed)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "loading delivery targets failed; leases will expire and be retried");
                return;
            }
        };
        if !held.is_empty() {
            const HOLD: Duration = Duration::from_millis(200);
            if let Err(e) =
                storage::delivery_queue::release(&self.pool, &held, HOLD.as_secs_f64()).await
            {
                tracing::warn!(error = %e, "releasing rate-limited deliveries failed; their leases will expire");
            }
            turns.deadline = turns.deadline.min(Instant::now() + HOLD);
        }
        for (c, target) in ready {
            turns.in_flight.insert(c.id);
            let (me, tx) = (self.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(me.attempt(c, &target).await);
            });
        }
    }

    /// Lets running turns finish (putting back what they leased), then records outcomes as
    /// they come in until nothing is in flight or the drain time is over, and releases the
    /// leases of what is left.
    async fn drain(
        self: &Arc<Self>,
        mut turns: Turns,
        mut running: FuturesUnordered<Turn>,
        mut rx: mpsc::UnboundedReceiver<Outcome>,
        mut batch: Vec<Outcome>,
    ) {
        let deadline = Instant::now() + self.drain;
        turns.stopping = true;
        while let Some((_, result)) = running.next().await {
            let unsent: Vec<DeliveryId> = result.into_iter().flatten().map(|c| c.id).collect();
            self.release(&unsent).await;
        }
        loop {
            if let Some(turn) = turns.start(self, &mut batch) {
                let _ = turn.await; // errors are logged by the turn
            }
            if turns.in_flight.is_empty() {
                return;
            }
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left: Vec<DeliveryId> = turns.in_flight.into_iter().collect();
        tracing::warn!(
            count = left.len(),
            "drain time over: releasing delivery leases"
        );
        self.release(&left).await;
    }

    async fn release(&self, ids: &[DeliveryId]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = storage::delivery_queue::release(&self.pool, ids, 0.0).await {
            tracing::warn!(error = %e, "releasing delivery leases failed; they will expire");
        }
    }
}
