//! Signing secrets at rest: with FLUXGATE_ENCRYPTION_KEY, a dump of the database holds no
//! secret that signs deliveries; deliveries still verify; `secrets reencrypt` moves every row to
//! a new key, after which the old one can go.
use std::time::Duration;

use fluxgate::{
    delivery::signing::{self, SigningSecret},
    secrets::{self, Keyring},
    startup::Workers,
};
use serde_json::{json, Value};

use crate::{
    helpers::{spawn_app_with, start_app, test_settings, TestApp, TestOptions},
    receiver::Receiver,
};

fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn keyring(value: &str) -> std::sync::Arc<Keyring> {
    std::sync::Arc::new(Keyring::parse(value).unwrap())
}

/// `pg_dump --data-only` of the test's database, as an operator's backup would hold it.
fn dump(app: &TestApp) -> String {
    // Beside the server binaries the tests' Postgres runs from, else on PATH.
    let beside = fluxgate::tools::devdb::find_binaries()
        .ok()
        .into_iter()
        .flat_map(|b| {
            [
                b.initdb.with_file_name("pg_dump"),
                format!("/usr/lib/postgresql/{}/bin/pg_dump", b.version).into(),
            ]
        });
    let bin = beside
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| "pg_dump".into());
    let out = std::process::Command::new(bin)
        .arg("--data-only")
        .arg(format!("--dbname={}", app.db_url))
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The delivery's signature checks out with `secret`.
fn verifies(delivery: &crate::receiver::Received, secret: &str) -> bool {
    let header = |n| delivery.header(n).unwrap_or_default().to_owned();
    signing::verify(
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        &delivery.body,
        &SigningSecret::parse(secret).unwrap(),
        chrono::Utc::now().timestamp(),
    )
    .is_ok()
}

/// A subscription to `test.ping` events at `receiver`, as created (its secret shown).
async fn subscribe(app: &TestApp, receiver: &Receiver) -> Value {
    app.post(
        "/v1/subscriptions",
        &json!({"target_url": receiver.url, "event_types": ["test.ping"]}),
    )
    .await
    .json()
    .await
    .unwrap()
}

async fn ping(app: &TestApp, sub: &str) {
    let res = app
        .post(&format!("/v1/subscriptions/{sub}/test"), &json!({}))
        .await;
    assert!(res.status().is_success(), "{:?}", res.text().await);
}

#[tokio::test]
async fn a_database_dump_holds_no_signing_secret_and_deliveries_still_verify() {
    let mut settings = test_settings();
    settings.storage.keyring = keyring(&key(1));
    let app = spawn_app_with(TestOptions {
        settings,
        workers: Workers::ALL,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&app, &receiver).await;
    let (sub_id, first) = (sub["id"].as_str().unwrap(), sub["secret"].as_str().unwrap());
    let rotated: Value = app
        .post(
            &format!("/v1/subscriptions/{sub_id}/rotate-secret"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let second = rotated["secret"].as_str().unwrap();
    let tenant: Value = app.get("/v1/webhook-secret").await.json().await.unwrap();
    let tenant_secret = tenant["secret"].as_str().unwrap();

    let dumped = dump(&app);
    for secret in [first, second, tenant_secret] {
        let bare = secret.trim_start_matches("whsec_");
        assert!(!dumped.contains(bare), "a secret is in the dump");
    }
    assert!(
        !dumped.contains("whsec_"),
        "no plaintext secret of any kind"
    );
    assert!(dumped.contains("enc:v1:"), "the secrets are there, sealed");

    // Signed during the rotation's grace with both, each opened from its sealed row.
    ping(&app, sub_id).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(verifies(&got[0], second) && verifies(&got[0], first));
}

#[tokio::test]
async fn reencrypt_moves_every_row_to_the_new_key_and_the_old_key_can_go() {
    // Rows of a deployment that ran without a key, then with key 1.
    let app = spawn_app_with(TestOptions {
        workers: Workers::ALL,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let create = |v: Value| {
        let field = |k: &str| v[k].as_str().unwrap().to_owned();
        (field("id"), field("secret"))
    };
    let (plain_id, plain_secret) = create(subscribe(&app, &receiver).await);
    let _ = app.get("/v1/webhook-secret").await;
    let (db_url, sim, _) = app.stop().await;
    let pool = fluxgate::storage::connect(&db_url, 8).await.unwrap();
    let mut settings = test_settings();
    settings.storage.keyring = keyring(&key(1));
    let app = start_app(pool, db_url, sim, settings, Workers::ALL).await;
    let (sealed_id, sealed_secret) = create(subscribe(&app, &receiver).await);
    assert!(
        dump(&app).contains(&plain_secret),
        "the old row is still in plaintext"
    );

    // Key 2 goes first; key 1 stays to open what it sealed.
    let rotated = Keyring::parse(&format!("{},{}", key(2), key(1))).unwrap();
    let report = secrets::reencrypt::run(&app.pool, &rotated).await.unwrap();
    assert_eq!(
        (
            report.subscriptions_resealed,
            report.tenants_resealed,
            report.server_secrets_resealed
        ),
        (2, 1, 1),
        "{report:?}"
    );
    let again = secrets::reencrypt::run(&app.pool, &rotated).await.unwrap();
    assert_eq!(
        again.subscriptions_resealed + again.tenants_resealed,
        0,
        "idempotent"
    );
    let dumped = dump(&app);
    assert!(!dumped.contains("whsec_"));
    let new_id = rotated.primary_id().unwrap();
    let sealed_rows = dumped.matches(&format!("enc:v1:{new_id}:")).count();
    assert!(
        sealed_rows >= 4,
        "{sealed_rows} rows sealed with the new key"
    );

    // With key 2 alone, both subscriptions still sign.
    let (db_url, sim, _) = app.stop().await;
    let pool = fluxgate::storage::connect(&db_url, 8).await.unwrap();
    let mut settings = test_settings();
    settings.storage.keyring = keyring(&key(2));
    let app = start_app(pool, db_url, sim, settings, Workers::ALL).await;
    ping(&app, &plain_id).await;
    ping(&app, &sealed_id).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let signed_by = |secret: &str| got.iter().filter(|d| verifies(d, secret)).count();
    assert_eq!(
        (signed_by(&plain_secret), signed_by(&sealed_secret)),
        (1, 1)
    );
}

#[tokio::test]
async fn a_secret_whose_key_is_gone_is_never_sent_unsigned() {
    let mut settings = test_settings();
    settings.storage.keyring = keyring(&key(1));
    let app = spawn_app_with(TestOptions {
        settings,
        workers: Workers::ALL,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let sub = subscribe(&app, &receiver).await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let (db_url, sim, _) = app.stop().await;
    let pool = fluxgate::storage::connect(&db_url, 8).await.unwrap();
    let mut settings = test_settings();
    // The callback-token key was sealed with key 1 too: the instance needs it to start.
    settings.storage.keyring = keyring(&format!("{},{}", key(3), key(1)));
    sqlx::query("UPDATE subscriptions SET secret = replace(secret, 'enc:v1:', 'enc:v1:00') ")
        .execute(&pool)
        .await
        .unwrap();
    let app = start_app(pool, db_url, sim, settings, Workers::ALL).await;
    ping(&app, &sub_id).await;
    // The attempt fails, naming why, and nothing reaches the receiver.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let error = loop {
        let list: Value = app
            .get(&format!("/v1/subscriptions/{sub_id}/deliveries"))
            .await
            .json()
            .await
            .unwrap();
        let delivery = &list["data"][0];
        if let Some(id) = delivery["id"].as_str() {
            let d: Value = app
                .get(&format!("/v1/deliveries/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if let Some(a) = d["attempts_log"].as_array().and_then(|a| a.first()) {
                break a.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded: {list}"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(error["error_class"], "invalid_target", "{error}");
    assert!(error.to_string().contains("cannot be read"), "{error}");
    assert!(receiver.received().is_empty());
}
