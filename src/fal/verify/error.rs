//! Why a fal webhook was rejected. Messages are written to be returned to the sender as they
//! are: they name the rule that failed, never a key, a body or an internal address.
use crate::fal::signature::{HEADER_SIGNATURE, HEADER_TIMESTAMP};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing required header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not UTF-8 text")]
    MalformedHeader(&'static str),
    #[error("header {HEADER_TIMESTAMP} must be a Unix time in whole seconds")]
    InvalidTimestamp,
    #[error("webhook timestamp is {skew_secs} s away from the receiver's clock, beyond the accepted window")]
    TimestampOutOfWindow {
        /// `now − timestamp`: positive when the webhook is old, negative when from the future.
        skew_secs: i64,
    },
    #[error("header {HEADER_SIGNATURE} must be the hex of a 64-byte Ed25519 signature")]
    InvalidSignatureEncoding,
    #[error("signature does not match any of fal's published keys")]
    SignatureMismatch,
    #[error("fal's signing keys are unavailable ({0}); try again later")]
    JwksUnavailable(String),
}

impl VerifyError {
    /// A stable, low-cardinality label for metrics (`outcome="…"`).
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader(_) => "malformed_header",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampOutOfWindow { .. } => "stale",
            Self::InvalidSignatureEncoding => "bad_signature_encoding",
            Self::SignatureMismatch => "bad_signature",
            Self::JwksUnavailable(_) => "jwks_unavailable",
        }
    }

    /// True when the fault is on our side (fal's keys could not be obtained), so the webhook
    /// handler should answer 503 and let fal redeliver, rather than 401.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::JwksUnavailable(_))
    }
}
