//! Tenants.
use crate::domain::ids::TenantId;
use sqlx::{FromRow, PgExecutor};

use crate::domain::{ids, tenant::TenantName};

#[derive(Debug, Clone, FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Inserts a tenant; `None` when the name is taken.
pub async fn create(
    db: impl PgExecutor<'_>,
    name: &TenantName,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
         RETURNING id, name, created_at",
    )
    .bind(ids::new_uuid())
    .bind(name.as_str())
    .fetch_optional(db)
    .await
}

pub async fn find_by_name(
    db: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, created_at FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}

/// The tenant's stored webhook secret, storing `fresh` first if it has none.
pub async fn webhook_secret(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    fresh: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE tenants SET webhook_secret = COALESCE(webhook_secret, $2) WHERE id = $1 RETURNING webhook_secret",
    )
    .bind(tenant_id)
    .bind(fresh)
    .fetch_one(db)
    .await
}

/// Every tenant's stored webhook secret (for `fluxgate secrets reencrypt`).
pub async fn webhook_secrets(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(TenantId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook_secret FROM tenants WHERE webhook_secret IS NOT NULL ORDER BY id",
    )
    .fetch_all(db)
    .await
}

/// Replaces a tenant's webhook secret only if it is still `old`.
pub async fn replace_webhook_secret(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    old: &str,
    new: &str,
) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE tenants SET webhook_secret = $3 WHERE id = $1 AND webhook_secret = $2")
            .bind(tenant_id)
            .bind(old)
            .bind(new)
            .execute(db)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// Returns the tenant, creating it if needed (for `dev`).
pub async fn ensure(db: &sqlx::PgPool, name: &TenantName) -> Result<Tenant, sqlx::Error> {
    if let Some(t) = create(db, name).await? {
        return Ok(t);
    }
    find_by_name(db, name.as_str())
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// A tenant's limits (NULL = unlimited).
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TenantLimits {
    pub daily_budget_micros: Option<i64>,
    pub requests_per_minute: Option<i32>,
    pub end_user_daily_budget_micros: Option<i64>,
    pub end_user_requests_per_minute: Option<i32>,
}

pub async fn limits(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
) -> Result<TenantLimits, sqlx::Error> {
    sqlx::query_as(
        "SELECT daily_budget_micros, requests_per_minute, end_user_daily_budget_micros, end_user_requests_per_minute
         FROM tenants WHERE id = $1",
    )
    .bind(tenant_id)
    .fetch_one(db)
    .await
}

/// A change to one limit: leave it, clear it, or set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Copy> Change<T> {
    fn parts(self) -> (bool, Option<T>) {
        match self {
            Change::Keep => (false, None),
            Change::Clear => (true, None),
            Change::Set(v) => (true, Some(v)),
        }
    }
}

pub async fn set_limits(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    budget: Change<i64>,
    rpm: Change<i32>,
    end_user_budget: Change<i64>,
    end_user_rpm: Change<i32>,
) -> Result<TenantLimits, sqlx::Error> {
    let (b_set, b) = budget.parts();
    let (r_set, r) = rpm.parts();
    let (eb_set, eb) = end_user_budget.parts();
    let (er_set, er) = end_user_rpm.parts();
    sqlx::query_as(
        "UPDATE tenants SET
            daily_budget_micros = CASE WHEN $2 THEN $3 ELSE daily_budget_micros END,
            requests_per_minute = CASE WHEN $4 THEN $5 ELSE requests_per_minute END,
            end_user_daily_budget_micros = CASE WHEN $6 THEN $7 ELSE end_user_daily_budget_micros END,
            end_user_requests_per_minute = CASE WHEN $8 THEN $9 ELSE end_user_requests_per_minute END
         WHERE id = $1
         RETURNING daily_budget_micros, requests_per_minute, end_user_daily_budget_micros, end_user_requests_per_minute",
    )
    .bind(tenant_id)
    .bind(b_set)
    .bind(b)
    .bind(r_set)
    .bind(r)
    .bind(eb_set)
    .bind(eb)
    .bind(er_set)
    .bind(er)
    .fetch_one(db)
    .await
}

/// One end user's own limits, overriding the tenant's end-user defaults.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct EndUserLimits {
    pub end_user: String,
    pub daily_budget_micros: Option<i64>,
    pub requests_per_minute: Option<i32>,
}

pub async fn set_end_user_limits(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    end_user: &str,
    budget: Change<i64>,
    rpm: Change<i32>,
) -> Result<EndUserLimits, sqlx::Error> {
    let (b_set, b) = budget.parts();
    let (r_set, r) = rpm.parts();
    sqlx::query_as(
        "INSERT INTO end_user_limits (tenant_id, end_user, daily_budget_micros, requests_per_minute) VALUES ($1, $2, $4, $6)
         ON CONFLICT (tenant_id, end_user) DO UPDATE SET
            daily_budget_micros = CASE WHEN $3 THEN $4 ELSE end_user_limits.daily_budget_micros END,
            requests_per_minute = CASE WHEN $5 THEN $6 ELSE end_user_limits.requests_per_minute END
         RETURNING end_user, daily_budget_micros, requests_per_minute",
    )
    .bind(tenant_id)
    .bind(end_user)
    .bind(b_set)
    .bind(b)
    .bind(r_set)
    .bind(r)
    .fetch_one(db)
    .await
}

pub async fn end_user_limits(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
) -> Result<Vec<EndUserLimits>, sqlx::Error> {
    sqlx::query_as("SELECT end_user, daily_budget_micros, requests_per_minute FROM end_user_limits WHERE tenant_id = $1 ORDER BY end_user")
        .bind(tenant_id)
        .fetch_all(db)
        .await
}

/// What a tenant lets browsers do: which origins may call the API (CORS), and whether every
/// request must run fal's safety checker.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct BrowserPolicy {
    pub allowed_origins: Vec<String>,
    pub require_safety_checker: bool,
}

pub async fn browser_policy(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
) -> Result<BrowserPolicy, sqlx::Error> {
    sqlx::query_as("SELECT allowed_origins, require_safety_checker FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_one(db)
        .await
}

/// Sets what is given (`None` leaves it) and answers the policy now in force.
pub async fn update_browser_policy(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    allowed_origins: Option<&[String]>,
    require_safety_checker: Option<bool>,
) -> Result<BrowserPolicy, sqlx::Error> {
    sqlx::query_as(
        "UPDATE tenants SET allowed_origins = COALESCE($2, allowed_origins),
                            require_safety_checker = COALESCE($3, require_safety_checker)
         WHERE id = $1 RETURNING allowed_origins, require_safety_checker",
    )
    .bind(tenant_id)
    .bind(allowed_origins)
    .bind(require_safety_checker)
    .fetch_one(db)
    .await
}

/// Whether any tenant lets `origin` call the API: a preflight carries no credentials, so this
/// is all it can be told (the real request then gets CORS headers only for its own tenant's).
pub async fn origin_allowed(db: impl PgExecutor<'_>, origin: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE $1 = ANY (allowed_origins))")
        .bind(origin)
        .fetch_one(db)
        .await
}
