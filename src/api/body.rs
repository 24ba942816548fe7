//! Reading request bodies ourselves, so every failure (too large, not JSON, wrong shape) is a
//! problem+json with a clear message instead of actix's plain-text defaults.
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::error::ApiError;

/// An API request's body, within `FLUXGATE_MAX_BODY_BYTES` and `FLUXGATE_BODY_TIMEOUT_SECS`.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &crate::config::Settings,
) -> Result<Bytes, ApiError> {
    read_limited(
        req,
        payload,
        settings.server.max_body_bytes,
        settings.server.body_timeout,
    )
    .await
}

/// Reads the raw body up to `limit` bytes (checking `Content-Length` first, then as it streams),
/// all of it within `deadline`: a peer that sends slowly, or announces more than it sends, is
/// answered 408 instead of holding the request open.
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    match tokio::time::timeout(deadline, collect(payload, declared, limit)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            actix_web::http::StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request Timeout",
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            ),
        )),
    }
}

async fn collect(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "unreadable_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses a JSON object body, naming the position of a syntax error. A NUL character anywhere
/// in it (a string or a key) is refused as a 422 naming the field: Postgres `text` and `jsonb`
/// cannot hold U+0000, so such a body would otherwise fail only when it reaches storage.
pub fn parse_json_object(
    bytes: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the request body is empty; send a JSON object",
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => match nul_at(&map, "") {
            Some(field) => Err(ApiError::validation(vec![crate::domain::FieldError::new(
                field,
                "must not contain the NUL character (U+0000)",
            )])),
            None => Ok(map),
        },
        Ok(other) => Err(ApiError::bad_request(
            "invalid_json",
            format!(
                "the request body must be a JSON object, not {}",
                json_kind(&other)
            ),
        )),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// The path (`metadata.tag`, `image_urls[2]`) of the first key or string holding a NUL.
fn nul_at(map: &serde_json::Map<String, serde_json::Value>, prefix: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if key.contains('\0') {
            return Some(path);
        }
        nul_in(value, path)
    })
}

fn nul_in(value: &serde_json::Value, path: String) -> Option<String> {
    match value {
        serde_json::Value::String(s) => s.contains('\0').then_some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => nul_at(map, &path),
        _ => None,
    }
}

pub fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
