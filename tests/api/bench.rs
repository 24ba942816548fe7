//! `fluxgate bench` at tiny sizes: every scenario must store, deliver and count everything it
//! sends. Timing is never asserted — the figures are for the README, not for CI.
use std::time::Duration;

use fluxgate::tools::bench::{self, sse::ClientsIn, ScenarioResult, Sizes};

use crate::helpers::fresh_database;

fn tiny() -> Sizes {
    Sizes {
        concurrency: 8,
        subscriptions: 4,
        callbacks: 50,
        deliveries: 200,
        rate: 20,
        duration: Duration::from_secs(1),
        sse_clients: 20,
        sse_rate: 20,
        sse_duration: Duration::from_secs(1),
        max_in_flight: 8,
        fal_latency: Duration::ZERO,
        preload: 0,
    }
}

#[tokio::test]
async fn preloaded_history_is_realistic_and_a_sweep_prunes_its_oldest_day_beside_the_pipeline() {
    let (pool, url) = fresh_database().await;
    bench::preload::fill(&url, 3_100).await.unwrap();
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries),
                (SELECT count(*) FROM delivery_attempts), (SELECT count(*) FROM generations),
                (SELECT count(*) FROM fal_callbacks)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counts, (3_100, 3_100, 3_100, 775, 775));
    let r = bench::pipeline::run(
        &url,
        &Sizes {
            preload: 3_100,
            ..tiny()
        },
        bench::pipeline::Copies::Off,
    )
    .await
    .unwrap();
    assert_correct(&r);
    let pruned = r
        .figures
        .iter()
        .find(|f| f.metric.starts_with("rows pruned"))
        .expect("a sweep ran");
    // The oldest of 31 days is past the 30-day retention: about 1/31 of each table.
    assert!(
        pruned.value >= 200.0 && pruned.value <= 300.0,
        "{}",
        pruned.value
    );
}

fn assert_correct(r: &ScenarioResult) {
    let failed: Vec<_> = r.checks.iter().filter(|c| !c.ok).collect();
    assert!(failed.is_empty(), "{}: {failed:#?}", r.scenario);
    assert!(
        !r.available || !r.checks.is_empty(),
        "{} checked nothing",
        r.scenario
    );
}

#[tokio::test]
async fn the_ingest_bench_stores_every_callback_with_its_event_and_deliveries() {
    let (_pool, url) = fresh_database().await;
    let r = bench::ingest::run(&url, &tiny()).await.unwrap();
    assert_correct(&r);
    assert!(r.figures[0].value > 0.0);
}

#[tokio::test]
async fn the_deliver_bench_sends_and_records_every_delivery_exactly_once() {
    let (_pool, url) = fresh_database().await;
    let r = bench::deliver::run(&url, &tiny()).await.unwrap();
    assert_correct(&r);
    assert_eq!(r.checks.len(), 7);
}

#[tokio::test]
async fn the_pipeline_bench_follows_every_generation_to_every_subscriber() {
    let (_pool, url) = fresh_database().await;
    let r = bench::pipeline::run(&url, &tiny(), bench::pipeline::Copies::Off)
        .await
        .unwrap();
    assert_correct(&r);
    // 20/s for 1 s, 4 subscriptions: every delivery has both latencies.
    assert_eq!(r.details["callback_to_subscriber_ms"]["count"], 80);
    assert_eq!(r.details["api_to_subscriber_ms"]["count"], 80);
}

#[tokio::test]
async fn the_copies_bench_copies_every_image_before_any_subscriber_hears_of_it() {
    let (pool, url) = fresh_database().await;
    let r = bench::pipeline::run(&url, &tiny(), bench::pipeline::Copies::ToDirectory)
        .await
        .unwrap();
    assert_correct(&r);
    assert_eq!(r.details["callback_to_subscriber_ms"]["count"], 80);
    // Every announced result links its copy, not the simulator's URL.
    let links: Vec<(String,)> = sqlx::query_as(
        "SELECT e.payload #>> '{data,images,0,url}' FROM events e WHERE e.type = 'generation.completed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(links.len() >= 20, "{}", links.len());
    assert!(links.iter().all(|(u,)| u.contains("/assets/")), "{links:?}");
}

#[tokio::test]
async fn the_baseline_bench_stores_every_request() {
    let (_pool, url) = fresh_database().await;
    let (r, base) = bench::baseline::run(&url, &tiny()).await.unwrap();
    assert_correct(&r);
    assert!(base.requests_per_sec > 0.0 && base.latency.count == 20);
}

#[tokio::test]
async fn the_sse_bench_counts_every_frame_or_says_the_route_is_missing() {
    let (_pool, url) = fresh_database().await;
    let r = bench::sse::run(&url, &tiny(), &ClientsIn::Process)
        .await
        .unwrap();
    assert_correct(&r);
    if !r.available {
        assert!(r.note.contains("404"), "{}", r.note);
    } else {
        assert_eq!(r.details["clients_report"]["frames"], 20 * 20);
    }
}
