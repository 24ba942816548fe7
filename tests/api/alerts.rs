//! Alerts and the Postgres-derived metrics: a fal outage and failing deliveries raise exactly
//! one `alert.*` event per transition (also with two monitors on one database), nothing fires
//! below the minimum volume, and `/metrics` shows queue depths, ages and spend.
use fluxgate::domain::event_type::EventType;
use std::time::Duration;

use fluxgate::{
    config::Settings,
    ops::alerts::{evaluate_once, Transition},
    startup::Workers,
    storage,
    tools::simulator::FaultRates,
};
use serde_json::{json, Value};

use crate::{
    helpers::{spawn_app_with, start_app, test_settings, TestApp, TestOptions},
    receiver::Receiver,
};

/// Everything but the background monitor: the tests drive `evaluate_once` themselves.
const NO_MONITOR: Workers = Workers {
    monitor: false,
    ..Workers::ALL
};

fn alert_settings(min_volume: i64) -> Settings {
    let mut s = test_settings();
    s.alerts.min_volume = min_volume;
    s.alerts.window = Duration::from_secs(300);
    s
}

async fn subscribe(app: &TestApp, target: &str, types: Value) {
    let res = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": target, "event_types": types}),
        )
        .await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
}

/// Creates `n` generations and waits until each is terminal; returns their final states.
async fn generate(app: &TestApp, n: usize, prompt: &str) -> Vec<Value> {
    let mut ids = Vec::new();
    for i in 0..n {
        let g = app
            .generate(json!({"prompt": format!("{prompt} {i}")}))
            .await;
        ids.push(g["id"].as_str().unwrap().to_owned());
    }
    let mut done = Vec::new();
    for id in ids {
        done.push(app.wait_terminal(&id).await);
    }
    done
}

/// Evaluates `times` times in a row and returns every transition.
async fn evaluate(app: &TestApp, settings: &Settings, times: usize) -> Vec<Transition> {
    let mut all = Vec::new();
    for _ in 0..times {
        all.extend(evaluate_once(&app.pool, settings).await.unwrap());
    }
    all
}

async fn events_of_type(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1")
        .bind(kind)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Waits (bounded) until at least one `kind` event exists.
async fn wait_event(app: &TestApp, kind: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while events_of_type(app, kind).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no {kind} event");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn types(received: &[crate::receiver::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_fal_outage_raises_one_alert_and_one_recovery_for_alert_subscribers() {
    let settings = alert_settings(5);
    let app = spawn_app_with(TestOptions {
        settings: settings.clone(),
        workers: NO_MONITOR,
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    subscribe(&app, &rx.url, json!(["alert.*"])).await;

    app.sim
        .set_faults(FaultRates {
            unavailable: 1.0,
            ..Default::default()
        })
        .unwrap();
    for g in generate(&app, 5, "outage").await {
        assert_eq!(g["error"]["code"], "upstream_unavailable", "{g}");
    }
    let fired = evaluate(&app, &settings, 3).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].firing && fired[0].ratio == 1.0 && fired[0].tenants == 1);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let body = got[0].json();
    assert_eq!(body["type"], "alert.fal_error_rate");
    assert_eq!(body["data"]["alert"], "fal_error_rate");
    assert_eq!(body["data"]["state"], "firing");
    assert_eq!(body["data"]["ratio"], 1.0);

    // fal is back: 25 successes against 5 failures is a ratio of 1/6, under 0.2.
    app.sim.set_faults(FaultRates::default()).unwrap();
    for g in generate(&app, 25, "recovered").await {
        assert_eq!(g["status"], "completed", "{g}");
    }
    let recovered = evaluate(&app, &settings, 3).await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(!recovered[0].firing && (recovered[0].ratio - 5.0 / 30.0).abs() < 1e-9);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        types(&got),
        ["alert.fal_error_rate", "alert.fal_error_rate_recovered"]
    );
    assert_eq!(got[1].json()["data"]["state"], "resolved");
    assert!(got[1].json()["data"]["firing_since"].is_string());
    assert_eq!(events_of_type(&app, "alert.fal_error_rate").await, 1);
    assert_eq!(
        events_of_type(&app, "alert.fal_error_rate_recovered").await,
        1
    );
}

#[tokio::test]
async fn two_instances_monitoring_one_database_announce_each_transition_once() {
    let mut settings = alert_settings(4);
    settings.alerts.interval = Duration::from_millis(100);
    let a = spawn_app_with(TestOptions {
        settings: settings.clone(),
        ..Default::default()
    })
    .await;
    let sim_b = fluxgate::tools::simulator::start(TestOptions::default().sim)
        .await
        .unwrap();
    let monitor_only = Workers {
        monitor: true,
        ..Workers::NONE
    };
    let b = start_app(
        a.pool.clone(),
        a.db_url.clone(),
        sim_b,
        settings.clone(),
        monitor_only,
    )
    .await;
    let rx = Receiver::start().await;
    subscribe(&a, &rx.url, json!(["alert.*"])).await;

    generate(&a, 4, "[sim:503] down").await;
    // Race a few evaluations of our own against the two running monitors.
    let raced =
        futures_util::future::join_all((0..3).map(|_| evaluate_once(&a.pool, &settings))).await;
    let raced: usize = raced.into_iter().map(|r| r.unwrap().len()).sum();
    assert!(raced <= 1, "{raced} transitions from one change");
    wait_event(&a, "alert.fal_error_rate").await;
    // Several more rounds of both monitors: still one event.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(events_of_type(&a, "alert.fal_error_rate").await, 1);

    // 20 successes against 4 failures: 1/6, under 0.2.
    generate(&a, 20, "up").await;
    wait_event(&a, "alert.fal_error_rate_recovered").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        events_of_type(&b, "alert.fal_error_rate_recovered").await,
        1
    );
    assert_eq!(events_of_type(&b, "alert.fal_error_rate").await, 1);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        types(&got),
        ["alert.fal_error_rate", "alert.fal_error_rate_recovered"]
    );
}

#[tokio::test]
async fn failing_deliveries_raise_one_alert_and_recover_when_deliveries_succeed_again() {
    let settings = alert_settings(5);
    let app = spawn_app_with(TestOptions {
        settings: settings.clone(),
        workers: NO_MONITOR,
        ..Default::default()
    })
    .await;
    let broken = Receiver::start().await;
    broken.set(500, None, Duration::ZERO);
    subscribe(&app, &broken.url, json!(["generation.*"])).await;
    let ops = Receiver::start().await;
    subscribe(
        &app,
        &ops.url,
        json!([
            "alert.delivery_failure_rate",
            "alert.delivery_failure_rate_recovered"
        ]),
    )
    .await;

    generate(&app, 3, "to a broken receiver").await;
    broken.wait_for(5, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fired = loop {
        // Attempts are recorded in batches just after the receiver answers.
        let t = evaluate(&app, &settings, 1).await;
        if !t.is_empty() || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].firing, fired[0].ratio, fired[0].tenants),
        (true, 1.0, 1)
    );
    assert!(evaluate(&app, &settings, 2).await.is_empty());
    let got = ops.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(types(&got), ["alert.delivery_failure_rate"]);

    // The receiver is fixed: retries and new deliveries succeed until they dominate.
    broken.set(204, None, Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        generate(&app, 2, "fixed").await;
        let t = evaluate(&app, &settings, 1).await;
        if !t.is_empty() {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
    };
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(!recovered[0].firing && recovered[0].ratio < 0.5);
    assert!(evaluate(&app, &settings, 2).await.is_empty());
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        types(&got),
        [
            "alert.delivery_failure_rate",
            "alert.delivery_failure_rate_recovered"
        ]
    );
    assert_eq!(events_of_type(&app, "alert.delivery_failure_rate").await, 1);
}

#[tokio::test]
async fn below_the_minimum_volume_nothing_fires() {
    let settings = alert_settings(20);
    let app = spawn_app_with(TestOptions {
        settings: settings.clone(),
        workers: NO_MONITOR,
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    subscribe(&app, &rx.url, json!(["alert.*"])).await;
    for g in generate(&app, 5, "[sim:503] few").await {
        assert_eq!(g["error"]["code"], "upstream_unavailable");
    }
    assert!(evaluate(&app, &settings, 3).await.is_empty());
    let (firing, failures, total): (bool, i64, i64) = sqlx::query_as(
        "SELECT firing, failures, total FROM alert_state WHERE name = 'fal_error_rate'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((firing, failures, total), (false, 5, 5));
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type LIKE 'alert.%'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(alerts, 0);
}

/// The value of one sample in the text exposition, matched by name and labels.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        (metric == name && all).then(|| value.parse().ok())?
    })
}

#[tokio::test]
async fn metrics_show_queue_depths_oldest_ages_and_spend_read_from_postgres() {
    let mut settings = test_settings();
    settings.server.metrics_refresh = Duration::from_millis(100);
    let app = spawn_app_with(TestOptions {
        settings,
        workers: Workers {
            monitor: true,
            ..Workers::NONE
        },
        ..Default::default()
    })
    .await;
    // Workers are off: three generations stay `accepted`; one is backdated, one completed.
    let mut ids = Vec::new();
    for i in 0..3 {
        let g = app.generate(json!({"prompt": format!("queued {i}")})).await;
        ids.push(
            g["id"]
                .as_str()
                .unwrap()
                .parse::<fluxgate::domain::ids::GenerationId>()
                .unwrap(),
        );
    }
    sqlx::query("UPDATE generations SET created_at = now() - interval '42 seconds' WHERE id = $1")
        .bind(ids[0])
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE generations SET status = 'completed', cost_micros = 1250000, finished_at = now() WHERE id = $1",
    )
    .bind(ids[2])
    .execute(&app.pool)
    .await
    .unwrap();
    // Two pending deliveries, one of them already tried once (the retry lane).
    let rx = Receiver::start().await;
    subscribe(&app, &rx.url, json!(["alert.*"])).await;
    let mut tx = app.pool.begin().await.unwrap();
    for _ in 0..2 {
        storage::events::append(
            &mut tx,
            app.tenant_id,
            EventType::AlertFalErrorRate,
            None,
            json!({}),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query(
        "UPDATE deliveries SET attempts = 1 WHERE id = (SELECT id FROM deliveries ORDER BY created_at LIMIT 1)",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let want = [
        ("submissions", "first", 2.0),
        ("submissions", "retry", 0.0),
        ("deliveries", "first", 1.0),
        ("deliveries", "retry", 1.0),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = app.client.get(app.url("/metrics")).send().await.unwrap();
        let body = body.text().await.unwrap();
        let depths_ok = want.iter().all(|(q, l, n)| {
            sample(&body, "fluxgate_queue_depth", &[("queue", q), ("lane", l)]) == Some(*n)
        });
        if depths_ok && sample(&body, "fluxgate_spend_usd_total", &[]) == Some(1.25) {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let age = |q: &str, l: &str| {
        sample(
            &body,
            "fluxgate_queue_oldest_age_seconds",
            &[("queue", q), ("lane", l)],
        )
        .unwrap()
    };
    let oldest = age("submissions", "first");
    assert!((42.0..60.0).contains(&oldest), "{oldest}");
    assert!((0.0..30.0).contains(&age("deliveries", "first")));
    assert_eq!(age("submissions", "retry"), 0.0);
    assert_eq!(sample(&body, "fluxgate_cache_hits_total", &[]), Some(0.0));
    assert_eq!(
        sample(
            &body,
            "fluxgate_alert_firing",
            &[("alert", "fal_error_rate")]
        ),
        Some(0.0)
    );
}
