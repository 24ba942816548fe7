//! The four `X-Fal-Webhook-*` headers, parsed once at the edge: a [`FalSignatureHeaders`] that
//! exists has every header present, a numeric timestamp and a well-formed 64-byte signature.
use ed25519_dalek::Signature;

use super::VerifyError;
use crate::fal::signature::{
    HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER_ID,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalSignatureHeaders {
    request_id: String,
    user_id: String,
    // Kept as sent: the signed message contains the header text, not our rendering of the number.
    timestamp_text: String,
    timestamp: i64,
    signature: Signature,
}

impl FalSignatureHeaders {
    /// From the header values as received (e.g. read from some other HTTP library).
    /// An empty value counts as missing.
    pub fn new(
        request_id: &str,
        user_id: &str,
        timestamp: &str,
        signature: &str,
    ) -> Result<Self, VerifyError> {
        Self::parse(|name| {
            Some(match name {
                HEADER_REQUEST_ID => request_id,
                HEADER_USER_ID => user_id,
                HEADER_TIMESTAMP => timestamp,
                _ => signature,
            })
            .filter(|value| !value.is_empty())
            .map(|value| Ok(value.to_owned()))
        })
    }

    /// From actix-web's request headers (`HttpRequest::headers()`).
    pub fn from_headers(headers: &actix_web::http::header::HeaderMap) -> Result<Self, VerifyError> {
        Self::parse(|name| headers.get(name).and_then(|v| utf8(name, v.as_bytes())))
    }

    /// From `http` 1.x headers, as used by reqwest, hyper 1 and axum.
    pub fn from_http_headers(headers: &reqwest::header::HeaderMap) -> Result<Self, VerifyError> {
        Self::parse(|name| headers.get(name).and_then(|v| utf8(name, v.as_bytes())))
    }

    /// Checks run in header order so the error names the first problem a sender would fix.
    fn parse(
        get: impl Fn(&'static str) -> Option<Result<String, VerifyError>>,
    ) -> Result<Self, VerifyError> {
        let required = |name| get(name).unwrap_or(Err(VerifyError::MissingHeader(name)));
        let request_id = required(HEADER_REQUEST_ID)?;
        let user_id = required(HEADER_USER_ID)?;
        let timestamp_text = required(HEADER_TIMESTAMP)?;
        let signature_hex = required(HEADER_SIGNATURE)?;
        Ok(Self {
            request_id,
            user_id,
            timestamp: parse_timestamp(&timestamp_text)?,
            timestamp_text,
            signature: parse_signature(&signature_hex)?,
        })
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Unix seconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    pub(super) fn timestamp_text(&self) -> &str {
        &self.timestamp_text
    }

    pub(super) fn signature(&self) -> &Signature {
        &self.signature
    }
}

/// Header values are bytes; fal's are ASCII, and the signed message is UTF-8, so anything that
/// is not UTF-8 cannot carry a valid signature. Empty counts as missing.
fn utf8(name: &'static str, bytes: &[u8]) -> Option<Result<String, VerifyError>> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| VerifyError::MalformedHeader(name)),
    )
}

/// Plain decimal digits only: `str::parse` alone would also take `+17…`, which fal never sends.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    text.parse().map_err(|_| VerifyError::InvalidTimestamp)
}

fn parse_signature(text: &str) -> Result<Signature, VerifyError> {
    let mut bytes = [0u8; Signature::BYTE_SIZE];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| VerifyError::InvalidSignatureEncoding)?;
    Ok(Signature::from_bytes(&bytes))
}
