//! The JWKS cache: the parsed keys with their fetch time, and the one place JWKS fetches happen.
//!
//! Rules, all measured on the injected clock:
//! - keys younger than `max_age` are used as they are;
//! - at most one fetch is *attempted* per `refetch_min_interval` for each of two causes: the
//!   keys are missing or expired (cold start, expiry), or a signature matched none of them (fal
//!   rotated its key, or a forger is trying). A storm of forged webhooks then costs fal's
//!   endpoint at most one request per interval, and a rotation just after a scheduled fetch
//!   (the prefetch at start-up, say) is still met at once;
//! - fetches are single-flight: a caller that needs one takes the fetch lock, and callers that
//!   queue behind it look at what it fetched before deciding to fetch themselves;
//! - when a refresh of expired keys fails, the old keys stay usable for `stale_if_error` more
//!   (stale-if-error, as RFC 5861): fal retries a rejected webhook anyway, but rejecting every
//!   webhook during a short JWKS outage would only delay them. Past that bound, nothing verifies.
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Mutex;

use super::jwks::{self, PublicKey};
use super::{Clock, VerifyError};

/// Cache timing, in seconds of the injected clock (plus the fetch deadline).
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) max_age: u64,
    pub(super) stale_if_error: u64,
    pub(super) refetch_min_interval: u64,
    pub(super) fetch_timeout: Duration,
}

/// One successful fetch. `generation` tells a caller whether the set changed since it looked.
#[derive(Debug)]
pub(super) struct KeySet {
    pub(super) keys: Vec<PublicKey>,
    fetched_at: i64,
    pub(super) generation: u64,
}

/// Guarded by the fetch lock.
#[derive(Debug, Default)]
struct FetchLog {
    last_attempt_at: Option<i64>,
    /// The last fetch a signature miss set off.
    last_miss_at: Option<i64>,
    last_error: Option<String>,
    generations: u64,
}

pub(super) struct KeyCache {
    jwks_url: url::Url,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    // A plain lock for the hot path (clone an Arc, never held across an await).
    current: RwLock<Option<Arc<KeySet>>>,
    // Held for the duration of a fetch: this is what makes fetches single-flight.
    fetch_log: Mutex<FetchLog>,
}

/// Elapsed seconds. A clock stepped backwards counts as time passed too, so that a clock
/// correction cannot freeze the cache or the rate limit for the size of the step.
fn elapsed(now: i64, since: i64) -> u64 {
    now.abs_diff(since)
}

impl KeyCache {
    pub(super) fn new(jwks_url: url::Url, http: reqwest::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            jwks_url,
            http,
            clock,
            current: RwLock::new(None),
            fetch_log: Mutex::new(FetchLog::default()),
        }
    }

    pub(super) fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh(&self, policy: &Policy) -> Option<Arc<KeySet>> {
        self.snapshot()
            .filter(|set| elapsed(self.now(), set.fetched_at) < policy.max_age)
    }

    /// Keys to verify with: fresh ones, else freshly fetched ones, else (fetch failed or rate
    /// limited) stale ones within the `stale_if_error` bound.
    pub(super) async fn keys(&self, policy: &Policy) -> Result<Arc<KeySet>, VerifyError> {
        if let Some(set) = self.fresh(policy) {
            return Ok(set);
        }
        let mut log = self.fetch_log.lock().await;
        // Whoever held the lock before us may just have fetched.
        if let Some(set) = self.fresh(policy) {
            return Ok(set);
        }
        let mut error = None;
        if self.may_fetch(&log, policy) {
            match self.fetch_locked(&mut log, policy).await {
                Ok(set) => return Ok(set),
                Err(e) => error = Some(e),
            }
        }
        let now = self.now();
        if let Some(set) = self.snapshot() {
            let age = elapsed(now, set.fetched_at);
            if age < policy.max_age.saturating_add(policy.stale_if_error) {
                tracing::warn!(
                    age_secs = age,
                    "using expired fal JWKS: refresh failed or rate limited"
                );
                return Ok(set);
            }
        }
        Err(error.unwrap_or_else(|| {
            let reason = log.last_error.clone();
            VerifyError::JwksUnavailable(reason.unwrap_or_else(|| "JWKS fetch rate limited".into()))
        }))
    }

    /// After a signature matched none of the keys of generation `seen`: returns a newer key set
    /// to retry with, fetching one if the rate limit allows; `None` when there is nothing new.
    pub(super) async fn refresh_after_miss(
        &self,
        policy: &Policy,
        seen: u64,
    ) -> Option<Arc<KeySet>> {
        let mut log = self.fetch_log.lock().await;
        if let Some(set) = self.snapshot().filter(|set| set.generation != seen) {
            return Some(set);
        }
        if !self.allowed(log.last_miss_at, policy) {
            tracing::debug!("JWKS re-fetch after a signature miss skipped: rate limited");
            return None;
        }
        log.last_miss_at = Some(self.now());
        // A failed re-fetch is logged inside; the caller reports the mismatch it already has.
        self.fetch_locked(&mut log, policy).await.ok()
    }

    fn may_fetch(&self, log: &FetchLog, policy: &Policy) -> bool {
        self.allowed(log.last_attempt_at, policy)
    }

    fn allowed(&self, last: Option<i64>, policy: &Policy) -> bool {
        last.is_none_or(|at| elapsed(self.now(), at) >= policy.refetch_min_interval)
    }

    /// Fetches and installs a new key set; the caller holds the fetch lock.
    async fn fetch_locked(
        &self,
        log: &mut FetchLog,
        policy: &Policy,
    ) -> Result<Arc<KeySet>, VerifyError> {
        let started = self.now();
        let result = jwks::fetch(&self.http, &self.jwks_url, policy.fetch_timeout).await;
        // Recorded only once the fetch completed: if this future is dropped mid-fetch, the next
        // caller in line is free to try instead of being rate limited by an attempt that never was.
        log.last_attempt_at = Some(started);
        match result {
            Ok(keys) => {
                log.generations += 1;
                log.last_error = None;
                tracing::info!(keys = keys.len(), url = %self.jwks_url, "fetched fal JWKS");
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: started,
                    generation: log.generations,
                });
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
                Ok(set)
            }
            Err(reason) => {
                tracing::warn!(reason = %reason, url = %self.jwks_url, "fetching fal JWKS failed");
                log.last_error = Some(reason.clone());
                Err(VerifyError::JwksUnavailable(reason))
            }
        }
    }
}
