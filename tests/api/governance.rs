//! Cost governance: budgets and rate limits across instances, Idempotency-Key, the seed cache,
//! usage, and the operator's limit commands.
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{
    fresh_database, problem, spawn_app, spawn_app_with, start_app, test_settings, TestApp,
    TestOptions, SIM_KEY, SIM_SEED,
};
use fluxgate::{startup::Workers, tools::simulator::SimConfig};

async fn set_limits(app: &TestApp, sql: &str) {
    sqlx::query(sql)
        .bind(app.tenant_id)
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A second instance on the same database, with its own simulator.
async fn second_instance(app: &TestApp) -> TestApp {
    let pool = fluxgate::storage::connect(&app.db_url, 8).await.unwrap();
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut other = start_app(
        pool,
        app.db_url.clone(),
        sim,
        test_settings(),
        Workers::NONE,
    )
    .await;
    other.api_key = app.api_key.clone();
    other.tenant_id = app.tenant_id;
    other
}

#[tokio::test]
async fn a_budget_admits_exactly_what_it_allows_across_two_instances() {
    let a = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let b = second_instance(&a).await;
    // $0.040 a day: five 512×512 Turbo images at $0.008.
    set_limits(
        &a,
        "UPDATE tenants SET daily_budget_micros = 40000 WHERE id = $1",
    )
    .await;
    let body = json!({"prompt": "a", "image_size": "square"});
    let answers = join_all((0..14).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.client
            .post(app.url("/v1/generations"))
            .bearer_auth(&app.api_key)
            .json(&body)
            .send()
    }))
    .await;
    let mut accepted = 0;
    for res in answers {
        let res = res.unwrap();
        match res.status().as_u16() {
            202 => accepted += 1,
            402 => {
                let p = problem(res, 402, "budget_exhausted").await;
                assert!(
                    p["resets_at"].is_string() && p["budget_scope"] == "tenant",
                    "{p}"
                );
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(accepted, 5);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert_eq!(stored, 5);
}

#[tokio::test]
async fn a_request_fal_never_ran_releases_its_reservation() {
    let a = spawn_app().await;
    set_limits(
        &a,
        "UPDATE tenants SET daily_budget_micros = 8000 WHERE id = $1",
    )
    .await;
    let g = a
        .generate(json!({"prompt": "[sim:401] a", "image_size": "square"}))
        .await;
    assert_eq!(
        a.wait_terminal(g["id"].as_str().unwrap()).await["status"],
        "failed"
    );
    // The whole budget is free again: the next one fits, and completes, and then it is spent.
    let g = a
        .generate(json!({"prompt": "b", "image_size": "square"}))
        .await;
    assert_eq!(
        a.wait_terminal(g["id"].as_str().unwrap()).await["status"],
        "completed"
    );
    let res = a
        .post(
            "/v1/generations",
            &json!({"prompt": "c", "image_size": "square"}),
        )
        .await;
    problem(res, 402, "budget_exhausted").await;
    let (reserved, spent): (i64, i64) =
        sqlx::query_as("SELECT reserved_micros, spent_micros FROM budget_usage WHERE scope = ''")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!((reserved, spent), (0, 8000));
}

#[tokio::test]
async fn end_user_budgets_apply_per_end_user() {
    let a = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    set_limits(
        &a,
        "UPDATE tenants SET end_user_daily_budget_micros = 16000 WHERE id = $1",
    )
    .await;
    for _ in 0..2 {
        a.generate(json!({"prompt": "a", "image_size": "square", "end_user": "alice"}))
            .await;
    }
    let res = a
        .post(
            "/v1/generations",
            &json!({"prompt": "a", "image_size": "square", "end_user": "alice"}),
        )
        .await;
    let p = problem(res, 402, "budget_exhausted").await;
    assert_eq!(p["budget_scope"], "end_user");
    a.generate(json!({"prompt": "a", "image_size": "square", "end_user": "bob"}))
        .await;
    a.generate(json!({"prompt": "a", "image_size": "square"}))
        .await;
}

#[tokio::test]
async fn a_burst_against_a_per_minute_limit_gets_exactly_the_limit_through() {
    let a = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let b = second_instance(&a).await;
    set_limits(
        &a,
        "UPDATE tenants SET requests_per_minute = 60 WHERE id = $1",
    )
    .await;
    // Keep the burst inside one window.
    let secs = chrono::Utc::now().timestamp() % 60;
    if secs > 50 {
        tokio::time::sleep(Duration::from_secs((61 - secs) as u64)).await;
    }
    let body = json!({"prompt": "a", "num_images": 4});
    let answers = join_all((0..75).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.client
            .post(app.url("/v1/generations"))
            .bearer_auth(&app.api_key)
            .json(&body)
            .send()
    }))
    .await;
    let (mut ok, mut limited) = (0, 0);
    for res in answers {
        let res = res.unwrap();
        assert_eq!(res.headers()["ratelimit-limit"], "60");
        match res.status().as_u16() {
            202 => ok += 1,
            429 => {
                limited += 1;
                assert!(res.headers().contains_key("retry-after"));
                assert_eq!(res.headers()["ratelimit-remaining"], "0");
                problem(res, 429, "tenant_rate_limited").await;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, limited), (60, 15));
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_reuse_and_report_in_flight() {
    let a = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    let send = |key: &str, body: Value| {
        a.client
            .post(a.url("/v1/generations"))
            .bearer_auth(&a.api_key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("order-1", json!({"prompt": "a"})).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send("order-1", json!({"prompt": "a"})).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "no second submission");
    problem(
        send("order-1", json!({"prompt": "b"})).await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, 'busy', $2)",
    )
    .bind(a.tenant_id)
    .bind(fluxgate::governance::idempotency::fingerprint(
        "POST",
        "/v1/generations",
        br#"{"prompt":"c"}"#,
    ))
    .execute(&a.pool)
    .await
    .unwrap();
    problem(
        send("busy", json!({"prompt": "c"})).await.unwrap(),
        409,
        "idempotency_key_in_flight",
    )
    .await;
    problem(
        send("", json!({"prompt": "a"})).await.unwrap(),
        400,
        "invalid_idempotency_key",
    )
    .await;
    problem(
        send(&"k".repeat(256), json!({"prompt": "a"}))
            .await
            .unwrap(),
        400,
        "invalid_idempotency_key",
    )
    .await;
    // Keys belong to a tenant.
    let (_, other) = a.new_tenant("other").await;
    let res = a
        .client
        .post(a.url("/v1/generations"))
        .bearer_auth(&other)
        .header("Idempotency-Key", "order-1")
        .json(&json!({"prompt": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_seeded_repeat_is_served_from_cache_byte_identically_at_zero_cost() {
    let a = spawn_app().await;
    let body = json!({"prompt": "a lighthouse", "seed": 42, "image_size": "square"});
    let first = a.generate(body.clone()).await;
    let first = a.wait_terminal(first["id"].as_str().unwrap()).await;
    assert_eq!(first["cached"], false);
    let res = a.post("/v1/generations", &body).await;
    assert_eq!(res.status(), 200);
    let hit: Value = res.json().await.unwrap();
    assert_eq!(
        (
            hit["status"].as_str(),
            hit["cached"].as_bool(),
            hit["cost_micros"].as_i64()
        ),
        (Some("completed"), Some(true), Some(0))
    );
    assert_ne!(hit["id"], first["id"]);
    let client = a.client.clone();
    let bytes = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    assert_eq!(
        bytes(hit["images"][0]["url"].as_str().unwrap().to_owned()).await,
        bytes(first["images"][0]["url"].as_str().unwrap().to_owned()).await
    );
    assert_eq!(
        a.event_types(hit["id"].as_str().unwrap()).await,
        ["generation.completed"]
    );
    // No seed, cache: false, another tenant: all go to fal.
    let before = a.sim.stats().submissions;
    let unseeded = a
        .generate(json!({"prompt": "a lighthouse", "image_size": "square"}))
        .await;
    assert_eq!(unseeded["status"], "accepted");
    let opted_out = a
        .generate(
            json!({"prompt": "a lighthouse", "seed": 42, "image_size": "square", "cache": false}),
        )
        .await;
    assert_eq!(opted_out["status"], "accepted");
    let (_, other) = a.new_tenant("other").await;
    let res = a
        .client
        .post(a.url("/v1/generations"))
        .bearer_auth(&other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "tenants never share cache entries");
    for id in [
        unseeded["id"].as_str().unwrap(),
        opted_out["id"].as_str().unwrap(),
    ] {
        a.wait_terminal(id).await;
    }
    assert!(a.sim.stats().submissions >= before + 3);
    // Usage counts the hit and its saving.
    let usage: Value = a.get("/v1/usage").await.json().await.unwrap();
    assert_eq!(usage["totals"]["cache_hits"], 1, "{usage}");
    assert_eq!(usage["totals"]["cache_savings_micros"], 8000);
}

#[tokio::test]
async fn usage_reports_by_day_and_refuses_bad_ranges() {
    let a = spawn_app().await;
    for prompt in ["a", "[sim:policy] b", "c"] {
        let g = a.generate(json!({"prompt": prompt, "image_size": "square", "num_images": 2, "end_user": "u1"})).await;
        a.wait_terminal(g["id"].as_str().unwrap()).await;
    }
    let usage: Value = a.get("/v1/usage?end_user=u1").await.json().await.unwrap();
    let t = &usage["totals"];
    assert_eq!(
        (
            t["requests"].as_i64(),
            t["completed"].as_i64(),
            t["images"].as_i64(),
            t["megapixels"].as_i64(),
            t["spend_micros"].as_i64()
        ),
        (Some(3), Some(2), Some(4), Some(4), Some(32000)),
        "{usage}"
    );
    assert_eq!(t["failures"]["content_policy_violation"], 1);
    assert_eq!(usage["days"].as_array().unwrap().len(), 1);
    let none: Value = a
        .get("/v1/usage?end_user=nobody")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["totals"]["requests"], 0);
    for (q, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2020-01-01&to=2026-01-01", "from"),
    ] {
        let p = problem(
            a.get(&format!("/v1/usage?{q}")).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{q}");
    }
}

#[tokio::test]
async fn operators_set_and_show_limits_and_absurd_values_are_refused() {
    let (_pool, url) = fresh_database().await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fluxgate"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    assert!(run(&["tenants", "create", "acme"]).status.success());
    let out = run(&[
        "tenants",
        "set-limits",
        "acme",
        "--daily-budget-usd",
        "25.50",
        "--requests-per-minute",
        "60",
        "--end-user-daily-budget-usd",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limits"]["daily_budget_micros"], 25_500_000);
    let out = run(&[
        "tenants",
        "set-limits",
        "acme",
        "--end-user",
        "vip",
        "--daily-budget-usd",
        "5",
    ]);
    assert!(out.status.success());
    let out = run(&["tenants", "show", "acme", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["limits"]["requests_per_minute"].as_i64(),
            v["end_users"][0]["daily_budget_micros"].as_i64()
        ),
        (Some(60), Some(5_000_000))
    );
    let out = run(&[
        "tenants",
        "set-limits",
        "acme",
        "--requests-per-minute",
        "none",
    ]);
    assert!(out.status.success());
    for (args, expect) in [
        (vec!["--daily-budget-usd", "-5"], "--daily-budget-usd"),
        (vec!["--daily-budget-usd", "99999999999"], "maximum"),
        (vec!["--requests-per-minute", "0"], "positive"),
        (vec!["--requests-per-minute", "5000000"], "maximum"),
        (vec!["--requests-per-minute", "fast"], "whole number"),
        (vec![], "nothing to set"),
    ] {
        let mut full = vec!["tenants", "set-limits", "acme"];
        full.extend(args);
        let out = run(&full);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expect) && !err.contains("panicked"),
            "{expect} in {err}"
        );
    }
}
