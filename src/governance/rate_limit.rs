//! Requests per minute per tenant and per end user, in fixed one-minute windows counted in
//! Postgres: a conditional upsert admits a request only while the window has room, so every
//! instance together admits exactly the limit per window.
use uuid::Uuid;

use super::budgets::Limits;

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
    tenant_id: Uuid,
    end_user: Option<&str>,
    limits: &Limits,
) -> Result<Result<Option<Window>, Limited>, sqlx::Error> {
    let mut checks: Vec<(&'static str, String, i32)> = Vec::new();
    if let (Some(limit), Some(user)) = (limits.end_user_requests_per_minute, end_user) {
        checks.push(("end_user", format!("u:{tenant_id}:{user}"), limit));
    }
    if let Some(limit) = limits.tenant_requests_per_minute {
        checks.push(("tenant", format!("t:{tenant_id}"), limit));
    }
    let mut tightest: Option<Window> = None;
    for (scope, key, limit) in checks {
        let row: Option<(i32, f64)> = sqlx::query_as(
            "INSERT INTO rate_windows (key, window_start, count) VALUES ($1, date_trunc('minute', now()), 1)
             ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + 1 WHERE rate_windows.count < $2
             RETURNING count, extract(epoch FROM (window_start + interval '1 minute' - now()))::float8",
        )
        .bind(&key)
        .bind(limit)
        .fetch_optional(db)
        .await?;
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
                let reset: f64 = sqlx::query_scalar("SELECT extract(epoch FROM (date_trunc('minute', now()) + interval '1 minute' - now()))::float8")
                    .fetch_one(db)
                    .await?;
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

/// Drops windows that ended a while ago (called from a periodic task).
pub async fn prune(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM rate_windows WHERE window_start < now() - interval '5 minutes'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}
