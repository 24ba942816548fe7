//! Browser tokens' rows: made by `POST /v1/tokens`, read once per request a token makes (after
//! its signature and expiry have passed), revoked by the key that minted them.
use crate::domain::ids::{ApiKeyId, BrowserTokenId, TenantId};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

use crate::domain::scope::Scopes;

/// What authenticating a token needs, with its tenant's browser policy.
#[derive(Debug, Clone, FromRow)]
pub struct TokenCredential {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub key_id: ApiKeyId,
    pub end_user: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// The token, or the key that minted it, was revoked.
    pub revoked: bool,
    pub allowed_origins: Vec<String>,
    pub require_safety_checker: bool,
}

pub struct NewToken<'a> {
    pub id: BrowserTokenId,
    pub tenant_id: TenantId,
    pub key_id: ApiKeyId,
    pub end_user: &'a str,
    pub scopes: Scopes,
    pub expires_at: DateTime<Utc>,
}

pub async fn create(db: impl PgExecutor<'_>, t: &NewToken<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO browser_tokens (id, tenant_id, key_id, end_user, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.id)
    .bind(t.tenant_id)
    .bind(t.key_id)
    .bind(t.end_user)
    .bind(t.scopes.names())
    .bind(t.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn credential(
    db: impl PgExecutor<'_>,
    id: BrowserTokenId,
) -> Result<Option<TokenCredential>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.tenant_id, t.name AS tenant_name, b.key_id, b.end_user, b.scopes, b.expires_at,
                (b.revoked_at IS NOT NULL OR k.revoked_at IS NOT NULL) AS revoked,
                t.allowed_origins, t.require_safety_checker
         FROM browser_tokens b
         JOIN api_keys k ON k.id = b.key_id
         JOIN tenants t ON t.id = b.tenant_id
         WHERE b.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Revokes a token of `key_id`; `None` when that key minted no such token. Revoking twice
/// keeps the first time.
pub async fn revoke(
    db: impl PgExecutor<'_>,
    id: BrowserTokenId,
    key_id: ApiKeyId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE browser_tokens SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 AND key_id = $2 RETURNING revoked_at",
    )
    .bind(id)
    .bind(key_id)
    .fetch_optional(db)
    .await
}

/// Which of `ids` are revoked (or whose key is) or expired by more than the skew now: the
/// streams they opened must end.
pub async fn unusable_among(
    db: impl PgExecutor<'_>,
    ids: &[BrowserTokenId],
    skew_secs: i64,
) -> Result<Vec<BrowserTokenId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT b.id FROM browser_tokens b JOIN api_keys k ON k.id = b.key_id
         WHERE b.id = ANY($1)
           AND (b.revoked_at IS NOT NULL OR k.revoked_at IS NOT NULL
                OR b.expires_at < now() - make_interval(secs => $2))",
    )
    .bind(ids)
    .bind(skew_secs as f64)
    .fetch_all(db)
    .await
}
