//! The Zapier integration in `integrations/zapier/` against a real fluxgate: its Node tests
//! (zapier-platform-core's `createAppTester`, run by `node --test`) get this app's URL and a key
//! made as a Zapier user would make one, and must all pass — the connection, the REST Hook
//! triggers with real signed deliveries to a stand-in hook URL, the actions and the search.
use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{in_ci, spawn_app, TestApp};

/// The scopes README tells a Zapier user to give the key.
const ZAPIER_SCOPES: &str = "generations:write,generations:read,subscriptions:manage";

fn integration() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("integrations/zapier")
}

/// Ok when Node.js and the integration's dependencies are installed; else what to install.
fn ready() -> Result<(), String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = integration()
        .join("node_modules/zapier-platform-core")
        .is_dir();
    (node && installed)
        .then_some(())
        .ok_or_else(|| "Node.js and `npm ci --prefix integrations/zapier`".into())
}

/// The integration's test files, in a stable order.
fn test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(integration().join("test"))
        .expect("integrations/zapier/test")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.js"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    files
}

/// A key made with `fluxgate keys create --scopes …`, as README tells a Zapier user to.
fn key_with(app: &TestApp, scopes: &str) -> String {
    let created = app.cli_json(&[
        "keys", "create", "--tenant", "acme", "--label", "zapier", "--scopes", scopes,
    ]);
    created["key"].as_str().unwrap().to_owned()
}

/// The number on the TAP summary line `# {name} N` that `node --test` ends with.
fn summary(tap: &str, name: &str) -> usize {
    let prefix = format!("# {name} ");
    tap.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}N` line in the test output"))
}

#[tokio::test]
async fn the_zapier_integration_passes_its_tests_against_a_real_fluxgate() {
    if let Err(install) = ready() {
        assert!(
            !in_ci(),
            "CI must run the Zapier integration: install {install}"
        );
        eprintln!("SKIPPED the Zapier integration: install {install}");
        return;
    }
    let app = spawn_app().await;
    let key = key_with(&app, ZAPIER_SCOPES);
    let narrow_key = key_with(&app, "generations:write");

    let run = Command::new("node")
        .arg("--test")
        .args(test_files())
        .current_dir(integration())
        .env("NODE_ENV", "test")
        .env("FLUXGATE_URL", &app.address)
        .env("FLUXGATE_API_KEY", &key)
        .env("FLUXGATE_NARROW_KEY", &narrow_key)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Zapier tests finished within 120 s")
        .expect("node runs");
    let tap = String::from_utf8_lossy(&out.stdout);
    println!("{tap}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Zapier tests failed:\n{tap}");
    let (tests, passed) = (summary(&tap, "tests"), summary(&tap, "pass"));
    assert_eq!(
        summary(&tap, "skipped"),
        0,
        "every test ran against the app"
    );
    assert!(tests > 0 && passed == tests, "{passed} of {tests} passed");

    // Every Zap unsubscribed when its test ended: no subscription is left behind.
    let subscriptions: Value = app.get("/v1/subscriptions").await.json().await.unwrap();
    assert_eq!(
        subscriptions["data"],
        serde_json::json!([]),
        "{subscriptions}"
    );
    println!("{passed} Zapier tests passed");
}
