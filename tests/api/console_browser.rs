//! The console in a real browser. A real `fluxgate serve` (the binary, configured by
//! environment) with the fal simulator, a file image store and a webhook receiver; Debian's
//! Chromium driven by Playwright (tests/browser/console.py) signs in, creates, varies,
//! subscribes and is refused; then this side checks in the database and at the receiver that
//! what the pages showed is what happened.
use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{json, Value};

use crate::{
    helpers::{fresh_database, in_ci, tenant_with_key, SIM_KEY, SIM_SEED},
    receiver::Receiver,
    serve_process::{free_port, ServeProcess},
};
use fluxgate::{delivery::signing, tools::simulator::SimConfig};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.py");
const END_USER: &str = "customer-7";

/// The browser: `FLUXGATE_TEST_CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("FLUXGATE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Where the screenshots of the main pages are kept: `FLUXGATE_SCREENSHOTS`, else
/// `target/console-screenshots`.
fn screenshots() -> PathBuf {
    std::env::var_os("FLUXGATE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
        })
}

/// CI must run this test; a newcomer's `cargo test` without a browser skips it loudly.
fn browser_available() -> bool {
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = match (playwright, chromium().is_file()) {
        (true, true) => return true,
        (false, _) => "Playwright for python3 (`pip install playwright`)".to_owned(),
        (true, false) => format!(
            "Chromium at {} (`apt-get install chromium`)",
            chromium().display()
        ),
    };
    assert!(
        !in_ci(),
        "CI must run the browser test, but {missing} is missing"
    );
    eprintln!("SKIPPED the console browser test: {missing} is missing");
    false
}

#[tokio::test]
async fn the_console_signs_in_creates_live_varies_subscribes_and_refuses_a_token_in_chromium() {
    if !browser_available() {
        return;
    }
    let (pool, db_url) = fresh_database().await;
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        queue_delay: Duration::from_millis(5),
        run_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let receiver = Receiver::start().await;
    let (_, key) = tenant_with_key(&pool, "acme").await;
    let store = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("DATABASE_URL", db_url.as_str()),
        ("FAL_KEY", SIM_KEY),
        ("FLUXGATE_PUBLIC_URL", &base),
        ("PORT", &port),
        ("FLUXGATE_BIND", "127.0.0.1"),
        ("FLUXGATE_FAL_QUEUE_URL", sim.base_url()),
        ("FLUXGATE_FAL_JWKS_URL", &sim.jwks_url()),
        ("FLUXGATE_ALLOW_INSECURE_FAL", "true"),
        ("FLUXGATE_ALLOW_HTTP_TARGETS", "true"),
        ("FLUXGATE_ALLOWED_TARGET_CIDRS", "127.0.0.0/8"),
        // Durable copies, served by this instance's /assets: the cards show those URLs.
        ("FLUXGATE_STORAGE", store.path().to_str().unwrap()),
        ("FLUXGATE_IMAGE_HOSTS", "127.0.0.1"),
        ("RUST_LOG", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let serve = ServeProcess::start(env, "fluxgate-console-browser-test.log").await;
    let client = reqwest::Client::new();

    let minted: Value = client
        .post(format!("{}/v1/tokens", serve.base))
        .bearer_auth(&key)
        .json(&json!({
            "end_user": END_USER,
            "ttl_secs": 900,
            "scopes": ["generations:write", "generations:read", "events:read"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().expect("a token").to_owned();

    let shots = screenshots();
    std::fs::create_dir_all(&shots).unwrap();
    let run = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .env("FLUXGATE_URL", &serve.base)
        .env("FLUXGATE_KEY", &key)
        .env("FLUXGATE_TOKEN", &token)
        .env("FLUXGATE_END_USER", END_USER)
        .env("RECEIVER_URL", &receiver.url)
        .env("CHROMIUM", chromium())
        .env("SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser run finished within 4 minutes")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    let id = |name: &str| made[name].as_str().unwrap().to_owned();

    // What the form created is what was stored: its seed reused by the variation, its images
    // copied into the store.
    let seeds: Vec<(String, Option<i64>, String)> = sqlx::query_as(
        "SELECT input->>'prompt', seed, status FROM generations WHERE id = ANY($1) ORDER BY created_at",
    )
    .bind(
        [id("created"), id("varied")]
            .iter()
            .map(|g| g.parse::<fluxgate::domain::ids::GenerationId>().unwrap())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(seeds.len(), 2, "{seeds:?}");
    assert_eq!(seeds[0].1, Some(424242));
    assert_eq!(seeds[1].1, Some(424242), "the variation kept the seed");
    assert_eq!(seeds[1].0, "a lighthouse on a basalt cliff at dusk");
    assert!(seeds.iter().all(|s| s.2 == "completed"), "{seeds:?}");
    let created_dir = store.path().join(id("created"));
    assert!(
        std::fs::read_dir(&created_dir).is_ok_and(|mut d| d.next().is_some()),
        "no copy in {}",
        created_dir.display()
    );

    // The subscription the console created delivered its test ping and a real generation, each
    // signed with the secret the console showed once.
    let secret = signing::SigningSecret::parse(made["secret"].as_str().unwrap()).unwrap();
    let received = receiver.received();
    let types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(types.iter().any(|t| t == "test.ping"), "{types:?}");
    assert!(
        received
            .iter()
            .any(|r| r.json()["data"]["id"] == id("delivered_generation")
                && r.json()["type"] == "generation.completed"),
        "{types:?}"
    );
    for r in &received {
        signing::verify(
            r.header("webhook-id").unwrap(),
            r.header("webhook-timestamp").unwrap(),
            r.header("webhook-signature").unwrap(),
            &r.body,
            &secret,
            chrono::Utc::now().timestamp(),
        )
        .expect("each delivery verifies with the secret the console showed");
    }

    // The token's generation is its end user's, with the safety checker on.
    let (end_user, input): (Option<String>, Value) =
        sqlx::query_as("SELECT end_user, input FROM generations WHERE id = $1")
            .bind(
                id("token_generation")
                    .parse::<fluxgate::domain::ids::GenerationId>()
                    .unwrap(),
            )
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(end_user.as_deref(), Some(END_USER));
    assert_eq!(input["enable_safety_checker"], true, "{input}");

    for page in [
        "gallery",
        "generation",
        "create",
        "subscription",
        "usage",
        "refused",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
    println!("screenshots of the console are in {}", shots.display());
    drop(serve);
}
