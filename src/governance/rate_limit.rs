//! Requests per minute per tenant and per end user, in fixed one-minute windows counted in
//! Postgres: a conditional upsert admits a request only while the window has room, so every
//! instance together admits exactly the limit per window.
use crate::domain::ids::TenantId;

use super::budgets::Limits;
use crate::storage::rate_windows;
pub use crate::storage::rate_windows::prune;

/// The state of the window a request was counted in (for the `RateLimit-*` headers).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i32,
    pub remaining: i32,
    /// Seconds until the window resets.
    pub reset_secs: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub scope: &'static str,
    pub window: Window,
}

/// Counts one request against each limit that applies (end user first, the narrower scope).
/// `Ok(Some(window))` reports the tightest window for the headers; `Err` names the limit hit.
pub async fn admit(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    end_user: Option<&str>,
    limits: &Limits,
) -> Result<Result<Option<Window>, Limited>, sqlx::Error> {
    let per_user = end_user.map(|u| (u, 1)).into_iter().collect::<Vec<_>>();
    admit_many(db, tenant_id, 1, &per_user, |_| limits).await
}

/// Counts `total` requests against the tenant's window and each end user's count against its
/// own (`limits_of` gives a user's limits; the tenant's are the same in each), all or none per
/// window: a window that cannot take them all takes none. A batch is counted this way, one
/// request per member, whatever its `num_images`.
pub async fn admit_many<'l>(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    total: i32,
    per_user: &[(&str, i32)],
    limits_of: impl Fn(&str) -> &'l Limits,
) -> Result<Result<Option<Window>, Limited>, sqlx::Error> {
    let mut checks: Vec<(&'static str, String, i32, i32)> = Vec::new();
    let mut tenant_limit = None;
    for &(user, n) in per_user {
        let limits = limits_of(user);
        if let Some(limit) = limits.end_user_requests_per_minute {
            checks.push(("end_user", window_key(tenant_id, Some(user)), limit, n));
        }
        tenant_limit = limits.tenant_requests_per_minute;
    }
    if per_user.is_empty() {
        tenant_limit = limits_of("").tenant_requests_per_minute;
    }
    if let Some(limit) = tenant_limit {
        checks.push(("tenant", window_key(tenant_id, None), limit, total));
    }
    let mut tightest: Option<Window> = None;
    for (scope, key, limit, n) in checks {
        let row = rate_windows::count(db, &key, limit, n).await?;
        match row {
            Some((count, reset)) => {
                let w = Window {
                    limit,
                    remaining: (limit - count).max(0),
                    reset_secs: reset.ceil().max(1.0) as i64,
                };
                if tightest.is_none_or(|t| w.remaining < t.remaining) {
                    tightest = Some(w);
                }
            }
            None => {
                let reset = rate_windows::seconds_to_next_window(db).await?;
                return Ok(Err(Limited {
                    scope,
                    window: Window {
                        limit,
                        remaining: 0,
                        reset_secs: reset.ceil().max(1.0) as i64,
                    },
                }));
            }
        }
    }
    Ok(Ok(tightest))
}

/// The counter of a tenant's window, or of one of its end users'.
pub fn window_key(tenant_id: TenantId, end_user: Option<&str>) -> String {
    match end_user {
        Some(user) => format!("u:{tenant_id}:{user}"),
        None => format!("t:{tenant_id}"),
    }
}

/// Requests counted in the current minute's window (of the end user, or the tenant).
pub async fn used_this_minute(
    db: &sqlx::PgPool,
    tenant_id: TenantId,
    end_user: Option<&str>,
) -> Result<i32, sqlx::Error> {
    rate_windows::current(db, &window_key(tenant_id, end_user)).await
}
