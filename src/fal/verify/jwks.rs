//! Fetching and reading fal's JWKS: only `OKP`/`Ed25519` keys are kept; anything else in the
//! set is skipped rather than failing it, because a JWKS may legitimately mix key types and one
//! malformed entry must not lock us out of the good ones.
use std::time::Duration;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::{VerifyingKey, PUBLIC_KEY_LENGTH};
use serde::Deserialize;

/// fal's JWKS has been seen with and without `=` padding on `x`: accept both.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A real JWKS is a few hundred bytes; the cap stops a misbehaving endpoint from filling memory.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One usable fal signing key.
#[derive(Debug, Clone)]
pub(super) struct PublicKey {
    pub(super) key: VerifyingKey,
    pub(super) kid: Option<String>,
}

#[derive(Deserialize)]
struct Document {
    // Entries stay untyped so that one odd entry cannot fail the whole document.
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
}

/// GETs the JWKS and returns its usable keys. The error is a short, client-safe description;
/// details go to the log.
pub(super) async fn fetch(
    http: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
) -> Result<Vec<PublicKey>, String> {
    // One deadline around connect, headers and body together, whatever the client's own settings.
    let body = tokio::time::timeout(timeout, fetch_body(http, url))
        .await
        .map_err(|_| format!("JWKS fetch timed out after {} ms", timeout.as_millis()))??;
    parse(&body)
}

async fn fetch_body(http: &reqwest::Client, url: &url::Url) -> Result<Vec<u8>, String> {
    let mut response = http.get(url.clone()).send().await.map_err(|error| {
        tracing::warn!(error = %error, "fal JWKS request failed");
        if error.is_connect() {
            "could not connect to the JWKS endpoint".to_owned()
        } else {
            "JWKS request failed".to_owned()
        }
    })?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("JWKS endpoint answered HTTP {}", status.as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        tracing::warn!(error = %error, "reading fal JWKS body failed");
        "JWKS response body could not be read".to_owned()
    })? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("JWKS response is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JWKS document; errors when it is not one or holds no usable Ed25519 key (treated
/// like a failed fetch, so a broken publication never replaces a working key set).
pub(super) fn parse(body: &[u8]) -> Result<Vec<PublicKey>, String> {
    let document: Document =
        serde_json::from_slice(body).map_err(|_| "JWKS response is not a JWKS document")?;
    let keys: Vec<PublicKey> = document.keys.into_iter().filter_map(usable_key).collect();
    if keys.is_empty() {
        return Err("JWKS holds no usable Ed25519 key".to_owned());
    }
    Ok(keys)
}

fn usable_key(entry: serde_json::Value) -> Option<PublicKey> {
    let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
        tracing::warn!("skipping a JWKS entry that is not a JWK");
        return None;
    };
    if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
        // Other key types are legitimate neighbours in a JWKS; not worth a warning.
        tracing::debug!(kty = %jwk.kty, crv = ?jwk.crv, kid = ?jwk.kid, "skipping non-Ed25519 JWK");
        return None;
    }
    match decode_x(jwk.x.as_deref()) {
        Ok(key) => Some(PublicKey { key, kid: jwk.kid }),
        Err(reason) => {
            tracing::warn!(kid = ?jwk.kid, reason, "skipping malformed Ed25519 JWK");
            None
        }
    }
}

fn decode_x(x: Option<&str>) -> Result<VerifyingKey, &'static str> {
    let raw = BASE64URL_ANY_PADDING
        .decode(x.ok_or("no x")?)
        .map_err(|_| "x is not base64url")?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] = raw.try_into().map_err(|_| "x is not 32 bytes")?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "x is not a curve point")?;
    // A small-order key would "verify" forged signatures under lax rules; verify_strict refuses
    // it anyway, but skipping it here keeps it out of the set and says so in the log.
    if key.is_weak() {
        return Err("x is a small-order point");
    }
    Ok(key)
}
