//! The fal simulator: a faithful stand-in for fal's queue API (submit, status, result, cancel, signed webhooks) for `fluxgate
//! dev`, the tests and the benchmark. It validates input exactly ([`crate::fal::models`]), walks
//! requests through `IN_QUEUE` → `IN_PROGRESS` → `COMPLETED` on timers, "generates" real
//! deterministic images, serves them, signs its webhooks with its own Ed25519 key exactly as fal
//! does (JWKS at [`SimConfig::jwks_path`]), retries failed deliveries, and injects faults.
//!
//! Routes: `POST /{owner}/{app}[/{sub}]?fal_webhook=…` (submit), `GET|PUT
//! /{owner}/{app}/requests/{id}[/status|/status/stream|/response|/cancel]`,
//! `GET /files/{id}/{index}.{ext}`, the JWKS, and admin routes `GET|PUT /_sim/faults`,
//! `GET /_sim/stats`, `POST /_sim/rotate-key`.
//!
//! # Prompt markers
//! Put these anywhere in a prompt to force a behaviour for that one request:
//!
//! | marker | effect |
//! |---|---|
//! | `[sim:401]` | submit answers 401 `{"detail":"No user found for Key ID and Secret"}` |
//! | `[sim:403]` | submit answers 403 `{"detail":"User is locked. Reason: Exhausted balance. …"}` |
//! | `[sim:policy]` | submit answers 422, `type: "content_policy_violation"`, `loc: ["body","prompt"]` |
//! | `[sim:429]` | submit answers 429 with `Retry-After: 1` |
//! | `[sim:500]` `[sim:502]` `[sim:503]` `[sim:504]` | that status, `{"detail","error_type"}` + `X-Fal-Error-Type` |
//! | `[sim:<kind>xN]`, e.g. `[sim:503x2]` | the fault for the first N submissions of this exact prompt, then normal |
//! | `[sim:fail]` | accepted, then `COMPLETED` with an error; webhook in the `ERROR` form (422 detail) |
//! | `[sim:payload-error]` | webhook `status: "OK"`, `payload: null`, `payload_error` |
//! | `[sim:drop-webhook]` | completes, no webhook (status and response still work) |
//! | `[sim:dup-webhook]` | the webhook is delivered twice, same body and request id |
//! | `[sim:early-webhook]` | completes at once; the first webhook attempt finishes before submit answers |
//! | `[sim:delay=MS]` / `[sim:queue=MS]` | this request's run / queue delay in milliseconds |
//! | `[sim:slow-answer=MS]` | queued at once; the answer to the submit comes MS later |
//! | `[sim:fallback=ENDPOINT]` | unless the submit disabled fallbacks, runs on `ENDPOINT` (e.g. `fal-ai/flux-2/flash`) and says so in its webhook's `endpoint_id` |
//!
//! With [`SimConfig::concurrency`] set, that many requests run at once and a freed runner goes
//! to the first queued `normal` request before any `low` one. `POST /_sim/rotate-key` (or
//! [`SimHandle::rotate_signing_key`]) rotates the webhook-signing key as fal does.
//!
//! Random faults of the same kinds come from [`FaultRates`] (seeded; see [`SimHandle::set_faults`]
//! or `PUT /_sim/faults`). A prompt containing [`SimConfig::nsfw_trigger`] (case-insensitive, with
//! the safety checker on) yields black images flagged in `has_nsfw_concepts`.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

mod cli;
mod config;
mod faults;
mod images;
mod keys;
mod markers;
mod output;
mod queue;
mod requests;
mod routes;
mod runner;
mod runners;
mod webhook;

pub use cli::{run_standalone, SimArgs};
pub use config::{fal_retry_schedule, parse_durations, SimConfig};
pub use faults::{FaultRates, InvalidFaultRates};

/// Counters, readable through [`SimHandle::stats`] and `GET /_sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Submissions accepted.
    pub submissions: u64,
    /// Of those, sent with `X-Fal-Queue-Priority: low`.
    pub low_priority: u64,
    /// Of those, sent with `X-Fal-Disable-Fallbacks`.
    pub fallbacks_disabled: u64,
    /// Of those, run on a fallback endpoint (`[sim:fallback=…]`, fallbacks allowed).
    pub fallbacks: u64,
    /// Requests whose start timeout (`X-Fal-Request-Timeout`) passed while they were queued.
    pub start_timeouts: u64,
    /// Submissions answered with an error (auth, validation, injected faults).
    pub rejected: u64,
    pub completed: u64,
    /// Cancellations accepted (202).
    pub cancels: u64,
    /// Webhook POSTs made, retries and duplicates included.
    pub webhooks_attempted: u64,
    /// Webhook deliveries that got a 2xx.
    pub webhooks_delivered: u64,
    /// Deliveries given up after the whole retry schedule.
    pub webhooks_failed: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    submissions: AtomicU64,
    low_priority: AtomicU64,
    fallbacks_disabled: AtomicU64,
    fallbacks: AtomicU64,
    start_timeouts: AtomicU64,
    rejected: AtomicU64,
    completed: AtomicU64,
    cancels: AtomicU64,
    webhooks_attempted: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhooks_failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStats {
            submissions: get(&self.submissions),
            low_priority: get(&self.low_priority),
            fallbacks_disabled: get(&self.fallbacks_disabled),
            fallbacks: get(&self.fallbacks),
            start_timeouts: get(&self.start_timeouts),
            rejected: get(&self.rejected),
            completed: get(&self.completed),
            cancels: get(&self.cancels),
            webhooks_attempted: get(&self.webhooks_attempted),
            webhooks_delivered: get(&self.webhooks_delivered),
            webhooks_failed: get(&self.webhooks_failed),
        }
    }
}

/// Shared by every handler and lifecycle task.
/// A drawn file's width, height, format and blackness.
pub(crate) type DrawnKey = (u32, u32, &'static str, bool);

pub(crate) struct SimState {
    config: SimConfig,
    base_url: String,
    keys: keys::SigningKeys,
    /// Runner slots, handed out normal priority first.
    runners: runners::Runners,
    store: queue::Store,
    faults: faults::Faults,
    stats: Counters,
    http: reqwest::Client,
    /// The runtime that called [`start`]: lifecycle tasks run there, not on actix's workers.
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
    /// Files drawn once, by size, format and blackness (with [`SimConfig::draw_once`]).
    drawn: std::sync::Mutex<std::collections::HashMap<DrawnKey, bytes::Bytes>>,
}

impl SimState {
    /// Sleeps unless the simulator stops first; false when stopping. Zero returns at once.
    async fn sleep(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return !self.shutdown.is_cancelled();
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// A running simulator. Dropping it stops the server without waiting; prefer [`SimHandle::stop`].
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    server: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Binds `config.bind` and serves the simulator on the current tokio runtime.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    config.faults.validate()?;
    let listener = std::net::TcpListener::bind(config.bind).with_context(|| {
        format!(
            "fal simulator: cannot listen on {} (is the port already in use?)",
            config.bind
        )
    })?;
    let addr = listener.local_addr()?;
    let base_url = match &config.public_base_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{addr}"),
    };
    let signing_key = match config.signing_seed {
        Some(seed) => SigningKey::from_bytes(&seed),
        None => SigningKey::generate(&mut rand::rngs::OsRng),
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.webhook_timeout)
        .build()
        .context("fal simulator: building the webhook HTTP client")?;
    let state = Arc::new(SimState {
        base_url,
        keys: keys::SigningKeys::new(signing_key),
        runners: runners::Runners::new(config.concurrency),
        store: queue::Store::default(),
        faults: faults::Faults::new(config.faults.clone()),
        stats: Counters::default(),
        http,
        rt: tokio::runtime::Handle::current(),
        shutdown: CancellationToken::new(),
        drawn: Default::default(),
        config,
    });

    let data = web::Data::from(state.clone());
    let jwks_path = state.config.jwks_path.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // Edit inputs may carry data URIs: allow bodies well beyond actix's 256 KiB default.
            .app_data(web::PayloadConfig::new(64 << 20))
            .configure(|cfg| routes::configure(cfg, &jwks_path))
    })
    .workers(state.config.workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .context("fal simulator: starting the HTTP server")?
    .run();
    let server_handle = server.handle();
    let task = tokio::spawn(server);
    tokio::spawn(janitor(state.clone()));
    tracing::info!(%addr, base_url = %state.base_url, "fal simulator listening");
    Ok(SimHandle {
        addr,
        state,
        server: server_handle,
        task: Some(task),
    })
}

/// Expires finished requests like fal's result retention.
async fn janitor(state: Arc<SimState>) {
    let period = (state.config.result_retention / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(60));
    while state.sleep(period).await {
        let evicted = state.store.evict(state.config.result_retention);
        if evicted > 0 {
            tracing::debug!(evicted, "fal simulator: expired finished requests");
        }
    }
}

impl SimHandle {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the queue API: point `FLUXGATE_FAL_QUEUE_URL` here.
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// Where the JWKS with the webhook-signing key is served.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.state.base_url, self.state.config.jwks_path)
    }

    /// The raw Ed25519 public key that verifies webhook signatures.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.state.keys.current().verifying_key().to_bytes()
    }

    /// Rotates the webhook-signing key as fal rotates its own (see `keys.rs`); returns the new
    /// key's id. Also `POST /_sim/rotate-key`.
    pub fn rotate_signing_key(&self) -> String {
        self.state.keys.rotate()
    }

    pub fn stats(&self) -> SimStats {
        self.state.stats.snapshot()
    }

    /// Replaces the random fault rates (and reseeds their RNG).
    pub fn set_faults(&self, rates: FaultRates) -> Result<(), InvalidFaultRates> {
        self.state.faults.set(rates)
    }

    /// Stops accepting, cancels pending lifecycles and webhook retries, and waits for the server.
    pub async fn stop(mut self) {
        self.state.shutdown.cancel();
        self.server.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.state.shutdown.cancel();
            // Sending the stop command is synchronous; the returned future only waits for it.
            drop(self.server.stop(false));
        }
    }
}
