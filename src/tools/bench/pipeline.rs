//! `pipeline`: the whole path at a fixed offered rate — `POST /v1/generations` (open loop) →
//! submission worker → fal simulator (zero latency) → signed callback → one-transaction persist
//! and fan-out → delivery worker → S local subscribers. Latencies are joined in the database:
//! the callback's `fal_callbacks.received_at` (when its request reached fluxgate, before the
//! body was read and verified) and the API request's send time, to each subscriber's arrival.
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

pub async fn run(db_url: &str, sizes: &Sizes) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new("pipeline");
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
    let app = Fluxgate::start(db_url, &sim, workers).await?;
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
    let before = receiver.count();

    let count = (rate * sizes.duration.as_secs_f64()).round().max(1.0) as usize;
    // With history preloaded, a retention sweep (30 days, as by default) runs during the run.
    let sweep = (sizes.preload > 0).then(|| {
        let pool = app.pool.clone();
        tokio::spawn(async move {
            let settings = crate::config::Settings::for_dev();
            let pause = Duration::from_millis(20);
            let started = std::time::Instant::now();
            let swept = crate::ops::retention::Sweeper::default()
                .sweep(&pool, &settings, None, pause)
                .await;
            (swept, started.elapsed())
        })
    });
    let answers = load::open_loop(app.addr, rate, count, make).await;
    let sent: HashMap<GenerationId, SystemTime> = accepted(&answers).into_iter().collect();
    let expected = sent.len() as u64 * s;
    let got = receiver
        .wait_for(before + expected, Duration::from_secs(60))
        .await
        - before;
    let joined = callback_times(&app.pool, &sent).await?;
    if let Some(sweep) = sweep {
        let (swept, took) = sweep.await?;
        let swept = swept?;
        let rows = swept.deliveries + swept.events + swept.callbacks;
        r.figure(
            "rows pruned by a retention sweep during the run",
            rows as f64,
            "rows",
            Basis::None,
            None,
        );
        r.note = format!(
            "a retention sweep ran alongside: {} deliveries (with attempts), {} events, {} callbacks in {:.1} s",
            swept.deliveries, swept.events, swept.callbacks, took.as_secs_f64()
        );
    }

    let (mut from_callback, mut from_api) = (Vec::new(), Vec::new());
    for (evt, at) in receiver.arrivals() {
        let Some((g, cb)) = evt.parse::<EventId>().ok().and_then(|e| joined.get(&e)) else {
            continue;
        };
        let since = |t: SystemTime| at.duration_since(t).unwrap_or_default();
        from_callback.push(since(*cb));
        from_api.push(since(sent[g]));
    }
    let cb = Percentiles::of(from_callback);
    let api = Percentiles::of(from_api);
    let accept = Percentiles::of(answers.iter().map(|a| a.latency).collect());
    r.figure("offered rate", rate, "generations/s", Basis::None, None);
    let fal_ms = sizes.fal_latency.as_millis() as u64;
    if fal_ms > 0 {
        let fal = format!(
            "the simulated fal runs each request for {fal_ms} ms: results never race fal's answer to the submit"
        );
        r.note = if r.note.is_empty() {
            fal
        } else {
            format!("{}; {fal}", r.note)
        };
    }
    r.latency(
        &format!("callback → subscriber ({s} subs)"),
        &cb,
        [Some(1.5), Some(5.0), Some(15.0)],
    );
    r.latency("API request → subscriber", &api, [None, None, None]);
    r.figure(
        "POST /v1/generations → 202 p99",
        accept.p99,
        "ms",
        Basis::LatencyP99,
        None,
    );
    r.details = json!({
        "rate": rate, "fal_latency_ms": fal_ms, "requests": count, "subscriptions": s, "warmup_requests": warm,
        "callback_to_subscriber_ms": cb, "api_to_subscriber_ms": api, "api_202_ms": accept,
    });

    r.check("requests answered 202", count, sent.len());
    r.check(
        "generations completed and announced",
        sent.len(),
        joined.len(),
    );
    r.check("deliveries received", expected, got);
    r.check("deliveries joined to their callback", expected, cb.count);
    app.stop().await;
    sim.stop().await;
    Ok(r)
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
