//! The delivery loop. One task owns the conversation with the database: each turn it records
//! the outcomes that have arrived and, in the same statement, leases the deliveries that take
//! their in-flight slots (or, after a NOTIFY or on the timer, sweeps for any due work). Leases
//! commit before any HTTP call; each claimed delivery is then signed and sent by a task of its
//! own, whose outcome comes back here. The global `concurrency` bounds those tasks, and each
//! subscription's `max_in_flight` is counted by the database across instances.
use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::{
    sync::{mpsc, Notify},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    attempt::Outcome, client::SafeClient, keys::OutboundKeys, retry::RetrySchedule, settle,
    signing::SigningSecret, target::Targets,
};
use crate::{
    metrics::Metrics,
    storage::{
        self,
        delivery_queue::{Claim, Claimed},
    },
};

/// The most outcomes recorded in one statement.
const BATCH: usize = 512;
/// The longest sleep without looking at the queue (other instances' retries and leases).
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Everything the delivery worker needs.
#[derive(Clone)]
pub struct Deliverer {
    pub pool: PgPool,
    pub client: SafeClient,
    pub schedule: RetrySchedule,
    pub keys: Option<Arc<OutboundKeys>>,
    pub metrics: Metrics,
    pub wake: Arc<Notify>,
    pub concurrency: usize,
    pub disable_after: Duration,
    pub drain: Duration,
    pub lease: Duration,
}

/// The delivery loop's own state.
struct Turns {
    /// Claimed and handed to a task, outcome not back yet.
    in_flight: HashSet<Uuid>,
    targets: Targets,
    /// Look for due work of any subscription at the next chance.
    sweep: bool,
    /// When to sweep even if nothing wakes the loop.
    deadline: Instant,
    /// Draining: record outcomes, claim nothing.
    stopping: bool,
}

impl Turns {
    fn due_at(&mut self, at: DateTime<Utc>) {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        self.deadline = self.deadline.min(Instant::now() + wait);
    }
}

impl Deliverer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        client: SafeClient,
        schedule: RetrySchedule,
        keys: Option<Arc<OutboundKeys>>,
        metrics: Metrics,
        wake: Arc<Notify>,
        concurrency: usize,
        disable_after: Duration,
        drain: Duration,
        lease: Duration,
    ) -> Self {
        Deliverer {
            pool,
            client,
            schedule,
            keys,
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
    pub async fn run(self, stop: CancellationToken) {
        let me = Arc::new(self);
        let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let mut turns = Turns {
            in_flight: HashSet::new(),
            targets: Targets::default(),
            sweep: true,
            deadline: Instant::now(),
            stopping: false,
        };
        let mut batch = Vec::with_capacity(BATCH);
        while !stop.is_cancelled() {
            let can_sweep = turns.sweep && turns.in_flight.len() < me.concurrency;
            if batch.is_empty() && !can_sweep {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = rx.recv_many(&mut batch, BATCH) => {}
                    _ = me.wake.notified() => turns.sweep = true,
                    _ = tokio::time::sleep_until(turns.deadline) => turns.sweep = true,
                }
            }
            // Whatever else has arrived meanwhile joins this turn.
            while batch.len() < BATCH {
                let Ok(o) = rx.try_recv() else { break };
                batch.push(o);
            }
            let claimed = me.turn(&mut turns, &batch).await;
            batch.clear();
            me.dispatch(&mut turns, claimed, &tx).await;
        }
        drop(tx);
        me.drain(turns, rx, batch).await;
    }

    /// Records `batch` and leases what replaces it; errors are logged (the leases of what was
    /// not recorded expire and those deliveries are attempted again: at-least-once).
    async fn turn(&self, turns: &mut Turns, batch: &[Outcome]) -> Vec<Claimed> {
        for o in batch {
            turns.in_flight.remove(&o.claimed.id);
            if let Some(at) = o.settled.next_attempt_at {
                turns.due_at(at);
            }
        }
        let free = self.concurrency.saturating_sub(turns.in_flight.len()) as i64;
        let sweep = turns.sweep && free > 0;
        let refill = settle::subscriptions(batch, |_| true);
        let claim = match (free, sweep) {
            _ if turns.stopping => Claim::None,
            (0, _) => Claim::None,
            (_, true) => Claim::Due { limit: free },
            _ => Claim::Refill {
                subscriptions: &refill,
                limit: free,
            },
        };
        match self.settle_and_claim(batch, claim).await {
            Ok(claimed) => {
                // All that was asked for: more may be due than this turn could take.
                let full = free > 0 && claimed.len() as i64 == free;
                turns.sweep = full || (turns.sweep && !sweep);
                if sweep && !full {
                    turns.deadline = self.next_due().await;
                }
                claimed
            }
            Err(e) => {
                tracing::error!(error = %e, count = batch.len(), "recording delivery attempts or claiming failed");
                turns.sweep = true;
                turns.deadline = Instant::now() + Duration::from_secs(1);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Vec::new()
            }
        }
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
        let (ready, held) = match turns.targets.resolve(&self.pool, claimed).await {
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

    /// Records outcomes as they come in until nothing is in flight or the drain time is over,
    /// then releases the leases of what is left.
    async fn drain(
        &self,
        mut turns: Turns,
        mut rx: mpsc::UnboundedReceiver<Outcome>,
        mut batch: Vec<Outcome>,
    ) {
        let deadline = Instant::now() + self.drain;
        turns.stopping = true;
        loop {
            if !batch.is_empty() {
                self.turn(&mut turns, &batch).await;
                batch.clear();
            }
            if turns.in_flight.is_empty() {
                return;
            }
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let left: Vec<Uuid> = turns.in_flight.into_iter().collect();
        tracing::warn!(
            count = left.len(),
            "drain time over: releasing delivery leases"
        );
        let _ = storage::delivery_queue::release(&self.pool, &left, 0.0).await;
    }
}

/// The tenant's secret for per-request `webhook_url` deliveries, created on first use.
pub async fn tenant_webhook_secret(
    pool: &PgPool,
    tenant_id: Uuid,
) -> Result<SigningSecret, sqlx::Error> {
    let fresh = SigningSecret::generate();
    let stored: String = sqlx::query_scalar("UPDATE tenants SET webhook_secret = COALESCE(webhook_secret, $2) WHERE id = $1 RETURNING webhook_secret")
        .bind(tenant_id)
        .bind(fresh.as_str())
        .fetch_one(pool)
        .await?;
    Ok(SigningSecret::parse(&stored).unwrap_or(fresh))
}
