//! How much of its limits a tenant, or one of its end users, has left right now: the budget of
//! today (UTC) and the requests of this minute, next to the caps (`GET /v1/usage`, the console).
//! Counters exist only where a cap applies (`budgets`, `rate_limit`), so an uncapped scope
//! reports its use as 0 and no remainder.
use crate::domain::ids::TenantId;
use chrono::{DateTime, Utc};

use super::{budgets, rate_limit};
use crate::storage::budget_usage;

#[derive(Debug, Clone)]
pub struct Standing {
    pub daily_budget_micros: Option<i64>,
    /// Reserved by running generations plus spent, today.
    pub used_today_micros: i64,
    pub budget_resets_at: DateTime<Utc>,
    pub requests_per_minute: Option<i32>,
    pub requests_this_minute: i32,
}

impl Standing {
    pub fn budget_remaining_micros(&self) -> Option<i64> {
        self.daily_budget_micros
            .map(|cap| (cap - self.used_today_micros).max(0))
    }

    pub fn requests_remaining(&self) -> Option<i32> {
        self.requests_per_minute
            .map(|cap| (cap - self.requests_this_minute).max(0))
    }
}

/// The tenant's standing, or `end_user`'s (its own caps, or the tenant's defaults for each end
/// user).
pub async fn standing(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    end_user: Option<&str>,
) -> Result<Standing, sqlx::Error> {
    let limits = budgets::limits_for(db, tenant_id, end_user).await?;
    let (budget, rpm) = match end_user {
        Some(_) => (
            limits.end_user_daily_budget_micros,
            limits.end_user_requests_per_minute,
        ),
        None => (
            limits.tenant_daily_budget_micros,
            limits.tenant_requests_per_minute,
        ),
    };
    let (day, budget_resets_at) = budgets::today();
    let (reserved, spent) = budget_usage::used(db, tenant_id, end_user.unwrap_or(""), day).await?;
    let requests_this_minute = match rpm {
        Some(_) => rate_limit::used_this_minute(db, tenant_id, end_user).await?,
        None => 0,
    };
    Ok(Standing {
        daily_budget_micros: budget,
        used_today_micros: reserved + spent,
        budget_resets_at,
        requests_per_minute: rpm,
        requests_this_minute,
    })
}
