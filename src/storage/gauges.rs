//! What the cluster-wide gauges of `/metrics` are read from: pending work per queue and lane,
//! and the cost of completed generations.
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// (queue, lane, depth, oldest age in seconds) of every lane with pending work.
pub async fn queue_lanes(pool: &PgPool) -> Result<Vec<(String, String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH pending AS (
            SELECT 'submissions' AS queue,
                   CASE WHEN submit_attempts > 1 OR (submit_attempts = 1 AND (lease_until IS NULL OR lease_until < now()))
                        THEN 'retry' ELSE 'first' END AS lane,
                   created_at
              FROM generations WHERE status = 'accepted'
            UNION ALL
            SELECT 'deliveries', 'first', created_at FROM deliveries WHERE status = 'pending' AND attempts = 0
            UNION ALL
            SELECT 'deliveries',
                   CASE WHEN attempts = 1 AND lease_until >= now() THEN 'first' ELSE 'retry' END,
                   created_at
              FROM deliveries WHERE status = 'pending' AND attempts > 0
         )
         SELECT queue, lane, count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
         FROM pending GROUP BY queue, lane",
    )
    .fetch_all(pool)
    .await
}

/// The cost of completions since `from`: (the cut-off `settled_after_secs` ago, what finished
/// before it, what finished after it). What finished before the cut-off will not change, so a
/// caller can add it up once and re-read only the recent part.
pub async fn spend_since(
    pool: &PgPool,
    from: DateTime<Utc>,
    settled_after_secs: f64,
) -> Result<(DateTime<Utc>, i64, i64), sqlx::Error> {
    // Unnamed statement: planned with the actual bound each time, so after the first full sum
    // it reads only the recent range of the `finished_at` index.
    sqlx::query_as(
        "SELECT now() - make_interval(secs => $2),
                COALESCE(sum(cost_micros) FILTER (WHERE finished_at < now() - make_interval(secs => $2)), 0)::bigint,
                COALESCE(sum(cost_micros) FILTER (WHERE finished_at >= now() - make_interval(secs => $2)), 0)::bigint
         FROM generations WHERE status = 'completed' AND finished_at >= $1",
    )
    .bind(from)
    .bind(settled_after_secs)
    .persistent(false)
    .fetch_one(pool)
    .await
}
