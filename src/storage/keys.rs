//! API keys: created, looked up for authentication, revoked.
use crate::domain::ids::{ApiKeyId, TenantId};
use sqlx::{FromRow, PgExecutor};

use crate::domain::{api_key::NewApiKey, ids, scope::Scopes};

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub lookup: String,
    pub label: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub scopes: Vec<String>,
}

/// What authentication needs: the stored hash and whether the key is usable.
#[derive(Debug, Clone, FromRow)]
pub struct KeyCredential {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub secret_hash: Vec<u8>,
    pub revoked: bool,
    pub scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub require_safety_checker: bool,
}

pub async fn create(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    key: &NewApiKey,
    label: Option<&str>,
    scopes: Scopes,
) -> Result<KeyRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, tenant_id, lookup, secret_hash, label, scopes)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, tenant_id, lookup, label, created_at, revoked_at, scopes",
    )
    .bind(ids::new_uuid())
    .bind(tenant_id)
    .bind(&key.lookup)
    .bind(&key.hash[..])
    .bind(label)
    .bind(scopes.names())
    .fetch_one(db)
    .await
}

pub async fn credential_by_lookup(
    db: impl PgExecutor<'_>,
    lookup: &str,
) -> Result<Option<KeyCredential>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.id, k.tenant_id, t.name AS tenant_name, k.secret_hash, k.revoked_at IS NOT NULL AS revoked,
                k.scopes, t.allowed_origins, t.require_safety_checker
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.lookup = $1",
    )
    .bind(lookup)
    .fetch_optional(db)
    .await
}

/// Revokes a key; `None` if there is no such key. Revoking twice keeps the first time.
pub async fn revoke(db: impl PgExecutor<'_>, id: ApiKeyId) -> Result<Option<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
         RETURNING id, tenant_id, lookup, label, created_at, revoked_at, scopes",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Which of `ids` are revoked now.
pub async fn revoked_among(
    db: impl PgExecutor<'_>,
    ids: &[ApiKeyId],
) -> Result<Vec<ApiKeyId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM api_keys WHERE id = ANY($1) AND revoked_at IS NOT NULL")
        .bind(ids)
        .fetch_all(db)
        .await
}

pub async fn list_for_tenant(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, lookup, label, created_at, revoked_at, scopes FROM api_keys
         WHERE tenant_id = $1 ORDER BY created_at",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await
}
