//! Batches: up to 100 requests accepted all or nothing (validation, rate windows, budget), each
//! an ordinary generation of the batch, sent to fal with the batch's priority; the batch
//! completes once every member is terminal and says so once, in `batch.completed`.
use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    helpers::{problem, spawn_app, spawn_app_with, TestApp, TestOptions},
    receiver::Receiver,
};
use fluxgate::startup::Workers;

async fn post_batch(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post("/v1/batches", body).await
}

async fn stored_generations(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn set_limits(app: &TestApp, sql: &str) {
    sqlx::query(sql)
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let res = app.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// The strings of a JSON array: each item's `field`, or the items themselves with "".
fn strings<'v>(list: &'v Value, field: &str) -> Vec<&'v str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| if field.is_empty() { item } else { &item[field] })
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Waits (bounded) until the batch is completed; returns it.
async fn wait_completed(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let b: Value = app
            .get(&format!("/v1/batches/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if b["status"] == "completed" {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never completed: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_batch_becomes_generations_at_low_priority_and_announces_its_completion_once() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let res = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": rx.url, "event_types": ["batch.*"]}),
        )
        .await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);

    let res = post_batch(
        &app,
        &json!({
            "metadata": {"job": "catalog-7"},
            "requests": [
                {"prompt": "a red kite", "image_size": "square"},
                {"prompt": "a blue kite", "num_images": 2},
                {"prompt": "make it green", "image_urls": ["https://images.example.com/kite.png"]},
            ]
        }),
    )
    .await;
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bat_"), "{batch}");
    assert_eq!(batch["size"], 3);
    assert_eq!(batch["priority"], "low");
    // $0.008 + two images at $0.008 + an edit of one source at $0.016.
    assert_eq!(batch["estimated_cost_micros"], 40_000);
    let members: Vec<String> = batch["generation_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members.len(), 3);

    let done = wait_completed(&app, &id).await;
    assert_eq!(
        done["counts"],
        json!({"accepted": 0, "queued": 0, "completed": 3, "failed": 0, "cancelled": 0})
    );
    assert_eq!(done["cost_micros"], 40_000);
    for gen in &members {
        let g = app.generation(gen).await;
        assert_eq!(g["batch_id"], id.as_str());
        assert_eq!(g["priority"], "low");
    }
    assert_eq!(
        app.generation(&members[2]).await["model"],
        "fal-ai/flux-2/turbo/edit"
    );
    assert_eq!(
        app.sim.stats().low_priority,
        3,
        "sent to fal as low priority"
    );

    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let event = got[0].json();
    assert_eq!(event["type"], "batch.completed");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["counts"]["completed"], 3);
    assert_eq!(event["data"]["metadata"], json!({"job": "catalog-7"}));
    let announced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'batch.completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(announced, 1, "announced once");
}

#[tokio::test]
async fn one_bad_member_refuses_the_whole_batch_and_names_the_member() {
    let app = spawn_app().await;
    let res = post_batch(
        &app,
        &json!({"requests": [
            {"prompt": "fine"},
            {"prompt": "", "num_images": 9},
            {"prompt": "also fine", "priority": "urgent"},
        ]}),
    )
    .await;
    let p = problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"requests[1].prompt"), "{p}");
    assert!(fields.contains(&"requests[1].num_images"), "{p}");
    assert!(fields.contains(&"requests[2].priority"), "{p}");
    assert_eq!(stored_generations(&app).await, 0, "nothing is accepted");

    let res = post_batch(&app, &json!({"requests": []})).await;
    problem(res, 422, "validation_failed").await;
}

#[tokio::test]
async fn a_batch_that_does_not_fit_its_budget_is_refused_whole_saying_what_it_lacks() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    // $0.020 a day; three square images cost $0.024.
    set_limits(
        &app,
        "UPDATE tenants SET daily_budget_micros = 20000 WHERE id = $1",
    )
    .await;
    let three = json!({"requests": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]});
    let p = problem(post_batch(&app, &three).await, 402, "budget_exhausted").await;
    assert_eq!(p["lacks_micros"], 4_000, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("$0.004"), "{p}");
    assert_eq!(stored_generations(&app).await, 0);
    let reserved: Option<i64> =
        sqlx::query_scalar("SELECT sum(reserved_micros)::bigint FROM budget_usage")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reserved.unwrap_or(0), 0, "no reservation is left behind");

    let two = json!({"requests": [{"prompt": "a"}, {"prompt": "b"}]});
    assert_eq!(post_batch(&app, &two).await.status(), 202);
}

#[tokio::test]
async fn rate_limits_count_one_request_per_member_whatever_its_images() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    set_limits(
        &app,
        "UPDATE tenants SET requests_per_minute = 5 WHERE id = $1",
    )
    .await;
    let batch = |n: usize| {
        let requests: Vec<Value> = (0..n)
            .map(|i| json!({"prompt": format!("p{i}"), "num_images": 4}))
            .collect();
        json!({ "requests": requests })
    };
    problem(
        post_batch(&app, &batch(6)).await,
        429,
        "tenant_rate_limited",
    )
    .await;
    let res = post_batch(&app, &batch(4)).await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["ratelimit-remaining"], "1");
    problem(
        post_batch(&app, &batch(2)).await,
        429,
        "tenant_rate_limited",
    )
    .await;
    assert_eq!(
        app.post("/v1/generations", &json!({"prompt": "one more"}))
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn cancelling_a_batch_cancels_what_was_not_sent_and_then_it_completes() {
    // No submitter: every member waits in the outbox.
    let app = spawn_app_with(TestOptions {
        workers: Workers {
            reconciler: true,
            ..Workers::NONE
        },
        ..Default::default()
    })
    .await;
    let res = post_batch(
        &app,
        &json!({"requests": [{"prompt": "a"}, {"prompt": "b"}]}),
    )
    .await;
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let after: Value = res.json().await.unwrap();
    assert_eq!(after["cancelled_now"], 2);
    assert!(after["cancel_requested_at"].is_string());
    let done = wait_completed(&app, &id).await;
    assert_eq!(done["counts"]["cancelled"], 2);
    assert_eq!(done["cost_micros"], 0);
}

#[tokio::test]
async fn the_outbox_sends_normal_work_before_a_backlog_of_low_priority_batches() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let requests: Vec<Value> = (0..20)
        .map(|i| json!({"prompt": format!("bulk {i}")}))
        .collect();
    assert_eq!(
        post_batch(&app, &json!({ "requests": requests }))
            .await
            .status(),
        202
    );
    let urgent = app
        .generate(json!({"prompt": "a customer is waiting"}))
        .await;
    assert_eq!(urgent["priority"], "normal");

    // The next free submit slot takes the normal request, though 20 low ones are older.
    let next = fluxgate::storage::generations::claim_submissions(&app.pool, 1, 30.0)
        .await
        .unwrap();
    assert_eq!(next[0].id.to_string(), urgent["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_batch_replayed_with_its_idempotency_key_is_the_same_batch() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let send = || {
        app.client
            .post(app.url("/v1/batches"))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", "nightly-2026-12-03")
            .json(&json!({"requests": [{"prompt": "a"}, {"prompt": "b"}]}))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(stored_generations(&app).await, 2);
}

#[tokio::test]
async fn batches_are_listed_newest_first_with_their_members_counted_and_filtered_by_status() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let requests: Vec<Value> = (0..n)
            .map(|i| json!({"prompt": format!("kite {n}.{i}")}))
            .collect();
        let res = post_batch(&app, &json!({"requests": requests})).await;
        assert_eq!(res.status(), 202);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        wait_completed(&app, id).await;
    }

    let page = get_json(&app, "/v1/batches?limit=2").await;
    assert_eq!(
        strings(&page["data"], "id"),
        [ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    assert_eq!(page["data"][0]["counts"]["completed"], 3);
    assert_eq!(
        page["data"][0]["generation_ids"].as_array().unwrap().len(),
        3
    );
    assert_eq!(page["has_more"], true);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get_json(&app, &format!("/v1/batches?limit=2&cursor={cursor}")).await;
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["data"][0]["counts"]["completed"], 1);
    assert_eq!(rest["has_more"], false);

    let running = get_json(&app, "/v1/batches?status=running").await;
    assert_eq!(running["data"], json!([]));
    let p = problem(
        app.get("/v1/batches?status=done").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "status", "{p}");
}

#[tokio::test]
async fn a_batchs_members_are_listed_among_the_generations_by_batch_id() {
    let app = spawn_app().await;
    app.generate(json!({"prompt": "on its own"})).await;
    let res = post_batch(
        &app,
        &json!({"requests": [{"prompt": "member one"}, {"prompt": "member two"}]}),
    )
    .await;
    let batch: Value = res.json().await.unwrap();
    let id = batch["id"].as_str().unwrap();

    let members = get_json(&app, &format!("/v1/generations?batch_id={id}")).await;
    let mut listed = strings(&members["data"], "id");
    listed.sort_unstable();
    let mut expected = strings(&batch["generation_ids"], "");
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let p = problem(
        app.get("/v1/generations?batch_id=gen_123").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "batch_id", "{p}");
}
