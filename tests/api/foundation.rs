//! Auth, errors, request ids, health and metrics.
use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn health_and_readiness_answer_ok_on_a_migrated_database() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn readiness_fails_when_a_migration_is_missing() {
    let app = spawn_app().await;
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    problem(res, 503, "not_migrated").await;
}

#[tokio::test]
async fn a_valid_key_reaches_v1_and_identifies_its_tenant() {
    let app = spawn_app().await;
    let res = app.get("/v1/me").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["tenant"]["name"], "acme");
    assert!(body["tenant"]["id"].as_str().unwrap().starts_with("ten_"));
}

#[tokio::test]
async fn missing_malformed_unknown_and_revoked_keys_are_401_problems() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    problem(res, 401, "missing_api_key").await;

    let res = app
        .client
        .get(app.url("/v1/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    problem(res, 401, "malformed_api_key").await;
    let res = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth("not-a-key")
        .send()
        .await
        .unwrap();
    problem(res, 401, "malformed_api_key").await;

    // Right shape, right lookup, wrong secret; and an entirely unknown key.
    let mut forged = app.api_key.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let res = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_api_key").await;
    let unknown = fluxgate::domain::api_key::NewApiKey::generate();
    let res = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&unknown.secret))
        .send()
        .await
        .unwrap();
    problem(res, 401, "invalid_api_key").await;

    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = app.get("/v1/me").await;
    problem(res, 401, "revoked_api_key").await;
}

#[tokio::test]
async fn unknown_routes_are_404_problems_and_wrong_methods_405() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/nope")).send().await.unwrap();
    problem(res, 404, "not_found").await;
    let res = app.get("/v1/nope").await;
    problem(res, 404, "not_found").await;
    // Auth comes first under /v1: an unauthenticated probe learns nothing about routes.
    let res = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    problem(res, 401, "missing_api_key").await;
    let res = app.client.post(app.url("/healthz")).send().await.unwrap();
    problem(res, 405, "method_not_allowed").await;
    let res = app
        .client
        .delete(app.url("/v1/me"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    problem(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_caller_id_is_kept() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc-123");
    let res = app.client.get(app.url("/nope")).send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "x".repeat(200))
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "x".repeat(200).as_str());
    let res = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert!(
        res.headers().contains_key("x-request-id"),
        "401s carry one too"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_request_latency_by_route() {
    let app = spawn_app().await;
    app.get("/v1/me").await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"fluxgate_http_request_duration_seconds_count{method="GET",route="/v1/me",status="200"} 1"#),
        "{text}"
    );
}

/// Every pooled connection plans with indexes only (see `storage::pool_options`): a plan made
/// while a queue table was small must not seq-scan it forever after.
#[tokio::test]
async fn pooled_connections_never_plan_a_scan_where_an_index_serves() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let mut conn = app.pool.acquire().await.unwrap();
        let seq: String = sqlx::query_scalar("SHOW enable_seqscan")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let bitmap: String = sqlx::query_scalar("SHOW enable_bitmapscan")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((seq.as_str(), bitmap.as_str()), ("off", "off"));
    }
    // On an empty table, the generic plan still reads `deliveries` by its key.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM deliveries WHERE id = ANY(ARRAY[gen_random_uuid()])",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(plan.iter().any(|l| l.contains("Index")), "{plan:#?}");
}

#[tokio::test]
async fn each_state_enum_spells_exactly_what_its_columns_check_allows() {
    use fluxgate::domain::states::{DeliveryStatus, GenerationStatus, SubscriptionStatus};
    let (pool, _) = crate::helpers::fresh_database().await;
    for (table, names) in [
        ("generations", GenerationStatus::names()),
        ("deliveries", DeliveryStatus::names()),
        ("subscriptions", SubscriptionStatus::names()),
    ] {
        let check: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
             WHERE c.conrelid = $1::regclass AND c.contype = 'c'
               AND pg_get_constraintdef(c.oid) LIKE '%status%'",
        )
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap();
        // e.g. CHECK ((status = ANY (ARRAY['accepted'::text, …])))
        let allowed: Vec<&str> = check.split('\'').skip(1).step_by(2).collect();
        assert_eq!(allowed, names, "{table}: {check}");
    }
}
