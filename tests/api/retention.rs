//! Retention: what is older than `FLUXGATE_EVENT_RETENTION` goes, in batches by key, except
//! what is unfinished — a pending delivery keeps itself, its attempts and its event — and
//! listings say where retention cut them.
use std::time::Duration;

use fluxgate::{ops::retention::Sweeper, startup::Workers};
use serde_json::{json, Value};
use uuid::{NoContext, Timestamp, Uuid};

use crate::helpers::{spawn_app_with, test_settings, TestApp, TestOptions};

/// A UUIDv7 made `days` ago, as the row's insert would have made it then.
fn made_days_ago(days: u64) -> Uuid {
    let then = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    let since = then.duration_since(std::time::UNIX_EPOCH).unwrap();
    Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        since.as_secs(),
        since.subsec_nanos(),
    ))
}

async fn event(app: &TestApp, id: Uuid) {
    sqlx::query(
        "INSERT INTO events (id, tenant_id, type, payload) VALUES ($1, $2, 'generation.completed', '{}')",
    )
    .bind(id)
    .bind(app.tenant_id)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A delivery of `event`, created `days` ago with it (as fan-out creates every delivery in its
/// event's statement).
async fn delivery(app: &TestApp, id: Uuid, event: Uuid, status: &str, days: i32) {
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, event_id, target_url, status, attempts, created_at)
         VALUES ($1, $2, $3, 'https://example.com/hook', $4, 1, now() - make_interval(days => $5))",
    )
    .bind(id)
    .bind(app.tenant_id)
    .bind(event)
    .bind(status)
    .bind(days)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
         VALUES ($1, 1, now(), 5, 500)",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn exists(app: &TestApp, table: &str, column: &str, id: Uuid) -> bool {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} = $1)"
    ))
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn pruning_removes_only_what_is_old_and_finished() {
    let mut settings = test_settings();
    settings.storage.event_retention = Some(Duration::from_secs(86_400));
    let app = spawn_app_with(TestOptions {
        settings: settings.clone(),
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    // Two days old: one event delivered, one whose delivery is still being retried (pending),
    // one leased right now (in flight).
    let (done_event, waiting_event, flying_event) =
        (made_days_ago(2), made_days_ago(2), made_days_ago(2));
    let (done, waiting, flying) = (made_days_ago(2), made_days_ago(2), made_days_ago(2));
    for e in [done_event, waiting_event, flying_event] {
        event(&app, e).await;
    }
    delivery(&app, done, done_event, "succeeded", 2).await;
    delivery(&app, waiting, waiting_event, "pending", 2).await;
    delivery(&app, flying, flying_event, "pending", 2).await;
    sqlx::query("UPDATE deliveries SET lease_until = now() + interval '1 minute' WHERE id = $1")
        .bind(flying)
        .execute(&app.pool)
        .await
        .unwrap();
    // Fresh: kept whatever its state.
    let (fresh_event, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    event(&app, fresh_event).await;
    delivery(&app, fresh, fresh_event, "failed", 0).await;

    // An edit two days old, with an inline source image, and its stored callback.
    let g = app
        .post(
            "/v1/edits",
            &json!({"prompt": "a", "image_urls": ["data:image/png;base64,iVBORw0KGgo="]}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let current: Uuid = g["id"].as_str().unwrap()[4..].parse().unwrap();
    let old_generation = made_days_ago(2);
    sqlx::query(
        "INSERT INTO generations SELECT (jsonb_populate_record(NULL::generations,
             to_jsonb(g) || jsonb_build_object('id', $1::uuid, 'finished_at', now() - interval '2 days',
                                               'status', 'completed', 'idempotency_key', NULL, 'cache_key', NULL))).*
         FROM generations g WHERE id = $2",
    )
    .bind(old_generation)
    .bind(current)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced, received_at)
         VALUES ($1, 'req-old', 'webhook', 'OK', '{}', true, now() - interval '2 days')",
    )
    .bind(old_generation)
    .execute(&app.pool)
    .await
    .unwrap();

    let swept = Sweeper::default()
        .sweep(&app.pool, &settings, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (
            swept.deliveries,
            swept.events,
            swept.callbacks,
            swept.generations_slimmed
        ),
        (1, 1, 1, 1),
        "{swept:?}"
    );
    assert!(!exists(&app, "deliveries", "id", done).await);
    assert!(!exists(&app, "delivery_attempts", "delivery_id", done).await);
    assert!(!exists(&app, "events", "id", done_event).await);
    for (delivery, event) in [
        (waiting, waiting_event),
        (flying, flying_event),
        (fresh, fresh_event),
    ] {
        assert!(
            exists(&app, "deliveries", "id", delivery).await,
            "an unfinished or fresh delivery stays"
        );
        assert!(exists(&app, "delivery_attempts", "delivery_id", delivery).await);
        assert!(exists(&app, "events", "id", event).await);
    }
    // The generation stays, without its inline image; the fresh one is untouched.
    let input = |id: Uuid| {
        sqlx::query_scalar::<_, Value>("SELECT input FROM generations WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
    };
    assert_eq!(
        input(old_generation).await.unwrap()["image_urls"],
        json!(["data:,pruned"])
    );
    assert_eq!(
        input(current).await.unwrap()["image_urls"],
        json!(["data:image/png;base64,iVBORw0KGgo="])
    );

    // A second sweep finds nothing more to do.
    let again = Sweeper::default()
        .sweep(&app.pool, &settings, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again, Default::default());

    // Listings say where retention cut them.
    let page: Value = app.get("/v1/events").await.json().await.unwrap();
    let since: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(page["retained_since"].clone()).expect("a cut-off time");
    let age = chrono::Utc::now() - since;
    let day = chrono::Duration::hours(24);
    assert!(
        age >= day && age < day + chrono::Duration::minutes(1),
        "{age}"
    );
}

#[tokio::test]
async fn a_sweep_deletes_browser_tokens_an_hour_after_they_expire_and_keeps_the_rest() {
    let app = spawn_app_with(TestOptions::default()).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let minted: Value = app
            .post("/v1/tokens", &json!({"end_user": "customer-7"}))
            .await
            .json()
            .await
            .unwrap();
        let id: fluxgate::domain::ids::BrowserTokenId =
            minted["id"].as_str().unwrap().parse().unwrap();
        tokens.push((id.uuid(), minted["token"].as_str().unwrap().to_owned()));
    }
    // The first expired two hours ago, the second ten minutes ago; the third is live.
    for (i, age) in [(0, "2 hours"), (1, "10 minutes")] {
        sqlx::query(&format!(
            "UPDATE browser_tokens SET expires_at = now() - interval '{age}' WHERE id = $1"
        ))
        .bind(tokens[i].0)
        .execute(&app.pool)
        .await
        .unwrap();
    }

    // With no event retention at all, tokens are still pruned.
    let mut settings = test_settings();
    settings.storage.event_retention = None;
    let swept = Sweeper::default()
        .sweep(&app.pool, &settings, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept.browser_tokens, 1, "{swept:?}");
    assert!(!exists(&app, "browser_tokens", "id", tokens[0].0).await);
    assert!(exists(&app, "browser_tokens", "id", tokens[1].0).await);
    let live = crate::scopes::call(&app, &tokens[2].1, "GET", "/v1/me", None).await;
    assert_eq!(live.status(), 200, "the live token still works");
}

#[tokio::test]
async fn stopping_does_not_wait_for_a_sweep_through_a_long_backlog() {
    let app = spawn_app_with(TestOptions {
        workers: Workers::NONE,
        ..Default::default()
    })
    .await;
    // 20 000 old finished deliveries of one old event: a hundred batches, each followed by a rest.
    let old_event = made_days_ago(40);
    event(&app, old_event).await;
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, event_id, target_url, status, attempts, created_at)
         SELECT gen_random_uuid(), $1, $2, 'https://example.com/hook', 'succeeded', 1,
                now() - interval '40 days'
         FROM generate_series(1, 20000)",
    )
    .bind(app.tenant_id)
    .bind(old_event)
    .execute(&app.pool)
    .await
    .unwrap();
    let left = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM deliveries")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeping = tokio::spawn(fluxgate::ops::retention::run(
        app.pool.clone(),
        std::sync::Arc::new(test_settings()),
        None,
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while left().await == 20_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep never began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sweeping)
        .await
        .expect("the sweep stopped when told to")
        .unwrap();

    assert!(left().await > 0, "stopped before the backlog was through");
}
