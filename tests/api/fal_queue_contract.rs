//! The rest of fal's queue contract as fluxgate uses it: a start timeout that fails a request
//! fal never started (a distinct class, not retried, not charged), and model fallbacks off
//! unless the deployment turns them on.
use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, TestApp, TestOptions};

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
