//! The simulator's settings: where it listens, how it authenticates and signs, how slow it is,
//! how it retries webhooks, and which faults it injects.
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::SecretString;

use super::faults::FaultRates;

/// Everything [`super::start`] needs. `Default` is a quiet, fast, local simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free one (see [`super::SimHandle::addr`]).
    pub bind: SocketAddr,
    /// Base of the URLs the simulator hands out; `http://{bound addr}` when `None`.
    pub public_base_url: Option<String>,
    /// `Some`: require `Authorization: Key <it>` exactly. `None`: any non-empty key is accepted.
    pub api_key: Option<SecretString>,
    /// Seed of the Ed25519 webhook-signing key; `None` draws a random key.
    pub signing_seed: Option<[u8; 32]>,
    /// Sent as `X-Fal-Webhook-User-Id`.
    pub user_id: String,
    /// Where the JWKS is served.
    pub jwks_path: String,
    /// How long a request stays `IN_QUEUE`.
    pub queue_delay: Duration,
    /// How long a request stays `IN_PROGRESS` (also reported as its inference time).
    pub run_delay: Duration,
    /// Waits before each webhook retry (the first attempt is immediate).
    pub webhook_retry_schedule: Vec<Duration>,
    /// Per-attempt webhook timeout.
    pub webhook_timeout: Duration,
    /// A prompt containing this word (case-insensitive) yields black, flagged images.
    pub nsfw_trigger: String,
    /// Random faults applied to submissions and jobs.
    pub faults: FaultRates,
    /// How long finished requests (and their files) are kept; fal keeps results about 1 h.
    pub result_retention: Duration,
    /// How many requests run at once, like fal's per-account concurrency (2 to 40); queued
    /// requests get a freed runner normal priority first. `None`: no limit.
    pub concurrency: Option<usize>,
    /// actix worker threads.
    pub workers: usize,
    /// Serve every file of one size and format with the same bytes, drawn once. A CDN serves
    /// files it already has; drawing each one on demand costs milliseconds of this machine's
    /// CPU, which `bench copies` would otherwise count as the copier's.
    pub draw_once: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_base_url: None,
            api_key: None,
            signing_seed: None,
            user_id: "fluxgate-sim-user".into(),
            jwks_path: "/.well-known/jwks.json".into(),
            queue_delay: Duration::ZERO,
            run_delay: Duration::from_millis(500),
            webhook_retry_schedule: fal_retry_schedule(),
            webhook_timeout: Duration::from_secs(15),
            nsfw_trigger: "nsfw".into(),
            faults: FaultRates::default(),
            result_retention: Duration::from_secs(3600),
            concurrency: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            draw_once: false,
        }
    }
}

/// fal's documented contract: 10 retries spread over about two hours.
pub fn fal_retry_schedule() -> Vec<Duration> {
    [1, 2, 4, 8, 10, 15, 15, 20, 20, 25]
        .into_iter()
        .map(|minutes| Duration::from_secs(minutes * 60))
        .collect()
}

/// Parses `"500ms,1s,30s,2m,1h"` (a bare number means milliseconds).
pub fn parse_durations(list: &str) -> anyhow::Result<Vec<Duration>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect()
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("bad duration {s:?}: expected e.g. 500ms, 5s, 2m, 1h"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => anyhow::bail!("bad duration unit in {s:?}: use ms, s, m or h"),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedules_parse_and_fal_s_spans_two_hours() {
        let parsed = parse_durations("1s, 250ms,2m,1h,7").unwrap();
        let ms: Vec<u128> = parsed.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [1000, 250, 120_000, 3_600_000, 7]);
        assert!(parse_durations("5x").is_err());
        let total: Duration = fal_retry_schedule().iter().sum();
        assert_eq!(
            (fal_retry_schedule().len(), total.as_secs()),
            (10, 2 * 3600)
        );
    }
}
