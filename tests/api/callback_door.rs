//! fal's callback route tried as an attacker would: URLs without their generation's token,
//! webhooks fal signed for somebody else's request, bodies announced and never sent, more
//! callbacks at once than the instance takes, and a pinned fal account.
use std::time::Duration;

use ed25519_dalek::SigningKey;
use fluxgate::{fal::signature::sign_hex, startup::Workers};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    callback_path, post_fal_callback, problem, spawn_app_with, start_app, test_settings, TestApp,
    TestOptions, SIM_SEED,
};

fn ok_body(request_id: &str) -> Value {
    json!({"request_id": request_id, "status": "OK", "payload": {
        "images": [{"url": "https://v3.fal.media/files/x.png", "width": 1024, "height": 768}],
        "seed": 42, "has_nsfw_concepts": [false], "timings": {}, "prompt": "a"}})
}

fn quiet() -> TestOptions {
    TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    }
}

/// Signs `body` fal-style and posts it to `path` as given.
async fn post_to(app: &TestApp, path: &str, body: &Value, user: &str) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let rid = body["request_id"].as_str().unwrap();
    let sig = sign_hex(&SigningKey::from_bytes(&SIM_SEED), rid, user, &ts, &raw);
    app.client
        .post(app.url(path))
        .header("x-fal-webhook-request-id", rid)
        .header("x-fal-webhook-user-id", user)
        .header("x-fal-webhook-timestamp", ts)
        .header("x-fal-webhook-signature", sig)
        .body(raw)
        .send()
        .await
        .unwrap()
}

async fn callbacks_stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Writes `head` (and `body`) on a raw connection and returns the status line of the answer,
/// or `None` if none came within `within`.
async fn raw_request(app: &TestApp, head: &str, body: &[u8], within: Duration) -> Option<String> {
    let addr = app.address.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()?;
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().map(str::to_owned)
}

fn signature_headers(request_id: &str) -> String {
    let ts = chrono::Utc::now().timestamp();
    format!(
        "x-fal-webhook-request-id: {request_id}\r\nx-fal-webhook-user-id: user-1\r\n\
         x-fal-webhook-timestamp: {ts}\r\nx-fal-webhook-signature: {}\r\n",
        "ab".repeat(64)
    )
}

#[tokio::test]
async fn a_callback_without_its_generations_token_is_refused_and_changes_nothing() {
    let app = spawn_app_with(quiet()).await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let other = app.generate(json!({"prompt": "b"})).await;
    let other_path = callback_path(&app, other["id"].as_str().unwrap()).await;
    let other_query = other_path.split_once('?').unwrap().1;
    // No token, another generation's token, a made-up one: each validly signed by fal.
    for path in [
        format!("/hooks/fal/{id}"),
        format!("/hooks/fal/{id}?{other_query}"),
        format!("/hooks/fal/{id}?token=AAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let res = post_to(&app, &path, &ok_body("req-1"), "user-1").await;
        problem(res, 401, "invalid_callback_token").await;
    }
    assert_eq!(callbacks_stored(&app).await, 0);
    assert_eq!(app.generation(id).await["status"], "accepted");
    // The URL fluxgate gave fal works.
    let res = post_to(
        &app,
        &callback_path(&app, id).await,
        &ok_body("req-1"),
        "user-1",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.generation(id).await["status"], "completed");
}

#[tokio::test]
async fn a_webhook_fal_signed_for_another_request_cannot_complete_a_generation() {
    let app = spawn_app_with(quiet()).await;
    let key = SigningKey::from_bytes(&SIM_SEED);
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    // The signed header names one request, the body another.
    let raw = serde_json::to_vec(&ok_body("someone-elses")).unwrap();
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = sign_hex(&key, "ours", "user-1", &ts, &raw);
    let res = app
        .client
        .post(app.url(&callback_path(&app, id).await))
        .header("x-fal-webhook-request-id", "ours")
        .header("x-fal-webhook-user-id", "user-1")
        .header("x-fal-webhook-timestamp", ts)
        .header("x-fal-webhook-signature", sig)
        .body(raw)
        .send()
        .await
        .unwrap();
    let p = problem(res, 400, "invalid_callback").await;
    assert!(p["detail"].as_str().unwrap().contains("request_id"), "{p}");
    assert_eq!(callbacks_stored(&app).await, 0);
    assert_eq!(app.generation(id).await["status"], "accepted");
}

#[tokio::test]
async fn a_pinned_fal_account_refuses_callbacks_signed_for_any_other() {
    let mut settings = test_settings();
    settings.fal.user_id = Some("our-account".into());
    let app = spawn_app_with(TestOptions {
        settings,
        ..quiet()
    })
    .await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let path = callback_path(&app, id).await;
    let res = post_to(&app, &path, &ok_body("req-1"), "another-account").await;
    problem(res, 401, "unexpected_fal_account").await;
    assert_eq!(callbacks_stored(&app).await, 0);
    let res = post_to(&app, &path, &ok_body("req-1"), "our-account").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_large_body_without_signature_headers_is_answered_401_before_it_is_sent() {
    let app = spawn_app_with(quiet()).await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let path = callback_path(&app, g["id"].as_str().unwrap()).await;
    // 60 MB announced, 1 KB sent: the answer must not wait for the rest.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60000000\r\n\r\n"
    );
    let status = raw_request(&app, &head, &[b' '; 1024], Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    // With the headers but outside the window: refused just as early.
    let stale = signature_headers("r").replace(
        &chrono::Utc::now().timestamp().to_string(),
        &(chrono::Utc::now().timestamp() - 3600).to_string(),
    );
    let head =
        format!("POST {path} HTTP/1.1\r\nhost: x\r\n{stale}content-length: 60000000\r\n\r\n");
    let status = raw_request(&app, &head, &[b' '; 1024], Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
    // A body larger than a result with image URLs needs is refused by its announced length.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\n{}content-length: {}\r\n\r\n",
        signature_headers("r"),
        (256 << 10) + 1
    );
    let status = raw_request(&app, &head, b"", Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"));
}

#[tokio::test]
async fn a_body_that_never_finishes_is_cut_at_the_deadline_and_slots_are_bounded() {
    let mut settings = test_settings();
    settings.server.body_timeout = Duration::from_secs(1);
    settings.fal.callback_concurrency = 1;
    let app = spawn_app_with(TestOptions {
        settings,
        ..quiet()
    })
    .await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let path = callback_path(&app, id).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\n{}content-length: 100\r\n\r\n",
        signature_headers("r")
    );
    // The first holds the only slot, sending 10 of 100 bytes...
    let app_ref = &app;
    let slow =
        async { raw_request(app_ref, &head, b"{\"request\"", Duration::from_secs(10)).await };
    let busy = async {
        // Sent once the first one holds the slot.
        while app_ref.callback_slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        post_to(app_ref, &path, &ok_body("req-1"), "user-1").await
    };
    let (slow, busy) = tokio::join!(slow, busy);
    // ...so the second is told to come back, and the first is cut at the deadline.
    assert_eq!(busy.status(), 503);
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    problem(busy, 503, "callbacks_busy").await;
    assert_eq!(slow.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    // The slot is free again: fal's redelivery goes through.
    let res = post_to(&app, &path, &ok_body("req-1"), "user-1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.generation(id).await["status"], "completed");
}

/// Backdates generations to before callback URLs had tokens, and starts the instance again
/// (the grace period is decided at start, from the generations still waiting).
async fn restart_after_backdating(app: TestApp, ids: &[&str], grace: Duration) -> TestApp {
    for id in ids {
        sqlx::query(
            "UPDATE generations SET created_at = created_at - interval '1 day' WHERE id = $1",
        )
        .bind(id.parse::<fluxgate::domain::ids::GenerationId>().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE server_secrets SET created_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (db_url, sim, _) = app.stop().await;
    let pool = fluxgate::storage::connect(&db_url, 8).await.unwrap();
    let mut settings = test_settings();
    settings.fal.legacy_callback_grace = grace;
    start_app(pool, db_url, sim, settings, Workers::NONE).await
}

#[tokio::test]
async fn token_less_urls_from_before_the_upgrade_work_for_their_generations_during_the_grace() {
    let app = spawn_app_with(quiet()).await;
    // On a fresh install nothing predates the tokens: no URL without one is taken.
    let fresh = app.generate(json!({"prompt": "fresh"})).await;
    let fresh_id = fresh["id"].as_str().unwrap().to_owned();
    let res = post_to(
        &app,
        &format!("/hooks/fal/{fresh_id}"),
        &ok_body("req-f"),
        "user-1",
    )
    .await;
    problem(res, 401, "invalid_callback_token").await;
    let old = app.generate(json!({"prompt": "old"})).await;
    let old_id = old["id"].as_str().unwrap().to_owned();
    let app = restart_after_backdating(app, &[&old_id], Duration::from_secs(86_400)).await;
    let new = app.generate(json!({"prompt": "new"})).await;
    let new_id = new["id"].as_str().unwrap();
    let res = post_to(
        &app,
        &format!("/hooks/fal/{new_id}"),
        &ok_body("req-new"),
        "user-1",
    )
    .await;
    problem(res, 401, "invalid_callback_token").await;
    let res = post_to(
        &app,
        &format!("/hooks/fal/{old_id}"),
        &ok_body("req-old"),
        "user-1",
    )
    .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(app.generation(&old_id).await["status"], "completed");

    // Once the grace period is over, no URL without a token is taken.
    let left = app.generate(json!({"prompt": "left"})).await;
    let left_id = left["id"].as_str().unwrap().to_owned();
    let app = restart_after_backdating(app, &[&left_id], Duration::from_secs(60)).await;
    let res = post_to(
        &app,
        &format!("/hooks/fal/{left_id}"),
        &ok_body("req-l"),
        "user-1",
    )
    .await;
    problem(res, 401, "invalid_callback_token").await;
    assert_eq!(app.generation(&left_id).await["status"], "accepted");
}

#[tokio::test]
async fn the_callback_url_given_to_fal_carries_the_token_and_fal_completes_through_it() {
    let app = spawn_app_with(TestOptions::default()).await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let done = app.wait_terminal(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let verified = app
        .metric("fluxgate_fal_callback_verifications_total{outcome=\"valid\"}")
        .await;
    assert!(verified >= 1.0);
    // And a replay of what fal signed, to an id it was not for, is refused by the token.
    let stranger = fluxgate::domain::ids::GenerationId::new().to_string();
    let res = post_fal_callback(
        &app,
        id,
        &ok_body("req-9"),
        &SigningKey::from_bytes(&SIM_SEED),
        None,
    )
    .await;
    assert_eq!(res.status(), 200, "a second fal run is recorded");
    let res = post_to(
        &app,
        &format!(
            "/hooks/fal/{stranger}?{}",
            callback_path(&app, id).await.split_once('?').unwrap().1
        ),
        &ok_body("req-10"),
        "user-1",
    )
    .await;
    problem(res, 401, "invalid_callback_token").await;
}
