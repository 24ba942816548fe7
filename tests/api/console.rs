//! The web console's files, as a browser gets them: the page and every script under a strict
//! Content-Security-Policy, revalidated by ETag, and nothing inline for the policy to allow.
//! (The console itself is driven in a real browser by `tests/browser`.)
use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn the_console_page_is_served_under_a_policy_that_runs_only_its_own_files() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let html = res.text().await.unwrap();
    // Every script is a file of the console's; nothing inline the policy would have to allow.
    for (i, tag) in html.match_indices("<script").map(|(i, _)| (i, &html[i..])) {
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(
            tag.contains("src=\"/console/"),
            "inline script at {i}: {tag}"
        );
    }
    assert!(!html.contains(" style="), "inline style");
    assert!(!html.contains(" on"), "inline handler");
}

#[tokio::test]
async fn each_script_is_served_as_javascript_and_revalidated_by_its_etag() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/console/js/main.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .client
        .get(app.url("/console/js/main.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    let res = app
        .client
        .get(app.url("/console/js/nothing.js"))
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url("/console/../Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn usage_reports_the_caps_left_the_top_end_users_and_the_alerts() {
    let app = spawn_app().await;
    app.cli_json(&[
        "tenants",
        "set-limits",
        "acme",
        "--daily-budget-usd",
        "5",
        "--requests-per-minute",
        "100",
    ]);
    for user in ["ann", "ann", "bob"] {
        let g = app
            .generate(serde_json::json!({"prompt": "a kite", "end_user": user}))
            .await;
        app.wait_terminal(g["id"].as_str().unwrap()).await;
    }
    let usage: serde_json::Value = app
        .get("/v1/usage?end_user=ann")
        .await
        .json()
        .await
        .unwrap();
    let tenant = &usage["limits"]["tenant"];
    assert_eq!(tenant["daily_budget_usd"], 5.0);
    assert_eq!(tenant["requests_per_minute"], 100);
    assert_eq!(tenant["requests_this_minute"], 3);
    assert_eq!(tenant["requests_remaining"], 97);
    let spent = tenant["spent_today_usd"].as_f64().unwrap();
    assert!(spent > 0.0, "{usage}");
    assert!((tenant["budget_remaining_usd"].as_f64().unwrap() - (5.0 - spent)).abs() < 1e-9);
    assert!(usage["limits"]["end_user"]["daily_budget_usd"].is_null());
    let users: Vec<_> = usage["end_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["end_user"].as_str().unwrap(),
                u["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, [("ann", 2), ("bob", 1)]);
    let alerts: Vec<_> = usage["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(alerts, ["delivery_failure_rate", "fal_error_rate"]);
}
