//! `baseline`: this machine's ceiling for "HTTP POST → one INSERT → 202" through actix-web and
//! sqlx with fluxgate's pool size, driven by the same load generator: closed loop at the same
//! concurrency (throughput) and open loop at the pipeline's rate (latency). Every other figure
//! is divided by these, so results read as "fraction of what the machine can do".
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    http, ingest, load,
    report::{Baseline, Basis, Percentiles, ScenarioResult},
    Sizes,
};
use crate::{config::Settings, storage};

pub async fn run(db_url: &str, sizes: &Sizes) -> anyhow::Result<(ScenarioResult, Baseline)> {
    let mut r = ScenarioResult::new("baseline");
    let pool_size = Settings::for_dev().storage.db_pool_size;
    let pool = storage::connect(db_url, pool_size).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, body jsonb NOT NULL,
                                                    created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&pool)
    .await?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let data = web::Data::new(pool.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/ingest", web::post().to(insert))
    })
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .context("starting the baseline server")?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);

    // The same bodies as `ingest` (a signed fal callback), to a route that only stores them.
    let n = sizes.callbacks;
    let warmup = (n / 10).clamp(1, 500);
    let bodies: Vec<Bytes> = (0..warmup + n)
        .map(|_| {
            let req = ingest::signed("/ingest", &Uuid::new_v4().to_string());
            let head = http::parse_head(&req).expect("built above").len;
            http::request(
                "POST",
                "/ingest",
                &[("content-type", "application/json")],
                &req[head..],
            )
        })
        .collect();
    let all = bodies.clone();
    let mut bodies = bodies;
    let timed = Arc::new(bodies.split_off(warmup));
    load::closed_loop(addr, Arc::new(bodies.clone()), sizes.concurrency, 202).await;
    let closed = load::closed_loop(addr, timed, sizes.concurrency, 202).await;
    let rps = n as f64 / closed.elapsed.as_secs_f64();

    let rate = f64::from(sizes.rate.max(1));
    let secs = sizes.duration.as_secs_f64().min(2.0);
    let count = ((rate * secs) as usize).max(1);
    let open = load::open_loop(addr, rate, count, |i| all[i % all.len()].clone()).await;
    let latency = Percentiles::of(open.iter().map(|a| a.latency).collect());

    r.figure(
        "POST → INSERT → 202",
        rps,
        "requests/s",
        Basis::Throughput,
        None,
    );
    r.latency(
        &format!("POST → 202 at {rate}/s"),
        &latency,
        [None, None, None],
    );
    r.details = json!({"requests": n, "concurrency": sizes.concurrency, "pool_size": pool_size,
                       "open_loop_requests": count, "latency_ms": latency});
    r.check("requests answered 202", n, closed.count_status(202));
    r.check(
        "open-loop requests answered 202",
        count,
        open.iter().filter(|a| a.status == 202).count(),
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_baseline")
        .fetch_one(&pool)
        .await?;
    r.check("rows stored", warmup + n + count, stored);
    handle.stop(true).await;
    let _ = task.await;
    pool.close().await;
    Ok((
        r,
        Baseline {
            requests_per_sec: rps,
            latency,
        },
    ))
}

async fn insert(pool: web::Data<PgPool>, body: web::Bytes) -> HttpResponse {
    let text = String::from_utf8_lossy(&body);
    match sqlx::query("INSERT INTO bench_baseline (body) VALUES ($1::jsonb)")
        .bind(text.as_ref())
        .execute(pool.get_ref())
        .await
    {
        Ok(_) => HttpResponse::Accepted().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}
