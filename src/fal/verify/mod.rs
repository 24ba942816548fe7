//! Verifier of fal's webhook signatures: Ed25519 over
//! `request id \n user id \n timestamp \n hex(sha256(raw body))`, checked against the keys fal
//! publishes as a JWKS, with a cache that survives key rotation without letting forged traffic
//! hammer fal's endpoint.
//!
//! ```ignore
//! // Built once at start-up and shared (cheap to clone):
//! let verifier = FalVerifier::new(settings.fal.jwks_url, http, Arc::new(SystemClock));
//! verifier.prefetch().await?;
//!
//! // In the handler, before the body is parsed (`body: web::Bytes`, exactly as received):
//! let headers = FalSignatureHeaders::from_headers(req.headers())?;
//! let verified = verifier.verify(&headers, &body).await?;
//! ```
mod cache;
mod clock;
mod error;
mod headers;
mod jwks;

use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::VerifyError;
pub use headers::FalSignatureHeaders;

use crate::fal::signature::signed_message;
use cache::{KeyCache, KeySet, Policy};

/// fal documents caching its JWKS for at most a day; a longer `max_age` is clamped to this.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The least time between two JWKS fetch attempts of one cause. A signature that matches no
/// cached key (fal rotated its key) re-fetches at once unless another miss did this recently: a
/// rotation then costs fal at most one redelivery (none, unless a miss just came before it),
/// while a storm of forged webhooks costs fal's JWKS endpoint at most one request per interval.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Checks fal webhook signatures. Cheap to clone: clones share one key cache.
#[derive(Clone)]
pub struct FalVerifier {
    policy: Policy,
    window_secs: u64,
    cache: Arc<KeyCache>,
}

/// Proof that a webhook's signature checked out. Only [`FalVerifier::verify`] makes one, so code
/// that takes a `Verified` cannot be reached by an unverified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    request_id: String,
    user_id: String,
    timestamp: i64,
    key_id: Option<String>,
}

impl Verified {
    /// fal's request id from the signed header; deduplicate on it.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Unix seconds, as signed.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The `kid` of the key that matched, when the JWKS gives one; for logs.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }
}

impl FalVerifier {
    /// `jwks_url` is configurable because fal has published it at more than one address
    /// (`https://rest.fal.ai/.well-known/jwks.json`, formerly `rest.alpha.fal.ai`).
    pub fn new(jwks_url: url::Url, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy: Policy {
                max_age: MAX_KEY_AGE.as_secs(),
                stale_if_error: 60 * 60,
                refetch_min_interval: REFETCH_MIN_INTERVAL.as_secs(),
                fetch_timeout: Duration::from_secs(10),
            },
            window_secs: 300,
            cache: Arc::new(KeyCache::new(jwks_url, http, clock)),
        }
    }

    /// How long fetched keys are trusted without re-fetching (default and maximum 24 h).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.policy.max_age = max_age.min(MAX_KEY_AGE).as_secs();
        self
    }

    /// How long past `max_age` old keys may still be used while re-fetching fails (default 1 h;
    /// zero makes `max_age` a hard limit).
    pub fn stale_if_error(mut self, grace: Duration) -> Self {
        self.policy.stale_if_error = grace.as_secs();
        self
    }

    /// The minimum time between two JWKS fetch attempts (default [`REFETCH_MIN_INTERVAL`]).
    pub fn refetch_min_interval(mut self, interval: Duration) -> Self {
        self.policy.refetch_min_interval = interval.as_secs();
        self
    }

    /// Deadline for one JWKS fetch, body included (default 10 s; fal gives a webhook 15 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.policy.fetch_timeout = timeout;
        self
    }

    /// Largest accepted |now − timestamp| (default 300 s, fal's own window).
    pub fn window(mut self, window: Duration) -> Self {
        self.window_secs = window.as_secs();
        self
    }

    /// Fetches fal's keys unless fresh ones are cached; call at start-up so the first webhook
    /// does not wait for the fetch, and to fail fast on a wrong JWKS URL.
    pub async fn prefetch(&self) -> Result<(), VerifyError> {
        self.cache.keys(&self.policy).await.map(drop)
    }

    /// The check that needs neither the body nor fal's keys: the timestamp is within the
    /// window. Run it before reading a body, so stale replays cost nothing.
    pub fn check_window(&self, headers: &FalSignatureHeaders) -> Result<(), VerifyError> {
        let skew_secs = self.cache.now().saturating_sub(headers.timestamp());
        if skew_secs.unsigned_abs() > self.window_secs {
            return Err(VerifyError::TimestampOutOfWindow { skew_secs });
        }
        Ok(())
    }

    /// Verifies a webhook against its headers and its body **exactly as received**: never pass
    /// re-serialised JSON, whose bytes differ from what fal hashed.
    ///
    /// Cheap checks come first (timestamp window), so stale replays and junk never reach the
    /// JWKS cache; a signature that matches no cached key triggers one rate-limited re-fetch,
    /// which is how a key fal has just rotated in gets accepted.
    #[tracing::instrument(name = "fal_verify", skip_all, fields(fal_request_id = %headers.request_id()))]
    pub async fn verify(
        &self,
        headers: &FalSignatureHeaders,
        raw_body: &[u8],
    ) -> Result<Verified, VerifyError> {
        self.check_window(headers)?;
        let message = signed_message(
            headers.request_id(),
            headers.user_id(),
            headers.timestamp_text(),
            raw_body,
        );

        let keys = self.cache.keys(&self.policy).await?;
        let mut matched = find_signer(&keys, headers, message.as_bytes());
        if matched.is_none() {
            if let Some(newer) = self
                .cache
                .refresh_after_miss(&self.policy, keys.generation)
                .await
            {
                matched = find_signer(&newer, headers, message.as_bytes());
            }
        }
        let Some(key_id) = matched else {
            tracing::debug!("fal webhook signature matched no key");
            return Err(VerifyError::SignatureMismatch);
        };
        Ok(Verified {
            request_id: headers.request_id().to_owned(),
            user_id: headers.user_id().to_owned(),
            timestamp: headers.timestamp(),
            key_id,
        })
    }
}

/// Tries every key: whether fal's JWKS carries `kid`s, and whether webhooks name one, is not
/// documented, so the key is found by the signature itself. Returns the matching
/// key's `kid` (itself optional).
///
/// `verify_strict` rather than `verify`: besides what RFC 8032 requires, it refuses small-order
/// public keys and signatures whose `R` is of small order — the raw material of forgeries that
/// hold for many messages and of signature malleability. An honest signer never produces those
/// (`R = r·B` with `r` a hash output, over a prime-order key), whatever library fal signs with;
/// libsodium's verifier applies the same refusals by default, and the PyNaCl (libsodium) test
/// vectors pass under it. So strictness costs no genuine webhook and closes those doors.
fn find_signer(
    keys: &KeySet,
    headers: &FalSignatureHeaders,
    message: &[u8],
) -> Option<Option<String>> {
    keys.keys
        .iter()
        .find(|candidate| {
            candidate
                .key
                .verify_strict(message, headers.signature())
                .is_ok()
        })
        .map(|candidate| candidate.kid.clone())
}
