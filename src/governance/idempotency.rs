//! Idempotency-Key: the first answer to a key is kept for 24 h and replayed for the
//! same request; the same key with a different body is refused; a key whose first request is
//! still running answers 409.
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
const MAX_LEN: usize = 255;

/// What to do with a request carrying a key.
pub enum Claim {
    /// First use: run the request, then `complete` (or `abandon` on a server error).
    Fresh,
    /// Answered before: replay this.
    Replay { status: u16, body: Vec<u8> },
}

pub fn parse_key(
    raw: Option<&actix_web::http::header::HeaderValue>,
) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let key = raw
        .to_str()
        .map_err(|_| invalid("must be printable ASCII"))?;
    if key.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if key.len() > MAX_LEN {
        return Err(invalid("must be at most 255 characters"));
    }
    if !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(invalid("must be printable ASCII"));
    }
    Ok(Some(key.to_owned()))
}

fn invalid(why: &str) -> ApiError {
    ApiError::bad_request("invalid_idempotency_key", format!("Idempotency-Key {why}"))
        .with_extra("field", serde_json::json!("Idempotency-Key"))
}

/// The fingerprint of a request: method, path and exact body bytes.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().to_vec()
}

pub async fn claim(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Claim, ApiError> {
    // A key older than 24 h is forgotten: the slot is reused.
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
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let (stored_hash, status, body): (Vec<u8>, Option<i32>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT request_hash, status_code, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
            .bind(tenant_id)
            .bind(key)
            .fetch_one(db)
            .await?;
    if stored_hash != hash {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency Key Reused",
            "this Idempotency-Key was already used with a different request; use a new key for a new request",
        ));
    }
    match (status, body) {
        (Some(status), Some(body)) => Ok(Claim::Replay {
            status: status as u16,
            body,
        }),
        _ => Err(ApiError::conflict(
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )),
    }
}

/// Stores the answer to replay.
pub async fn complete(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
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

/// Forgets a key whose request failed on our side, so a retry can run it again.
pub async fn abandon(db: &sqlx::PgPool, tenant_id: Uuid, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL",
    )
    .bind(tenant_id)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn prune(db: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(db)
            .await?
            .rows_affected(),
    )
}
