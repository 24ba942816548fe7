//! The callback receiver: signatures, unknown generations, contradictions, replays.
use ed25519_dalek::SigningKey;
use fluxgate::domain::event_type::EventType;
use fluxgate::fal::signature::sign_hex;
use serde_json::{json, Value};

use crate::helpers::{
    callback_path, post_fal_callback as post_signed, problem, spawn_app_with, TestOptions, SIM_SEED,
};
use fluxgate::{domain::states::GenerationStatus, startup::Workers};

fn ok_body(request_id: &str) -> Value {
    json!({"request_id": request_id, "gateway_request_id": request_id, "status": "OK", "payload": {
        "images": [{"url": "https://v3.fal.media/files/x.png", "width": 1024, "height": 768, "content_type": "image/png"}],
        "seed": 42, "has_nsfw_concepts": [false], "timings": {"inference": 0.3}, "prompt": "a"}})
}

#[tokio::test]
async fn signed_callbacks_are_applied_once_and_forgeries_change_nothing() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let sim_key = SigningKey::from_bytes(&SIM_SEED);
    let stranger = SigningKey::from_bytes(&[9; 32]);

    // A key that is not in the JWKS, and a tampered body: 401, nothing stored.
    problem(
        post_signed(&app, id, &ok_body("req-1"), &stranger, None).await,
        401,
        "invalid_signature",
    )
    .await;
    problem(
        post_signed(&app, id, &ok_body("req-1"), &sim_key, Some("body")).await,
        401,
        "invalid_signature",
    )
    .await;
    let res = app
        .client
        .post(app.url(&callback_path(&app, id).await))
        .json(&ok_body("req-1"))
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_signature").await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(app.generation(id).await["status"], "accepted");

    // The genuine one, before the submit answer was stored (matched by the id in the URL).
    let res = post_signed(&app, id, &ok_body("req-1"), &sim_key, None).await;
    assert_eq!(res.status(), 200);
    let g = app.generation(id).await;
    assert_eq!(
        (
            g["status"].as_str(),
            g["seed"].as_i64(),
            g["cost_micros"].as_i64()
        ),
        (Some("completed"), Some(42), Some(8000))
    );
    // Recorded verbatim: the very bytes fal signed.
    let stored: String =
        sqlx::query_scalar("SELECT body::text FROM fal_callbacks WHERE fal_request_id = 'req-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, serde_json::to_string(&ok_body("req-1")).unwrap());
    // Replayed: 200, nothing changes.
    let res = post_signed(&app, id, &ok_body("req-1"), &sim_key, None).await;
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "duplicate");
    // A second fal run for a finished generation: recorded, not announced.
    let res = post_signed(&app, id, &ok_body("req-2"), &sim_key, None).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["outcome"],
        "recorded_only"
    );
    // fal's result reached a generation still `accepted`: queued is announced before it.
    assert_eq!(
        app.event_types(id).await,
        ["generation.queued", "generation.completed"]
    );
    let announced: Vec<bool> =
        sqlx::query_scalar("SELECT announced FROM fal_callbacks ORDER BY received_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(announced, [true, false]);

    // Unknown generation → 404; contradicting request id on an unfinished one → 409.
    let unknown = fluxgate::domain::ids::GenerationId::new().to_string();
    problem(
        post_signed(&app, &unknown, &ok_body("req-3"), &sim_key, None).await,
        404,
        "not_found",
    )
    .await;
    // Its real webhook is dropped, so only the forged one below can arrive.
    let g2 = app
        .generate(json!({"prompt": "[sim:drop-webhook] b"}))
        .await;
    let id2 = g2["id"].as_str().unwrap();
    fluxgate::pipeline::submitter::drain_once(&app.pipeline)
        .await
        .unwrap();
    assert_eq!(app.generation(id2).await["status"], "queued");
    problem(
        post_signed(&app, id2, &ok_body("req-bogus"), &sim_key, None).await,
        409,
        "request_id_mismatch",
    )
    .await;
    assert_eq!(app.generation(id2).await["status"], "queued");
}

#[tokio::test]
async fn error_callbacks_and_null_payloads_fail_the_generation_with_fal_details() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let key = SigningKey::from_bytes(&SIM_SEED);
    let cases = [
        (
            json!({"request_id": "e1", "status": "ERROR", "error": "Invalid status code: 422", "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}]}}),
            "content_policy_violation",
        ),
        (
            json!({"request_id": "e2", "status": "ERROR", "error": "Invalid status code: 500", "payload": null}),
            "fal_error",
        ),
        (
            json!({"request_id": "e3", "status": "OK", "payload": null, "payload_error": "Output not serialisable"}),
            "fal_payload_error",
        ),
    ];
    for (body, code) in cases {
        let g = app.generate(json!({"prompt": "a"})).await;
        let id = g["id"].as_str().unwrap();
        assert_eq!(post_signed(&app, id, &body, &key, None).await.status(), 200);
        let g = app.generation(id).await;
        assert_eq!(
            (g["status"].as_str(), g["error"]["code"].as_str()),
            (Some("failed"), Some(code)),
            "{g}"
        );
        assert_eq!(
            app.event_types(id).await,
            ["generation.queued", "generation.failed"]
        );
    }
    // Not a fal webhook at all, but correctly signed: 400, nothing stored.
    let g = app.generate(json!({"prompt": "a"})).await;
    let res = post_signed(
        &app,
        g["id"].as_str().unwrap(),
        &json!({"request_id": "x"}),
        &key,
        None,
    )
    .await;
    problem(res, 400, "invalid_callback").await;
    // Correctly signed but not JSON (cut short, or with trailing bytes): 400 invalid_json.
    for raw in [&b"{\"request_id\": \"x\""[..], b"{\"request_id\": \"x\"} x"] {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign_hex(&key, "x", "user-1", &ts, raw);
        let res = app
            .client
            .post(app.url(&callback_path(&app, g["id"].as_str().unwrap()).await))
            .header("x-fal-webhook-request-id", "x")
            .header("x-fal-webhook-user-id", "user-1")
            .header("x-fal-webhook-timestamp", ts)
            .header("x-fal-webhook-signature", sig)
            .body(raw.to_vec())
            .send()
            .await
            .unwrap();
        problem(res, 400, "invalid_json").await;
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fal_callbacks WHERE fal_request_id = 'x'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        stored, 0,
        "nothing is stored for a body that is not a webhook"
    );
}

/// The one-statement write behind every callback batch: a generation whose row moved on since
/// it was read (another writer, or our record of the submission) is left alone — no terminal
/// state, no announced callback, no event — so it can be applied again under a lock.
#[tokio::test]
async fn an_unlocked_batch_write_leaves_a_generation_that_moved_on_alone() {
    use fluxgate::storage::{
        callbacks::{write_unlocked, NewCallback},
        events::NewEvent,
        generations::{self, FinishColumns},
    };
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let g = app.generate(json!({"prompt": "a"})).await;
    let public = g["id"].as_str().unwrap();
    let id = public
        .parse::<fluxgate::domain::ids::GenerationId>()
        .unwrap();
    let mut row = generations::get(&app.pool, app.tenant_id, id)
        .await
        .unwrap()
        .unwrap();
    let version = row.updated_at;
    let now = chrono::Utc::now();
    row.status = GenerationStatus::Failed;
    row.finished_at = Some(now);
    row.fal_request_id = Some("req-moved".into());
    let body = json!({"request_id": "req-moved", "status": "ERROR"}).to_string();
    let callback = NewCallback {
        generation_id: id,
        fal_request_id: "req-moved",
        source: "webhook",
        fal_status: "ERROR",
        body: &body,
        announced: true,
        received_at: now,
    };
    let event = NewEvent {
        tenant_id: app.tenant_id,
        kind: EventType::GenerationFailed,
        generation_id: Some(id),
        data: fluxgate::wire::GenerationObject::of(&row).value(),
    };
    let write = |version: chrono::DateTime<chrono::Utc>| {
        let finished = FinishColumns::of(&[&row], |_| (version, false));
        write_unlocked(
            &app.pool,
            finished,
            std::slice::from_ref(&callback),
            std::slice::from_ref(&event),
            None,
        )
    };
    let stale = write(version - chrono::Duration::milliseconds(1))
        .await
        .unwrap();
    assert!(stale.events.is_empty());
    assert_eq!(app.generation(public).await["status"], "accepted");
    assert!(app.event_types(public).await.is_empty());
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    // At the version as read, everything lands together.
    let current = write(version).await.unwrap();
    assert_eq!(current.events.len(), 1);
    assert_eq!(app.generation(public).await["status"], "failed");
    assert_eq!(app.event_types(public).await, ["generation.failed"]);
}

/// At zero latency fal's callback arrives together with fal's answer to the submit, and the
/// unlocked callback write races our record of that answer. Whichever lands first, the write
/// goes through without a lock, and the generation announces `generation.queued` exactly once,
/// before its result.
#[tokio::test]
async fn a_callback_racing_the_record_of_its_submission_announces_queued_once() {
    use fluxgate::{
        fal::client::Submitted,
        storage::{
            callbacks::{write_unlocked, NewCallback},
            events::NewEvent,
            generations::{self, FinishColumns},
        },
    };
    for callback_first in [true, false] {
        let app = spawn_app_with(TestOptions {
            workers: Workers::NONE,
            ..Default::default()
        })
        .await;
        let g = app.generate(json!({"prompt": "a"})).await;
        let public = g["id"].as_str().unwrap();
        let id = public
            .parse::<fluxgate::domain::ids::GenerationId>()
            .unwrap();
        let read = generations::get(&app.pool, app.tenant_id, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.status, GenerationStatus::Accepted);
        let now = chrono::Utc::now();
        let rid = format!("req-race-{callback_first}");
        let event = |kind: EventType, status: GenerationStatus| {
            let mut row = read.clone();
            row.status = status;
            row.fal_request_id = Some(rid.clone());
            NewEvent {
                tenant_id: app.tenant_id,
                kind,
                generation_id: Some(id),
                data: fluxgate::wire::GenerationObject::of(&row).value(),
            }
        };
        // The callback's plan for a row read `accepted`: queued, then its result.
        let mut finished = read.clone();
        finished.status = GenerationStatus::Failed;
        finished.finished_at = Some(now);
        finished.fal_request_id = Some(rid.clone());
        let body = json!({"request_id": rid, "status": "ERROR"}).to_string();
        let callback = NewCallback {
            generation_id: id,
            fal_request_id: &rid,
            source: "webhook",
            fal_status: "ERROR",
            body: &body,
            announced: true,
            received_at: now,
        };
        let planned = [
            event(EventType::GenerationQueued, GenerationStatus::Queued),
            event(EventType::GenerationFailed, GenerationStatus::Failed),
        ];
        let write = || {
            write_unlocked(
                &app.pool,
                FinishColumns::of(&[&finished], |_| (read.updated_at, true)),
                std::slice::from_ref(&callback),
                &planned,
                None,
            )
        };
        let submitted = Submitted {
            request_id: rid.clone(),
            response_url: None,
            status_url: None,
            cancel_url: None,
            queue_position: None,
        };
        let record = || {
            generations::record_submitted(
                &app.pool,
                read.id,
                &submitted,
                chrono::Utc::now(),
                event(EventType::GenerationQueued, GenerationStatus::Queued),
                None,
            )
        };
        let status = |r: Option<generations::Recorded>| r.map(|r| (r.status, r.moved));
        if callback_first {
            let written = write().await.unwrap();
            assert_eq!(
                written.events.len(),
                2,
                "queued and failed, by the callback"
            );
            let recorded = record().await.unwrap();
            assert_eq!(status(recorded), Some((GenerationStatus::Failed, false)));
        } else {
            let recorded = record().await.unwrap();
            assert_eq!(status(recorded), Some((GenerationStatus::Queued, true)));
            let written = write().await.unwrap();
            assert_eq!(
                written.events.len(),
                1,
                "only the result: queued was announced"
            );
        }
        assert_eq!(app.generation(public).await["status"], "failed");
        assert_eq!(
            app.event_types(public).await,
            ["generation.queued", "generation.failed"],
            "callback first: {callback_first}"
        );
    }
}

/// The ingest writers keep their connection between batches. One that breaks under a batch (a
/// killed backend, a Postgres restart) costs a retry on a fresh connection, not an error answer
/// that fal would have to retry.
#[tokio::test]
async fn a_callback_goes_through_when_the_writers_connection_was_killed() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let key = SigningKey::from_bytes(&SIM_SEED);
    for round in 0..3 {
        let g = app.generate(json!({"prompt": "a"})).await;
        let id = g["id"].as_str().unwrap();
        let res = post_signed(&app, id, &ok_body(&format!("req-kill-{round}")), &key, None).await;
        assert_eq!(res.status(), 200, "round {round}");
        assert_eq!(app.generation(id).await["status"], "completed");
        // Every session of the workers' pool is killed (the writers' held ones among them);
        // the next round is served by a writer whose connection is dead.
        let killed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1) k",
        )
        .bind(fluxgate::startup::WORKERS_APPLICATION_NAME)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert!(killed >= 1, "round {round}: no writer session to kill");
    }
    let announced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'generation.completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(announced, 3);
}
