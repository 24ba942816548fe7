//! Batches: accepting up to 100 requests all or nothing, and closing a batch once its members
//! are all terminal.
//!
//! Acceptance runs each member through the same rules as a single request — the deployment's
//! checks, its seed, the seed cache — but decides for the whole batch: every member's errors
//! are named before anything is counted; the rate windows take the batch's requests (one per
//! member) whole or not at all; and every member's budget reservation and row are written in
//! one transaction, so a batch that does not fit its budget leaves nothing behind and is told
//! how much it lacks.
//!
//! Closing: a trigger NOTIFYs every instance when a member finishes; each instance's closer
//! tallies the batches with no unfinished member and closes them with their `batch.completed`
//! event in one statement that only one instance can win.
use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{
    accept::{seed_of, Refusal},
    Pipeline, SUBMIT_CHANNEL,
};
use crate::{
    domain::{
        batch::{member_errors, BatchRequest},
        event_type::EventType,
        ids::{BatchId, TenantId},
        states::BatchStatus,
        FieldError,
    },
    governance::{budgets, rate_limit},
    storage::{
        self,
        batches::{Batch, Tally},
        generations::Generation,
    },
    wire::BatchObject,
};

/// A batch as accepted: its row, its members in the order given, the rate window it was
/// counted in.
#[derive(Debug)]
pub struct AcceptedBatch {
    pub batch: Batch,
    pub tally: Tally,
    pub members: Vec<Generation>,
    pub window: Option<rate_limit::Window>,
}

/// The closer's fallback look, should a notice be lost while the LISTEN connection was down
/// (a reconnect also wakes it).
const FALLBACK: Duration = Duration::from_secs(30);

impl Pipeline {
    pub async fn accept_batch(
        &self,
        db: &PgPool,
        tenant: TenantId,
        mut batch: BatchRequest,
    ) -> Result<AcceptedBatch, Refusal> {
        let mut errors = Vec::new();
        let mut seeds = Vec::with_capacity(batch.members.len());
        for (i, member) in batch.members.iter().enumerate() {
            match self.vet(member).await {
                Err(Refusal::Invalid(e)) => errors.extend(member_errors(i, e)),
                Err(other) => return Err(other),
                Ok(()) => {}
            }
            let seed = match &member.seed_from {
                None => member.input.seed.map(|s| s as i64),
                Some(source) => match seed_of(db, tenant, source).await {
                    Ok(seed) => Some(seed),
                    Err(e @ (Refusal::NoSeedSource(_) | Refusal::SeedUnavailable { .. })) => {
                        let message = e.to_string();
                        let message = message.trim_start_matches("seed_from: ");
                        errors.push(FieldError::new(format!("requests[{i}].seed_from"), message));
                        None
                    }
                    Err(other) => return Err(other),
                },
            };
            seeds.push(seed);
        }
        if !errors.is_empty() {
            return Err(Refusal::Invalid(errors));
        }

        // Each end user's limits, read once; the tenant's are the same in every answer.
        let mut limits: HashMap<Option<String>, budgets::Limits> = HashMap::new();
        let mut per_user: Vec<(&str, i32)> = Vec::new();
        for member in &batch.members {
            let user = member.end_user.clone();
            if !limits.contains_key(&user) {
                let l = budgets::limits_for(db, tenant, user.as_deref()).await?;
                limits.insert(user.clone(), l);
            }
            if let Some(u) = member.end_user.as_deref() {
                match per_user.iter_mut().find(|(name, _)| *name == u) {
                    Some((_, n)) => *n += 1,
                    None => per_user.push((u, 1)),
                }
            }
        }
        let any = limits.values().next().cloned().unwrap_or_default();
        let window =
            rate_limit::admit_many(db, tenant, batch.members.len() as i32, &per_user, |u| {
                limits.get(&Some(u.to_owned())).unwrap_or(&any)
            })
            .await?
            .map_err(Refusal::RateLimited)?;

        let id = BatchId::new();
        let mut tx = db.begin().await?;
        let row = storage::batches::insert(&mut *tx, id, tenant, &batch).await?;
        let mut members = Vec::with_capacity(batch.members.len());
        for member in &mut batch.members {
            member.batch = Some(id);
        }
        for (i, (member, &seed)) in batch.members.iter().zip(&seeds).enumerate() {
            let member_limits = limits.get(&member.end_user).unwrap_or(&any);
            match self
                .store(&mut tx, tenant, member, seed, member_limits)
                .await?
            {
                Ok(stored) => members.push(stored.generation),
                Err(exhausted) => {
                    // What this member and the rest would still need under the cap that refused.
                    let rest: i64 = batch.members[i..]
                        .iter()
                        .filter(|o| exhausted.scope == "tenant" || o.end_user == member.end_user)
                        .map(|o| o.estimated_cost_micros())
                        .sum();
                    let lacks_micros = (exhausted.used_micros + rest - exhausted.cap_micros).max(1);
                    return Err(Refusal::BatchOverBudget {
                        exhausted,
                        lacks_micros,
                    });
                }
            }
        }
        storage::events::notify(&mut *tx, SUBMIT_CHANNEL, "").await?;
        tx.commit().await?;
        self.submit_wake.notify_one();
        let tally = storage::batches::tally(db, id).await?;
        tracing::info!(batch = %id, size = members.len(), cost_micros = row.estimated_cost_micros, "batch accepted");
        Ok(AcceptedBatch {
            batch: row,
            tally,
            members,
            window,
        })
    }

    /// Closes every running batch whose members are all terminal; returns how many this
    /// instance closed.
    pub async fn close_ready_batches(&self) -> Result<usize, sqlx::Error> {
        let mut closed = 0;
        for (id, tenant) in storage::batches::ready_to_close(&self.pool, 100).await? {
            let Some(mut batch) = storage::batches::get(&self.pool, tenant, id).await? else {
                continue;
            };
            let tally = storage::batches::tally(&self.pool, id).await?;
            if tally.unfinished() > 0 {
                continue;
            }
            let at = Utc::now();
            batch.status = BatchStatus::Completed;
            batch.completed_at = Some(at);
            let event = storage::events::NewEvent {
                tenant_id: tenant,
                kind: EventType::BatchCompleted,
                generation_id: None,
                data: BatchObject::of(&batch, &tally).value(),
            };
            if storage::batches::close(&self.pool, id, at, event).await? {
                closed += 1;
                tracing::info!(batch = %id, completed = tally.completed, failed = tally.failed, cancelled = tally.cancelled, "batch completed");
            }
        }
        Ok(closed)
    }
}

/// The closer: runs until cancelled, waking on the member-finished notices.
pub async fn run(p: Pipeline, stop: CancellationToken) {
    loop {
        if let Err(e) = p.close_ready_batches().await {
            tracing::warn!(error = %e, "closing batches failed; will try again");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = p.batch_wake.notified() => {}
            _ = tokio::time::sleep(FALLBACK) => {}
        }
    }
}
