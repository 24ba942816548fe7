//! What an authenticated (or any) client can make an instance hold or grow: live streams and
//! subscriptions per tenant, streams outliving their key, `/metrics` labels, and inputs that
//! once panicked a worker.
use std::time::Duration;

use fluxgate::startup::Workers;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app_with, test_settings, TestApp, TestOptions};

fn with(settings: fluxgate::config::Settings) -> TestOptions {
    TestOptions {
        settings,
        workers: Workers::NONE,
        ..Default::default()
    }
}

async fn open_stream(app: &TestApp, key: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/events/stream"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Reads the stream until the server ends it; `false` if it is still open after `within`.
async fn ends_within(mut res: reqwest::Response, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while let Ok(Some(_)) = res.chunk().await {}
    })
    .await
    .is_ok()
}

async fn key_id(app: &TestApp) -> fluxgate::domain::ids::ApiKeyId {
    sqlx::query_scalar(
        "SELECT id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL LIMIT 1",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stream_ends_within_seconds_of_its_key_being_revoked() {
    let app = spawn_app_with(with(test_settings())).await;
    let (_, other_key) = app.new_tenant("other").await;
    let ours = open_stream(&app, &app.api_key).await;
    assert_eq!(ours.status(), 200);
    let theirs = open_stream(&app, &other_key).await;
    fluxgate::storage::keys::revoke(&app.pool, key_id(&app).await)
        .await
        .unwrap();
    assert!(
        ends_within(ours, Duration::from_secs(8)).await,
        "the stream outlived its key"
    );
    // Another key's stream goes on; the revoked key opens nothing new.
    assert!(!ends_within(theirs, Duration::from_millis(500)).await);
    let again = open_stream(&app, &app.api_key).await;
    problem(again, 401, "revoked_api_key").await;
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_cap_of_streams_on_an_instance() {
    let mut settings = test_settings();
    settings.server.max_streams_per_tenant = 2;
    // A closed stream is noticed at its next write.
    settings.server.sse_heartbeat = Duration::from_secs(1);
    let app = spawn_app_with(with(settings)).await;
    let first = open_stream(&app, &app.api_key).await;
    let _second = app
        .client
        .get(app.url("/v1/generations/gen_0192d6a3c8f27a1b9c0d1e2f3a4b5c6d/events"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    // The generation does not exist: a 404 holds no place.
    let second = open_stream(&app, &app.api_key).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open_stream(&app, &app.api_key).await;
    assert_eq!(third.headers().get("retry-after").unwrap(), "5");
    let p = problem(third, 429, "too_many_streams").await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("FLUXGATE_MAX_STREAMS_PER_TENANT"),
        "{p}"
    );
    // Other tenants are not held to ours; a closed stream frees its place.
    let (_, other_key) = app.new_tenant("other").await;
    assert_eq!(open_stream(&app, &other_key).await.status(), 200);
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let res = open_stream(&app, &app.api_key).await;
        if res.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_cap_of_subscriptions() {
    let mut settings = test_settings();
    settings.server.max_subscriptions_per_tenant = 2;
    let app = spawn_app_with(with(settings)).await;
    let body = json!({"target_url": "http://127.0.0.1:9/hook", "event_types": ["*"]});
    // Created at once: the cap holds even then.
    let results =
        futures_util::future::join_all((0..5).map(|_| app.post("/v1/subscriptions", &body))).await;
    let created = results.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 2);
    let res = app.post("/v1/subscriptions", &body).await;
    problem(res, 422, "too_many_subscriptions").await;
    // Deleting one makes room.
    let list: Value = app.get("/v1/subscriptions").await.json().await.unwrap();
    let id = list["data"][0]["id"].as_str().unwrap();
    let del = app
        .client
        .delete(app.url(&format!("/v1/subscriptions/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    assert_eq!(app.post("/v1/subscriptions", &body).await.status(), 201);
}

#[tokio::test]
async fn made_up_methods_do_not_grow_metrics() {
    let app = spawn_app_with(with(test_settings())).await;
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let res = app
            .client
            .request(method, app.url("/v1/me"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error());
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("BREW"), "a made-up method became a label");
    assert!(text.contains("method=\"other\""));
}

#[tokio::test]
async fn dates_far_outside_any_clock_are_named_not_panicked_on() {
    let app = spawn_app_with(with(test_settings())).await;
    for (query, field) in [
        ("to=-262143-01-01", "to"),
        ("from=+262142-12-31", "from"),
        ("to=0001-01-01", "to"),
        ("from=1999-12-31&to=2000-01-05", "from"),
    ] {
        let res = app.get(&format!("/v1/usage?{query}")).await;
        let p = problem(res, 422, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
    }
    assert_eq!(
        app.get("/v1/usage?from=2000-01-01&to=2000-01-31")
            .await
            .status(),
        200
    );
}
