//! Schemathesis (PyPI) against `/openapi.json` of a real `fluxgate serve`: every operation, a
//! fixed seed, and the check that nothing answers a server error or drops the connection.
//!
//! Generated bodies carry arbitrary URLs (webhook targets, image sources), so this runs only in
//! a private network namespace where nothing can leave the machine; `.ci/fuzz` starts it so:
//!
//! ```sh
//! unshare -n sh -c 'ip link set lo up && cargo test --test api fuzz -- --ignored'
//! ```
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use crate::helpers::{fresh_database, SIM_KEY, SIM_SEED};
use fluxgate::{storage, tools::simulator::SimConfig};

/// The seed of the generated cases, so a failure reproduces.
const SEED: &str = "20261202";
/// Cases per operation, sized to keep the whole run well under five minutes on two cores.
const EXAMPLES: &str = "150";

/// True when nothing but loopback is reachable: the only place this test may run.
fn network_is_private() -> bool {
    let Ok(routes) = std::fs::read_to_string("/proc/net/route") else {
        return false;
    };
    let ifaces = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    routes.lines().skip(1).all(|l| l.trim().is_empty())
        && ifaces
            .lines()
            .skip(2)
            .all(|l| l.trim_start().starts_with("lo:"))
}

#[tokio::test]
#[ignore = "fuzzing: run by .ci/fuzz inside a private network namespace"]
async fn schemathesis_finds_no_server_error_and_no_dropped_connection_on_serve() {
    assert!(
        network_is_private(),
        "run this inside `unshare -n` (see .ci/fuzz): generated URLs must not leave the machine"
    );
    let (pool, db_url) = fresh_database().await;
    let sim = fluxgate::tools::simulator::start(SimConfig {
        api_key: Some(secrecy::SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        queue_delay: Duration::from_millis(5),
        run_delay: Duration::from_millis(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let store = tempfile::tempdir().unwrap();
    let log_path = std::env::temp_dir().join(format!("fluxgate-fuzz-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    // `serve` as deployed, but for a local fal (the simulator) and an image store.
    let mut serve = Stopped(
        Command::new(env!("CARGO_BIN_EXE_fluxgate"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs([
                ("DATABASE_URL", db_url.as_str()),
                ("FAL_KEY", SIM_KEY),
                ("PORT", &port.to_string()),
                ("FLUXGATE_BIND", "127.0.0.1"),
                ("FLUXGATE_PUBLIC_URL", &base),
                ("FLUXGATE_FAL_QUEUE_URL", sim.base_url()),
                ("FLUXGATE_FAL_JWKS_URL", &sim.jwks_url()),
                ("FLUXGATE_ALLOW_INSECURE_FAL", "true"),
                (
                    "FLUXGATE_ENCRYPTION_KEY",
                    "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                ),
                ("FLUXGATE_STORAGE", &store.path().display().to_string()),
                ("FLUXGATE_LOG_FORMAT", "json"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tenant_id, key) = crate::helpers::tenant_with_key(&pool, "fuzz").await;

    // Real ids for the operations that take one, so cases reach past the 404 of a made-up id.
    let auth = format!("Authorization: Bearer {key}");
    let config = tempfile::NamedTempFile::new().unwrap();
    let bearer = format!("Bearer {key}");
    std::fs::write(
        config.path(),
        known_ids(&client, &base, &bearer, &pool, tenant_id).await,
    )
    .unwrap();
    // The live streams never end on their own: each valid case holds its connection for the
    // whole request timeout, so they get fewer cases and a short timeout of their own.
    let streams = "^/v1/(events/stream|generations/\\{[a-z_]+\\}/events)$";
    let schema = format!("{base}/openapi.json");
    let config = config.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let rest = schemathesis(
        config,
        &schema,
        &auth,
        &[
            "--exclude-path-regex",
            streams,
            "--max-examples",
            EXAMPLES,
            "--request-timeout",
            "20",
        ],
    );
    let rest_took = started.elapsed();
    let live = schemathesis(
        config,
        &schema,
        &auth,
        &[
            "--include-path-regex",
            streams,
            "--max-examples",
            "5",
            "--request-timeout",
            "2",
        ],
    );
    let elapsed = started.elapsed();
    println!(
        "operations other than streams: {:.0} s",
        rest_took.as_secs_f64()
    );
    let alive = serve.0.try_wait().unwrap().is_none();
    drop(serve);
    sim.stop().await;
    let served = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("schemathesis took {:.0} s", elapsed.as_secs_f64());
    for run in [&rest, &live] {
        println!("{}", String::from_utf8_lossy(&run.stdout));
    }
    assert!(alive, "serve died under the fuzzer");
    for run in [rest, live] {
        assert!(
            run.status.success(),
            "schemathesis found failures (above):\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let panics: Vec<&str> = served.lines().filter(|l| l.contains("panicked")).collect();
    assert!(
        panics.is_empty(),
        "a handler panicked:\n{}",
        panics.join("\n")
    );
}

/// The server, stopped (SIGTERM, then waited for) however the test ends: a failed assertion
/// must not leave it running.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// A schemathesis config naming a generation, a subscription and a delivery that exist.
async fn known_ids(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    pool: &sqlx::PgPool,
    tenant: fluxgate::domain::ids::TenantId,
) -> String {
    let g: serde_json::Value = client
        .post(format!("{base}/v1/generations"))
        .header("authorization", bearer)
        .json(&serde_json::json!({"prompt": "a lighthouse", "num_images": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gen = g["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a generation: {g}"))
        .to_owned();
    // Inserted as an operator would: no public receiver resolves in here.
    let sub = storage::subscriptions::insert(
        pool,
        tenant,
        storage::subscriptions::NewSubscription {
            id: fluxgate::domain::ids::SubscriptionId::new(),
            target_url: "https://receiver.example/hook",
            event_types: &["*".to_owned()],
            filter: None,
            description: None,
            headers: &serde_json::json!({}),
            secret: fluxgate::delivery::signing::SigningSecret::generate().as_str(),
            max_in_flight: 8,
            rate_limit_per_sec: None,
        },
    )
    .await
    .unwrap();
    let sub = sub.id.to_string();
    let ping: serde_json::Value = client
        .post(format!("{base}/v1/subscriptions/{sub}/test"))
        .header("authorization", bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dlv = ping["delivery_id"].as_str().expect("a delivery").to_owned();
    format!(
        r#"
[[operations]]
include-path-regex = "^/v1/(generations|events)"
parameters = {{ id = "{gen}" }}

[[operations]]
include-path-regex = "^/v1/subscriptions/"
parameters = {{ id = "{sub}" }}

[[operations]]
include-path-regex = "^/v1/deliveries/"
parameters = {{ id = "{dlv}" }}

[[operations]]
include-path-regex = "^/(hooks/fal|assets)/"
parameters = {{ generation_id = "{gen}" }}
"#
    )
}

/// One schemathesis run over `schema`, with the fixed seed and every check of server health.
/// One worker: CPython 3.11's parser is not safe to run from two threads at once, which
/// schemathesis's workers do (a `SystemError` in its own code, not an answer of ours).
fn schemathesis(config: &str, schema: &str, auth: &str, args: &[&str]) -> std::process::Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new("schemathesis")
        // Its cache directory goes there, not into the checkout.
        .current_dir(scratch.path())
        .args(["--config-file", config])
        .args([
            "run",
            schema,
            "--checks",
            "not_a_server_error",
            "--seed",
            SEED,
        ])
        .args(["--workers", "1", "--phases", "examples,coverage,fuzzing"])
        .args(["--suppress-health-check", "all", "--header", auth])
        .args(args)
        .output()
        .expect("schemathesis is installed (pip install schemathesis; .ci/run does)")
}
