//! The rest of fal's queue contract as fluxgate uses it: a start timeout that fails a request
//! fal never started (a distinct class, not retried, not charged), model fallbacks off unless
//! the deployment turns them on (and, when on, what ran recorded and priced), low-priority work
//! waiting behind normal work for fal's runners, a rotation of fal's signing key costing no
//! redelivery, and a lost `sync_mode` callback failing once (fal keeps no such result).
use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, test_settings, TestApp, TestOptions};

/// fal keeps every request queued for two seconds before it starts.
async fn slow_queue_app(settings: fluxgate::config::Settings) -> TestApp {
    let mut opts = TestOptions {
        settings,
        ..Default::default()
    };
    opts.sim.queue_delay = Duration::from_secs(2);
    spawn_app_with(opts).await
}

#[tokio::test]
async fn a_start_timeout_that_passes_in_fals_queue_fails_the_generation_unrun_and_uncharged() {
    let app = slow_queue_app(test_settings()).await;
    let g = app
        .generate(json!({"prompt": "a lighthouse", "start_timeout_secs": 1}))
        .await;
    let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "start_timeout", "{done}");
    assert_eq!(done["cost_micros"], 0);
    assert_eq!(app.sim.stats().start_timeouts, 1);
    assert_eq!(
        app.sim.stats().submissions,
        1,
        "a start timeout is not retried"
    );
}

#[tokio::test]
async fn the_deployments_default_start_timeout_applies_to_requests_that_set_none() {
    let mut settings = test_settings();
    settings.fal.start_timeout_secs = Some(1);
    let app = slow_queue_app(settings).await;
    let g = app.generate(json!({"prompt": "a lighthouse"})).await;
    let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "start_timeout", "{done}");
}

#[tokio::test]
async fn model_fallbacks_are_off_unless_the_deployment_turns_them_on() {
    for (on, disabled) in [(false, 1), (true, 0)] {
        let mut settings = test_settings();
        settings.fal.fallbacks = on;
        let app = spawn_app_with(TestOptions {
            settings,
            ..Default::default()
        })
        .await;
        let g = app.generate(json!({"prompt": "a lighthouse"})).await;
        let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(
            app.sim.stats().fallbacks_disabled,
            disabled,
            "FLUXGATE_FAL_FALLBACKS={}",
            if on { "on" } else { "off" }
        );
    }
}

#[tokio::test]
async fn a_submit_whose_answer_times_out_is_not_sent_again_while_its_callback_can_still_come() {
    let mut settings = test_settings();
    settings.fal.timeout = Duration::from_secs(1);
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    // fal queues it but answers the submit only after fluxgate gave up waiting (1 s), and its
    // result comes later still (1.3 s): a resubmit on the timeout would have sent it twice.
    let g = app
        .generate(json!({"prompt": "a lighthouse [sim:slow-answer=1500] [sim:queue=1300]"}))
        .await;
    let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(
        done["status"], "completed",
        "finished by fal's callback: {done}"
    );
    assert_eq!(app.sim.stats().submissions, 1, "sent to fal once");
    assert!(done["fal_request_id"].is_string());
}

#[tokio::test]
async fn with_fallbacks_on_a_request_fal_ran_elsewhere_is_recorded_and_priced_by_what_ran() {
    let mut settings = test_settings();
    settings.fal.fallbacks = true;
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    // Turbo asked for (1 MP, $0.008), flash ran it ($0.005/MP).
    let g = app
        .generate(json!({"prompt": "a lighthouse [sim:fallback=fal-ai/flux-2/flash]", "image_size": "square_hd"}))
        .await;
    assert_eq!(g["estimated_cost_micros"], 8000);
    let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["model"], "fal-ai/flux-2/turbo");
    assert_eq!(done["served_model"], "fal-ai/flux-2/flash", "{done}");
    assert_eq!(
        done["cost_micros"], 5000,
        "priced by the endpoint that ran it"
    );
    assert_eq!(app.sim.stats().fallbacks, 1);
}

#[tokio::test]
async fn with_fallbacks_off_fal_runs_the_endpoint_asked_for_even_when_it_would_reroute() {
    let app = spawn_app().await;
    let g = app
        .generate(json!({"prompt": "a lighthouse [sim:fallback=fal-ai/flux-2/flash]", "image_size": "square_hd"}))
        .await;
    let done = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["served_model"], serde_json::Value::Null, "{done}");
    assert_eq!(done["cost_micros"], 8000);
    assert_eq!(app.sim.stats().fallbacks, 0);
}

#[tokio::test]
async fn low_priority_batch_work_waits_behind_a_normal_request_for_fals_runners() {
    let mut opts = TestOptions::default();
    // One runner at fal, each request running 300 ms: a queue forms at fal, not here.
    opts.sim.concurrency = Some(1);
    opts.sim.run_delay = Duration::from_millis(300);
    let app = spawn_app_with(opts).await;
    let requests: Vec<_> = (0..4)
        .map(|i| json!({"prompt": format!("catalog item {i}")}))
        .collect();
    let batch = app
        .post("/v1/batches", &json!({"requests": requests}))
        .await;
    assert_eq!(batch.status(), 202);
    let batch: serde_json::Value = batch.json().await.unwrap();
    let members: Vec<String> = batch["generation_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    // Every member reaches fal's queue before the interactive request is made.
    for id in &members {
        app.wait_status(id, &["queued", "completed"]).await;
    }
    let interactive = app.generate(json!({"prompt": "a user waiting"})).await;
    let interactive = app.wait_terminal(interactive["id"].as_str().unwrap()).await;
    let at = |g: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(g["completed_at"].as_str().unwrap()).unwrap()
    };
    let mut finished_before = 0;
    for id in &members {
        let member = app.wait_terminal(id).await;
        assert_eq!(member["priority"], "low");
        if at(&member) < at(&interactive) {
            finished_before += 1;
        }
    }
    assert!(
        finished_before <= 1,
        "only the member already running may finish first, {finished_before} did"
    );
    assert_eq!(app.sim.stats().low_priority, 4);
}

#[tokio::test]
async fn a_rotation_of_fals_signing_key_costs_no_redelivery() {
    let app = spawn_app().await;
    let first = app.generate(json!({"prompt": "before the rotation"})).await;
    app.wait_terminal(first["id"].as_str().unwrap()).await;
    // fluxgate has fetched and cached fal's keys; fal now signs with a key it has not seen.
    app.sim.rotate_signing_key();
    let second = app.generate(json!({"prompt": "after the rotation"})).await;
    let done = app.wait_terminal(second["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let stats = app.sim.stats();
    assert_eq!(
        (stats.webhooks_attempted, stats.webhooks_delivered),
        (2, 2),
        "each webhook was taken on its first attempt"
    );
}

#[tokio::test]
async fn a_sync_mode_result_whose_callback_is_lost_fails_once_as_unavailable() {
    let store = tempfile::tempdir().unwrap();
    let mut settings = test_settings();
    settings.storage.images = Some(format!("file://{}", store.path().display()));
    settings.fal.reconcile_after = Duration::ZERO;
    let app = spawn_app_with(TestOptions {
        settings,
        workers: fluxgate::startup::Workers {
            reconciler: false,
            ..fluxgate::startup::Workers::ALL
        },
        ..Default::default()
    })
    .await;
    let g = app
        .generate(json!({"prompt": "inline [sim:drop-webhook]", "sync_mode": true}))
        .await;
    let id = g["id"].as_str().unwrap();
    app.wait_status(id, &["queued"]).await;
    // fal's status says completed, but it kept no output to fetch.
    app.wait_sim_completed(1).await;
    let reconcile = || fluxgate::pipeline::reconciler::reconcile_once(&app.pipeline);
    assert_eq!(reconcile().await.unwrap(), 1);
    let done = app.generation(id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "sync_result_unavailable", "{done}");
    assert_eq!(reconcile().await.unwrap(), 0, "never checked again");
    assert_eq!(app.sim.stats().submissions, 1, "never sent again");
}
