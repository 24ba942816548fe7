//! Settings from environment variables and their matching flags. Everything is read
//! as text first and parsed here, so a bad start names *every* missing or malformed setting at
//! once, by its environment variable, instead of stopping at the first.
use std::{net::IpAddr, time::Duration};

pub use crate::domain::cidr::Cidr;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Which command is being configured: defaults and requirements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Dev,
}

/// The raw settings, as given on the command line or in the environment. Its `Debug` shows none
/// of them: four are secrets, and the validated `Settings` is what is worth printing.
#[derive(clap::Args, Clone, Default)]
pub struct RawSettings {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// fal API key, `key_id:key_secret`.
    #[arg(long, env = "FAL_KEY", hide_env_values = true)]
    pub fal_key: Option<String>,
    /// Listening port.
    #[arg(long, env = "PORT")]
    pub port: Option<String>,
    /// Listening address.
    #[arg(long, env = "FLUXGATE_BIND")]
    pub bind: Option<String>,
    /// Base URL fal can reach, used for `fal_webhook`.
    #[arg(long, env = "FLUXGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// fal queue base URL.
    #[arg(long, env = "FLUXGATE_FAL_QUEUE_URL")]
    pub fal_queue_url: Option<String>,
    /// JWKS URL used to verify fal's callbacks.
    #[arg(long, env = "FLUXGATE_FAL_JWKS_URL")]
    pub fal_jwks_url: Option<String>,
    /// Allow plain-http webhook targets.
    #[arg(long, env = "FLUXGATE_ALLOW_HTTP_TARGETS")]
    pub allow_http_targets: Option<String>,
    /// Comma-separated CIDRs exempt from the SSRF guard.
    #[arg(long, env = "FLUXGATE_ALLOWED_TARGET_CIDRS")]
    pub allowed_target_cidrs: Option<String>,
    /// Where image copies go (`file:///path`, `s3://bucket/prefix`).
    #[arg(long, env = "FLUXGATE_STORAGE")]
    pub storage: Option<String>,
    /// `json` or `pretty`.
    #[arg(long, env = "FLUXGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Largest accepted API request body, in bytes.
    #[arg(long, env = "FLUXGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,
    /// Largest accepted fal callback body, in bytes (sync_mode results carry images inline).
    #[arg(long, env = "FLUXGATE_MAX_CALLBACK_BYTES")]
    pub max_callback_bytes: Option<String>,
    /// Size of the Postgres connection pool.
    #[arg(long, env = "FLUXGATE_DB_POOL_SIZE")]
    pub db_pool_size: Option<String>,
    /// Seconds to let in-flight work finish after SIGTERM.
    #[arg(long, env = "FLUXGATE_SHUTDOWN_DRAIN_SECS")]
    pub shutdown_drain_secs: Option<String>,
    /// Timeout of each HTTP call to fal, in seconds.
    #[arg(long, env = "FLUXGATE_FAL_TIMEOUT_SECS")]
    pub fal_timeout_secs: Option<String>,
    /// First retry delay after a 429 or 5xx from fal, in milliseconds (then doubling).
    #[arg(long, env = "FLUXGATE_FAL_RETRY_BASE_MS")]
    pub fal_retry_base_ms: Option<String>,
    /// How long to keep retrying 429s from fal before failing the generation, in seconds.
    #[arg(long, env = "FLUXGATE_FAL_RATE_LIMIT_BUDGET_SECS")]
    pub fal_rate_limit_budget_secs: Option<String>,
    /// Submissions to fal in flight at once, per instance.
    #[arg(long, env = "FLUXGATE_SUBMIT_CONCURRENCY")]
    pub submit_concurrency: Option<String>,
    /// A queued generation without a callback after this many seconds is checked at fal.
    #[arg(long, env = "FLUXGATE_RECONCILE_AFTER_SECS")]
    pub reconcile_after_secs: Option<String>,
    /// How often the reconciler looks for overdue generations, in seconds.
    #[arg(long, env = "FLUXGATE_RECONCILE_INTERVAL_SECS")]
    pub reconcile_interval_secs: Option<String>,
    /// Delays between webhook delivery attempts, e.g. `5s,5m,30m,2h,5h,10h,14h,20h,24h`.
    #[arg(long, env = "FLUXGATE_WEBHOOK_RETRY_SCHEDULE")]
    pub webhook_retry_schedule: Option<String>,
    /// Timeout of one webhook delivery attempt, in seconds.
    #[arg(long, env = "FLUXGATE_WEBHOOK_TIMEOUT_SECS")]
    pub webhook_timeout_secs: Option<String>,
    /// Webhook deliveries in flight at once, per instance.
    #[arg(long, env = "FLUXGATE_DELIVERY_CONCURRENCY")]
    pub delivery_concurrency: Option<String>,
    /// A subscription whose deliveries have all failed for this long is disabled, in seconds.
    #[arg(long, env = "FLUXGATE_DISABLE_AFTER_FAILING_SECS")]
    pub disable_after_failing_secs: Option<String>,
    /// How long a completed seeded result answers identical requests from the cache, in seconds.
    #[arg(long, env = "FLUXGATE_CACHE_TTL_SECS")]
    pub cache_ttl_secs: Option<String>,
    /// How long a claimed delivery stays leased to its worker, in seconds (must exceed the
    /// webhook timeout); a crashed worker's deliveries are taken over after it.
    #[arg(long, env = "FLUXGATE_DELIVERY_LEASE_SECS")]
    pub delivery_lease_secs: Option<String>,
    /// Base64 Ed25519 seeds for optional `v1a` signatures (first signs; all are published).
    #[arg(long, env = "FLUXGATE_WEBHOOK_ED25519_KEYS", hide_env_values = true)]
    pub webhook_ed25519_keys: Option<String>,
    /// Sliding window over which the alert ratios are computed, in seconds.
    #[arg(long, env = "FLUXGATE_ALERT_WINDOW_SECS")]
    pub alert_window_secs: Option<String>,
    /// Share of generations failing on fal's side (0-1) that raises `alert.fal_error_rate`.
    #[arg(long, env = "FLUXGATE_ALERT_FAL_ERROR_RATIO")]
    pub alert_fal_error_ratio: Option<String>,
    /// Share of delivery attempts without a 2xx (0-1) that raises `alert.delivery_failure_rate`.
    #[arg(long, env = "FLUXGATE_ALERT_DELIVERY_FAILURE_RATIO")]
    pub alert_delivery_failure_ratio: Option<String>,
    /// Fewest outcomes in the window for an alert to change state.
    #[arg(long, env = "FLUXGATE_ALERT_MIN_VOLUME")]
    pub alert_min_volume: Option<String>,
    /// How often the alerts are evaluated, in seconds.
    #[arg(long, env = "FLUXGATE_ALERT_INTERVAL_SECS")]
    pub alert_interval_secs: Option<String>,
    /// How often the queue and spend gauges of `/metrics` are re-read from Postgres, in seconds.
    #[arg(long, env = "FLUXGATE_METRICS_REFRESH_SECS")]
    pub metrics_refresh_secs: Option<String>,
    /// Seconds between `: ping` comments on idle Server-Sent-Event streams.
    #[arg(long, env = "FLUXGATE_SSE_HEARTBEAT_SECS")]
    pub sse_heartbeat_secs: Option<String>,
    /// Base64 AES-256 keys that encrypt stored signing secrets (first encrypts; all decrypt).
    #[arg(long, env = "FLUXGATE_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// fal's user id: callbacks signed for any other fal account are refused.
    #[arg(long, env = "FLUXGATE_FAL_USER_ID")]
    pub fal_user_id: Option<String>,
    /// Allow http:// fal queue and JWKS URLs in `serve` (tests, benchmarks, a local simulator).
    #[arg(long, env = "FLUXGATE_ALLOW_INSECURE_FAL")]
    pub allow_insecure_fal: Option<String>,
    /// How long callbacks to URLs handed out before callback tokens existed are still taken.
    #[arg(long, env = "FLUXGATE_LEGACY_CALLBACK_GRACE_SECS")]
    pub legacy_callback_grace_secs: Option<String>,
    /// Largest fal callback of a generation whose images come back inline (sync_mode, data: inputs).
    #[arg(long, env = "FLUXGATE_MAX_INLINE_CALLBACK_BYTES")]
    pub max_inline_callback_bytes: Option<String>,
    /// fal callbacks read at once per instance; more are answered 503 (fal redelivers).
    #[arg(long, env = "FLUXGATE_CALLBACK_CONCURRENCY")]
    pub callback_concurrency: Option<String>,
    /// Deadline for receiving a whole request body, in seconds.
    #[arg(long, env = "FLUXGATE_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<String>,
    /// Hosts result images may be copied from (a name also admits its subdomains; `*`: any).
    #[arg(long, env = "FLUXGATE_IMAGE_HOSTS")]
    pub image_hosts: Option<String>,
    /// Image downloads in flight at once per instance.
    #[arg(long, env = "FLUXGATE_IMAGE_DOWNLOAD_CONCURRENCY")]
    pub image_download_concurrency: Option<String>,
    /// Live event streams a tenant may hold open on one instance.
    #[arg(long, env = "FLUXGATE_MAX_STREAMS_PER_TENANT")]
    pub max_streams_per_tenant: Option<String>,
    /// Subscriptions a tenant may have.
    #[arg(long, env = "FLUXGATE_MAX_SUBSCRIPTIONS_PER_TENANT")]
    pub max_subscriptions_per_tenant: Option<String>,
}

impl std::fmt::Debug for RawSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSettings").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Validated settings. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Option<SecretString>,
    pub fal_key: Option<SecretString>,
    pub bind: IpAddr,
    pub port: u16,
    pub public_url: Option<Url>,
    pub fal_queue_url: Url,
    pub fal_jwks_url: Url,
    pub allow_http_targets: bool,
    pub allowed_target_cidrs: Vec<Cidr>,
    pub storage: Option<String>,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub max_callback_bytes: usize,
    pub db_pool_size: u32,
    pub shutdown_drain: Duration,
    pub fal_timeout: Duration,
    pub fal_retry_base: Duration,
    pub fal_rate_limit_budget: Duration,
    pub submit_concurrency: usize,
    pub reconcile_after: Duration,
    pub reconcile_interval: Duration,
    pub webhook_retry_schedule: crate::delivery::retry::RetrySchedule,
    pub webhook_timeout: Duration,
    pub delivery_concurrency: usize,
    pub disable_after_failing: Duration,
    pub delivery_lease: Duration,
    pub cache_ttl: Duration,
    /// fluxgate's own Ed25519 keys for `v1a` signatures; `None` when not configured.
    pub webhook_keys: Option<std::sync::Arc<crate::delivery::keys::OutboundKeys>>,
    pub alert_window: Duration,
    pub alert_fal_error_ratio: f64,
    pub alert_delivery_failure_ratio: f64,
    pub alert_min_volume: i64,
    pub alert_interval: Duration,
    pub metrics_refresh: Duration,
    pub sse_heartbeat: Duration,
    /// Seals stored signing secrets; empty (plaintext) without `FLUXGATE_ENCRYPTION_KEY`.
    pub keyring: std::sync::Arc<crate::secrets::Keyring>,
    pub fal_user_id: Option<String>,
    pub legacy_callback_grace: Duration,
    pub max_inline_callback_bytes: usize,
    pub callback_concurrency: usize,
    pub body_timeout: Duration,
    pub image_hosts: HostList,
    pub image_download_concurrency: usize,
    pub max_streams_per_tenant: usize,
    pub max_subscriptions_per_tenant: i64,
}

/// Host names an outbound fetch may go to: each entry admits itself and its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostList {
    Any,
    Only(Vec<String>),
}

/// fal's media CDN and API domains, where result images are served from.
pub const DEFAULT_IMAGE_HOSTS: &str = "fal.media,fal.run,fal.ai";

impl HostList {
    pub fn parse(v: &str) -> Result<HostList, String> {
        if v.trim() == "*" {
            return Ok(HostList::Any);
        }
        let mut hosts = Vec::new();
        for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            let ok = h.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
            if !ok || h.starts_with('.') {
                return Err(format!(
                    "contains {h:?}, which is not a host name (list names such as fal.media, or `*`)"
                ));
            }
            hosts.push(h);
        }
        if hosts.is_empty() {
            return Err("must list at least one host, or `*`".into());
        }
        Ok(HostList::Only(hosts))
    }

    /// Whether `host` (a URL's host, lowercase) is admitted: equal to an entry or a subdomain.
    pub fn admits(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostList::Any => true,
            HostList::Only(list) => list.iter().any(|h| {
                host == *h
                    || host
                        .strip_suffix(h.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }),
        }
    }
}

/// Every problem found, one line each, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<String>);

pub const DEFAULT_FAL_QUEUE_URL: &str = "https://queue.fal.run";
pub const DEFAULT_FAL_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";

impl Settings {
    pub fn from_raw(raw: &RawSettings, mode: Mode) -> Result<Settings, ConfigError> {
        let mut p = Parser::default();
        let serve = mode == Mode::Serve;
        let database_url = p.secret("DATABASE_URL", &raw.database_url, serve, |v| {
            if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                Ok(())
            } else {
                Err("must be a postgres:// or postgresql:// URL".into())
            }
        });
        let fal_key = p.secret("FAL_KEY", &raw.fal_key, serve, |v| {
            match v.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(()),
                _ => Err("must have the form key_id:key_secret".into()),
            }
        });
        let port = p.parse("PORT", &raw.port, Some(8080u16), |v| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("must be a port number 1-65535".into())
        });
        let bind = p.parse(
            "FLUXGATE_BIND",
            &raw.bind,
            // `dev` allows plain http and loopback targets: reachable only from this machine.
            Some(if serve {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([127, 0, 0, 1])
            }),
            |v| {
                v.parse::<IpAddr>()
                    .map_err(|_| "must be an IP address such as 0.0.0.0 or ::".into())
            },
        );
        let public_url = p.parse_opt(
            "FLUXGATE_PUBLIC_URL",
            &raw.public_url,
            serve,
            parse_http_url,
        );
        let fal_queue_url = p.parse(
            "FLUXGATE_FAL_QUEUE_URL",
            &raw.fal_queue_url,
            Url::parse(DEFAULT_FAL_QUEUE_URL).ok(),
            parse_http_url,
        );
        let fal_jwks_url = p.parse(
            "FLUXGATE_FAL_JWKS_URL",
            &raw.fal_jwks_url,
            Url::parse(DEFAULT_FAL_JWKS_URL).ok(),
            parse_http_url,
        );
        let allow_http_targets = p.parse(
            "FLUXGATE_ALLOW_HTTP_TARGETS",
            &raw.allow_http_targets,
            Some(!serve),
            parse_bool,
        );
        let allowed_target_cidrs = p.parse(
            "FLUXGATE_ALLOWED_TARGET_CIDRS",
            &raw.allowed_target_cidrs,
            Some(Vec::new()),
            |v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Cidr::parse)
                    .collect()
            },
        );
        let storage = p.parse("FLUXGATE_STORAGE", &raw.storage, None, |v| match v {
            "off" => Ok(v.to_owned()),
            _ => image_store_directory(v).map(|_| v.to_owned()),
        });
        let log_format = p.parse(
            "FLUXGATE_LOG_FORMAT",
            &raw.log_format,
            Some(if serve {
                LogFormat::Json
            } else {
                LogFormat::Pretty
            }),
            |v| match v {
                "json" => Ok(LogFormat::Json),
                "pretty" => Ok(LogFormat::Pretty),
                _ => Err("must be `json` or `pretty`".into()),
            },
        );
        let max_body_bytes = p.parse(
            "FLUXGATE_MAX_BODY_BYTES",
            &raw.max_body_bytes,
            Some(1 << 20),
            |v| bounded(v, 1024, 64 << 20),
        );
        let max_callback_bytes = p.parse(
            "FLUXGATE_MAX_CALLBACK_BYTES",
            &raw.max_callback_bytes,
            // A result whose images are URLs is a few KB; inline images have their own limit.
            Some(256 << 10),
            |v| bounded(v, 1024, 1 << 30),
        );
        let db_pool_size = p.parse("FLUXGATE_DB_POOL_SIZE", &raw.db_pool_size, Some(20), |v| {
            bounded(v, 2, 1000)
        });
        let drain = p.parse(
            "FLUXGATE_SHUTDOWN_DRAIN_SECS",
            &raw.shutdown_drain_secs,
            Some(20),
            |v| bounded(v, 0, 3600),
        );
        let fal_timeout = p.parse(
            "FLUXGATE_FAL_TIMEOUT_SECS",
            &raw.fal_timeout_secs,
            Some(60),
            |v| bounded(v, 1, 600),
        );
        let fal_retry_base = p.parse(
            "FLUXGATE_FAL_RETRY_BASE_MS",
            &raw.fal_retry_base_ms,
            Some(1000),
            |v| bounded(v, 1, 60_000),
        );
        let fal_rate_limit_budget = p.parse(
            "FLUXGATE_FAL_RATE_LIMIT_BUDGET_SECS",
            &raw.fal_rate_limit_budget_secs,
            Some(300),
            |v| bounded(v, 0, 86_400),
        );
        let submit_concurrency = p.parse(
            "FLUXGATE_SUBMIT_CONCURRENCY",
            &raw.submit_concurrency,
            Some(32),
            |v| bounded(v, 1, 1024),
        );
        let reconcile_after = p.parse(
            "FLUXGATE_RECONCILE_AFTER_SECS",
            &raw.reconcile_after_secs,
            Some(300),
            |v| bounded(v, 1, 86_400),
        );
        let reconcile_interval = p.parse(
            "FLUXGATE_RECONCILE_INTERVAL_SECS",
            &raw.reconcile_interval_secs,
            Some(30),
            |v| bounded(v, 1, 3600),
        );
        let webhook_retry_schedule = p.parse(
            "FLUXGATE_WEBHOOK_RETRY_SCHEDULE",
            &raw.webhook_retry_schedule,
            Some(crate::delivery::retry::RetrySchedule::default()),
            |v| crate::delivery::retry::RetrySchedule::parse(v).map_err(|e| e.to_string()),
        );
        let webhook_timeout = p.parse(
            "FLUXGATE_WEBHOOK_TIMEOUT_SECS",
            &raw.webhook_timeout_secs,
            Some(15),
            |v| bounded(v, 1, 300),
        );
        let delivery_concurrency = p.parse(
            "FLUXGATE_DELIVERY_CONCURRENCY",
            &raw.delivery_concurrency,
            Some(256),
            |v| bounded(v, 1, 10_000),
        );
        let disable_after_failing = p.parse(
            "FLUXGATE_DISABLE_AFTER_FAILING_SECS",
            &raw.disable_after_failing_secs,
            Some(5 * 86_400),
            |v| bounded(v, 1, 365 * 86_400),
        );
        let delivery_lease = p.parse(
            "FLUXGATE_DELIVERY_LEASE_SECS",
            &raw.delivery_lease_secs,
            Some(60),
            |v| bounded(v, 2, 3600),
        );
        if let (Some(lease), Some(timeout)) = (delivery_lease, webhook_timeout) {
            if lease <= timeout {
                p.problems.push(format!(
                    "FLUXGATE_DELIVERY_LEASE_SECS ({lease}) must be longer than FLUXGATE_WEBHOOK_TIMEOUT_SECS ({timeout})"
                ));
            }
        }
        let cache_ttl = p.parse(
            "FLUXGATE_CACHE_TTL_SECS",
            &raw.cache_ttl_secs,
            Some(86_400),
            |v| bounded(v, 0, 30 * 86_400),
        );
        let alert_window = p.parse(
            "FLUXGATE_ALERT_WINDOW_SECS",
            &raw.alert_window_secs,
            Some(300),
            |v| bounded(v, 1, 86_400),
        );
        let alert_fal_error_ratio = p.parse(
            "FLUXGATE_ALERT_FAL_ERROR_RATIO",
            &raw.alert_fal_error_ratio,
            Some(0.2),
            ratio,
        );
        let alert_delivery_failure_ratio = p.parse(
            "FLUXGATE_ALERT_DELIVERY_FAILURE_RATIO",
            &raw.alert_delivery_failure_ratio,
            Some(0.5),
            ratio,
        );
        let alert_min_volume = p.parse(
            "FLUXGATE_ALERT_MIN_VOLUME",
            &raw.alert_min_volume,
            Some(20),
            |v| bounded(v, 1, 1_000_000),
        );
        let alert_interval = p.parse(
            "FLUXGATE_ALERT_INTERVAL_SECS",
            &raw.alert_interval_secs,
            Some(15),
            |v| bounded(v, 1, 3600),
        );
        let metrics_refresh = p.parse(
            "FLUXGATE_METRICS_REFRESH_SECS",
            &raw.metrics_refresh_secs,
            Some(5),
            |v| bounded(v, 1, 3600),
        );
        let webhook_keys = match crate::delivery::keys::OutboundKeys::from_env_value(
            raw.webhook_ed25519_keys.as_deref(),
        ) {
            Ok(k) => Some(k),
            Err(e) => {
                p.problems.push(e.to_string());
                None
            }
        };
        let sse_heartbeat = p.parse(
            "FLUXGATE_SSE_HEARTBEAT_SECS",
            &raw.sse_heartbeat_secs,
            Some(15),
            |v| bounded(v, 1, 3600),
        );
        let keyring = match raw.encryption_key.as_deref().map(str::trim) {
            None | Some("") => Some(crate::secrets::Keyring::default()),
            Some(v) => match crate::secrets::Keyring::parse(v) {
                Ok(k) => Some(k),
                Err(why) => {
                    p.problems
                        .push(format!("FLUXGATE_ENCRYPTION_KEY {why} (value not shown)"));
                    None
                }
            },
        };
        let fal_user_id = p.parse("FLUXGATE_FAL_USER_ID", &raw.fal_user_id, None, |v| {
            if v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(v.to_owned())
            } else {
                Err("must be fal's user id as sent in X-Fal-Webhook-User-Id".into())
            }
        });
        let allow_insecure_fal = p.parse(
            "FLUXGATE_ALLOW_INSECURE_FAL",
            &raw.allow_insecure_fal,
            Some(false),
            parse_bool,
        );
        if serve && allow_insecure_fal == Some(false) {
            // The fal key travels to the queue URL, and the JWKS is the trust anchor of every
            // callback: in clear, either can be read or replaced on the way.
            for (name, url) in [
                ("FLUXGATE_FAL_QUEUE_URL", &fal_queue_url),
                ("FLUXGATE_FAL_JWKS_URL", &fal_jwks_url),
            ] {
                if url.as_ref().is_some_and(|u| u.scheme() != "https") {
                    p.problems.push(format!(
                        "{name} must be https in serve: the fal key and the keys that verify fal's callbacks would travel in clear (set FLUXGATE_ALLOW_INSECURE_FAL=true for a local simulator)"
                    ));
                }
            }
        }
        let legacy_callback_grace = p.parse(
            "FLUXGATE_LEGACY_CALLBACK_GRACE_SECS",
            &raw.legacy_callback_grace_secs,
            Some(86_400),
            |v| bounded(v, 0, 30 * 86_400),
        );
        // A deployment that raised the old single limit for large inline results keeps it.
        let max_inline_callback_bytes = p.parse(
            "FLUXGATE_MAX_INLINE_CALLBACK_BYTES",
            &raw.max_inline_callback_bytes,
            Some((64u64 << 20).max(max_callback_bytes.unwrap_or(0))),
            |v| bounded(v, 1024, 1 << 30),
        );
        let callback_concurrency = p.parse(
            "FLUXGATE_CALLBACK_CONCURRENCY",
            &raw.callback_concurrency,
            Some(256),
            |v| bounded(v, 1, 100_000),
        );
        let body_timeout = p.parse(
            "FLUXGATE_BODY_TIMEOUT_SECS",
            &raw.body_timeout_secs,
            Some(10),
            |v| bounded(v, 1, 600),
        );
        let image_hosts = p.parse(
            "FLUXGATE_IMAGE_HOSTS",
            &raw.image_hosts,
            HostList::parse(DEFAULT_IMAGE_HOSTS).ok(),
            HostList::parse,
        );
        let image_download_concurrency = p.parse(
            "FLUXGATE_IMAGE_DOWNLOAD_CONCURRENCY",
            &raw.image_download_concurrency,
            Some(16),
            |v| bounded(v, 1, 1024),
        );
        let max_streams_per_tenant = p.parse(
            "FLUXGATE_MAX_STREAMS_PER_TENANT",
            &raw.max_streams_per_tenant,
            Some(1000),
            |v| bounded(v, 1, 1_000_000),
        );
        let max_subscriptions_per_tenant = p.parse(
            "FLUXGATE_MAX_SUBSCRIPTIONS_PER_TENANT",
            &raw.max_subscriptions_per_tenant,
            Some(1000),
            |v| bounded(v, 1, 1_000_000),
        );
        if !p.problems.is_empty() {
            return Err(ConfigError(p.problems));
        }
        // Every `parse` above returned Some when no problem was recorded.
        Ok(Settings {
            database_url,
            fal_key,
            bind: bind.expect("checked"),
            port: port.expect("checked"),
            public_url,
            fal_queue_url: fal_queue_url.expect("checked"),
            fal_jwks_url: fal_jwks_url.expect("checked"),
            allow_http_targets: allow_http_targets.expect("checked"),
            allowed_target_cidrs: allowed_target_cidrs.expect("checked"),
            storage,
            log_format: log_format.expect("checked"),
            max_body_bytes: max_body_bytes.expect("checked") as usize,
            max_callback_bytes: max_callback_bytes.expect("checked") as usize,
            db_pool_size: db_pool_size.expect("checked") as u32,
            shutdown_drain: Duration::from_secs(drain.expect("checked")),
            fal_timeout: Duration::from_secs(fal_timeout.expect("checked")),
            fal_retry_base: Duration::from_millis(fal_retry_base.expect("checked")),
            fal_rate_limit_budget: Duration::from_secs(fal_rate_limit_budget.expect("checked")),
            submit_concurrency: submit_concurrency.expect("checked") as usize,
            reconcile_after: Duration::from_secs(reconcile_after.expect("checked")),
            reconcile_interval: Duration::from_secs(reconcile_interval.expect("checked")),
            webhook_retry_schedule: webhook_retry_schedule.expect("checked"),
            webhook_timeout: Duration::from_secs(webhook_timeout.expect("checked")),
            delivery_concurrency: delivery_concurrency.expect("checked") as usize,
            disable_after_failing: Duration::from_secs(disable_after_failing.expect("checked")),
            delivery_lease: Duration::from_secs(delivery_lease.expect("checked")),
            cache_ttl: Duration::from_secs(cache_ttl.expect("checked")),
            webhook_keys: webhook_keys.expect("checked").map(std::sync::Arc::new),
            alert_window: Duration::from_secs(alert_window.expect("checked")),
            alert_fal_error_ratio: alert_fal_error_ratio.expect("checked"),
            alert_delivery_failure_ratio: alert_delivery_failure_ratio.expect("checked"),
            alert_min_volume: alert_min_volume.expect("checked") as i64,
            alert_interval: Duration::from_secs(alert_interval.expect("checked")),
            metrics_refresh: Duration::from_secs(metrics_refresh.expect("checked")),
            sse_heartbeat: Duration::from_secs(sse_heartbeat.expect("checked")),
            keyring: std::sync::Arc::new(keyring.expect("checked")),
            fal_user_id,
            legacy_callback_grace: Duration::from_secs(legacy_callback_grace.expect("checked")),
            max_inline_callback_bytes: max_inline_callback_bytes.expect("checked") as usize,
            callback_concurrency: callback_concurrency.expect("checked") as usize,
            body_timeout: Duration::from_secs(body_timeout.expect("checked")),
            image_hosts: image_hosts.expect("checked"),
            image_download_concurrency: image_download_concurrency.expect("checked") as usize,
            max_streams_per_tenant: max_streams_per_tenant.expect("checked") as usize,
            max_subscriptions_per_tenant: max_subscriptions_per_tenant.expect("checked") as i64,
        })
    }

    /// Settings for tests and `dev`, with the given overrides already validated.
    pub fn for_dev() -> Settings {
        Settings::from_raw(&RawSettings::default(), Mode::Dev).expect("defaults are valid")
    }

    pub fn fal_key_str(&self) -> Option<&str> {
        self.fal_key.as_ref().map(|k| k.expose_secret())
    }
}

#[derive(Default)]
struct Parser {
    problems: Vec<String>,
}

impl Parser {
    fn parse<T>(
        &mut self,
        name: &str,
        raw: &Option<String>,
        default: Option<T>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match raw.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => match f(v) {
                Ok(t) => Some(t),
                Err(why) => {
                    self.problems.push(format!("{name}: {v:?} {why}"));
                    None
                }
            },
            _ => default,
        }
    }

    fn parse_opt<T>(
        &mut self,
        name: &str,
        raw: &Option<String>,
        required: bool,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = self.parse(name, raw, None, f);
        if value.is_none() && required && raw.as_deref().is_none_or(|v| v.trim().is_empty()) {
            self.problems
                .push(format!("{name} is required but not set"));
        }
        value
    }

    /// Like `parse_opt`, but the value is never echoed in a message.
    fn secret(
        &mut self,
        name: &str,
        raw: &Option<String>,
        required: bool,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<SecretString> {
        match raw.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => match check(v) {
                Ok(()) => Some(SecretString::from(v.to_owned())),
                Err(why) => {
                    self.problems
                        .push(format!("{name} {why} (value not shown)"));
                    None
                }
            },
            _ => {
                if required {
                    self.problems
                        .push(format!("{name} is required but not set"));
                }
                None
            }
        }
    }
}

/// The directory a `FLUXGATE_STORAGE` value names: `file:///path` or a plain path. Object
/// stores are refused by name.
pub fn image_store_directory(spec: &str) -> Result<std::path::PathBuf, String> {
    match spec.split_once("://") {
        None => Ok(std::path::PathBuf::from(spec)),
        Some(("file", _)) => Url::parse(spec)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| format!("{spec:?} is not a file:///absolute/path URL")),
        Some((scheme, _)) => Err(format!(
            "{scheme}:// stores are not supported yet; use a directory (file:///path)"
        )),
    }
}

/// The SSRF guard's policy these settings ask for.
impl Settings {
    pub fn target_policy(&self) -> crate::delivery::ssrf::TargetPolicy {
        crate::delivery::ssrf::TargetPolicy {
            allow_http: self.allow_http_targets,
            allowed: self.allowed_target_cidrs.clone(),
        }
    }

    /// What the delivery worker is told of these settings.
    pub fn delivery(&self) -> crate::delivery::worker::DeliveryOptions {
        crate::delivery::worker::DeliveryOptions {
            schedule: self.webhook_retry_schedule.clone(),
            keys: self.webhook_keys.clone(),
            keyring: self.keyring.clone(),
            concurrency: self.delivery_concurrency,
            disable_after: self.disable_after_failing,
            drain: self.shutdown_drain,
            lease: self.delivery_lease,
        }
    }
}

fn parse_http_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

fn bounded(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A share such as `0.2`: above 0, at most 1.
fn ratio(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err("must be a ratio above 0 and at most 1, such as 0.2".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        let mut r = RawSettings::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "DATABASE_URL" => r.database_url = v,
                "FAL_KEY" => r.fal_key = v,
                "PORT" => r.port = v,
                "FLUXGATE_PUBLIC_URL" => r.public_url = v,
                "FLUXGATE_LOG_FORMAT" => r.log_format = v,
                "FLUXGATE_ALLOWED_TARGET_CIDRS" => r.allowed_target_cidrs = v,
                "FLUXGATE_ALERT_FAL_ERROR_RATIO" => r.alert_fal_error_ratio = v,
                "FLUXGATE_ALERT_MIN_VOLUME" => r.alert_min_volume = v,
                "FLUXGATE_STORAGE" => r.storage = v,
                _ => panic!("unknown {k}"),
            }
        }
        r
    }

    #[test]
    fn serve_without_required_settings_names_each_one() {
        let err = Settings::from_raw(&RawSettings::default(), Mode::Serve)
            .unwrap_err()
            .to_string();
        for name in ["DATABASE_URL", "FAL_KEY", "FLUXGATE_PUBLIC_URL"] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn malformed_values_are_all_reported_and_secrets_are_not_echoed() {
        let err = Settings::from_raw(
            &raw(&[
                ("DATABASE_URL", "mysql://u:hunter2@x/db"),
                ("FAL_KEY", "nocolon-sekrit"),
                ("PORT", "http"),
                ("FLUXGATE_PUBLIC_URL", "ftp://x"),
                ("FLUXGATE_LOG_FORMAT", "xml"),
            ]),
            Mode::Serve,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        let text = err.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("sekrit"),
            "{text}"
        );
        assert!(text.contains("PORT: \"http\""), "{text}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let s = Settings::from_raw(
            &raw(&[
                ("DATABASE_URL", "postgres://u:hunter2@localhost/db"),
                ("FAL_KEY", "id:sekrit"),
                ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
            ]),
            Mode::Serve,
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("sekrit"),
            "{debug}"
        );
        assert_eq!(s.port, 8080);
        assert!(!s.allow_http_targets);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn alert_ratios_must_be_shares_and_volumes_whole_numbers() {
        let err = Settings::from_raw(
            &raw(&[
                ("FLUXGATE_ALERT_FAL_ERROR_RATIO", "20%"),
                ("FLUXGATE_ALERT_MIN_VOLUME", "0"),
            ]),
            Mode::Dev,
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        let s = Settings::from_raw(
            &raw(&[("FLUXGATE_ALERT_FAL_ERROR_RATIO", "0.35")]),
            Mode::Dev,
        )
        .unwrap();
        assert_eq!(
            (s.alert_fal_error_ratio, s.alert_delivery_failure_ratio),
            (0.35, 0.5)
        );
        assert_eq!(s.alert_min_volume, 20);
    }

    #[test]
    fn the_image_store_is_a_directory_or_off() {
        let err = Settings::from_raw(
            &raw(&[("FLUXGATE_STORAGE", "s3://bucket/images")]),
            Mode::Serve,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("FLUXGATE_STORAGE") && err.contains("s3:// stores are not supported yet"),
            "{err}"
        );
        for ok in ["file:///srv/images", "/srv/images", "off"] {
            let s = Settings::from_raw(&raw(&[("FLUXGATE_STORAGE", ok)]), Mode::Dev).unwrap();
            assert_eq!(s.storage.as_deref(), Some(ok));
        }
    }

    #[test]
    fn dev_listens_on_loopback_and_serve_on_every_interface_unless_told() {
        let dev = Settings::from_raw(&RawSettings::default(), Mode::Dev).unwrap();
        assert_eq!(dev.bind, IpAddr::from([127, 0, 0, 1]));
        let mut raw = raw(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("FAL_KEY", "id:secret"),
            ("FLUXGATE_PUBLIC_URL", "https://gw.example.com"),
        ]);
        assert_eq!(
            Settings::from_raw(&raw, Mode::Serve).unwrap().bind,
            IpAddr::from([0, 0, 0, 0])
        );
        raw.bind = Some("0.0.0.0".into());
        assert_eq!(
            Settings::from_raw(&raw, Mode::Dev).unwrap().bind,
            IpAddr::from([0, 0, 0, 0])
        );
    }

    #[test]
    fn image_hosts_admit_themselves_and_their_subdomains_only() {
        let hosts = HostList::parse(DEFAULT_IMAGE_HOSTS).unwrap();
        for ok in [
            "fal.media",
            "v3.fal.media",
            "V3B.Fal.Media.",
            "storage.fal.run",
        ] {
            assert!(hosts.admits(ok), "{ok}");
        }
        for no in [
            "evilfal.media",
            "fal.media.evil.com",
            "127.0.0.1",
            "metadata.google.internal",
        ] {
            assert!(!hosts.admits(no), "{no}");
        }
        assert!(HostList::parse("*").unwrap().admits("anything.example"));
        assert!(HostList::parse(" , ").is_err() && HostList::parse("a/b").is_err());
    }

    #[test]
    fn a_deployment_that_raised_the_callback_limit_keeps_it_for_inline_results() {
        let r = RawSettings {
            max_callback_bytes: Some((128u64 << 20).to_string()),
            ..Default::default()
        };
        let s = Settings::from_raw(&r, Mode::Dev).unwrap();
        assert_eq!(s.max_inline_callback_bytes, 128 << 20);
        let d = Settings::for_dev();
        assert_eq!(
            (d.max_callback_bytes, d.max_inline_callback_bytes),
            (256 << 10, 64 << 20)
        );
    }

    #[test]
    fn cidrs_parse_and_match() {
        let s = Settings::from_raw(
            &raw(&[("FLUXGATE_ALLOWED_TARGET_CIDRS", "127.0.0.0/8, ::1")]),
            Mode::Dev,
        )
        .unwrap();
        assert!(s.allowed_target_cidrs[0].contains("127.1.2.3".parse().unwrap()));
        assert!(!s.allowed_target_cidrs[0].contains("10.0.0.1".parse().unwrap()));
        assert!(s.allowed_target_cidrs[1].contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
