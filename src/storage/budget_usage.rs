//! The `budget_usage` counters: a row per tenant (scope `""`) or end user and UTC day, holding
//! what is reserved by running generations and what was spent. The rules that decide when a
//! request fits are `governance::budgets`'; this file only reads and writes the counters.
use crate::domain::ids::TenantId;
use chrono::NaiveDate;
use sqlx::PgExecutor;

/// The limits that apply to one request.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Limits {
    pub tenant_daily_budget_micros: Option<i64>,
    pub tenant_requests_per_minute: Option<i32>,
    pub end_user_daily_budget_micros: Option<i64>,
    pub end_user_requests_per_minute: Option<i32>,
}

pub async fn limits_for(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    end_user: Option<&str>,
) -> Result<Limits, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.daily_budget_micros AS tenant_daily_budget_micros, t.requests_per_minute AS tenant_requests_per_minute,
                COALESCE(e.daily_budget_micros, t.end_user_daily_budget_micros) AS end_user_daily_budget_micros,
                COALESCE(e.requests_per_minute, t.end_user_requests_per_minute) AS end_user_requests_per_minute
         FROM tenants t LEFT JOIN end_user_limits e ON e.tenant_id = t.id AND e.end_user = $2
         WHERE t.id = $1",
    )
    .bind(tenant_id)
    .bind(end_user)
    .fetch_optional(db)
    .await
    .map(Option::unwrap_or_default)
}

/// Adds `micros` to the scope's reservation of `day` if what is reserved and spent stays within
/// `cap`: one conditional upsert, so the row lock serialises concurrent requests on every
/// instance. False when it would not fit.
pub async fn reserve_within(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    scope: &str,
    day: NaiveDate,
    micros: i64,
    cap: i64,
) -> Result<bool, sqlx::Error> {
    let ok: Option<i64> = sqlx::query_scalar(
        "INSERT INTO budget_usage (tenant_id, scope, day, reserved_micros)
         SELECT $1, $2, $3, $4 WHERE $4 <= $5
         ON CONFLICT (tenant_id, scope, day) DO UPDATE
            SET reserved_micros = budget_usage.reserved_micros + EXCLUDED.reserved_micros
            WHERE budget_usage.reserved_micros + budget_usage.spent_micros + EXCLUDED.reserved_micros <= $5
         RETURNING reserved_micros",
    )
    .bind(tenant_id)
    .bind(scope)
    .bind(day)
    .bind(micros)
    .bind(cap)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(ok.is_some())
}

/// A scope's reserved and spent micro-dollars of `day` (`""` = the tenant).
pub async fn used(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    scope: &str,
    day: NaiveDate,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT COALESCE(sum(reserved_micros), 0)::bigint, COALESCE(sum(spent_micros), 0)::bigint FROM budget_usage WHERE tenant_id = $1 AND scope = $2 AND day = $3")
        .bind(tenant_id)
        .bind(scope)
        .bind(day)
        .fetch_one(db)
        .await
}

/// A finished generation's reservation and actual cost (0 when fal never ran it or did not
/// bill it).
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    pub tenant_id: TenantId,
    pub end_user: Option<&'a str>,
    pub day: Option<NaiveDate>,
    pub reserved: i64,
    pub actual: i64,
}

impl Settlement<'_> {
    /// Whether settling changes anything (the generation reserved budget).
    pub fn reserves(&self) -> bool {
        self.day.is_some() && self.reserved > 0
    }
}

/// Turns a generation's reservation into its actual spend. A no-op for generations that
/// reserved nothing.
pub async fn settle(tx: &mut sqlx::PgConnection, s: Settlement<'_>) -> Result<(), sqlx::Error> {
    settle_many(tx, &[s]).await
}

/// Settles a batch in one statement: the tenant's and each end user's row of the day take the
/// sums of their generations, in key order (concurrent batches lock rows in the same order).
pub async fn settle_many(
    tx: &mut sqlx::PgConnection,
    batch: &[Settlement<'_>],
) -> Result<(), sqlx::Error> {
    let mut sums: std::collections::BTreeMap<(TenantId, &str, NaiveDate), (i64, i64)> =
        Default::default();
    for s in batch {
        let Some(day) = s.day.filter(|_| s.reserved > 0) else {
            continue;
        };
        for scope in std::iter::once("").chain(s.end_user) {
            let sum = sums.entry((s.tenant_id, scope, day)).or_default();
            sum.0 += s.reserved;
            sum.1 += s.actual.max(0);
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let tenant: Vec<TenantId> = sums.keys().map(|k| k.0).collect();
    let scope: Vec<&str> = sums.keys().map(|k| k.1).collect();
    let day: Vec<NaiveDate> = sums.keys().map(|k| k.2).collect();
    let reserved: Vec<i64> = sums.values().map(|v| v.0).collect();
    let actual: Vec<i64> = sums.values().map(|v| v.1).collect();
    sqlx::query(
        "UPDATE budget_usage b SET reserved_micros = GREATEST(b.reserved_micros - x.reserved, 0),
                spent_micros = b.spent_micros + x.actual
         FROM unnest($1::uuid[], $2::text[], $3::date[], $4::int8[], $5::int8[]) AS x(tenant_id, scope, day, reserved, actual)
         WHERE b.tenant_id = x.tenant_id AND b.scope = x.scope AND b.day = x.day",
    )
    .bind(&tenant)
    .bind(&scope)
    .bind(&day)
    .bind(&reserved)
    .bind(&actual)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
