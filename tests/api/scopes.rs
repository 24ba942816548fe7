//! Scoped API keys: a key made with `--scopes` may use the routes those scopes open and is
//! answered 403 `insufficient_scope`, naming the scope, everywhere else; a key made without
//! them, like every key made before scopes existed, may do everything.
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};

/// A key for the test's tenant made by the CLI with `--scopes <scopes>`.
pub fn key_with_scopes(app: &TestApp, scopes: &str) -> String {
    let created = app.cli_json(&["keys", "create", "--tenant", "acme", "--scopes", scopes]);
    created["key"].as_str().unwrap().to_owned()
}

pub async fn call(
    app: &TestApp,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let req = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    req.send().await.expect("request")
}

#[tokio::test]
async fn a_read_only_key_reads_generations_but_may_not_create_one_and_is_told_which_scope_it_lacks()
{
    let app = spawn_app().await;
    let made = app.generate(json!({"prompt": "a lighthouse"})).await;
    let reader = key_with_scopes(&app, "generations:read");

    let res = call(
        &app,
        &reader,
        "POST",
        "/v1/generations",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert!(res
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().contains("scope=\"generations:write\"")));
    let body = problem(res, 403, "insufficient_scope").await;
    assert_eq!(body["scope"], "generations:write");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("generations:write"));

    let id = made["id"].as_str().unwrap();
    let res = call(&app, &reader, "GET", &format!("/v1/generations/{id}"), None).await;
    assert_eq!(res.status(), 200);
    let res = call(&app, &reader, "GET", "/v1/generations", None).await;
    assert_eq!(res.status(), 200);
    // Nothing was created by the refused request.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn every_route_outside_a_keys_scopes_is_refused_with_the_scope_it_needs() {
    let app = spawn_app().await;
    let writer = key_with_scopes(&app, "generations:write");
    let gen = "gen_00000000000000000000000000000000";
    let cases = [
        ("GET", format!("/v1/generations/{gen}"), "generations:read"),
        ("GET", "/v1/events".to_owned(), "events:read"),
        ("GET", "/v1/events/stream".to_owned(), "events:read"),
        (
            "GET",
            "/v1/subscriptions".to_owned(),
            "subscriptions:manage",
        ),
        (
            "POST",
            "/v1/subscriptions".to_owned(),
            "subscriptions:manage",
        ),
        ("GET", "/v1/usage".to_owned(), "admin"),
        ("GET", "/v1/webhook-secret".to_owned(), "admin"),
    ];
    for (method, path, scope) in cases {
        let body = (method == "POST").then(|| json!({}));
        let res = call(&app, &writer, method, &path, body).await;
        let problem = problem(res, 403, "insufficient_scope").await;
        assert_eq!(problem["scope"], scope, "{method} {path}");
    }
    // What its one scope opens, it may do.
    let res = call(
        &app,
        &writer,
        "POST",
        "/v1/estimates",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = call(
        &app,
        &writer,
        "POST",
        "/v1/generations",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn me_lists_a_keys_scopes_and_keys_made_without_scopes_hold_them_all() {
    let app = spawn_app().await;
    let res = app.get("/v1/me").await;
    let me: Value = res.json().await.unwrap();
    assert_eq!(
        me["key"]["scopes"],
        json!([
            "generations:write",
            "generations:read",
            "events:read",
            "subscriptions:manage",
            "admin"
        ])
    );
    let narrow = key_with_scopes(&app, "events:read,generations:read");
    let me: Value = call(&app, &narrow, "GET", "/v1/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["key"]["scopes"],
        json!(["generations:read", "events:read"])
    );
}

#[tokio::test]
async fn the_cli_refuses_a_scope_that_does_not_exist_by_name() {
    let app = spawn_app().await;
    let out = app.cli(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "generations:write,root",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"root\" is not a scope"), "{err}");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, 1, "only the test's own key");
}
