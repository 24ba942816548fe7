//! Browser tokens: a tenant's backend mints a short-lived `fgt_` token for one end user; a page
//! uses it directly to make and read that user's generations, and nothing else. CORS answers
//! only the origins a tenant allows, and the safety checker is always on for tokens (and for
//! every key of a tenant that requires it).
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, TestApp};
/// A request with a bearer credential: the same helper the scope tests use.
use crate::scopes::call as with_token;

/// Mints a token for `end_user` with the test's key; returns the 201 body.
async fn mint(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1/tokens", &body).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    res.json().await.unwrap()
}

fn token_of(minted: &Value) -> String {
    minted["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_minted_token_makes_generations_as_its_end_user_with_the_safety_checker_on() {
    let app = spawn_app().await;
    let minted = mint(&app, json!({"end_user": "customer-7", "ttl_secs": 600})).await;
    let token = token_of(&minted);
    assert!(token.starts_with("fgt_"), "{minted}");
    assert!(minted["id"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(minted["end_user"], "customer-7");
    assert_eq!(
        minted["scopes"],
        json!(["generations:write", "generations:read", "events:read"])
    );
    let expires: chrono::DateTime<chrono::Utc> =
        minted["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!((590..=600).contains(&ttl.num_seconds()), "{ttl}");

    let res = with_token(
        &app,
        &token,
        "POST",
        "/v1/generations",
        Some(json!({"prompt": "a kite"})),
    )
    .await;
    assert_eq!(res.status(), 202);
    let made: Value = res.json().await.unwrap();
    assert_eq!(made["end_user"], "customer-7");
    assert_eq!(made["input"]["enable_safety_checker"], true);

    let me: Value = with_token(&app, &token, "GET", "/v1/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["token"]["end_user"], "customer-7");
    assert_eq!(me["token"]["id"], minted["id"]);
}

#[tokio::test]
async fn a_token_may_not_turn_the_checker_off_name_another_end_user_or_set_a_webhook() {
    let app = spawn_app().await;
    let token = token_of(&mint(&app, json!({"end_user": "customer-7"})).await);
    let res = with_token(
        &app,
        &token,
        "POST",
        "/v1/generations",
        Some(
            json!({"prompt": "a kite", "enable_safety_checker": false, "end_user": "customer-8",
                    "webhook_url": "https://hooks.example.com/x"}),
        ),
    )
    .await;
    let body = problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["end_user", "webhook_url", "enable_safety_checker"]);
    let made: i64 = sqlx::query_scalar("SELECT count(*) FROM generations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(made, 0, "nothing was stored");
}

#[tokio::test]
async fn a_token_reads_only_its_own_end_users_generations() {
    let app = spawn_app().await;
    let theirs = app
        .generate(json!({"prompt": "theirs", "end_user": "customer-8"}))
        .await;
    let ours = app
        .generate(json!({"prompt": "ours", "end_user": "customer-7"}))
        .await;
    let token = token_of(&mint(&app, json!({"end_user": "customer-7"})).await);

    let path = |g: &Value| format!("/v1/generations/{}", g["id"].as_str().unwrap());
    let res = with_token(&app, &token, "GET", &path(&theirs), None).await;
    problem(res, 404, "not_found").await;
    let res = with_token(
        &app,
        &token,
        "GET",
        &format!("{}/events", path(&theirs)),
        None,
    )
    .await;
    problem(res, 404, "not_found").await;
    let res = with_token(&app, &token, "GET", &path(&ours), None).await;
    assert_eq!(res.status(), 200);

    let list: Value = with_token(&app, &token, "GET", "/v1/generations", None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["id"])
        .collect();
    assert_eq!(ids, [&ours["id"]]);
    let res = with_token(
        &app,
        &token,
        "GET",
        "/v1/generations?end_user=customer-8",
        None,
    )
    .await;
    problem(res, 422, "validation_failed").await;
}

#[tokio::test]
async fn a_tokens_seed_from_reuses_only_its_own_end_users_seeds() {
    let app = spawn_app().await;
    let theirs = app
        .generate(json!({"prompt": "theirs", "end_user": "customer-8", "seed": 31337}))
        .await;
    let ours = app
        .generate(json!({"prompt": "ours", "end_user": "customer-7", "seed": 4242}))
        .await;
    for g in [&theirs, &ours] {
        app.wait_terminal(g["id"].as_str().unwrap()).await;
    }
    let token = token_of(&mint(&app, json!({"end_user": "customer-7"})).await);
    let vary = |source: &Value| Some(json!({"prompt": "again", "seed_from": source["id"]}));

    // Another user's generation answers as one that does not exist: its seed stays theirs.
    let res = with_token(&app, &token, "POST", "/v1/generations", vary(&theirs)).await;
    let refused = problem(res, 404, "not_found").await;
    assert!(!refused.to_string().contains("31337"), "{refused}");
    let res = with_token(&app, &token, "POST", "/v1/generations", vary(&ours)).await;
    assert_eq!(res.status(), 202);
    let made: Value = res.json().await.unwrap();
    assert_eq!(made["input"]["seed"], 4242);
    // A full key may draw on any of its tenant's generations.
    let by_key = app.post("/v1/generations", &vary(&theirs).unwrap()).await;
    assert_eq!(by_key.status(), 202);
}

#[tokio::test]
async fn a_token_is_refused_everything_but_its_generations_and_its_stream() {
    let app = spawn_app().await;
    let token = token_of(&mint(&app, json!({"end_user": "u"})).await);
    let refused = [
        ("GET", "/v1/subscriptions", 403, "insufficient_scope"),
        ("GET", "/v1/usage", 403, "insufficient_scope"),
        ("GET", "/v1/webhook-secret", 403, "insufficient_scope"),
        ("GET", "/v1/events", 403, "token_not_allowed"),
        ("POST", "/v1/tokens", 403, "token_not_allowed"),
    ];
    for (method, path, status, code) in refused {
        let body = if method == "POST" {
            Some(json!({"end_user": "v"}))
        } else {
            None
        };
        let res = with_token(&app, &token, method, path, body).await;
        problem(res, status, code).await;
    }
    let estimate = with_token(
        &app,
        &token,
        "POST",
        "/v1/estimates",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(estimate.status(), 200);
}

#[tokio::test]
async fn a_token_holds_no_scope_its_key_lacks_nor_any_a_page_does_not_need() {
    let app = spawn_app().await;
    let res = app
        .post(
            "/v1/tokens",
            &json!({"end_user": "u", "scopes": ["subscriptions:manage"], "ttl_secs": 10}),
        )
        .await;
    let body = problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["ttl_secs", "scopes[0]"]);

    let reader = crate::scopes::key_with_scopes(&app, "generations:read");
    let res = with_token(
        &app,
        &reader,
        "POST",
        "/v1/tokens",
        Some(json!({"end_user": "u", "scopes": ["generations:write"]})),
    )
    .await;
    problem(res, 422, "validation_failed").await;
    let minted: Value = with_token(
        &app,
        &reader,
        "POST",
        "/v1/tokens",
        Some(json!({"end_user": "u"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(minted["scopes"], json!(["generations:read"]));
    let res = with_token(
        &app,
        &token_of(&minted),
        "POST",
        "/v1/generations",
        Some(json!({"prompt": "x"})),
    )
    .await;
    problem(res, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn a_token_ends_when_its_key_revokes_it_or_the_key_itself_is_revoked() {
    let app = spawn_app().await;
    let minted = mint(&app, json!({"end_user": "u"})).await;
    let (token, id) = (token_of(&minted), minted["id"].as_str().unwrap().to_owned());

    let other = crate::scopes::key_with_scopes(&app, "generations:write,generations:read");
    let res = with_token(&app, &other, "DELETE", &format!("/v1/tokens/{id}"), None).await;
    problem(res, 404, "not_found").await;
    assert_eq!(
        with_token(&app, &token, "GET", "/v1/generations", None)
            .await
            .status(),
        200
    );

    let res = app
        .client
        .delete(app.url(&format!("/v1/tokens/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = with_token(&app, &token, "GET", "/v1/generations", None).await;
    problem(res, 401, "revoked_token").await;

    // A second token of a key that is then revoked ends with it.
    let second = token_of(&mint(&app, json!({"end_user": "u"})).await);
    let key_id: Value = app.get("/v1/me").await.json().await.unwrap();
    let out = app.cli(&["keys", "revoke", key_id["key"]["id"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = with_token(&app, &second, "GET", "/v1/generations", None).await;
    problem(res, 401, "revoked_token").await;
}

#[tokio::test]
async fn a_forged_or_garbled_token_is_refused_before_anything_is_read() {
    let app = spawn_app().await;
    let token = token_of(&mint(&app, json!({"end_user": "u"})).await);
    // Flip one character of the MAC: still well-formed, no longer ours.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let res = with_token(&app, &forged, "GET", "/v1/me", None).await;
    problem(res, 401, "invalid_token").await;
    let res = with_token(&app, "fgt_short", "GET", "/v1/me", None).await;
    problem(res, 401, "malformed_token").await;
}

#[tokio::test]
async fn cors_answers_only_the_origins_the_callers_tenant_allows() {
    let app = spawn_app().await;
    let updated = app.cli_json(&[
        "tenants",
        "update",
        "acme",
        "--allowed-origins",
        "https://app.example.com, http://localhost:5173",
    ]);
    assert_eq!(
        updated["browser"]["allowed_origins"],
        json!(["https://app.example.com", "http://localhost:5173"])
    );
    let shown = app.cli(&["tenants", "show", "acme"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("origins https://app.example.com, http://localhost:5173"),
        "{text}"
    );

    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/generations"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    problem(other, 403, "origin_not_allowed").await;

    let token = token_of(&mint(&app, json!({"end_user": "u"})).await);
    let from = |origin: &'static str, key: String| {
        app.client
            .get(app.url("/v1/generations"))
            .header("Origin", origin)
            .bearer_auth(key)
            .send()
    };
    let res = from("https://app.example.com", token.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let res = from("https://evil.example", token).await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Another tenant's key does not borrow acme's origins.
    let (_, other_key) = app.new_tenant("globex").await;
    let res = from("https://app.example.com", other_key).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let out = app.cli(&[
        "tenants",
        "update",
        "acme",
        "--allowed-origins",
        "https://a.example/app",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has a path"));
}

#[tokio::test]
async fn a_tenant_that_requires_the_safety_checker_refuses_it_off_for_every_key() {
    let app = spawn_app().await;
    let off = json!({"prompt": "a kite", "enable_safety_checker": false});
    assert_eq!(app.post("/v1/generations", &off).await.status(), 202);
    app.cli_json(&["tenants", "update", "acme", "--require-safety-checker"]);
    let body = problem(
        app.post("/v1/generations", &off).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "enable_safety_checker");
    app.cli_json(&[
        "tenants",
        "update",
        "acme",
        "--require-safety-checker=false",
    ]);
    assert_eq!(app.post("/v1/generations", &off).await.status(), 202);
}
