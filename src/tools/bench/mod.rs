//! `fluxgate bench`: a self-contained, reproducible benchmark. It starts a durable throwaway
//! Postgres (or uses DATABASE_URL), the fal simulator with zero latency, fluxgate in-process and
//! fast local receivers, runs the chosen scenarios, each on a fresh migrated database, checks
//! that everything was stored and delivered, and prints each figure beside this machine's own
//! "POST → INSERT → 202" baseline. See README.md, "Performance".
pub mod baseline;
pub mod cpu;
pub mod deliver;
pub mod env;
pub mod http;
pub mod ingest;
pub mod load;
pub mod pipeline;
pub mod preload;
pub mod receiver;
pub mod report;
mod setup;
pub mod sse;
pub mod sse_clients;

use std::time::Duration;

use clap::{Args, ValueEnum};

pub use report::{Baseline, ScenarioResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Ingest,
    Deliver,
    Pipeline,
    /// `pipeline` with the copier stage: every result's image copied to a directory first.
    Copies,
    Sse,
    Baseline,
    All,
    /// Internal: the SSE clients, run as a child process by `sse`.
    #[value(hide = true)]
    SseClients,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Connections of the closed-loop load generator (ingest, baseline).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Subscriptions each event fans out to.
    #[arg(long, default_value_t = 4)]
    pub subscriptions: usize,
    /// Callbacks posted by `ingest` (and requests by `baseline`).
    #[arg(long, default_value_t = 10_000)]
    pub callbacks: usize,
    /// Backlog drained by `deliver`.
    #[arg(long, default_value_t = 20_000)]
    pub deliveries: usize,
    /// Offered rate of `pipeline`, generations per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Length of `pipeline`'s measured run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent SSE streams.
    #[arg(long, default_value_t = 10_000)]
    pub sse_clients: usize,
    /// Events per second sent to every SSE stream.
    #[arg(long, default_value_t = 10)]
    pub sse_rate: u32,
    /// Seconds of events in `sse`.
    #[arg(long, default_value_t = 5)]
    pub sse_duration: u64,
    /// `max_in_flight` of each subscription (the API's default is 8).
    #[arg(long, default_value_t = 8)]
    pub max_in_flight: i32,
    /// How long the simulated fal takes to run a request in `pipeline` (the default, 0, makes
    /// every result race fal's answer to the submit, which real fal never does).
    #[arg(long, default_value_t = 0)]
    pub fal_latency_ms: u64,
    /// Rows of history (events, deliveries, attempts; a quarter as many generations and fal
    /// callbacks) each scenario's database holds before it starts, written outside the timing.
    #[arg(long, default_value_t = 0)]
    pub preload: u64,
    /// Log at info level (JSON, discarded) as `serve` would, to include logging's CPU cost.
    #[arg(long)]
    pub logs: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Postgres to use instead of a throwaway durable one (needs CREATEDB).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[arg(long, hide = true)]
    pub sse_url: Option<String>,
    #[arg(long, hide = true)]
    pub sse_events: Option<usize>,
    #[arg(long, hide = true, default_value_t = 60)]
    pub sse_timeout_secs: u64,
}

/// The sizes of a run; `Default` is the CLI's defaults.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub concurrency: usize,
    pub subscriptions: usize,
    pub callbacks: usize,
    pub deliveries: usize,
    pub rate: u32,
    pub duration: Duration,
    pub sse_clients: usize,
    pub sse_rate: u32,
    pub sse_duration: Duration,
    pub max_in_flight: i32,
    pub fal_latency: Duration,
    pub preload: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            concurrency: 64,
            subscriptions: 4,
            callbacks: 10_000,
            deliveries: 20_000,
            rate: 200,
            duration: Duration::from_secs(10),
            sse_clients: 10_000,
            sse_rate: 10,
            sse_duration: Duration::from_secs(5),
            max_in_flight: 8,
            fal_latency: Duration::ZERO,
            preload: 0,
        }
    }
}

impl From<&BenchArgs> for Sizes {
    fn from(a: &BenchArgs) -> Self {
        Sizes {
            concurrency: a.concurrency.max(1),
            subscriptions: a.subscriptions.max(1),
            callbacks: a.callbacks.max(1),
            deliveries: a.deliveries.max(1),
            rate: a.rate.max(1),
            duration: Duration::from_secs(a.duration.max(1)),
            sse_clients: a.sse_clients.max(1),
            sse_rate: a.sse_rate.max(1),
            sse_duration: Duration::from_secs(a.sse_duration.max(1)),
            max_in_flight: a.max_in_flight.clamp(1, 256),
            fal_latency: Duration::from_millis(a.fal_latency_ms),
            preload: a.preload,
        }
    }
}

/// The `bench` command.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == Scenario::SseClients {
        return run_sse_clients(&args).await;
    }
    setup::init_logs(args.logs);
    let sizes = Sizes::from(&args);
    let report = setup::run_all(&args, &sizes).await?;
    if args.json {
        println!("{}", report.json);
    } else {
        println!("{}", report.table);
    }
    if !report.all_ok {
        anyhow::bail!("some correctness checks failed: the figures above do not count");
    }
    Ok(())
}

async fn run_sse_clients(args: &BenchArgs) -> anyhow::Result<()> {
    let url = args
        .sse_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--sse-url is required"))?;
    let key = std::env::var(sse_clients::KEY_ENV)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let events = args.sse_events.unwrap_or(1);
    let timeout = Duration::from_secs(args.sse_timeout_secs);
    let announce = tokio::spawn(async move {
        if let Ok(n) = rx.await {
            println!("ready {n}");
        }
    });
    let report = sse_clients::run(url, &key, args.sse_clients, events, timeout, Some(tx)).await;
    let _ = announce.await;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
