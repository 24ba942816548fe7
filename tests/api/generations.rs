//! The generation pipeline end to end against the simulator: validation, prices, submission,
//! every fal error class, callbacks (early, duplicate, dropped), cancel, seed reuse, restarts.
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with, start_app, test_settings, TestOptions};
use fluxgate::startup::Workers;

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn generations_stored(app: &crate::helpers::TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_validation_rule_names_its_field_and_nothing_is_stored_or_sent() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "   "}), "prompt"),
        (json!({"prompt": 5}), "prompt"),
        (
            json!({"prompt": "a", "guidance_scale": 20.5}),
            "guidance_scale",
        ),
        (
            json!({"prompt": "a", "guidance_scale": -1}),
            "guidance_scale",
        ),
        (
            json!({"prompt": "a", "guidance_scale": "high"}),
            "guidance_scale",
        ),
        (json!({"prompt": "a", "num_images": 0}), "num_images"),
        (json!({"prompt": "a", "num_images": 5}), "num_images"),
        (json!({"prompt": "a", "num_images": 1.5}), "num_images"),
        (json!({"prompt": "a", "seed": -1}), "seed"),
        (json!({"prompt": "a", "seed": 1.5}), "seed"),
        (
            json!({"prompt": "a", "output_format": "gif"}),
            "output_format",
        ),
        (json!({"prompt": "a", "image_size": "huge"}), "image_size"),
        (
            json!({"prompt": "a", "image_size": {"width": 511, "height": 1024}}),
            "image_size.width",
        ),
        (
            json!({"prompt": "a", "image_size": {"width": 1024, "height": 2049}}),
            "image_size.height",
        ),
        (
            json!({"prompt": "a", "enable_safety_checker": "yes"}),
            "enable_safety_checker",
        ),
        (
            json!({"prompt": "a", "enable_prompt_expansion": 1}),
            "enable_prompt_expansion",
        ),
        (json!({"prompt": "a", "sync_mode": "no"}), "sync_mode"),
        (
            json!({"prompt": "a", "num_inference_steps": 28}),
            "num_inference_steps",
        ),
        (
            json!({"prompt": "a", "acceleration": "high"}),
            "acceleration",
        ),
        (
            json!({"prompt": "a", "webhook_url": "ftp://example.com/x"}),
            "webhook_url",
        ),
        (json!({"prompt": "a", "metadata": "tag"}), "metadata"),
        (json!({"prompt": "a", "end_user": ""}), "end_user"),
        (json!({"prompt": "a", "model": "fal-ai/flux-1"}), "model"),
        // Postgres cannot store U+0000, so it is refused up front wherever it hides.
        (json!({"prompt": "a\u{0}b"}), "prompt"),
        (
            json!({"prompt": "a", "metadata": {"tags": ["x", "y\u{0}"]}}),
            "metadata.tags[1]",
        ),
        (
            json!({"prompt": "a", "metadata": {"k\u{0}": 1}}),
            "metadata.k\u{0}",
        ),
    ];
    for (body, field) in cases {
        let res = app.post("/v1/generations", &body).await;
        let p = problem(res, 422, "validation_failed").await;
        assert!(
            fields(&p).contains(&field.to_owned()),
            "{body} should name {field}: {p}"
        );
    }
    // Several bad fields: all named in one problem.
    let res = app
        .post(
            "/v1/generations",
            &json!({"prompt": "", "num_images": 9, "colour": "red"}),
        )
        .await;
    let p = problem(res, 422, "validation_failed").await;
    let f = fields(&p);
    assert!(
        f.contains(&"prompt".into())
            && f.contains(&"num_images".into())
            && f.contains(&"colour".into()),
        "{p}"
    );
    // Edits: image_urls rules.
    for (body, field) in [
        (json!({"prompt": "a"}), "image_urls"),
        (json!({"prompt": "a", "image_urls": []}), "image_urls"),
        (
            json!({"prompt": "a", "image_urls": ["https://x.test/1", "https://x.test/2", "https://x.test/3", "https://x.test/4", "https://x.test/5"]}),
            "image_urls",
        ),
        (
            json!({"prompt": "a", "image_urls": ["ftp://x/1"]}),
            "image_urls[0]",
        ),
    ] {
        let res = app.post("/v1/edits", &body).await;
        let p = problem(res, 422, "validation_failed").await;
        assert!(
            fields(&p).contains(&field.to_owned()),
            "{body} should name {field}: {p}"
        );
    }
    assert_eq!(generations_stored(&app).await, 0);
    assert_eq!(app.sim.stats().submissions, 0);
}

#[tokio::test]
async fn malformed_bodies_get_clear_problems() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.client
            .post(app.url("/v1/generations"))
            .bearer_auth(&app.api_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    problem(send("{not json").await.unwrap(), 400, "invalid_json").await;
    problem(send("").await.unwrap(), 400, "invalid_json").await;
    problem(send("[1,2]").await.unwrap(), 400, "invalid_json").await;
    let huge = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(2 << 20));
    let res = app
        .client
        .post(app.url("/v1/generations"))
        .bearer_auth(&app.api_key)
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(res, 413, "payload_too_large").await;
    assert_eq!(generations_stored(&app).await, 0);
}

#[tokio::test]
async fn estimates_follow_the_price_rule_without_submitting() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"prompt": "a", "image_size": "square"}),
            8000,
            json!(0.008),
        ),
        (
            json!({"prompt": "a", "image_size": "square_hd"}),
            8000,
            json!(0.008),
        ),
        (
            json!({"prompt": "a", "image_size": {"width": 1920, "height": 1080}}),
            16000,
            json!(0.016),
        ),
        (
            json!({"prompt": "a", "num_images": 4, "image_size": {"width": 1448, "height": 1448}}),
            64000,
            json!(0.064),
        ),
        (
            json!({"prompt": "a", "image_size": "square_hd", "image_urls": ["https://x.test/a.png"]}),
            16000,
            json!(0.016),
        ),
        (
            json!({"prompt": "a", "image_size": "square", "model": "fal-ai/flux-2/flash"}),
            5000,
            json!(0.005),
        ),
        (
            json!({"prompt": "a", "image_size": "square", "model": "fal-ai/flux-2"}),
            12000,
            json!(0.012),
        ),
    ];
    for (body, micros, usd) in cases {
        let res = app.post("/v1/estimates", &body).await;
        assert_eq!(res.status(), 200);
        let e: Value = res.json().await.unwrap();
        assert_eq!(e["estimated_cost_micros"], micros, "{body}");
        assert_eq!(e["estimated_cost_usd"], usd, "{body}");
    }
    assert_eq!(generations_stored(&app).await, 0);
    // The 202 of a real submission carries the same estimate.
    let g = app
        .generate(json!({"prompt": "a", "image_size": {"width": 1920, "height": 1080}}))
        .await;
    assert_eq!(
        (g["status"].as_str(), g["estimated_cost_micros"].as_i64()),
        (Some("accepted"), Some(16000))
    );
    assert_eq!(
        g["input"]["image_size"],
        json!({"width": 1920, "height": 1080})
    );
    assert_eq!(g["input"]["guidance_scale"], 2.5);
    assert_eq!(g["input"]["output_format"], "png");
}

async fn fetch_image(
    app: &crate::helpers::TestApp,
    url: &str,
) -> (u32, u32, image::ImageFormat, Vec<u8>) {
    let bytes = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let format = image::guess_format(&bytes).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    (img.width(), img.height(), format, bytes)
}

#[tokio::test]
async fn generations_of_presets_and_custom_sizes_complete_with_real_images() {
    let app = spawn_app().await;
    let cases = [
        (
            json!("landscape_4_3"),
            1024,
            768,
            "png",
            image::ImageFormat::Png,
        ),
        (
            json!("portrait_16_9"),
            576,
            1024,
            "jpeg",
            image::ImageFormat::Jpeg,
        ),
        (
            json!({"width": 640, "height": 512}),
            640,
            512,
            "webp",
            image::ImageFormat::WebP,
        ),
    ];
    let mut ids = Vec::new();
    for (size, _, _, format, _) in &cases {
        let g = app.generate(json!({"prompt": "a lighthouse", "image_size": size, "output_format": format, "num_images": 2, "metadata": {"job": 7}, "end_user": "u-1"})).await;
        ids.push(g["id"].as_str().unwrap().to_owned());
    }
    for (id, (_, w, h, _, fmt)) in ids.iter().zip(&cases) {
        let g = app.wait_terminal(id).await;
        assert_eq!(g["status"], "completed", "{g}");
        assert_eq!(g["images"].as_array().unwrap().len(), 2);
        assert!(g["seed"].as_i64().is_some() && g["fal_request_id"].is_string());
        assert_eq!(g["metadata"], json!({"job": 7}));
        let (iw, ih, f, _) = fetch_image(&app, g["images"][0]["url"].as_str().unwrap()).await;
        assert_eq!((iw, ih, f), (*w, *h, *fmt), "{id}");
        assert_eq!(
            app.event_types(id).await,
            ["generation.queued", "generation.completed"]
        );
    }
}

#[tokio::test]
async fn each_fal_error_class_ends_in_its_documented_state() {
    let mut settings = test_settings();
    settings.fal.rate_limit_budget = Duration::from_secs(3);
    let app = spawn_app_with(TestOptions {
        settings,
        ..Default::default()
    })
    .await;
    let cases = [
        ("[sim:401] a", "failed", Some("upstream_auth")),
        ("[sim:403] a", "failed", Some("upstream_auth")),
        ("[sim:policy] a", "failed", Some("content_policy_violation")),
        ("[sim:503] a", "failed", Some("upstream_unavailable")),
        ("[sim:500] a", "failed", Some("upstream_unavailable")),
        ("[sim:503x2] a", "completed", None),
        ("[sim:429x1] a", "completed", None),
        ("[sim:fail] a", "failed", Some("fal_error")),
        ("[sim:payload-error] a", "failed", Some("fal_payload_error")),
    ];
    let mut ids = Vec::new();
    for (prompt, _, _) in &cases {
        ids.push(
            app.generate(json!({"prompt": prompt})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for (id, (prompt, status, code)) in ids.iter().zip(&cases) {
        let g = app.wait_terminal(id).await;
        assert_eq!(g["status"], *status, "{prompt}: {g}");
        if let Some(code) = code {
            assert_eq!(g["error"]["code"], *code, "{prompt}: {g}");
            let last = app.event_types(id).await.pop().unwrap();
            assert_eq!(last, "generation.failed");
        }
    }
    let policy = app.wait_terminal(&ids[2]).await;
    assert!(
        policy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Rephrase"),
        "{policy}"
    );
    // 5xx: exactly three attempts; fail-fast classes: exactly one.
    let attempts = |id: &str| {
        let uuid = id.parse::<fluxgate::domain::ids::GenerationId>().unwrap();
        sqlx::query_scalar::<_, i32>("SELECT submit_attempts FROM generations WHERE id = $1")
            .bind(uuid)
            .fetch_one(&app.pool)
    };
    assert_eq!(attempts(&ids[3]).await.unwrap(), 3);
    assert_eq!(attempts(&ids[0]).await.unwrap(), 1);
    assert_eq!(attempts(&ids[2]).await.unwrap(), 1);

    // 429 forever: retried within the budget, then failed with its own code.
    let g = app.generate(json!({"prompt": "[sim:429] a"})).await;
    let g = app.wait_terminal(g["id"].as_str().unwrap()).await;
    assert_eq!(g["error"]["code"], "upstream_rate_limited", "{g}");

    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"fluxgate_fal_requests_total{operation="submit",outcome="auth"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn duplicate_and_early_webhooks_finish_a_generation_exactly_once() {
    let app = spawn_app().await;
    let dup = app
        .generate(json!({"prompt": "[sim:dup-webhook] twins"}))
        .await;
    let early = app
        .generate(json!({"prompt": "[sim:early-webhook] hasty"}))
        .await;
    for g in [&dup, &early] {
        let id = g["id"].as_str().unwrap();
        assert_eq!(app.wait_terminal(id).await["status"], "completed");
    }
    // Let the duplicate arrive, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dup_id = dup["id"].as_str().unwrap();
    assert_eq!(
        app.event_types(dup_id).await,
        ["generation.queued", "generation.completed"]
    );
    let early_events = app.event_types(early["id"].as_str().unwrap()).await;
    assert_eq!(
        early_events,
        ["generation.queued", "generation.completed"],
        "queued, announced by the early callback itself, then completed; never queued twice"
    );
    let callbacks: i64 = sqlx::query_scalar("SELECT count(*) FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(callbacks, 2);
    assert!(app.sim.stats().webhooks_delivered >= 3);
}

#[tokio::test]
async fn a_dropped_webhook_is_recovered_by_the_reconciler() {
    let mut settings = test_settings();
    settings.fal.reconcile_after = Duration::from_secs(1);
    let app = spawn_app_with(TestOptions {
        settings,
        workers: Workers {
            reconciler: false,
            ..Workers::ALL
        },
        ..Default::default()
    })
    .await;
    let g = app
        .generate(json!({"prompt": "[sim:drop-webhook] lost"}))
        .await;
    let id = g["id"].as_str().unwrap();
    // Queued, and stays so: no callback will come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.generation(id).await["status"] != "queued" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fluxgate::pipeline::reconciler::reconcile_once(&app.pipeline)
            .await
            .unwrap(),
        0,
        "not overdue yet"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        fluxgate::pipeline::reconciler::reconcile_once(&app.pipeline)
            .await
            .unwrap(),
        1
    );
    let g = app.generation(id).await;
    assert_eq!(g["status"], "completed", "{g}");
    let source: String = sqlx::query_scalar("SELECT source FROM fal_callbacks")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(source, "reconciler");
    assert_eq!(
        app.event_types(id).await,
        ["generation.queued", "generation.completed"]
    );
}

#[tokio::test]
async fn seed_from_reuses_an_earlier_seed_and_refuses_other_tenants() {
    let app = spawn_app().await;
    let first = app
        .generate(json!({"prompt": "a fox", "seed": 123456789012345678u64}))
        .await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(
        app.wait_terminal(first_id).await["seed"],
        123456789012345678u64
    );
    let second = app
        .generate(json!({"prompt": "a fox, at night", "seed_from": first_id}))
        .await;
    assert_eq!(second["input"]["seed"], 123456789012345678u64);
    let second = app.wait_terminal(second["id"].as_str().unwrap()).await;
    assert_eq!(second["seed"], 123456789012345678u64);

    let unknown = fluxgate::domain::ids::GenerationId::new().to_string();
    problem(
        app.post(
            "/v1/generations",
            &json!({"prompt": "a", "seed_from": unknown}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let (_, other_key) = app.new_tenant("other").await;
    let res = app
        .client
        .post(app.url("/v1/generations"))
        .bearer_auth(&other_key)
        .json(&json!({"prompt": "a", "seed_from": first_id}))
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url(&format!("/v1/generations/{first_id}")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn listing_is_newest_first_with_cursor_pagination_and_filters() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(
            app.generate(json!({"prompt": format!("p{i}"), "end_user": user}))
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let page: Value = app
        .get("/v1/generations?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"][0]["id"], ids[4].as_str());
    assert_eq!(page["data"][1]["id"], ids[3].as_str());
    assert_eq!(page["has_more"], true);
    let next: Value = app
        .get(&format!(
            "/v1/generations?limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["id"], ids[2].as_str());
    let evens: Value = app
        .get("/v1/generations?end_user=even&status=accepted")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(evens["data"].as_array().unwrap().len(), 3);
    let p = problem(
        app.get("/v1/generations?limit=0&status=done&cursor=zzz")
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["status", "limit", "cursor"]);
    let p = problem(
        app.get("/v1/generations?end_user=%00").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["end_user"]);
    let p = problem(
        app.get("/v1/events?type=alert.%00").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["type"]);
}

#[tokio::test]
async fn cancel_works_in_each_state_and_says_what_happened() {
    let mut opts = TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    };
    opts.sim.queue_delay = Duration::from_secs(30);
    let app = spawn_app_with(opts).await;
    // Not yet submitted: cancelled locally, never sent.
    let g = app.generate(json!({"prompt": "a"})).await;
    let id = g["id"].as_str().unwrap();
    let res = app
        .post(&format!("/v1/generations/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["cancellation"].as_str()),
        (Some("cancelled"), Some("cancelled_locally"))
    );
    assert_eq!(
        fluxgate::pipeline::submitter::drain_once(&app.pipeline)
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.sim.stats().submissions, 0);
    // Queued at fal: cancelled there.
    let g = app.generate(json!({"prompt": "b"})).await;
    let id = g["id"].as_str().unwrap();
    fluxgate::pipeline::submitter::drain_once(&app.pipeline)
        .await
        .unwrap();
    assert_eq!(app.generation(id).await["status"], "queued");
    let body: Value = app
        .post(&format!("/v1/generations/{id}/cancel"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (body["status"].as_str(), body["cancellation"].as_str()),
        (Some("cancelled"), Some("cancelled_at_fal"))
    );
    assert_eq!(app.sim.stats().cancels, 1);
    assert_eq!(
        app.event_types(id).await,
        ["generation.queued", "generation.cancelled"]
    );
    // Already finished: 409.
    let res = app
        .post(&format!("/v1/generations/{id}/cancel"), &json!({}))
        .await;
    problem(res, 409, "not_cancellable").await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_burst_loses_nothing() {
    let mut opts = TestOptions::default();
    opts.sim.run_delay = Duration::from_millis(50);
    opts.sim.webhook_retry_schedule = vec![
        Duration::from_millis(200),
        Duration::from_millis(500),
        Duration::from_secs(1),
    ];
    opts.settings.fal.reconcile_after = Duration::from_secs(2);
    opts.settings.fal.reconcile_interval = Duration::from_secs(1);
    let app = spawn_app_with(opts).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            app.generate(json!({"prompt": format!("burst {i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Stop mid-burst (as SIGTERM would), then start a new instance on the same database and
    // address: webhooks fal could not deliver meanwhile are retried, or recovered by the reconciler.
    let (db_url, sim, port) = app.stop().await;
    let pool = fluxgate::storage::connect(&db_url, 8).await.unwrap();
    let mut settings = test_settings();
    settings.server.port = port;
    settings.fal.reconcile_after = Duration::from_secs(2);
    settings.fal.reconcile_interval = Duration::from_secs(1);
    let app = start_app(pool, db_url, sim, settings, Workers::ALL).await;
    for id in &ids {
        let g = app.wait_terminal(id).await;
        assert_eq!(g["status"], "completed", "{g}");
        let events = app.event_types(id).await;
        assert_eq!(
            events
                .iter()
                .filter(|t| *t == "generation.completed")
                .count(),
            1,
            "{id}: {events:?}"
        );
    }
}

#[tokio::test]
async fn a_malformed_or_foreign_id_in_a_path_is_answered_like_an_unknown_one() {
    let app = spawn_app().await;
    let sub = fluxgate::domain::ids::SubscriptionId::new().to_string();
    for (path, named) in [
        (
            "/v1/generations/gen_xyz".to_owned(),
            "no generation gen_xyz".to_owned(),
        ),
        (
            format!("/v1/generations/{sub}"),
            format!("no generation {sub}"),
        ),
        ("/v1/deliveries/42".to_owned(), "no delivery 42".to_owned()),
        (
            format!("/v1/subscriptions/{sub}"),
            format!("no subscription {sub}"),
        ),
    ] {
        let body = problem(app.get(&path).await, 404, "not_found").await;
        assert_eq!(body["detail"], named, "{path}");
    }
}
