//! Fan-out: REST Hooks subscriptions, signed deliveries with retries, 410, exhaustion,
//! rotation, recover, the events list — against a real receiver on loopback.
use fluxgate::domain::event_type::EventType;
use std::time::Duration;

use fluxgate::delivery::signing::{self, SigningSecret};
use serde_json::{json, Value};

use crate::{
    helpers::{problem, spawn_app, spawn_app_with, test_settings, TestApp, TestOptions},
    receiver::Receiver,
};

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1/subscriptions", &body).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    res.json().await.unwrap()
}

fn verify(r: &crate::receiver::Received, secret: &str) -> Result<(), String> {
    let secret = SigningSecret::parse(secret).unwrap();
    signing::verify(
        r.header("webhook-id").unwrap_or(""),
        r.header("webhook-timestamp").unwrap_or(""),
        r.header("webhook-signature").unwrap_or(""),
        &r.body,
        &secret,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| e.to_string())
}

async fn deliveries_of(app: &TestApp, sub_id: &str) -> Vec<Value> {
    let v: Value = app
        .get(&format!("/v1/subscriptions/{sub_id}/deliveries"))
        .await
        .json()
        .await
        .unwrap();
    v["data"].as_array().unwrap().clone()
}

async fn wait_delivery(app: &TestApp, sub_id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(d) = deliveries_of(app, sub_id)
            .await
            .into_iter()
            .find(|d| pred(d))
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching delivery: {:?}",
            deliveries_of(app, sub_id).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn subscriptions_are_created_listed_patched_and_deleted_idempotently() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let sub = subscribe(&app, json!({"target_url": rx.url, "event_types": ["generation.*"], "description": "zap 1", "filter": {"end_user": "u1"}, "headers": {"X-Zap": "42"}})).await;
    let id = sub["id"].as_str().unwrap();
    assert!(id.starts_with("sub_"));
    assert!(sub["secret"].as_str().unwrap().starts_with("whsec_"));
    let got: Value = app
        .get(&format!("/v1/subscriptions/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        got.get("secret").is_none(),
        "the secret is shown only once: {got}"
    );
    assert_eq!(got["headers"], json!({"X-Zap": "42"}));
    let list: Value = app.get("/v1/subscriptions").await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id);
    let res = app
        .client
        .patch(app.url(&format!("/v1/subscriptions/{id}")))
        .bearer_auth(&app.api_key)
        .json(&json!({"event_types": ["generation.completed"], "status": "disabled"}))
        .send()
        .await
        .unwrap();
    let patched: Value = res.json().await.unwrap();
    assert_eq!(
        (patched["event_types"].clone(), patched["status"].clone()),
        (json!(["generation.completed"]), json!("disabled"))
    );
    let (_, other) = app.new_tenant("other").await;
    let res = app
        .client
        .get(app.url(&format!("/v1/subscriptions/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    for _ in 0..2 {
        let res = app
            .client
            .delete(app.url(&format!("/v1/subscriptions/{id}")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }
    problem(
        app.get(&format!("/v1/subscriptions/{id}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn bad_subscriptions_name_the_field_and_private_targets_are_refused() {
    let mut settings = test_settings();
    settings.delivery.allow_http_targets = false;
    settings.delivery.allowed_target_cidrs = Vec::new();
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    for target in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ] {
        let res = app
            .post(
                "/v1/subscriptions",
                &json!({"target_url": target, "event_types": ["generation.completed"]}),
            )
            .await;
        let p = problem(res, 422, "validation_failed").await;
        assert_eq!(p["errors"][0]["field"], "target_url", "{target}: {p}");
    }
    let res = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": "https://example.com/x", "event_types": ["generation.done"], "filter": {"tags": 1}, "headers": {"Host": "x", "webhook-id": "y"}, "colour": 1}),
        )
        .await;
    let p = problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "colour",
        "event_types[0]",
        "filter.tags",
        "headers.Host",
        "headers.webhook-id",
    ] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    // A generation's own webhook_url goes through the same guard.
    let res = app
        .post(
            "/v1/generations",
            &json!({"prompt": "a", "webhook_url": "https://10.1.2.3/hook"}),
        )
        .await;
    let p = problem(res, 422, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "webhook_url", "{p}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_completed_generation_reaches_subscribers_and_its_own_webhook_signed() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let own = Receiver::start().await;
    let filtered = Receiver::start().await;
    let sub = subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["generation.*"], "headers": {"X-Zap": "42"}}),
    )
    .await;
    subscribe(&app, json!({"target_url": filtered.url, "event_types": ["generation.completed"], "filter": {"metadata": {"sku": "other"}}})).await;
    let g = app
        .generate(json!({"prompt": "a fox", "webhook_url": own.url, "metadata": {"sku": "MUG-7"}}))
        .await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.contains(&"generation.queued".to_owned())
            && types.contains(&"generation.completed".to_owned()),
        "{types:?}"
    );
    for r in &got {
        verify(r, sub["secret"].as_str().unwrap()).unwrap();
        assert_eq!(r.header("x-zap"), Some("42"));
        let body = r.json();
        assert_eq!(body["data"]["id"], g["id"]);
        assert_eq!(r.header("webhook-id"), body["id"].as_str());
        // The bytes sent are the stored payload.
        let stored: Value =
            sqlx::query_scalar("SELECT payload FROM events WHERE payload->>'id' = $1")
                .bind(body["id"].as_str().unwrap())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(stored, body);
    }
    let own_got = own.wait_for(2, Duration::from_secs(10)).await;
    let secret: Value = app.get("/v1/webhook-secret").await.json().await.unwrap();
    for r in &own_got {
        verify(r, secret["secret"].as_str().unwrap()).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        filtered.received().is_empty(),
        "the metadata filter did not match"
    );
    // The events list is newest first and in the webhook's exact shape.
    let events: Value = app
        .get("/v1/events?type=generation.*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["data"][0]["type"], "generation.completed");
    assert_eq!(
        events["data"][0],
        got.iter()
            .find(|r| r.json()["type"] == "generation.completed")
            .unwrap()
            .json()
    );
}

#[tokio::test]
async fn a_410_disables_the_subscription_after_exactly_one_attempt() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let watcher = Receiver::start().await;
    rx.set(410, None, Duration::ZERO);
    let sub = subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["generation.completed"]}),
    )
    .await;
    subscribe(
        &app,
        json!({"target_url": watcher.url, "event_types": ["subscription.disabled"]}),
    )
    .await;
    let sub_id = sub["id"].as_str().unwrap();
    app.generate(json!({"prompt": "a"})).await;
    let disabled = watcher.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(disabled[0].json()["type"], "subscription.disabled");
    assert_eq!(disabled[0].json()["data"]["id"], sub_id);
    let s: Value = app
        .get(&format!("/v1/subscriptions/{sub_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["status"], "disabled");
    assert!(s["disabled_reason"].as_str().unwrap().contains("410"));
    app.generate(json!({"prompt": "b"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.received().len(),
        1,
        "exactly one attempt, and nothing after the disable"
    );
    let d = &deliveries_of(&app, sub_id).await[0];
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
}

#[tokio::test]
async fn retry_after_is_honoured_timeouts_are_cut_and_exhaustion_is_announced() {
    let mut settings = test_settings();
    settings.delivery.timeout = Duration::from_millis(500);
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    let watcher = Receiver::start().await;
    rx.set(503, Some("1"), Duration::ZERO);
    let sub = subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["generation.completed"]}),
    )
    .await;
    let watching = subscribe(
        &app,
        json!({"target_url": watcher.url, "event_types": ["delivery.exhausted"]}),
    )
    .await;
    let sub_id = sub["id"].as_str().unwrap();
    app.generate(json!({"prompt": "a"})).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured, got {gap:?}"
    );
    assert_eq!(
        got[0].header("webhook-id"),
        got[1].header("webhook-id"),
        "the same id on every retry"
    );
    // Now the receiver hangs: the attempt is cut at the timeout.
    rx.set(200, None, Duration::from_secs(5));
    let d = wait_delivery(&app, sub_id, |d| d["status"] == "exhausted").await;
    let detail: Value = app
        .get(&format!("/v1/deliveries/{}", d["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    let log = detail["attempts_log"].as_array().unwrap();
    assert_eq!(log[0]["status_code"], 503);
    assert_eq!(log[0]["error_class"], "http_status");
    assert!(log[0]["response_excerpt"]
        .as_str()
        .unwrap()
        .contains("receiver says hello"));
    assert!(
        log.iter()
            .any(|a| a["error_class"] == "timeout" && a["duration_ms"].as_i64().unwrap() < 2000),
        "{log:?}"
    );
    let exhausted = watcher.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(exhausted[0].json()["data"]["id"], d["id"]);
    // The watcher has it; its success is recorded just after the answer (not yet, at times).
    wait_delivery(&app, watching["id"].as_str().unwrap(), |d| {
        d["status"] == "succeeded"
    })
    .await;
    // Undelivered events are listed; a manual retry delivers it.
    let undelivered: Value = app
        .get("/v1/events?undelivered=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(undelivered["data"][0]["type"], "generation.completed");
    rx.set(200, None, Duration::ZERO);
    let before = rx.received().len();
    let res = app
        .post(
            &format!("/v1/deliveries/{}/retry", d["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 202);
    rx.wait_for(before + 1, Duration::from_secs(10)).await;
    wait_delivery(&app, sub_id, |d| d["status"] == "succeeded").await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_and_recover_requeues_failures() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let sub = subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["test.ping", "generation.completed"]}),
    )
    .await;
    let sub_id = sub["id"].as_str().unwrap();
    let old = sub["secret"].as_str().unwrap().to_owned();
    let rotated: Value = app
        .post(
            &format!("/v1/subscriptions/{sub_id}/rotate-secret"),
            &json!({"grace_period_secs": 3600}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let res = app
        .post(&format!("/v1/subscriptions/{sub_id}/test"), &json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["type"], "test.ping");
    verify(&got[0], &old).unwrap();
    verify(&got[0], &new).unwrap();
    assert_eq!(
        got[0]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    // A delivery that failed can be recovered by time window (once its attempt is recorded).
    wait_delivery(&app, sub_id, |d| d["status"] == "succeeded").await;
    sqlx::query("UPDATE deliveries SET status = 'exhausted'")
        .execute(&app.pool)
        .await
        .unwrap();
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let res: Value = app
        .post(
            &format!("/v1/subscriptions/{sub_id}/recover"),
            &json!({"since": since}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["requeued"], 1);
    rx.wait_for(2, Duration::from_secs(10)).await;
    let p = problem(
        app.post(
            &format!("/v1/subscriptions/{sub_id}/recover"),
            &json!({"since": "yesterday"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "since");
}

#[tokio::test]
async fn a_subscription_never_has_more_deliveries_in_flight_than_its_max_in_flight() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.set(204, None, Duration::from_millis(200));
    subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["generation.completed"], "max_in_flight": 2}),
    )
    .await;
    let burst = (0..8).map(|i| app.generate(json!({"prompt": format!("burst {i}")})));
    let ids: std::collections::HashSet<String> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect();
    let got = rx.wait_for(8, Duration::from_secs(30)).await;
    let delivered: std::collections::HashSet<String> = got
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, ids, "every generation reached the subscriber");
    assert_eq!(
        rx.max_concurrent(),
        2,
        "the receiver held each request 200 ms: both slots and never more were used"
    );
}

/// The submitter's `generation.queued` deliveries are created already leased to its own loop
/// and handed over after commit, as a callback's are: its NOTIFY tells every instance's loop
/// that there is nothing to claim (no sweep per submission).
#[tokio::test]
async fn the_submitters_queued_deliveries_go_straight_to_its_own_loop() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let sub = subscribe(
        &app,
        json!({"target_url": rx.url, "event_types": ["generation.queued"]}),
    )
    .await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.pool)
        .await
        .unwrap();
    listener
        .listen(fluxgate::storage::events::CHANNEL)
        .await
        .unwrap();
    // fal takes a while, so the result never races our record of the submission.
    app.generate(json!({"prompt": "[sim:delay=500] a"})).await;
    wait_delivery(&app, sub["id"].as_str().unwrap(), |d| {
        d["status"] == "succeeded"
    })
    .await;
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM events WHERE type = 'generation.queued'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let payload = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
            .await
            .expect("the queued event's NOTIFY")
            .unwrap();
        if n.payload().split(' ').next() == Some(seq.to_string().as_str()) {
            break n.payload().to_owned();
        }
    };
    assert_eq!(
        payload,
        format!("{seq}{}", fluxgate::storage::events::NO_CLAIMS)
    );
}

#[tokio::test]
async fn the_loop_sleeps_until_the_next_delivery_scheduled_for_later() {
    use fluxgate::storage::{delivery_queue, events};
    let app = spawn_app_with(TestOptions {
        workers: fluxgate::startup::Workers::NONE,
        ..Default::default()
    })
    .await;
    let rx = Receiver::start().await;
    subscribe(&app, json!({"target_url": rx.url, "event_types": ["*"]})).await;
    let tenant: fluxgate::domain::ids::TenantId =
        sqlx::query_scalar("SELECT tenant_id FROM subscriptions")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    for _ in 0..3 {
        events::append(
            &mut tx,
            tenant,
            EventType::GenerationCompleted,
            None,
            json!({}),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let ids: Vec<fluxgate::domain::ids::DeliveryId> =
        sqlx::query_scalar("SELECT id FROM deliveries ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 3);
    let next = || async { delivery_queue::next_due(&app.pool).await.unwrap() };
    assert_eq!(
        next().await,
        None,
        "fresh deliveries are due now, not later"
    );

    // One held back for 30 s (a rate limit), one retry set for 60 s after a failed attempt.
    delivery_queue::release(&app.pool, &ids[..1], 30.0)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE deliveries SET attempts = 1, next_attempt_at = now() + interval '60 seconds' WHERE id = $1",
    )
    .bind(ids[1])
    .execute(&app.pool)
    .await
    .unwrap();
    let in_secs = |at: Option<chrono::DateTime<chrono::Utc>>| {
        (at.expect("something is scheduled") - chrono::Utc::now()).num_seconds()
    };
    assert!((28..=30).contains(&in_secs(next().await)));
    // The held one is due again at once: the retry is next.
    delivery_queue::release(&app.pool, &ids[..1], 0.0)
        .await
        .unwrap();
    assert!((58..=60).contains(&in_secs(next().await)));
}

#[tokio::test]
async fn deliveries_are_keyed_by_ids_that_sort_in_the_order_they_were_made() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let before = chrono::Utc::now().timestamp_millis();
    let sub = subscribe(&app, json!({"target_url": rx.url, "event_types": ["*"]})).await;
    let sub_id = sub["id"].as_str().unwrap();
    // One delivery from fan-out (a generation's events), one made alone (a test ping).
    let generation = app.generate(json!({"prompt": "ordered ids"})).await;
    app.wait_terminal(generation["id"].as_str().unwrap()).await;
    let ping = app
        .post(&format!("/v1/subscriptions/{sub_id}/test"), &json!({}))
        .await;
    assert_eq!(ping.status(), 202);
    let pinged = wait_delivery(&app, sub_id, |d| d["event_type"] == "test.ping").await;
    let after = chrono::Utc::now().timestamp_millis();

    let mut made: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> =
        deliveries_of(&app, sub_id)
            .await
            .iter()
            .map(|d| {
                let at = chrono::DateTime::parse_from_rfc3339(d["created_at"].as_str().unwrap())
                    .unwrap();
                (at, d["id"].as_str().unwrap().to_owned())
            })
            .collect();
    assert!(made.len() >= 2, "{made:?}");
    assert!(made
        .iter()
        .any(|(_, id)| id == pinged["id"].as_str().unwrap()));
    for (_, id) in &made {
        let uuid = uuid::Uuid::parse_str(id.strip_prefix("dlv_").unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7, "{id} is not a UUIDv7");
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
        assert!(
            (before - 1..=after + 1).contains(&ms),
            "{id} was made at {ms}, not between {before} and {after}"
        );
    }
    // Sorted by creation time, they are sorted by id too: new keys go to the index's right edge.
    made.sort();
    let ids: Vec<&String> = made.iter().map(|(_, id)| id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}
