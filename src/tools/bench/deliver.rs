//! `deliver`: a backlog of N deliveries (N/S events × S subscriptions, inserted in bulk in one
//! transaction with a NOTIFY) drained by fluxgate's delivery worker into a fast local receiver.
//! The figure runs from the backlog's commit to the last attempt recorded
//! (`max(finished_at)`), so it counts signing, sending and recording — and every row is checked.
use crate::domain::ids::TenantId;
use crate::domain::ids::{EventId, GenerationId};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    env::{self, Fluxgate},
    receiver::Receiver,
    report::{Basis, ScenarioResult},
    Sizes,
};
use crate::{startup::Workers, storage};

pub async fn run(db_url: &str, sizes: &Sizes) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new("deliver");
    let s = sizes.subscriptions.max(1);
    let events = sizes.deliveries.div_ceil(s);
    let n = events * s;
    let sim = env::start_sim().await?;
    let workers = Workers {
        deliverer: true,
        ..Workers::NONE
    };
    let app = Fluxgate::start(db_url, &sim, workers).await?;
    let (tenant_id, _) = env::tenant(&app.pool, "bench").await?;
    let receiver = Receiver::start(false).await?;
    env::subscribe(&app.pool, tenant_id, &receiver, s, sizes.max_in_flight).await?;

    let committed = backlog(&app.pool, tenant_id, events).await?;
    let cpu = super::cpu::Cpu::now();
    let got = receiver.wait_for(n as u64, Duration::from_secs(300)).await;
    let (own_us, pg_us) = super::cpu::Cpu::per_unit_since(cpu, n as u64);
    let pending = wait_settled(&app.pool, Duration::from_secs(30)).await?;
    let last: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT max(finished_at) FROM deliveries")
        .fetch_one(&app.pool)
        .await?;
    let elapsed = last
        .map(|t| {
            (t - DateTime::<Utc>::from(committed))
                .to_std()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
    r.figure(
        &format!("deliveries signed+sent+recorded ({s} subs)"),
        rate,
        "deliveries/s",
        Basis::Throughput,
        Some(("≥ 10000/s", rate >= 10_000.0)),
    );
    r.figure(
        "CPU per delivery, bench process",
        own_us,
        "µs",
        Basis::None,
        None,
    );
    r.figure("CPU per delivery, Postgres", pg_us, "µs", Basis::None, None);
    r.details = json!({
        "deliveries": n, "events": events, "subscriptions": s,
        "max_in_flight_per_subscription": sizes.max_in_flight,
        "elapsed_s": elapsed.as_secs_f64(),
    });

    r.check("requests received", n, got);
    r.check("deliveries still pending", 0, pending);
    verify(&app.pool, &mut r, tenant_id, n as i64).await?;
    app.stop().await;
    sim.stop().await;
    Ok(r)
}

/// Inserts `events` generation.completed events and one delivery per (event, subscription),
/// then NOTIFYs the worker; returns the wall-clock time of the commit.
async fn backlog(pool: &PgPool, tenant_id: TenantId, events: usize) -> anyhow::Result<SystemTime> {
    let ids: Vec<EventId> = (0..events).map(|_| EventId::new()).collect();
    let payloads: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id.to_string(),
                "type": "generation.completed",
                "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": sample_generation(i),
            })
            .to_string()
        })
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO events (id, tenant_id, type, payload)
         SELECT t.id, $1, 'generation.completed', t.p::jsonb FROM unnest($2::uuid[], $3::text[]) AS t(id, p)",
    )
    .bind(tenant_id)
    .bind(&ids)
    .bind(&payloads)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, target_url)
         SELECT fluxgate_uuid_v7(), $1, e.id, s.id, s.target_url
         FROM unnest($2::uuid[]) AS e(id) CROSS JOIN subscriptions s WHERE s.tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    storage::events::notify(&mut *tx, storage::events::CHANNEL, "0").await?;
    tx.commit().await?;
    Ok(SystemTime::now())
}

/// Waits until no delivery is pending; returns how many still are.
async fn wait_settled(pool: &PgPool, within: Duration) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
                .fetch_one(pool)
                .await?;
        if pending == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scenario's tenant's deliveries and attempts (`--preload` history belongs to another).
async fn verify(
    pool: &PgPool,
    r: &mut ScenarioResult,
    tenant_id: TenantId,
    n: i64,
) -> anyhow::Result<()> {
    let (succeeded, one_attempt, attempts, distinct, ok_codes): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "WITH mine AS (SELECT id, status, attempts FROM deliveries WHERE tenant_id = $1),
                  tried AS (SELECT a.* FROM delivery_attempts a JOIN mine ON mine.id = a.delivery_id)
             SELECT (SELECT count(*) FROM mine WHERE status = 'succeeded'),
                    (SELECT count(*) FROM mine WHERE attempts = 1),
                    (SELECT count(*) FROM tried),
                    (SELECT count(DISTINCT delivery_id) FROM tried),
                    (SELECT count(*) FROM tried WHERE status_code = 204)",
        )
        .bind(tenant_id)
        .fetch_one(pool)
        .await?;
    r.check("deliveries succeeded", n, succeeded);
    r.check("deliveries with exactly 1 attempt", n, one_attempt);
    r.check("attempt rows", n, attempts);
    r.check("deliveries with an attempt row", n, distinct);
    r.check("attempts answered 204", n, ok_codes);
    Ok(())
}

/// A completed generation object in the shape events carry (≈1.3 KB of JSON). Written out
/// rather than built from `storage::generations::Generation`, whose fields other work changes.
fn sample_generation(i: usize) -> serde_json::Value {
    let id = GenerationId::new().to_string();
    let now = Utc::now();
    json!({
        "id": id, "object": "generation", "status": "completed", "model": "fal-ai/flux-2/turbo",
        "input": env::generation_input(i), "metadata": null, "end_user": null, "webhook_url": null,
        "estimated_cost_usd": 0.008, "estimated_cost_micros": 8000, "cost_usd": 0.008,
        "cost_micros": 8000, "fal_request_id": Uuid::new_v4().to_string(), "seed": i,
        "images": [{"url": "https://v3.fal.media/files/bench/0.png", "width": 1024,
                    "height": 768, "content_type": "image/png"}],
        "has_nsfw_concepts": [false], "timings": {"inference": 0.0}, "error": null,
        "created_at": now, "submitted_at": now, "completed_at": now,
        "links": {"self": format!("/v1/generations/{id}"), "events": format!("/v1/generations/{id}/events"),
                  "cancel": format!("/v1/generations/{id}/cancel")},
    })
}
