//! Idempotency-Key: the first answer to a key is kept for 24 h and replayed for the
//! same request; the same key with a different body is refused; a key whose first request is
//! still running answers 409.
use crate::domain::ids::TenantId;
use sha2::{Digest, Sha256};

use crate::storage::idempotency_keys;
pub use crate::storage::idempotency_keys::{abandon, complete, prune};

pub const HEADER: &str = "idempotency-key";
const MAX_LEN: usize = 255;

/// What a key says of the request that comes with it.
pub enum Claim {
    /// Not seen (or seen more than 24 h ago): this request takes it.
    Fresh,
    /// Answered before, for the same request: this is the answer.
    Replay { status: u16, body: Vec<u8> },
    /// Used with another request.
    Reused,
    /// The first request with it is still running.
    InFlight,
}

/// Why an `Idempotency-Key` header is not one, worded to follow the header's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey(pub &'static str);

/// The key a request carries, if any: 1–255 printable ASCII characters.
pub fn parse_key(raw: Option<&[u8]>) -> Result<Option<String>, InvalidKey> {
    let Some(raw) = raw else { return Ok(None) };
    let key = std::str::from_utf8(raw).map_err(|_| InvalidKey("must be printable ASCII"))?;
    if key.is_empty() {
        return Err(InvalidKey("must not be empty"));
    }
    if key.len() > MAX_LEN {
        return Err(InvalidKey("must be at most 255 characters"));
    }
    if !key.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(InvalidKey("must be printable ASCII"));
    }
    Ok(Some(key.to_owned()))
}

/// What a request is, for its key: method, path and exact body.
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
    tenant_id: TenantId,
    key: &str,
    hash: &[u8],
) -> Result<Claim, sqlx::Error> {
    if idempotency_keys::take(db, tenant_id, key, hash).await? {
        return Ok(Claim::Fresh);
    }
    let (stored_hash, status, body) = idempotency_keys::stored(db, tenant_id, key).await?;
    Ok(match (stored_hash == hash, status, body) {
        (false, _, _) => Claim::Reused,
        (true, Some(status), Some(body)) => Claim::Replay {
            status: status as u16,
            body,
        },
        _ => Claim::InFlight,
    })
}
