//! `pipeline`: the whole path at a fixed offered rate — `POST /v1/generations` (open loop) →
//! submission worker → fal simulator (zero latency) → signed callback → one-transaction persist
//! and fan-out → delivery worker → S local subscribers. Latencies are joined in the database:
//! the callback's `fal_callbacks.received_at` (when its request reached fluxgate, before the
//! body was read and verified) and the API request's send time, to each subscriber's arrival.
//!
//! `copies` is the same path with an image store: the copier stage downloads each result's
//! image from the simulator's CDN and writes it to a directory before the completion is
//! announced, so its figures say what the stage adds.
//!
//! With history preloaded (`--preload`), a second measured run meets a retention sweep (30
//! days, as by default) working through that history, let work and made rest in alternate 1 s
//! slots: the p99 of the deliveries whose callback came while it worked is set against that of
//! those that came while it rested, in the same run, so the VM's drift between runs does not
//! decide the figure. A third run once the sweep is over shows what it leaves behind.
use crate::domain::ids::{EventId, GenerationId};
use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::{
    env::{self, Fluxgate},
    http, load,
    receiver::Receiver,
    report::{Basis, Percentiles, ScenarioResult},
    Sizes,
};
use crate::startup::Workers;

/// Whether the path has a copier stage in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// No image store (the results' URLs are fal's).
    Off,
    /// Copies to a temporary directory, downloaded from the simulator's CDN.
    ToDirectory,
}

pub async fn run(db_url: &str, sizes: &Sizes, copies: Copies) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new(match copies {
        Copies::Off => "pipeline",
        Copies::ToDirectory => "copies",
    });
    let s = sizes.subscriptions.max(1) as u64;
    let rate = f64::from(sizes.rate.max(1));
    let sim = env::start_sim_with(sizes.fal_latency).await?;
    let workers = Workers {
        submitter: true,
        deliverer: true,
        reconciler: false,
        copier: true,
        monitor: false,
    };
    // In memory where the machine has it: a deployment's store is another machine's disk, and
    // 200 files a second written to this one would compete with Postgres's WAL for it.
    let shm = std::path::Path::new("/dev/shm");
    let store = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let mut settings = env::settings(&sim)?;
    if copies == Copies::ToDirectory {
        settings.storage.images = Some(store.path().display().to_string());
        settings.storage.image_hosts =
            crate::config::HostList::parse("127.0.0.1").map_err(anyhow::Error::msg)?;
    }
    let app = Fluxgate::start_with(db_url, settings, workers).await?;
    let (tenant_id, key) = env::tenant(&app.pool, "bench").await?;
    let receiver = Receiver::start(true).await?;
    env::subscribe(
        &app.pool,
        tenant_id,
        &receiver,
        s as usize,
        sizes.max_in_flight,
    )
    .await?;
    let auth = format!("Bearer {key}");
    let make = |i: usize| {
        let body =
            json!({"prompt": format!("bench lighthouse #{i}"), "image_size": "landscape_4_3"});
        http::request(
            "POST",
            "/v1/generations",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };

    // Warm-up: connections, prepared statements and the JWKS cache, outside the figures.
    let warm = (rate as usize / 4).clamp(1, 50);
    let warm_ok = accepted(&load::open_loop(app.addr, rate, warm, make).await).len() as u64;
    receiver
        .wait_for(warm_ok * s, Duration::from_secs(30))
        .await;

    let count = (rate * sizes.duration.as_secs_f64()).round().max(1.0) as usize;
    let run = Run {
        app: &app,
        receiver: &receiver,
        rate,
        count,
        per_request: s,
    };
    let quiet = run.measure(make).await?;
    let swept = if sizes.preload > 0 {
        let pool = app.pool.clone();
        let (gate, gated) = tokio::sync::watch::channel(true);
        let sweep = tokio::spawn(async move {
            let settings = crate::config::Settings::for_dev();
            let started = SystemTime::now();
            let swept = crate::ops::retention::Sweeper::gated(gated)
                .sweep(&pool, &settings, None, crate::ops::retention::PAUSE)
                .await;
            (swept, started, SystemTime::now())
        });
        let alternating = tokio_util::sync::CancellationToken::new();
        let slots = tokio::spawn(alternate(gate, SLOT, alternating.clone()));
        let during = run.measure(make).await?;
        alternating.cancel();
        let open = slots.await?;
        let (swept, from, to) = sweep.await?;
        // A third run once the sweep is over, reported beside the others: it meets what the
        // sweep leaves behind — the checkpoint its WAL brings forward, autovacuum of what it
        // deleted — which the second run, measured while it works, does not see (at 1 M rows
        // the third run's p99 was 189 ms once, against 7.4 before and 7.7 during the sweep).
        let after = run.measure(make).await?;
        Some((during, after, swept?, from, to, open))
    } else {
        None
    };

    let cb = Percentiles::of(quiet.since_callback());
    let api = Percentiles::of(quiet.since_api());
    let accept = Percentiles::of(quiet.answers.iter().map(|a| a.latency).collect());
    r.figure("offered rate", rate, "generations/s", Basis::None, None);
    let mut notes = Vec::new();
    if copies == Copies::ToDirectory {
        notes.push(
            "each result's 1024×768 PNG is downloaded from the simulator (which serves one it drew once, as a CDN serves files) and written to a directory before it is announced"
                .to_owned(),
        );
    }
    let fal_ms = sizes.fal_latency.as_millis() as u64;
    if fal_ms > 0 {
        notes.push(format!(
            "the simulated fal runs each request for {fal_ms} ms: results never race fal's answer to the submit"
        ));
    }
    // Without a store the path is the one the latency targets are set for; with one, the
    // copier's download and write are in it, and its figures are reported on their own.
    let targets = match copies {
        Copies::Off => [Some(1.5), Some(5.0), Some(15.0)],
        Copies::ToDirectory => [None, None, None],
    };
    r.latency(&format!("callback → subscriber ({s} subs)"), &cb, targets);
    r.latency("API request → subscriber", &api, [None, None, None]);
    r.figure(
        "POST /v1/generations → 202 p99",
        accept.p99,
        "ms",
        Basis::LatencyP99,
        None,
    );
    let mut details = json!({
        "rate": rate, "fal_latency_ms": fal_ms, "requests": count, "subscriptions": s, "warmup_requests": warm,
        "callback_to_subscriber_ms": cb, "api_to_subscriber_ms": api, "api_202_ms": accept,
    });
    quiet.check(&mut r, "");
    if let Some((during, after, swept, from, to, open)) = &swept {
        during.check(&mut r, " (during the sweep)");
        after.check(&mut r, " (after the sweep)");
        let working = |at: SystemTime| (*from..=*to).contains(&at);
        let in_open = |at: SystemTime| open.iter().any(|(a, b)| (*a..*b).contains(&at));
        // A shut slot's first moments still carry the batch that was running as it shut.
        let in_shut = |at: SystemTime| !open.iter().any(|(a, b)| (*a..*b + SPILL).contains(&at));
        let on = Percentiles::of(during.since_callback_where(|at| working(at) && in_open(at)));
        let off = Percentiles::of(during.since_callback_where(|at| working(at) && in_shut(at)));
        let later = Percentiles::of(after.since_callback());
        let moved = on.p99 - off.p99;
        r.figure(
            "callback → subscriber p99, sweep working / resting (alternate 1 s slots of one run)",
            on.p99,
            "ms",
            Basis::None,
            None,
        );
        r.figure(
            "  … its p99 in the resting slots",
            off.p99,
            "ms",
            Basis::None,
            None,
        );
        r.figure(
            "callback → subscriber p50 in a run after it",
            later.p50,
            "ms",
            Basis::None,
            None,
        );
        r.figure(
            "callback → subscriber p99 in a run after it",
            later.p99,
            "ms",
            Basis::None,
            None,
        );
        // The 2 ms budget is the store-less path's, as its latency targets are; with a store
        // the figure is reported on its own.
        r.figure(
            "p99 moved by the sweep (working − resting slots)",
            moved,
            "ms",
            Basis::None,
            (copies == Copies::Off).then_some(("≤ 2 ms", moved <= 2.0)),
        );
        let rows = swept.deliveries + swept.events + swept.callbacks;
        r.figure(
            "rows pruned by that sweep",
            rows as f64,
            "rows",
            Basis::None,
            None,
        );
        let took = to.duration_since(*from).unwrap_or_default();
        notes.push(format!(
            "a second run of {count} requests met a retention sweep that pruned {} deliveries (with attempts), {} events and {} callbacks in {:.1} s; during that run the sweep was let work and made rest in alternate {} ms slots, and the p99 moved is that of the deliveries whose callback came in a working slot ({}) against a resting one ({}; the first {} ms of each left out, as the batch under way runs on), so both meet the machine in the same state; a third run followed it",
            swept.deliveries, swept.events, swept.callbacks, took.as_secs_f64(), SLOT.as_millis(), on.count, off.count, SPILL.as_millis()
        ));
        details["sweep_working_callback_to_subscriber_ms"] = json!(on);
        details["sweep_resting_callback_to_subscriber_ms"] = json!(off);
        details["after_sweep_callback_to_subscriber_ms"] = json!(later);
        // The second run against the first, as this figure was once computed: it sets two runs
        // apart in time, and a ±35 % swing of this VM's speed between them outweighs the sweep.
        details["second_run_p99_minus_first_ms"] =
            json!(Percentiles::of(during.since_callback_where(working)).p99 - cb.p99);
    }
    if copies == Copies::ToDirectory {
        let (files, bytes) = stored(store.path());
        r.check(
            "images copied",
            quiet.sent.len()
                + swept
                    .as_ref()
                    .map_or(0, |s| s.0.sent.len() + s.1.sent.len())
                + warm_ok as usize,
            files,
        );
        notes.push(format!(
            "{files} copies of {:.0} KB each",
            bytes as f64 / files.max(1) as f64 / 1024.0
        ));
    }
    r.note = notes.join("; ");
    r.details = details;
    app.stop().await;
    sim.stop().await;
    drop(store);
    Ok(r)
}

/// How long the sweep is let work, then made rest, in turn, during the second run.
const SLOT: Duration = Duration::from_secs(1);
/// The start of a resting slot left out of its figure: the batch under way when it began runs
/// on (a batch takes tens of milliseconds at 10 M rows; its rest is longer).
const SPILL: Duration = Duration::from_millis(250);

/// Opens and shuts `gate` in turn, `slot` each, until `stop`; leaves it open. Returns the open
/// slots, as wall-clock intervals.
async fn alternate(
    gate: tokio::sync::watch::Sender<bool>,
    slot: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(SystemTime, SystemTime)> {
    let mut open = Vec::new();
    loop {
        let opened = SystemTime::now();
        gate.send_replace(true);
        let stopped = tokio::select! {
            _ = tokio::time::sleep(slot) => false,
            _ = stop.cancelled() => true,
        };
        open.push((opened, SystemTime::now()));
        if stopped {
            break;
        }
        gate.send_replace(false);
        tokio::select! {
            _ = tokio::time::sleep(slot) => {}
            _ = stop.cancelled() => break,
        }
    }
    gate.send_replace(true);
    open
}

/// Files and bytes under `dir` (one folder per generation).
fn stored(dir: &std::path::Path) -> (usize, u64) {
    let mut found = (0, 0);
    for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(folder.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.0 += 1;
            found.1 += file.metadata().map_or(0, |m| m.len());
        }
    }
    found
}

/// One measured stretch of offered load, and what its requests led to.
struct Run<'a> {
    app: &'a Fluxgate,
    receiver: &'a Receiver,
    rate: f64,
    count: usize,
    per_request: u64,
}

struct Measured {
    answers: Vec<load::Answer>,
    sent: HashMap<GenerationId, SystemTime>,
    /// event id → (generation, when its callback was received), for this run's generations.
    joined: HashMap<EventId, (GenerationId, SystemTime)>,
    /// (arrival, event id) of this run's deliveries.
    arrivals: Vec<(SystemTime, EventId)>,
    received: u64,
    count: usize,
    per_request: u64,
}

impl Run<'_> {
    async fn measure(&self, make: impl Fn(usize) -> bytes::Bytes) -> anyhow::Result<Measured> {
        let before = self.receiver.count();
        let answers = load::open_loop(self.app.addr, self.rate, self.count, make).await;
        let sent: HashMap<GenerationId, SystemTime> = accepted(&answers).into_iter().collect();
        let expected = sent.len() as u64 * self.per_request;
        let received = self
            .receiver
            .wait_for(before + expected, Duration::from_secs(60))
            .await
            - before;
        let joined = callback_times(&self.app.pool, &sent).await?;
        let arrivals = self
            .receiver
            .arrivals()
            .into_iter()
            .filter_map(|(evt, at)| {
                let e = evt.parse::<EventId>().ok()?;
                joined.contains_key(&e).then_some((at, e))
            })
            .collect();
        Ok(Measured {
            answers,
            sent,
            joined,
            arrivals,
            received,
            count: self.count,
            per_request: self.per_request,
        })
    }
}

impl Measured {
    fn since(&self, pick: impl Fn(&(GenerationId, SystemTime)) -> SystemTime) -> Vec<Duration> {
        self.arrivals
            .iter()
            .map(|(at, e)| at.duration_since(pick(&self.joined[e])).unwrap_or_default())
            .collect()
    }

    fn since_callback(&self) -> Vec<Duration> {
        self.since(|(_, cb)| *cb)
    }

    fn since_api(&self) -> Vec<Duration> {
        self.since(|(g, _)| self.sent[g])
    }

    /// Callback → subscriber of the deliveries whose callback was received at a time `when`
    /// accepts.
    fn since_callback_where(&self, when: impl Fn(SystemTime) -> bool) -> Vec<Duration> {
        self.arrivals
            .iter()
            .filter(|(_, e)| when(self.joined[e].1))
            .map(|(at, e)| at.duration_since(self.joined[e].1).unwrap_or_default())
            .collect()
    }

    fn check(&self, r: &mut ScenarioResult, suffix: &str) {
        let expected = self.sent.len() as u64 * self.per_request;
        r.check(
            &format!("requests answered 202{suffix}"),
            self.count,
            self.sent.len(),
        );
        r.check(
            &format!("generations completed and announced{suffix}"),
            self.sent.len(),
            self.joined.len(),
        );
        r.check(
            &format!("deliveries received{suffix}"),
            expected,
            self.received,
        );
        r.check(
            &format!("deliveries joined to their callback{suffix}"),
            expected,
            self.arrivals.len(),
        );
    }
}

/// (generation id, send time) of every request answered 202.
fn accepted(answers: &[load::Answer]) -> Vec<(GenerationId, SystemTime)> {
    answers
        .iter()
        .filter(|a| a.status == 202)
        .filter_map(|a| {
            let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
            let id = v["id"].as_str()?.parse::<GenerationId>().ok()?;
            Some((id, a.sent_at))
        })
        .collect()
}

/// event id → (generation id, when its callback was received), for the given generations.
async fn callback_times(
    pool: &PgPool,
    sent: &HashMap<GenerationId, SystemTime>,
) -> anyhow::Result<HashMap<EventId, (GenerationId, SystemTime)>> {
    let gens: Vec<GenerationId> = sent.keys().copied().collect();
    let rows: Vec<(EventId, GenerationId, DateTime<Utc>)> = sqlx::query_as(
        "SELECT e.id, e.generation_id, c.received_at FROM events e
         JOIN fal_callbacks c ON c.generation_id = e.generation_id AND c.announced
         WHERE e.type = 'generation.completed' AND e.generation_id = ANY($1)",
    )
    .bind(&gens)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(e, g, at)| (e, (g, SystemTime::from(at))))
        .collect())
}
