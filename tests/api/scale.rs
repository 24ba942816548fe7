//! Scale-out: three instances on one Postgres share the work and announce everything exactly
//! once when nothing crashes.
use std::{collections::HashMap, time::Duration};

use futures_util::future::join_all;
use serde_json::json;

use crate::{
    helpers::{spawn_app_with, start_app, test_settings, TestApp, TestOptions, SIM_KEY, SIM_SEED},
    receiver::Receiver,
};
use fluxgate::{startup::Workers, tools::simulator::SimConfig};

async fn another_instance(first: &TestApp) -> TestApp {
    let pool = fluxgate::storage::connect(&first.db_url, 8).await.unwrap();
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        queue_delay: Duration::from_millis(5),
        run_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut app = start_app(
        pool,
        first.db_url.clone(),
        sim,
        narrow_submitter(),
        Workers::ALL,
    )
    .await;
    app.api_key = first.api_key.clone();
    app.tenant_id = first.tenant_id;
    app
}

/// Few submissions in flight per instance, so that no instance can take a whole burst before
/// the others have looked (with 32, two instances could absorb the 60 between them).
fn narrow_submitter() -> fluxgate::config::Settings {
    let mut settings = test_settings();
    settings.fal.submit_concurrency = 4;
    settings
}

#[tokio::test]
async fn three_instances_share_a_burst_and_deliver_every_event_exactly_once() {
    let mut opts = TestOptions {
        settings: narrow_submitter(),
        ..Default::default()
    };
    opts.sim.run_delay = Duration::from_millis(20);
    let a = spawn_app_with(opts).await;
    let b = another_instance(&a).await;
    let c = another_instance(&a).await;
    let rx1 = Receiver::start().await;
    let rx2 = Receiver::start().await;
    for rx in [&rx1, &rx2] {
        let res = a
            .post(
                "/v1/subscriptions",
                &json!({"target_url": rx.url, "event_types": ["generation.completed"]}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let apps = [&a, &b, &c];
    // Every instance's workers are up (each LISTENs once it runs): otherwise the first to start
    // can claim the whole burst, on a slow machine, before the last one looks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&a.pool)
        .await
        .unwrap();
        if listening >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listening} instances listening"
        );
        tokio::task::yield_now().await;
    }
    let total = 60;
    let answers = join_all((0..total).map(|i| {
        let app = apps[i % 3];
        app.client
            .post(app.url("/v1/generations"))
            .bearer_auth(&app.api_key)
            .json(&json!({"prompt": format!("scale {i}"), "image_size": "square"}))
            .send()
    }))
    .await;
    let mut ids = Vec::new();
    for res in answers {
        let res = res.unwrap();
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for rx in [&rx1, &rx2] {
        rx.wait_for(total, Duration::from_secs(30)).await;
    }
    // Nothing crashed, so nothing is duplicated.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for rx in [&rx1, &rx2] {
        let mut per_generation: HashMap<String, usize> = HashMap::new();
        for r in rx.received() {
            *per_generation
                .entry(r.json()["data"]["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(per_generation.len(), total);
        assert!(
            per_generation.values().all(|n| *n == 1),
            "duplicates: {per_generation:?}"
        );
    }
    for id in &ids {
        // `queued` is skipped when fal's callback beats the stored submit answer; `completed`
        // is always there, once.
        let types = a.event_types(id).await;
        assert_eq!(
            types.last().map(String::as_str),
            Some("generation.completed"),
            "{types:?}"
        );
        assert_eq!(
            types
                .iter()
                .filter(|t| *t == "generation.completed")
                .count(),
            1,
            "{types:?}"
        );
        assert!(types.len() <= 2, "{types:?}");
    }
    // Every instance submitted some of the burst (each has its own simulator).
    let spread: Vec<u64> = apps.iter().map(|app| app.sim.stats().submissions).collect();
    assert_eq!(spread.iter().sum::<u64>(), total as u64, "{spread:?}");
    assert!(
        spread.iter().all(|n| *n > 0),
        "work spreads across instances: {spread:?}"
    );
}
