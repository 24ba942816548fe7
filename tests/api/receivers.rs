//! The example receivers in `examples/receivers/` (Python and Node, each on its language's
//! official Standard Webhooks library) against real fluxgate deliveries: live from a
//! subscription, and captured deliveries forwarded to them valid, tampered, replayed outside the
//! tolerance, and signed during a secret rotation.
use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::{
    helpers::{in_ci, spawn_app, TestApp},
    receiver::{Received, Receiver},
    serve_process::free_port,
};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/receivers")
}

/// One example receiver: its language's command, and what it needs installed.
struct Example {
    name: &'static str,
    program: &'static str,
    script: &'static str,
    /// A check that succeeds when its library is installed, and how to install it.
    ready: fn() -> Result<(), String>,
}

const EXAMPLES: [Example; 2] = [
    Example {
        name: "python",
        program: "python3",
        script: "python/receiver.py",
        ready: || {
            let ok = std::process::Command::new("python3")
                .args(["-c", "import standardwebhooks"])
                .output()
                .is_ok_and(|o| o.status.success());
            ok.then_some(())
                .ok_or_else(|| "`pip install -r examples/receivers/python/requirements.txt`".into())
        },
    },
    Example {
        name: "node",
        program: "node",
        script: "node/receiver.mjs",
        ready: || {
            let installed = examples()
                .join("node/node_modules/standardwebhooks")
                .is_dir();
            let node = std::process::Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            (installed && node)
                .then_some(())
                .ok_or_else(|| "Node.js and `npm ci --prefix examples/receivers/node`".into())
        },
    },
];

/// A running example receiver, killed on drop.
struct Running {
    url: String,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl Running {
    async fn start(example: &Example, secret: &str) -> Running {
        let port = free_port();
        let mut child = Command::new(example.program)
            .arg(examples().join(example.script))
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {} receiver: {e}", example.name));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_line(&mut lines).await;
        assert_eq!(first["listening"], port, "{}: {first}", example.name);
        Running {
            url: format!("http://127.0.0.1:{port}/fluxgate"),
            lines,
            _child: child,
        }
    }

    /// The receiver's account of the next request it answered.
    async fn outcome(&mut self) -> Value {
        next_line(&mut self.lines).await
    }

    /// Sends a captured delivery, with `edit` applied to its headers and body; the HTTP status
    /// and the receiver's account of it.
    async fn forward(
        &mut self,
        delivery: &Received,
        edit: impl FnOnce(&mut Vec<(String, String)>, &mut Vec<u8>),
    ) -> (u16, Value) {
        let (mut headers, mut body) = (delivery.headers.clone(), delivery.body.clone());
        edit(&mut headers, &mut body);
        let mut req = reqwest::Client::new().post(&self.url).body(body);
        for (name, value) in headers.iter().filter(|(n, _)| n.starts_with("webhook-")) {
            req = req.header(name, value);
        }
        let status = req.send().await.unwrap().status().as_u16();
        (status, self.outcome().await)
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the receiver answered within 20 s")
        .unwrap()
        .expect("the receiver is still running");
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
}

fn set_header(headers: &mut [(String, String)], name: &str, value: String) {
    for (n, v) in headers.iter_mut() {
        if n == name {
            *v = value.clone();
        }
    }
}

async fn subscribe(app: &TestApp, url: &str) -> Value {
    let res = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": url, "event_types": ["generation.completed"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_example_receivers_verify_real_deliveries_and_refuse_tampered_and_replayed_ones() {
    let mut ran = 0;
    for example in &EXAMPLES {
        if let Err(install) = (example.ready)() {
            assert!(
                !in_ci(),
                "CI must run the {} receiver example: install {install}",
                example.name
            );
            eprintln!(
                "SKIPPED the {} receiver example: install {install}",
                example.name
            );
            continue;
        }
        check(example).await;
        ran += 1;
    }
    println!("{ran} receiver examples checked");
}

async fn check(example: &Example) {
    let app = spawn_app().await;
    let capture = Receiver::start().await;
    let sub = subscribe(&app, &capture.url).await;
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let secret = sub["secret"].as_str().unwrap().to_owned();
    let mut receiver = Running::start(example, &secret).await;

    // A real delivery, captured on its way, then forwarded as it was, and altered.
    app.wait_terminal(
        app.generate(json!({"prompt": "a kite"})).await["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    let captured = capture.wait_for(1, Duration::from_secs(10)).await[0].clone();
    let (status, outcome) = receiver.forward(&captured, |_, _| {}).await;
    assert_eq!(
        (status, &outcome["verified"]),
        (204, &json!(true)),
        "{}: {outcome}",
        example.name
    );
    assert_eq!(outcome["type"], "generation.completed");
    let (status, outcome) = receiver
        .forward(&captured, |_, body| {
            let text = String::from_utf8(body.clone())
                .unwrap()
                .replacen("a kite", "a kitE", 1);
            *body = text.into_bytes();
        })
        .await;
    assert_eq!(
        (status, &outcome["verified"]),
        (400, &json!(false)),
        "tampered: {outcome}"
    );
    let (status, outcome) = receiver
        .forward(&captured, |headers, _| {
            let old = chrono::Utc::now().timestamp() - 600;
            set_header(headers, "webhook-timestamp", old.to_string());
        })
        .await;
    assert_eq!(
        (status, &outcome["verified"]),
        (400, &json!(false)),
        "replayed: {outcome}"
    );
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("timestamp"),
        "{}: a replay outside the tolerance is refused for its age: {outcome}",
        example.name
    );

    // During a rotation fluxgate signs with both secrets: the old one and the new one verify.
    let rotated: Value = app
        .post(
            &format!("/v1/subscriptions/{sub_id}/rotate-secret"),
            &json!({"grace_period_secs": 3600}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    app.wait_terminal(
        app.generate(json!({"prompt": "a second kite"})).await["id"]
            .as_str()
            .unwrap(),
    )
    .await;
    let during = capture.wait_for(2, Duration::from_secs(10)).await[1].clone();
    assert_eq!(
        during
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2,
        "signed with both secrets"
    );
    let (status, _) = receiver.forward(&during, |_, _| {}).await;
    assert_eq!(
        status, 204,
        "{}: the old secret still verifies",
        example.name
    );
    let mut switched = Running::start(example, &new_secret).await;
    let (status, _) = switched.forward(&during, |_, _| {}).await;
    assert_eq!(status, 204, "{}: the new secret verifies", example.name);

    // Live: fluxgate delivers to the receiver itself, which answers 204.
    let res = app
        .client
        .patch(app.url(&format!("/v1/subscriptions/{sub_id}")))
        .bearer_auth(&app.api_key)
        .json(&json!({"target_url": switched.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let live = app.generate(json!({"prompt": "a third kite"})).await;
    let outcome = switched.outcome().await;
    assert_eq!(outcome["verified"], true, "{}: {outcome}", example.name);
    assert_eq!(outcome["type"], "generation.completed");
    // The receiver answered before fluxgate recorded the answer: wait for the record.
    let gen: fluxgate::domain::ids::GenerationId = live["id"].as_str().unwrap().parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT d.status FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE e.generation_id = $1 AND e.type = 'generation.completed'",
        )
        .bind(gen)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if status.as_deref() == Some("succeeded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: delivery {status:?}",
            example.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
