//! The alerts' state (a row per alert: firing or not, since when, the last evaluation) and the
//! windowed counts they are computed from.
use crate::domain::ids::TenantId;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Makes the alert's row if it has none (alerts added after the migration get it on first use).
pub async fn ensure(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO alert_state (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every alert and whether it is firing (for `/metrics`).
pub async fn all(pool: &PgPool) -> Result<Vec<(String, bool)>, sqlx::Error> {
    sqlx::query_as("SELECT name, firing FROM alert_state")
        .fetch_all(pool)
        .await
}

/// Locks the alert's row for this transaction; returns whether it is firing and since when.
/// `None` when another instance holds it or evaluated it less than `min_gap` ago.
pub async fn lock(
    tx: &mut PgConnection,
    name: &str,
    min_gap: Duration,
) -> Result<Option<(bool, Option<DateTime<Utc>>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT firing, changed_at FROM alert_state
         WHERE name = $1 AND (evaluated_at IS NULL OR evaluated_at <= now() - make_interval(secs => $2))
         FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .bind(min_gap.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await
}

/// Records the evaluation; returns when the (possibly new) current state began.
pub async fn save(
    tx: &mut PgConnection,
    name: &str,
    firing: bool,
    ratio: f64,
    failures: i64,
    total: i64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE alert_state SET firing = $2, evaluated_at = now(), ratio = $3, failures = $4, total = $5,
                changed_at = CASE WHEN firing <> $2 THEN now() ELSE changed_at END
         WHERE name = $1 RETURNING changed_at",
    )
    .bind(name)
    .bind(firing)
    .bind(ratio)
    .bind(failures)
    .bind(total)
    .fetch_one(&mut *tx)
    .await
}

// The windowed counts are unnamed statements (`persistent(false)`): planned with the actual
// window each time, so the planner sees a narrow range and uses the time indexes.

/// (failed with one of `fal_side_codes`, completed or failed) among generations finished in
/// the window.
pub async fn fal_outcomes(
    tx: &mut PgConnection,
    window: Duration,
    fal_side_codes: &[&str],
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'failed' AND error->>'code' = ANY($2)), count(*)
         FROM generations
         WHERE finished_at >= now() - make_interval(secs => $1) AND status IN ('completed', 'failed')",
    )
    .bind(window.as_secs_f64())
    .bind(fal_side_codes)
    .persistent(false)
    .fetch_one(&mut *tx)
    .await
}

/// (without a 2xx, all) among delivery attempts started in the window.
pub async fn delivery_outcomes(
    tx: &mut PgConnection,
    window: Duration,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299), count(*)
         FROM delivery_attempts WHERE started_at >= now() - make_interval(secs => $1)",
    )
    .bind(window.as_secs_f64())
    .persistent(false)
    .fetch_one(&mut *tx)
    .await
}

/// Tenants with an active subscription matching `kind` (exact, `alert.*`, `*`), the same
/// rule fan-out applies: only they get an event, so others' event logs stay free of alerts.
pub async fn subscribed_tenants(
    tx: &mut PgConnection,
    kind: &str,
) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM subscriptions s
         WHERE s.status = 'active' AND s.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM unnest(s.event_types) p
                       WHERE p = $1 OR p = '*' OR (right(p, 2) = '.*' AND starts_with($1, left(p, -1))))
         ORDER BY tenant_id",
    )
    .bind(kind)
    .fetch_all(&mut *tx)
    .await
}

/// One alert's state, as shown to a tenant.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Shown {
    pub name: String,
    pub firing: bool,
    /// When it last started or stopped firing.
    pub since: Option<DateTime<Utc>>,
    pub ratio: Option<f64>,
}

/// Every alert's state, by name.
pub async fn shown(pool: &PgPool) -> Result<Vec<Shown>, sqlx::Error> {
    sqlx::query_as("SELECT name, firing, changed_at AS since, ratio FROM alert_state ORDER BY name")
        .fetch_all(pool)
        .await
}
