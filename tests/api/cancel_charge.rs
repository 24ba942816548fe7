//! A cancel does not make work free: a generation cancelled while fal had it keeps its budget
//! reservation until fal's final word, and is charged what fal says it ran.
use std::time::Duration;

use fluxgate::{
    pipeline::reconciler, pipeline::submitter, startup::Workers, tools::simulator::SimConfig,
};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestOptions, SIM_KEY, SIM_SEED};

async fn app_with_sim(queue_delay: Duration, run_delay: Duration) -> TestApp {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        sim: SimConfig {
            api_key: Some(secrecy::SecretString::from(SIM_KEY)),
            signing_seed: Some(SIM_SEED),
            queue_delay,
            run_delay,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    sqlx::query("UPDATE tenants SET daily_budget_micros = 1000000 WHERE id = $1")
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    app
}

/// Today's (reserved, spent) micro-dollars of the tenant.
async fn budget(app: &TestApp) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COALESCE(sum(reserved_micros), 0)::bigint, COALESCE(sum(spent_micros), 0)::bigint
         FROM budget_usage WHERE tenant_id = $1 AND scope = ''",
    )
    .bind(app.tenant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// A 512×512 generation ($0.008), submitted to the simulator.
async fn submitted(app: &TestApp) -> (String, fluxgate::domain::ids::GenerationId) {
    let g = app
        .generate(json!({"prompt": "a", "image_size": "square"}))
        .await;
    let id = g["id"].as_str().unwrap().to_owned();
    submitter::drain_once(&app.pipeline).await.unwrap();
    assert_eq!(app.generation(&id).await["status"], "queued");
    let uuid = id.parse::<fluxgate::domain::ids::GenerationId>().unwrap();
    (id, uuid)
}

async fn status_url(app: &TestApp, id: fluxgate::domain::ids::GenerationId) -> String {
    sqlx::query_scalar("SELECT status_url FROM generations WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn cancel(app: &TestApp, id: &str) -> Value {
    let res = app
        .post(&format!("/v1/generations/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn held(app: &TestApp, id: fluxgate::domain::ids::GenerationId) -> bool {
    sqlx::query_scalar("SELECT reservation_held_since IS NOT NULL FROM generations WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cancel_of_running_work_is_charged_what_fal_ran_once_fal_says() {
    let app = app_with_sim(Duration::ZERO, Duration::from_millis(1500)).await;
    let (id, uuid) = submitted(&app).await;
    let url = status_url(&app, uuid).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.pipeline.fal.status(&url).await.unwrap().status != "IN_PROGRESS" {
        assert!(tokio::time::Instant::now() < deadline, "never started");
        tokio::task::yield_now().await;
    }
    let cancelled = cancel(&app, &id).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancellation"], "cancelled_at_fal");
    assert!(cancelled["cost_micros"].is_null(), "{cancelled}");
    assert_eq!(
        budget(&app).await,
        (8000, 0),
        "still reserved while fal runs it"
    );

    // fal finishes it anyway and calls back: charged, never announced as completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held(&app, uuid).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fal's word never settled it"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(budget(&app).await, (0, 8000));
    let g = app.generation(&id).await;
    assert_eq!(
        (g["status"].as_str(), g["cost_micros"].as_i64()),
        (Some("cancelled"), Some(8000))
    );
    assert_eq!(
        app.event_types(&id).await,
        ["generation.queued", "generation.cancelled"]
    );
}

#[tokio::test]
async fn a_cancel_fal_removed_from_its_queue_costs_nothing_once_the_reconciler_asks() {
    let app = app_with_sim(Duration::from_secs(30), Duration::from_millis(10)).await;
    let (id, uuid) = submitted(&app).await;
    cancel(&app, &id).await;
    assert_eq!(budget(&app).await, (8000, 0));
    // Not yet overdue: nothing is asked.
    reconciler::reconcile_once(&app.pipeline).await.unwrap();
    assert!(held(&app, uuid).await);
    sqlx::query(
        "UPDATE generations SET reservation_held_since = now() - interval '1 hour' WHERE id = $1",
    )
    .bind(uuid)
    .execute(&app.pool)
    .await
    .unwrap();
    reconciler::reconcile_once(&app.pipeline).await.unwrap();
    assert!(!held(&app, uuid).await);
    assert_eq!(budget(&app).await, (0, 0));
    assert_eq!(app.generation(&id).await["cost_micros"], 0);
}

#[tokio::test]
async fn a_cancel_fal_never_settles_is_charged_as_estimated_after_a_day() {
    let app = app_with_sim(Duration::from_secs(30), Duration::from_millis(10)).await;
    let (id, uuid) = submitted(&app).await;
    // As if the cancel had reached fal a day ago, and fal still has it queued.
    sqlx::query(
        "UPDATE generations SET status = 'cancelled', finished_at = now(), cost_micros = NULL,
                reservation_held_since = now() - interval '25 hours' WHERE id = $1",
    )
    .bind(uuid)
    .execute(&app.pool)
    .await
    .unwrap();
    reconciler::reconcile_once(&app.pipeline).await.unwrap();
    assert!(!held(&app, uuid).await);
    assert_eq!(budget(&app).await, (0, 8000));
    assert_eq!(app.generation(&id).await["cost_micros"], 8000);
}
