//! The settings as text, exactly as given by flag or environment variable: nothing is parsed
//! here, so that validation (`Settings::from_raw`) can name every problem at once.
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
    /// fal's model fallbacks: `off` (default) or `on`.
    #[arg(long, env = "FLUXGATE_FAL_FALLBACKS")]
    pub fal_fallbacks: Option<String>,
    /// Default start timeout sent to fal (`X-Fal-Request-Timeout`), in seconds.
    #[arg(long, env = "FLUXGATE_FAL_START_TIMEOUT_SECS")]
    pub fal_start_timeout_secs: Option<String>,
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
    /// How long a result's images may keep failing to copy before it is announced with fal's
    /// URLs, in seconds.
    #[arg(long, env = "FLUXGATE_COPY_DEADLINE_SECS")]
    pub copy_deadline_secs: Option<String>,
    /// Public base URL of the image store (a bucket or CDN); copies are linked there.
    #[arg(long, env = "FLUXGATE_ASSET_BASE_URL")]
    pub asset_base_url: Option<String>,
    /// Signed `/assets` URLs that expire after this many seconds.
    #[arg(long, env = "FLUXGATE_ASSET_URL_TTL_SECS")]
    pub asset_url_ttl_secs: Option<String>,
    /// How long events, deliveries, attempts and fal's callback bodies are kept (`30d`, `off`).
    #[arg(long, env = "FLUXGATE_EVENT_RETENTION")]
    pub event_retention: Option<String>,
    /// How long image copies are kept (`off`: forever).
    #[arg(long, env = "FLUXGATE_IMAGE_RETENTION")]
    pub image_retention: Option<String>,
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
