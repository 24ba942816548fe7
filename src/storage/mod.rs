//! All SQL lives here, one file per table family. Functions take an executor so callers can
//! compose them into one transaction.
pub mod callbacks;
pub mod deliveries;
pub mod delivery_queue;
pub mod events;
pub mod generations;
pub mod keys;
pub mod subscriptions;
pub mod tenants;

use sqlx::{postgres::PgPoolOptions, PgPool};
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool with bounded waits, so an unreachable database turns into a clear error instead of
/// a hang. No test-before-acquire ping: it doubles round trips on the hot path, and a dead
/// connection surfaces as an error the caller already handles.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    // One direct connection first: a wrong URL or a down server fails at once with its real
    // cause, instead of a pool timing out on retries.
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await?.close().await?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .connect(url)
        .await
}

/// Whether every migration this binary knows has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
