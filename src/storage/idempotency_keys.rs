//! Idempotency keys: a tenant's key, the fingerprint of the request it first came with, and the
//! answer once there is one. Kept 24 h.
use crate::domain::ids::TenantId;
use sqlx::PgPool;

/// What is stored for a key: the request's fingerprint, and the answer (status, body) once made.
pub type Stored = (Vec<u8>, Option<i32>, Option<Vec<u8>>);

/// Takes `key` for this request (also when the key's earlier use is older than 24 h); false
/// when the key is held, in which case `stored` says by what.
pub async fn take(
    db: &PgPool,
    tenant_id: TenantId,
    key: &str,
    hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, status_code = NULL, response = NULL, created_at = now()
         WHERE idempotency_keys.created_at < now() - interval '24 hours'",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(hash)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn stored(db: &PgPool, tenant_id: TenantId, key: &str) -> Result<Stored, sqlx::Error> {
    sqlx::query_as("SELECT request_hash, status_code, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
        .bind(tenant_id)
        .bind(key)
        .fetch_one(db)
        .await
}

pub async fn complete(
    db: &PgPool,
    tenant_id: TenantId,
    key: &str,
    status: u16,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE tenant_id = $1 AND key = $2")
        .bind(tenant_id)
        .bind(key)
        .bind(i32::from(status))
        .bind(body)
        .execute(db)
        .await?;
    Ok(())
}

/// Frees a key whose request ended without an answer worth keeping.
pub async fn abandon(db: &PgPool, tenant_id: TenantId, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL",
    )
    .bind(tenant_id)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn prune(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}
