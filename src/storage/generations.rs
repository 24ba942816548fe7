//! Generations: the row is the request and its state machine. The submission outbox and our
//! record of fal's answers live in `outbox.rs`; finishing them (callbacks, cancels) in
//! `finish.rs`.
use crate::domain::ids::{BatchId, GenerationId, TenantId};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{types::Json, FromRow, PgExecutor};

use crate::domain::{
    generation::GenerationRequest,
    ids,
    states::{GenerationStatus, Priority},
};

mod finish;
mod outbox;

pub use finish::*;
pub use outbox::*;

pub const COLUMNS: &str = "id, tenant_id, status, model, input, webhook_url, metadata, end_user, \
    estimated_cost_micros, cost_micros, fal_request_id, status_url, response_url, cancel_url, seed, result, \
    error, submit_attempts, transient_failures, created_at, updated_at, submitted_at, finished_at, cancel_requested_at, \
    cached, budget_day, reserved_micros, reservation_held_since, batch_id, priority, start_timeout_secs";

#[derive(Debug, Clone, FromRow)]
pub struct Generation {
    pub id: GenerationId,
    pub tenant_id: TenantId,
    pub status: GenerationStatus,
    pub model: String,
    pub input: Json<Value>,
    pub webhook_url: Option<String>,
    pub metadata: Option<Json<Value>>,
    pub end_user: Option<String>,
    pub estimated_cost_micros: i64,
    pub cost_micros: Option<i64>,
    pub fal_request_id: Option<String>,
    pub status_url: Option<String>,
    pub response_url: Option<String>,
    pub cancel_url: Option<String>,
    pub seed: Option<i64>,
    pub result: Option<Json<Value>>,
    pub error: Option<Json<Value>>,
    pub submit_attempts: i32,
    pub transient_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub cached: bool,
    pub budget_day: Option<chrono::NaiveDate>,
    pub reserved_micros: i64,
    /// Cancelled while fal had it: the reservation waits for fal's final word since then.
    pub reservation_held_since: Option<DateTime<Utc>>,
    /// The batch it was accepted in, if any.
    pub batch_id: Option<BatchId>,
    pub priority: Priority,
    /// What fal was (or will be) told to give up after, if it has not started it.
    pub start_timeout_secs: Option<i32>,
}

impl Generation {
    pub fn public_id(&self) -> String {
        self.id.to_string()
    }

    /// What finishing this generation does to its budget reservation.
    pub fn settlement(&self) -> crate::storage::budget_usage::Settlement<'_> {
        crate::storage::budget_usage::Settlement {
            tenant_id: self.tenant_id,
            end_user: self.end_user.as_deref(),
            day: self.budget_day,
            reserved: self.reserved_micros,
            actual: self.cost_micros.unwrap_or(0),
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// The normalised input as stored (and as fal receives it, preset aside), with the seed the
/// generation will use when it has one.
pub fn stored_input(req: &GenerationRequest, seed: Option<i64>) -> Value {
    let mut input = serde_json::to_value(&req.input).unwrap_or(Value::Null);
    if let Some(seed) = seed {
        input["seed"] = json!(seed);
    }
    input
}

/// What an insert records beyond the request itself.
#[derive(Debug, Default)]
pub struct Bookkeeping<'a> {
    pub cache_key: Option<&'a str>,
    pub budget_day: Option<chrono::NaiveDate>,
    pub reserved_micros: i64,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    req: &GenerationRequest,
    input: &Value,
    seed: Option<i64>,
    book: Bookkeeping<'_>,
) -> Result<Generation, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO generations (id, tenant_id, model, input, webhook_url, metadata, end_user, estimated_cost_micros, seed,
                                  cache_key, budget_day, reserved_micros, batch_id, priority, start_timeout_secs)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING {COLUMNS}"
    ))
    .bind(ids::new_uuid())
    .bind(tenant_id)
    .bind(req.model.id)
    .bind(Json(input))
    .bind(req.webhook_url.as_ref().map(|u| u.as_str()))
    .bind(req.metadata.as_ref().map(Json))
    .bind(&req.end_user)
    .bind(req.estimated_cost_micros())
    .bind(seed)
    .bind(book.cache_key)
    .bind(book.budget_day)
    .bind(book.reserved_micros)
    .bind(req.batch)
    .bind(req.priority)
    .bind(req.start_timeout_secs.map(|s| s as i32))
    .fetch_one(db)
    .await
}

/// The newest completed generation of this tenant with this cache key, within the TTL.
pub async fn cached_source(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    cache_key: &str,
    ttl_secs: f64,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations
         WHERE tenant_id = $1 AND cache_key = $2 AND status = 'completed' AND finished_at > now() - make_interval(secs => $3)
         ORDER BY finished_at DESC LIMIT 1"
    ))
    .bind(tenant_id)
    .bind(cache_key)
    .bind(ttl_secs)
    .fetch_optional(db)
    .await
}

/// A new generation answered from `source`'s result: completed at once, `cached`, cost 0.
pub async fn insert_cached(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    req: &GenerationRequest,
    input: &Value,
    source: &Generation,
) -> Result<Generation, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO generations (id, tenant_id, status, model, input, webhook_url, metadata, end_user, estimated_cost_micros,
                                  cost_micros, seed, result, cached, finished_at, batch_id, priority)
         VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7, $8, 0, $9, $10, true, now(), $11, $12) RETURNING {COLUMNS}"
    ))
    .bind(ids::new_uuid())
    .bind(tenant_id)
    .bind(req.model.id)
    .bind(Json(input))
    .bind(req.webhook_url.as_ref().map(|u| u.as_str()))
    .bind(req.metadata.as_ref().map(Json))
    .bind(&req.end_user)
    .bind(req.estimated_cost_micros())
    .bind(source.seed)
    // Hits are not sources themselves: the TTL counts from fal's own result (its URLs expire).
    .bind(source.result.as_ref())
    .bind(req.batch)
    .bind(req.priority)
    .fetch_one(db)
    .await
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: GenerationId,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await
}

/// Newest first; `before` is the id of the last row of the previous page (UUIDv7 ids sort by time).
/// Which of a tenant's generations a listing shows; `None` matches any.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    pub status: Option<GenerationStatus>,
    pub model: Option<&'a str>,
    pub end_user: Option<&'a str>,
    pub batch: Option<BatchId>,
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    filter: ListFilter<'_>,
    before: Option<GenerationId>,
    limit: i64,
) -> Result<Vec<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR end_user = $3)
           AND ($4::uuid IS NULL OR id < $4) AND ($6::text IS NULL OR model = $6)
           AND ($7::uuid IS NULL OR batch_id = $7)
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(tenant_id)
    .bind(filter.status)
    .bind(filter.end_user)
    .bind(before)
    .bind(limit)
    .bind(filter.model)
    .bind(filter.batch)
    .fetch_all(db)
    .await
}

pub async fn seed_of(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: GenerationId,
    owner: Option<&str>,
) -> Result<Option<(GenerationStatus, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, seed FROM generations WHERE id = $1 AND tenant_id = $2
           AND ($3::text IS NULL OR end_user = $3)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(owner)
    .fetch_optional(db)
    .await
}
