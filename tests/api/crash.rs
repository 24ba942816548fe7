//! Crash safety with the real binary: SIGKILL `fluxgate serve` in the middle of a burst of
//! generations and deliveries, start it again, and count what the receiver got.
use std::{collections::HashMap, time::Duration};

use serde_json::json;

use crate::{
    helpers::{fresh_database, SIM_KEY, SIM_SEED},
    receiver::Receiver,
    serve_process::{free_port, ServeProcess},
};
use fluxgate::{storage, tools::simulator::SimConfig};

/// (generation status, id, delivery status, attempts, last error class) of what did not arrive.
type StuckRow = (String, String, Option<String>, Option<i32>, Option<String>);

#[tokio::test]
async fn sigkill_during_a_burst_loses_no_generation_and_no_delivery() {
    burst_stop_restart(nix::sys::signal::Signal::SIGKILL).await;
}

#[tokio::test]
async fn sigterm_during_a_burst_exits_cleanly_and_the_restart_completes_everything() {
    burst_stop_restart(nix::sys::signal::Signal::SIGTERM).await;
}

async fn burst_stop_restart(signal: nix::sys::signal::Signal) {
    let (pool, db_url) = fresh_database().await;
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        queue_delay: Duration::from_millis(5),
        run_delay: Duration::from_millis(30),
        webhook_retry_schedule: vec![
            Duration::from_millis(300),
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let rx = Receiver::start().await;
    rx.set(204, None, Duration::from_millis(20));
    storage::MIGRATOR.run(&pool).await.unwrap();
    let (_, key) = crate::helpers::tenant_with_key(&pool, "acme").await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db_url.as_str()),
        ("FAL_KEY", SIM_KEY),
        ("FLUXGATE_PUBLIC_URL", base.as_str()),
        ("PORT", &port.to_string()),
        ("FLUXGATE_BIND", "127.0.0.1"),
        ("FLUXGATE_FAL_QUEUE_URL", sim.base_url()),
        ("FLUXGATE_FAL_JWKS_URL", &sim.jwks_url()),
        ("FLUXGATE_ALLOW_HTTP_TARGETS", "true"),
        ("FLUXGATE_ALLOW_INSECURE_FAL", "true"),
        ("FLUXGATE_ALLOWED_TARGET_CIDRS", "127.0.0.0/8"),
        ("FLUXGATE_WEBHOOK_RETRY_SCHEDULE", "200ms,500ms,1s,2s"),
        ("FLUXGATE_WEBHOOK_TIMEOUT_SECS", "1"),
        ("FLUXGATE_DELIVERY_LEASE_SECS", "2"),
        ("FLUXGATE_RECONCILE_AFTER_SECS", "2"),
        ("FLUXGATE_RECONCILE_INTERVAL_SECS", "1"),
        ("FLUXGATE_FAL_RETRY_BASE_MS", "50"),
        // Short leases, so work claimed by the killed instance is taken over within the test.
        ("FLUXGATE_FAL_TIMEOUT_SECS", "2"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let client = reqwest::Client::new();
    let mut serve = ServeProcess::start(env, "fluxgate-crash-test.log").await;
    let auth = key;
    let res = client
        .post(format!("{base}/v1/subscriptions"))
        .bearer_auth(&auth)
        .json(&json!({"target_url": rx.url, "event_types": ["generation.completed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let total = 40;
    let mut ids = Vec::new();
    for i in 0..total {
        let res = client
            .post(format!("{base}/v1/generations"))
            .bearer_auth(&auth)
            .json(&json!({"prompt": format!("crash {i}"), "image_size": "square"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Kill it while deliveries are under way.
    rx.wait_for(5, Duration::from_secs(20)).await;
    let status = serve.stop(signal);
    if signal == nix::sys::signal::Signal::SIGTERM {
        assert!(
            status.success(),
            "SIGTERM must end in a clean exit, got {status}"
        );
    }
    let at_kill = rx.received().len();
    serve.restart("fluxgate-crash-test.log").await;
    // Every generation finishes once and reaches the subscriber at least once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rx.received() {
            *counts
                .entry(r.json()["data"]["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        if ids.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
            let state: Vec<StuckRow> = sqlx::query_as(
                "SELECT g.status, g.id::text, d.status, d.attempts, d.last_error_class FROM generations g
                 LEFT JOIN events e ON e.generation_id = g.id AND e.type = 'generation.completed'
                 LEFT JOIN deliveries d ON d.event_id = e.id WHERE g.status <> 'completed' OR d.status IS DISTINCT FROM 'succeeded'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!("{} of {total} generations reached the subscriber; missing {missing:?}; state {state:?}", counts.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(serve);
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM generations WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(completed, total as i64);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'generation.completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        events, total as i64,
        "each generation announced exactly once"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!("{signal}: {at_kill} deliveries before the signal, {duplicates} duplicate deliveries (in flight at the signal)");
}

#[tokio::test]
async fn a_postgres_restart_mid_burst_loses_nothing() {
    use fluxgate::tools::devdb::{DevDb, DevDbOptions};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = DevDbOptions {
        data_dir: Some(dir.path().join("pgdata")),
        durable: false,
        install_if_missing: false,
        port: Some(port),
    };
    let db = DevDb::start_async(opts.clone()).await.unwrap();
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&db.tcp_url_for("postgres"))
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE fluxgate")
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let url = db.tcp_url_for("fluxgate");
    let pool = storage::connect(&url, 8).await.unwrap();
    storage::MIGRATOR.run(&pool).await.unwrap();
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        queue_delay: Duration::from_millis(5),
        run_delay: Duration::from_millis(50),
        webhook_retry_schedule: vec![
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(3),
            Duration::from_secs(5),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut settings = crate::helpers::test_settings();
    settings.fal.reconcile_after = Duration::from_secs(3);
    settings.fal.reconcile_interval = Duration::from_secs(1);
    settings.fal.timeout = Duration::from_secs(2);
    settings.delivery.lease = Duration::from_secs(20);
    let app =
        crate::helpers::start_app(pool, url, sim, settings, fluxgate::startup::Workers::ALL).await;
    let rx = Receiver::start().await;
    rx.set(204, None, Duration::from_millis(10));
    let res = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": rx.url, "event_types": ["generation.completed"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            app.generate(json!({"prompt": format!("pg restart {i}"), "image_size": "square"}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    rx.wait_for(3, Duration::from_secs(20)).await;
    // Postgres goes away mid-burst and comes back on the same address.
    tokio::task::spawn_blocking(move || db.stop())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = DevDb::start_async(opts).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = rx
            .received()
            .iter()
            .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.iter().all(|id| got.contains(id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} generations reached the subscriber after the restart",
            got.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM generations WHERE status = 'completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(completed, 30);
    drop(app);
    tokio::task::spawn_blocking(move || db.stop())
        .await
        .unwrap()
        .unwrap();
}
