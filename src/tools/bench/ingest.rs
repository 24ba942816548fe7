//! `ingest`: signed fal callbacks for pre-created `queued` generations, posted closed-loop to
//! `POST /hooks/fal/{id}`; each is verified, stored in one transaction with its event, and
//! fanned out to S subscriptions. The delivery worker is off: this measures the callback path,
//! and the deliveries it creates are checked as `pending` rows.
use crate::domain::ids::GenerationId;
use crate::domain::ids::TenantId;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    env::{self, Fluxgate},
    http, load,
    receiver::Receiver,
    report::{Basis, Percentiles, ScenarioResult},
    Sizes,
};
use crate::{
    fal::signature::{self, sign_hex},
    startup::Workers,
};

pub async fn run(db_url: &str, sizes: &Sizes) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new("ingest");
    let n = sizes.callbacks;
    let warmup = (n / 10).clamp(1, 500);
    let s = sizes.subscriptions;
    let sim = env::start_sim().await?;
    let app = Fluxgate::start(db_url, &sim, Workers::NONE).await?;
    let (tenant_id, _) = env::tenant(&app.pool, "bench").await?;
    let receiver = Receiver::start(false).await?;
    env::subscribe(&app.pool, tenant_id, &receiver, s, sizes.max_in_flight).await?;

    let gens = create_queued(&app.pool, tenant_id, warmup + n).await?;
    let mut requests: Vec<Bytes> = gens
        .iter()
        .map(|(id, rid)| signed(&app.pipeline.callbacks.path(*id, false), rid))
        .collect();
    let timed = Arc::new(requests.split_off(warmup));
    let warm = load::closed_loop(app.addr, Arc::new(requests), sizes.concurrency, 200).await;
    let rss_before = env::rss_mib().unwrap_or(0.0);
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(rss_peak(sampling.clone()));
    let cpu = super::cpu::Cpu::now();
    let run = load::closed_loop(app.addr, timed, sizes.concurrency, 200).await;
    let (own_us, pg_us) = super::cpu::Cpu::per_unit_since(cpu, n as u64);
    sampling.cancel();
    let rss = sampler.await.unwrap_or(0.0).max(rss_before);
    let rate = n as f64 / run.elapsed.as_secs_f64();

    r.figure(
        &format!("callbacks accepted+stored ({s} subs each)"),
        rate,
        "callbacks/s",
        Basis::Throughput,
        Some(("≥ 5000/s", rate >= 5000.0)),
    );
    r.figure(
        "RSS peak under the burst (whole process)",
        rss,
        "MiB",
        Basis::None,
        Some(("≤ 100 MiB", rss <= 100.0)),
    );
    r.figure(
        "CPU per callback, bench process",
        own_us,
        "µs",
        Basis::None,
        None,
    );
    r.figure("CPU per callback, Postgres", pg_us, "µs", Basis::None, None);
    let lat = Percentiles::of(run.latencies());
    r.figure("callback answer p50", lat.p50, "ms", Basis::None, None);
    r.figure("callback answer p99", lat.p99, "ms", Basis::None, None);
    let answered = run.count_status(200);
    r.details = json!({
        "callbacks": n, "warmup": warmup, "concurrency": sizes.concurrency,
        "subscriptions": s, "elapsed_s": run.elapsed.as_secs_f64(), "answer_latency_ms": lat,
        "rss_mib": {"before": rss_before, "peak": rss},
        "first_unexpected_answer": run.first_unexpected.or(warm.first_unexpected),
    });
    r.note = "delivery worker off: deliveries are created (pending), not sent. The RSS is the \
        bench process's: fluxgate plus the load generator and its pre-signed callbacks"
        .into();

    let total = (warmup + n) as i64;
    r.check("callbacks answered 200", n, answered);
    verify(&app.pool, &mut r, tenant_id, total, s as i64).await?;
    app.stop().await;
    sim.stop().await;
    Ok(r)
}

/// The process's peak RSS, sampled every 20 ms until `stop`.
async fn rss_peak(stop: tokio_util::sync::CancellationToken) -> f64 {
    let mut peak = 0.0f64;
    while !stop.is_cancelled() {
        peak = peak.max(env::rss_mib().unwrap_or(0.0));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    peak
}

/// Everything the callbacks should have left behind, counted in the database (the scenario's
/// tenant's rows: `--preload` history belongs to another).
async fn verify(
    pool: &PgPool,
    r: &mut ScenarioResult,
    tenant_id: TenantId,
    total: i64,
    s: i64,
) -> anyhow::Result<()> {
    let (completed, callbacks, events, deliveries): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM generations WHERE status = 'completed' AND tenant_id = $1),
                (SELECT count(*) FROM fal_callbacks c JOIN generations g ON g.id = c.generation_id
                  WHERE c.announced AND g.tenant_id = $1),
                (SELECT count(*) FROM events WHERE type = 'generation.completed' AND tenant_id = $1),
                (SELECT count(*) FROM deliveries WHERE status = 'pending' AND tenant_id = $1)",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await?;
    r.check("generations completed", total, completed);
    r.check("callbacks recorded", total, callbacks);
    r.check("events appended", total, events);
    r.check("deliveries created (pending)", total * s, deliveries);
    Ok(())
}

/// Inserts `n` generations as fal has queued them, in one statement: (id, fal request id).
pub async fn create_queued(
    pool: &PgPool,
    tenant_id: TenantId,
    n: usize,
) -> anyhow::Result<Vec<(GenerationId, String)>> {
    let ids: Vec<GenerationId> = (0..n).map(|_| GenerationId::new()).collect();
    let rids: Vec<String> = (0..n).map(|_| Uuid::new_v4().to_string()).collect();
    let inputs: Vec<String> = (0..n)
        .map(|i| env::generation_input(i).to_string())
        .collect();
    sqlx::query(
        "INSERT INTO generations (id, tenant_id, status, model, input, estimated_cost_micros,
                                  fal_request_id, submitted_at, seed)
         SELECT t.id, $1, 'queued', 'fal-ai/flux-2/turbo', t.input::jsonb, 8000, t.rid, now(), t.n
         FROM unnest($2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS t(id, rid, input, n)",
    )
    .bind(tenant_id)
    .bind(&ids)
    .bind(&rids)
    .bind(&inputs)
    .execute(pool)
    .await?;
    Ok(ids.into_iter().zip(rids).collect())
}

/// The callback fal would send for a completed request, signed as fal signs it.
/// A signed fal callback for `request_id`, posted to `path` (a generation's callback URL).
pub fn signed(path: &str, request_id: &str) -> Bytes {
    let body = json!({
        "request_id": request_id, "gateway_request_id": request_id, "status": "OK",
        "payload": {
            "images": [{"url": format!("https://v3.fal.media/files/{request_id}/0.png"),
                        "width": 1024, "height": 768, "content_type": "image/png",
                        "file_name": format!("{request_id}-0.png")}],
            "timings": {"inference": 0.0}, "seed": 42, "has_nsfw_concepts": [false],
            "prompt": "bench lighthouse at dawn, film photo",
        }
    })
    .to_string();
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = sign_hex(
        &env::sim_signing_key(),
        request_id,
        env::SIM_USER_ID,
        &ts,
        body.as_bytes(),
    );
    http::request(
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            (signature::HEADER_REQUEST_ID, request_id),
            (signature::HEADER_USER_ID, env::SIM_USER_ID),
            (signature::HEADER_TIMESTAMP, &ts),
            (signature::HEADER_SIGNATURE, &sig),
        ],
        body.as_bytes(),
    )
}
