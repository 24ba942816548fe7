//! Recording a batch of outcomes and leasing what replaces them. A batch of successes is one
//! statement (attempt rows, deliveries moved on, `failing_since` cleared, freed slots refilled);
//! a batch with failures is one transaction that also carries their consequences — retries on
//! the schedule, 410 ⇒ disable now, exhaustion, auto-disable after days of failure — and
//! refills its freed slots last, so nothing is leased for a subscription it just disabled.
use crate::domain::event_type::EventType;
use crate::domain::ids::SubscriptionId;
use crate::wire::{DeliveryObject, SubscriptionObject};
use std::collections::HashSet;

use super::{attempt::Outcome, retry::Decision, worker::Deliverer};
use crate::storage::{
    self,
    delivery_queue::{Claim, Claimed, Settled},
};

impl Deliverer {
    pub(super) async fn settle_and_claim(
        &self,
        batch: &[Outcome],
        claim: Claim<'_>,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        let settled: Vec<Settled> = batch.iter().map(|o| o.settled.clone()).collect();
        let healthy = subscriptions(batch, |d| matches!(d, Decision::Done));
        let lease = self.lease.as_secs_f64();
        if batch.iter().all(|o| o.decision == Decision::Done) {
            return storage::delivery_queue::settle_and_claim(
                &self.pool, &settled, &healthy, claim, lease,
            )
            .await;
        }
        let mut tx = self.pool.begin().await?;
        storage::delivery_queue::settle_and_claim(&mut *tx, &settled, &healthy, Claim::None, lease)
            .await?;
        self.consequences(&mut tx, batch, &healthy).await?;
        let claimed =
            storage::delivery_queue::settle_and_claim(&mut *tx, &[], &[], claim, lease).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn consequences(
        &self,
        tx: &mut sqlx::PgConnection,
        batch: &[Outcome],
        healthy: &[SubscriptionId],
    ) -> Result<(), sqlx::Error> {
        // A subscription with a success in this batch is not one of "only failures".
        let failing: Vec<SubscriptionId> = subscriptions(batch, |d| {
            matches!(d, Decision::RetryIn(_) | Decision::Exhausted)
        })
        .into_iter()
        .filter(|id| !healthy.contains(id))
        .collect();
        let mut disable: Vec<(SubscriptionId, String)> =
            subscriptions(batch, |d| *d == Decision::Disable)
                .into_iter()
                .map(|id| (id, "the target answered 410 Gone".to_owned()))
                .collect();
        if !failing.is_empty() {
            let overdue = storage::subscriptions::mark_failing(
                &mut *tx,
                &failing,
                self.disable_after.as_secs_f64(),
            )
            .await?;
            let days = self.disable_after.as_secs_f64() / 86_400.0;
            disable.extend(
                overdue
                    .into_iter()
                    .map(|id| (id, format!("every delivery failed for {days:.1} days"))),
            );
        }
        for (id, reason) in disable {
            if storage::subscriptions::disable(&mut *tx, id, &reason).await? {
                if let Some(sub) = storage::subscriptions::get_many(&mut *tx, &[id])
                    .await?
                    .pop()
                {
                    tracing::warn!(subscription = %sub.public_id(), reason, "subscription disabled");
                    storage::events::append(
                        tx,
                        sub.tenant_id,
                        EventType::SubscriptionDisabled,
                        None,
                        SubscriptionObject::of(&sub, None).value(),
                    )
                    .await?;
                }
            }
        }
        for o in batch.iter().filter(|o| o.decision == Decision::Exhausted) {
            if matches!(
                o.claimed.event_type,
                EventType::DeliveryExhausted | EventType::SubscriptionDisabled
            ) {
                continue; // never announce the failure of an announcement of failure
            }
            let (tenant, id) = (o.claimed.tenant_id, o.claimed.id);
            if let Some(d) = storage::deliveries::get(&mut *tx, tenant, id).await? {
                storage::events::append(
                    tx,
                    tenant,
                    EventType::DeliveryExhausted,
                    None,
                    DeliveryObject::of(&d).value(),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The subscriptions of the outcomes whose decision matches, each once.
pub(super) fn subscriptions(
    batch: &[Outcome],
    pred: impl Fn(&Decision) -> bool,
) -> Vec<SubscriptionId> {
    batch
        .iter()
        .filter(|o| pred(&o.decision))
        .filter_map(|o| o.claimed.subscription_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}
