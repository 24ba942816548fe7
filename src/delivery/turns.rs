//! The delivery loop's bookkeeping: what is in flight, which slots running turns may fill, when
//! to sweep, and how a batch of outcomes becomes a turn — a settle that hands each freed slot on
//! to its subscription's next due delivery.
use crate::domain::ids::{DeliveryId, SubscriptionId};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::{future::BoxFuture, FutureExt};
use tokio::time::Instant;

use super::{attempt::Outcome, handoff::LeaseLock, target::Targets, worker::Deliverer};
use crate::storage::delivery_queue::{Claim, Claimed};

/// What a turn asked for.
pub struct Plan {
    pub limit: i64,
    pub sweep: bool,
    /// The global concurrency, not the subscriptions' freed slots, set `limit`.
    pub bounded: bool,
    subscriptions: Vec<SubscriptionId>,
    slots: Vec<i32>,
}

/// A turn under way: its plan, and what it leased.
pub type Turn = BoxFuture<'static, (Plan, Result<Vec<Claimed>, sqlx::Error>)>;

pub struct Turns {
    /// Claimed and handed to a task, outcome not back yet.
    pub in_flight: HashSet<DeliveryId>,
    /// Slots that running turns may fill.
    pub reserved: i64,
    pub targets: Targets,
    /// Look for due work of any subscription at the next chance.
    pub sweep: bool,
    /// A sweep is running (one at a time: two could both see the same free slots).
    pub sweeping: bool,
    /// Due work may have been left behind for want of free slots: the last sweep filled every
    /// slot it had. Until a sweep comes back short, a refill that frees slots it cannot fill
    /// sweeps for others; once one has, nothing is waiting that a NOTIFY, a refill or the
    /// timer would not bring (at low load, where callbacks hand their deliveries over, this
    /// spares a sweep per settled batch).
    pub backlog: bool,
    /// When to sweep even if nothing wakes the loop.
    pub deadline: Instant,
    /// The soonest retry recorded since the running sweep began (it may not see it yet).
    pub retry_since_sweep: Option<Instant>,
    /// Draining: record outcomes, claim nothing.
    pub stopping: bool,
    /// Held by sweeps (see `handoff::Handoff::lease_lock`).
    pub lease_lock: LeaseLock,
}

impl Turns {
    pub fn new(lease_lock: LeaseLock) -> Turns {
        Turns {
            lease_lock,
            in_flight: HashSet::new(),
            reserved: 0,
            targets: Targets::default(),
            sweep: true,
            sweeping: false,
            backlog: true,
            deadline: Instant::now(),
            retry_since_sweep: None,
            stopping: false,
        }
    }

    pub fn due_at(&mut self, at: DateTime<Utc>) {
        let at = Instant::now() + (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        self.deadline = self.deadline.min(at);
        self.retry_since_sweep = Some(self.retry_since_sweep.map_or(at, |r| r.min(at)));
    }

    fn free(&self, me: &Deliverer) -> i64 {
        (me.concurrency as i64 - self.in_flight.len() as i64 - self.reserved).max(0)
    }

    /// Takes `batch` into a new turn, or `None` when there is nothing to record or look for.
    pub fn start(&mut self, me: &Arc<Deliverer>, batch: &mut Vec<Outcome>) -> Option<Turn> {
        let sweep = self.sweep && !self.sweeping && !self.stopping;
        if batch.is_empty() && !(sweep && self.free(me) > 0) {
            return None;
        }
        let batch = std::mem::take(batch);
        let mut freed: HashMap<SubscriptionId, i32> = HashMap::new();
        for o in &batch {
            self.in_flight.remove(&o.claimed.id);
            if let Some(at) = o.settled.next_attempt_at {
                self.due_at(at);
            }
            if let Some(sub) = o.claimed.subscription_id {
                *freed.entry(sub).or_default() += 1;
            }
        }
        let free = self.free(me);
        let wanted: i64 = freed.values().map(|n| i64::from(*n)).sum();
        let (limit, bounded) = match () {
            _ if self.stopping => (0, false),
            _ if sweep => (free, true),
            _ => (free.min(wanted), wanted > free),
        };
        let sweep = sweep && limit > 0;
        if sweep {
            self.sweep = false;
            self.sweeping = true;
            self.retry_since_sweep = None;
        }
        self.reserved += limit;
        let (subscriptions, slots) = freed.into_iter().unzip();
        let plan = Plan {
            limit,
            sweep,
            bounded,
            subscriptions,
            slots,
        };
        let me = me.clone();
        let lease_lock = plan.sweep.then(|| self.lease_lock.clone());
        Some(
            async move {
                // A sweep counts free slots: not while a callback batch leases into them.
                let _sweeping = match &lease_lock {
                    Some(l) => Some(l.lock().await),
                    None => None,
                };
                let claim = match (plan.limit, plan.sweep) {
                    (0, _) => Claim::None,
                    (limit, true) => Claim::Due { limit },
                    (limit, false) => Claim::Refill {
                        subscriptions: &plan.subscriptions,
                        slots: &plan.slots,
                        limit,
                    },
                };
                let result = me.settle_and_claim(&batch, claim).await;
                if let Err(e) = &result {
                    // The leases of what was not recorded expire, and those deliveries are
                    // attempted again: at-least-once.
                    tracing::error!(error = %e, count = batch.len(), "recording delivery attempts or claiming failed");
                }
                (plan, result)
            }
            .boxed(),
        )
    }
}
