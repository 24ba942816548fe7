//! Secrets shared by every instance, made once by whichever instance starts first.
use chrono::{DateTime, Utc};

/// The key of the callback URL tokens (`pipeline::callback_urls`).
pub const CALLBACK_TOKEN_KEY: &str = "callback_token_key";
use sqlx::PgPool;

/// The stored value and when it was made: `fresh` is stored unless a value exists already.
pub async fn get_or_create(
    pool: &PgPool,
    name: &str,
    fresh: &str,
) -> Result<(String, DateTime<Utc>), sqlx::Error> {
    // Two statements: a concurrent first start waits on the insert's conflict, then reads the
    // winner's row (one statement's snapshot would not see it).
    sqlx::query(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fresh)
    .execute(pool)
    .await?;
    sqlx::query_as("SELECT value, created_at FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}

/// Every stored value, for `fluxgate secrets reencrypt`.
pub async fn all(pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, value FROM server_secrets ORDER BY name")
        .fetch_all(pool)
        .await
}

/// Replaces a value only if it is still `old` (a concurrent rewrite wins).
pub async fn replace(pool: &PgPool, name: &str, old: &str, new: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE server_secrets SET value = $3 WHERE name = $1 AND value = $2")
        .bind(name)
        .bind(old)
        .bind(new)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}
