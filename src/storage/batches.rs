//! Batches: the row a batch's members point to, their tally, and closing a batch once — the
//! `completed` state and its `batch.completed` event written in one statement.
//!
//! A trigger (migration 17) NOTIFYs `BATCH_CHANNEL` when a member reaches a terminal state, so
//! every instance's closer looks again; the conditional UPDATE under the batch row's lock lets
//! exactly one of them close it.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow, PgExecutor};

use crate::domain::{
    batch::BatchRequest,
    ids::{BatchId, GenerationId, TenantId},
    states::{BatchStatus, GenerationStatus, Priority},
};
use crate::storage::events;

/// Where the member-finished trigger NOTIFYs.
pub const BATCH_CHANNEL: &str = "fluxgate_batches";

const COLUMNS: &str = "id, tenant_id, status, priority, webhook_url, metadata, size, \
    estimated_cost_micros, cancel_requested_at, created_at, completed_at";

#[derive(Debug, Clone, FromRow)]
pub struct Batch {
    pub id: BatchId,
    pub tenant_id: TenantId,
    pub status: BatchStatus,
    pub priority: Priority,
    pub webhook_url: Option<String>,
    pub metadata: Option<Json<Value>>,
    pub size: i32,
    pub estimated_cost_micros: i64,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A batch's members by state, and what they cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub accepted: i64,
    pub queued: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// What fal charged for the members that have a final cost.
    pub cost_micros: i64,
    /// In acceptance order.
    pub generation_ids: Vec<GenerationId>,
}

impl Tally {
    pub fn unfinished(&self) -> i64 {
        self.accepted + self.queued
    }
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: BatchId,
    tenant_id: TenantId,
    request: &BatchRequest,
) -> Result<Batch, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO batches (id, tenant_id, priority, webhook_url, metadata, size, estimated_cost_micros)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(request.priority)
    .bind(request.webhook_url.as_ref().map(|u| u.as_str()))
    .bind(request.metadata.as_ref().map(Json))
    .bind(request.members.len() as i32)
    .bind(request.estimated_cost_micros())
    .fetch_one(db)
    .await
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: BatchId,
) -> Result<Option<Batch>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM batches WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await
}

impl Tally {
    /// Counts one member in.
    fn add(&mut self, member: GenerationId, status: GenerationStatus, cost: Option<i64>) {
        let count = match status {
            GenerationStatus::Accepted => &mut self.accepted,
            GenerationStatus::Queued => &mut self.queued,
            GenerationStatus::Completed => &mut self.completed,
            GenerationStatus::Failed => &mut self.failed,
            GenerationStatus::Cancelled => &mut self.cancelled,
        };
        *count += 1;
        self.cost_micros += cost.unwrap_or(0);
        self.generation_ids.push(member);
    }
}

/// Counts the members by state, in one read over the batch's index.
pub async fn tally(db: impl PgExecutor<'_>, id: BatchId) -> Result<Tally, sqlx::Error> {
    let mut tallies = tallies(db, &[id]).await?;
    Ok(tallies.remove(&id).unwrap_or_default())
}

/// `tally` of several batches, in one read.
pub async fn tallies(
    db: impl PgExecutor<'_>,
    ids: &[BatchId],
) -> Result<HashMap<BatchId, Tally>, sqlx::Error> {
    let rows: Vec<(BatchId, GenerationId, GenerationStatus, Option<i64>)> = sqlx::query_as(
        "SELECT batch_id, id, status, cost_micros FROM generations WHERE batch_id = ANY($1)
         ORDER BY batch_id, id",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    let mut tallies: HashMap<BatchId, Tally> = HashMap::with_capacity(ids.len());
    for (batch, member, status, cost) in rows {
        tallies.entry(batch).or_default().add(member, status, cost);
    }
    Ok(tallies)
}

/// A tenant's batches, newest first, optionally only those in `status`; `before` is the last
/// id of the previous page (ids sort by time).
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    status: Option<BatchStatus>,
    before: Option<BatchId>,
    limit: i64,
) -> Result<Vec<Batch>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM batches
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(tenant_id)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Records that the caller cancelled the batch (its unsubmitted members are cancelled next).
pub async fn mark_cancel_requested(
    db: impl PgExecutor<'_>,
    id: BatchId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE batches SET cancel_requested_at = COALESCE(cancel_requested_at, now()) WHERE id = $1",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Running batches none of whose members is unfinished: the ones to close.
pub async fn ready_to_close(
    db: impl PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<(BatchId, TenantId)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.id, b.tenant_id FROM batches b
         WHERE b.status = 'running'
           AND NOT EXISTS (SELECT 1 FROM generations g
                           WHERE g.batch_id = b.id AND g.status IN ('accepted', 'queued'))
         ORDER BY b.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Marks the batch `completed` at `at` and appends `event` (its `batch.completed`, with fan-out) in one
/// statement, if it is still running and no member is unfinished. False when another instance
/// closed it first, or a member is not finished after all.
pub async fn close(
    pool: &sqlx::PgPool,
    id: BatchId,
    at: DateTime<Utc>,
    event: events::NewEvent,
) -> Result<bool, sqlx::Error> {
    let guard = events::Guard {
        ctes: "b AS (SELECT id FROM batches WHERE id = $13 AND status = 'running' FOR UPDATE),
            done AS (UPDATE batches SET status = 'completed', completed_at = $14
                     WHERE id IN (SELECT id FROM b)
                       AND NOT EXISTS (SELECT 1 FROM generations g
                                       WHERE g.batch_id = $13 AND g.status IN ('accepted', 'queued'))
                     RETURNING id),"
            .to_owned(),
        keep: "EXISTS (SELECT 1 FROM done)",
        bind: Box::new(move |q| q.bind(id).bind(at)),
    };
    let appended = events::append_guarded(pool, &[event], None, Some(guard)).await?;
    Ok(!appended.events.is_empty())
}

/// The batch's members in `status`.
pub async fn members_in(
    db: impl PgExecutor<'_>,
    id: BatchId,
    status: GenerationStatus,
) -> Result<Vec<GenerationId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM generations WHERE batch_id = $1 AND status = $2 ORDER BY id")
        .bind(id)
        .bind(status)
        .fetch_all(db)
        .await
}
