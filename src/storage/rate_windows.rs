//! Fixed one-minute request windows, one counter row per key and minute.
use sqlx::PgPool;

/// Counts `n` requests in `key`'s current minute if they all fit within `limit`: the count and
/// the seconds left in the minute, or `None` when the window cannot take them.
pub async fn count(
    db: &PgPool,
    key: &str,
    limit: i32,
    n: i32,
) -> Result<Option<(i32, f64)>, sqlx::Error> {
    if n > limit {
        return Ok(None); // more than a whole window holds: never admitted
    }
    sqlx::query_as(
        "INSERT INTO rate_windows (key, window_start, count) VALUES ($1, date_trunc('minute', now()), $3)
         ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + $3
             WHERE rate_windows.count + $3 <= $2
         RETURNING count, extract(epoch FROM (window_start + interval '1 minute' - now()))::float8",
    )
    .bind(key)
    .bind(limit)
    .bind(n)
    .fetch_optional(db)
    .await
}

/// Seconds until the next minute by the database's clock (the windows' clock).
pub async fn seconds_to_next_window(db: &PgPool) -> Result<f64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM (date_trunc('minute', now()) + interval '1 minute' - now()))::float8",
    )
    .fetch_one(db)
    .await
}

/// Drops windows that ended a while ago (called from a periodic task).
pub async fn prune(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM rate_windows WHERE window_start < now() - interval '5 minutes'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}

/// Requests counted in `key`'s current minute (0 when none).
pub async fn current(db: &PgPool, key: &str) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE((SELECT count FROM rate_windows
                          WHERE key = $1 AND window_start = date_trunc('minute', now())), 0)",
    )
    .bind(key)
    .fetch_one(db)
    .await
}
