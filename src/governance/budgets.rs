//! Daily budgets per tenant and per end user: the rules. The estimate is reserved in the same
//! transaction that stores the generation, under every cap that applies; the counter's
//! conditional upsert (`storage::budget_usage`) refuses the request that would pass a cap, on
//! any instance. Completion converts the reservation into the actual spend; a request fal
//! never ran releases it (`storage::budget_usage::settle`).
use crate::domain::ids::TenantId;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::storage::budget_usage;
pub use crate::storage::budget_usage::{limits_for, Limits, Settlement};

/// Which cap refused a request, and when it resets.
#[derive(Debug, Clone)]
pub struct Exhausted {
    pub scope: &'static str,
    pub cap_micros: i64,
    pub used_micros: i64,
    pub resets_at: DateTime<Utc>,
}

/// The UTC day a reservation belongs to, and when that day ends.
pub fn today() -> (NaiveDate, DateTime<Utc>) {
    let now = Utc::now();
    let day = now.date_naive();
    let resets = (day + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    (day, resets)
}

/// Reserves `micros` under every cap that applies. Only scopes with a cap are tracked, so
/// tenants without budgets never contend on a counter row. Returns the day reserved under (or
/// `None` when no cap applied).
pub async fn reserve(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    end_user: Option<&str>,
    limits: &Limits,
    micros: i64,
) -> Result<Result<Option<NaiveDate>, Exhausted>, sqlx::Error> {
    let (day, resets_at) = today();
    let any_cap = limits.tenant_daily_budget_micros.is_some()
        || (end_user.is_some() && limits.end_user_daily_budget_micros.is_some());
    if !any_cap || micros == 0 {
        return Ok(Ok(None));
    }
    // Both scopes are always recorded together, so settling never has to know which had caps.
    for (label, scope, cap) in [(
        "tenant",
        "",
        limits.tenant_daily_budget_micros.unwrap_or(i64::MAX),
    )]
    .into_iter()
    .chain(end_user.map(|u| {
        (
            "end_user",
            u,
            limits.end_user_daily_budget_micros.unwrap_or(i64::MAX),
        )
    })) {
        if !budget_usage::reserve_within(tx, tenant_id, scope, day, micros, cap).await? {
            let (reserved, spent) = budget_usage::used(&mut *tx, tenant_id, scope, day).await?;
            return Ok(Err(Exhausted {
                scope: label,
                cap_micros: cap,
                used_micros: reserved + spent,
                resets_at,
            }));
        }
    }
    Ok(Ok(Some(day)))
}

/// Today's reserved and spent micro-dollars for a scope (`""` = the tenant).
pub async fn usage_today(
    db: impl sqlx::PgExecutor<'_>,
    tenant_id: TenantId,
    scope: &str,
) -> Result<(i64, i64), sqlx::Error> {
    budget_usage::used(db, tenant_id, scope, today().0).await
}
