//! REST Hooks subscriptions.
use crate::domain::ids::{SubscriptionId, TenantId};
use crate::domain::states::SubscriptionStatus;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow, PgExecutor};

use super::Stored;

pub const COLUMNS: &str = "id, tenant_id, target_url, event_types, filter, description, headers, secret, previous_secret, \
    previous_secret_expires_at, status, disabled_reason, failing_since, max_in_flight, rate_limit_per_sec, created_at, updated_at";

#[derive(Debug, Clone, FromRow)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant_id: TenantId,
    pub target_url: String,
    pub event_types: Vec<String>,
    pub filter: Option<Json<Value>>,
    pub description: Option<String>,
    pub headers: Json<Value>,
    /// As stored: sealed, or plaintext without an encryption key.
    pub secret: Stored,
    pub previous_secret: Option<Stored>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub max_in_flight: i32,
    pub rate_limit_per_sec: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    pub fn public_id(&self) -> String {
        self.id.to_string()
    }
}

pub struct NewSubscription<'a> {
    pub id: SubscriptionId,
    pub target_url: &'a str,
    pub event_types: &'a [String],
    pub filter: Option<&'a Value>,
    pub description: Option<&'a str>,
    pub headers: &'a Value,
    /// The value to store: sealed for `id` (`Keyring::seal`).
    pub secret: &'a str,
    pub max_in_flight: i32,
    pub rate_limit_per_sec: Option<i32>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    s: NewSubscription<'_>,
) -> Result<Subscription, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO subscriptions (id, tenant_id, target_url, event_types, filter, description, headers, secret, max_in_flight, rate_limit_per_sec)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    ))
    .bind(s.id)
    .bind(tenant_id)
    .bind(s.target_url)
    .bind(s.event_types)
    .bind(s.filter.map(Json))
    .bind(s.description)
    .bind(Json(s.headers))
    .bind(s.secret)
    .bind(s.max_in_flight)
    .bind(s.rate_limit_per_sec)
    .fetch_one(db)
    .await
}

/// `insert`, unless the tenant has `cap` subscriptions already (`None` then). Creations of one
/// tenant take turns on an advisory lock, so concurrent ones cannot pass the cap together.
pub async fn insert_within(
    pool: &sqlx::PgPool,
    tenant_id: TenantId,
    s: NewSubscription<'_>,
    cap: i64,
) -> Result<Option<Subscription>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The lock first, on its own: a count in the same statement would read a snapshot taken
    // before the lock was granted, blind to the creation it waited for.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('subscriptions:' || $1::text, 0))")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM subscriptions WHERE tenant_id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .fetch_one(&mut *tx)
    .await?;
    if held >= cap {
        return Ok(None);
    }
    let sub = insert(&mut *tx, tenant_id, s).await?;
    tx.commit().await?;
    Ok(Some(sub))
}

/// Every stored secret (current and previous) of every subscription, deleted ones included,
/// a page at a time after `after` (for `fluxgate secrets reencrypt`).
pub async fn secrets_page(
    db: impl PgExecutor<'_>,
    after: SubscriptionId,
    limit: i64,
) -> Result<Vec<(SubscriptionId, Stored, Option<Stored>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, secret, previous_secret FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Rewrites a subscription's stored secrets, only if they are still `old` (a rotation that
/// happened meanwhile wins, and its values are resealed on the next run).
pub async fn replace_secrets(
    db: impl PgExecutor<'_>,
    id: SubscriptionId,
    old: (&Stored, Option<&Stored>),
    new: (&str, Option<&str>),
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE subscriptions SET secret = $4, previous_secret = $5
         WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
    )
    .bind(id)
    .bind(old.0)
    .bind(old.1)
    .bind(new.0)
    .bind(new.1)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: SubscriptionId,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}

pub async fn get_many(
    db: impl PgExecutor<'_>,
    ids: &[SubscriptionId],
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    before: Option<SubscriptionId>,
    limit: i64,
) -> Result<Vec<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(tenant_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Applies a partial update: each `Some` replaces the column.
#[derive(Default)]
pub struct Patch {
    pub target_url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub filter: Option<Option<Value>>,
    pub description: Option<Option<String>>,
    pub headers: Option<Value>,
    pub status: Option<SubscriptionStatus>,
    pub max_in_flight: Option<i32>,
    pub rate_limit_per_sec: Option<Option<i32>>,
}

pub async fn update(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: SubscriptionId,
    p: Patch,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE subscriptions SET
            target_url = COALESCE($3, target_url),
            event_types = COALESCE($4, event_types),
            filter = CASE WHEN $5 THEN $6 ELSE filter END,
            description = CASE WHEN $7 THEN $8 ELSE description END,
            headers = COALESCE($9, headers),
            status = COALESCE($10, status),
            disabled_reason = CASE WHEN $10 = 'active' THEN NULL WHEN $10 = 'disabled' THEN 'disabled by the API' ELSE disabled_reason END,
            failing_since = CASE WHEN $10 = 'active' THEN NULL ELSE failing_since END,
            max_in_flight = COALESCE($11, max_in_flight),
            rate_limit_per_sec = CASE WHEN $12 THEN $13 ELSE rate_limit_per_sec END,
            updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(p.target_url)
    .bind(p.event_types)
    .bind(p.filter.is_some())
    .bind(p.filter.flatten().map(Json))
    .bind(p.description.is_some())
    .bind(p.description.flatten())
    .bind(p.headers.map(Json))
    .bind(p.status)
    .bind(p.max_in_flight)
    .bind(p.rate_limit_per_sec.is_some())
    .bind(p.rate_limit_per_sec.flatten())
    .fetch_optional(db)
    .await
}

/// Soft delete; pending deliveries are cancelled. Idempotent.
pub async fn delete(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    id: SubscriptionId,
) -> Result<(), sqlx::Error> {
    let deleted = sqlx::query(
        "UPDATE subscriptions SET deleted_at = now(), status = 'disabled', disabled_reason = 'deleted', updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    if deleted.rows_affected() > 0 {
        sqlx::query("UPDATE deliveries SET status = 'cancelled', finished_at = now(), lease_until = NULL WHERE subscription_id = $1 AND status = 'pending'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// New secret; the old one keeps signing alongside it until `grace_secs` from now.
pub async fn rotate_secret(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: SubscriptionId,
    new_secret: &str,
    grace_secs: f64,
) -> Result<Option<Subscription>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE subscriptions SET previous_secret = secret, secret = $3,
            previous_secret_expires_at = now() + make_interval(secs => $4), updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(new_secret)
    .bind(grace_secs)
    .fetch_optional(db)
    .await
}

/// Notes that deliveries to `ids` are failing (since the first failure of an unbroken run);
/// returns those failing for longer than `disable_after_secs`.
pub async fn mark_failing(
    db: impl PgExecutor<'_>,
    ids: &[SubscriptionId],
    disable_after_secs: f64,
) -> Result<Vec<SubscriptionId>, sqlx::Error> {
    let overdue: Vec<Option<SubscriptionId>> = sqlx::query_scalar(
        "UPDATE subscriptions SET failing_since = COALESCE(failing_since, now()) WHERE id = ANY($1)
         RETURNING CASE WHEN failing_since < now() - make_interval(secs => $2) THEN id END",
    )
    .bind(ids)
    .bind(disable_after_secs)
    .fetch_all(db)
    .await?;
    Ok(overdue.into_iter().flatten().collect())
}

/// Disables a subscription (410, or days of unbroken failure). Returns true if it changed.
pub async fn disable(
    db: impl PgExecutor<'_>,
    id: SubscriptionId,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE subscriptions SET status = 'disabled', disabled_reason = $2, updated_at = now() WHERE id = $1 AND status = 'active'")
        .bind(id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(r.rows_affected() > 0)
}
