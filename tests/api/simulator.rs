//! The fal simulator over real HTTP on 127.0.0.1: queue lifecycle, URLs, images, signed
//! webhooks (verified with a key decoded independently from the JWKS), retries, cancel, and
//! every fault marker. A tiny actix receiver records webhook requests and can refuse the first K.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use fluxgate::fal::signature::{
    signed_message, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER_ID,
};
use fluxgate::tools::simulator::{self, FaultRates, SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "test-key-id:test-key-secret";
const WAIT: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------- the simulator under test

struct TestSim {
    sim: SimHandle,
    http: reqwest::Client,
}

fn config() -> SimConfig {
    SimConfig {
        api_key: Some(KEY.into()),
        queue_delay: Duration::ZERO,
        run_delay: Duration::ZERO,
        webhook_retry_schedule: vec![ms(10); 3],
        workers: 1,
        ..SimConfig::default()
    }
}

async fn spawn_sim() -> TestSim {
    spawn_sim_with(config()).await
}

async fn spawn_sim_with(config: SimConfig) -> TestSim {
    let sim = simulator::start(config).await.expect("simulator starts");
    TestSim {
        sim,
        http: reqwest::Client::new(),
    }
}

impl TestSim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn submit_raw(
        &self,
        model: &str,
        body: &Value,
        webhook: Option<&str>,
    ) -> reqwest::Response {
        let mut url = url::Url::parse(&self.url(&format!("/{model}"))).unwrap();
        if let Some(hook) = webhook {
            url.query_pairs_mut().append_pair("fal_webhook", hook);
        }
        self.http
            .post(url)
            .header("Authorization", format!("Key {KEY}"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Submits and expects acceptance; returns the submit body.
    async fn submit(&self, model: &str, body: Value, webhook: Option<&str>) -> Value {
        let response = self.submit_raw(model, &body, webhook).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        response.json().await.unwrap()
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        let response = self
            .http
            .get(url)
            .header("Authorization", format!("Key {KEY}"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn put(&self, url: &str) -> (u16, Value) {
        let response = self
            .http
            .put(url)
            .header("Authorization", format!("Key {KEY}"))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Polls `status_url` (5 ms apart) until `COMPLETED`; returns the final status object.
    async fn wait_completed(&self, submitted: &Value) -> Value {
        let status_url = submitted["status_url"].as_str().unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                let (code, status) = self.get(status_url).await;
                if status["status"] == "COMPLETED" {
                    assert_eq!(code, 200);
                    return status;
                }
                assert_eq!(code, 202, "{status}");
                tokio::time::sleep(ms(5)).await;
            }
        })
        .await
        .expect("request completes")
    }

    /// Submits, waits, and returns the model output from `response_url`.
    async fn generate(&self, model: &str, body: Value) -> Value {
        let submitted = self.submit(model, body, None).await;
        self.wait_completed(&submitted).await;
        let (code, output) = self.get(submitted["response_url"].as_str().unwrap()).await;
        assert_eq!(code, 200, "{output}");
        output
    }

    async fn download(&self, url: &str) -> (String, Bytes) {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        (content_type, response.bytes().await.unwrap())
    }

    /// Checks the four fal headers and the Ed25519 signature with the key from the JWKS.
    async fn verify(&self, hook: &Received) {
        let jwks: Value = self
            .http
            .get(self.sim.jwks_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        let x = key["x"].as_str().unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .expect("x is base64url");
        let raw: [u8; 32] = raw.try_into().expect("32-byte key");
        assert_eq!(raw, self.sim.public_key_bytes());
        let key = VerifyingKey::from_bytes(&raw).unwrap();
        let timestamp = hook.header(HEADER_TIMESTAMP);
        let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
        assert!(age.abs() < 60, "timestamp is now-ish");
        let message = signed_message(
            hook.header(HEADER_REQUEST_ID),
            hook.header(HEADER_USER_ID),
            timestamp,
            &hook.body,
        );
        let signature =
            Signature::from_slice(&hex::decode(hook.header(HEADER_SIGNATURE)).unwrap()).unwrap();
        key.verify_strict(message.as_bytes(), &signature)
            .expect("signature verifies");
    }
}

// ---------------------------------------------------------------- the webhook receiver

#[derive(Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    server: actix_web::dev::ServerHandle,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Received>,
    refuse: Arc<AtomicUsize>,
    refuse_with: u16,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let _ = state.tx.send(Received { headers, body });
    let refuse = state
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        let status = actix_web::http::StatusCode::from_u16(state.refuse_with).unwrap();
        return HttpResponse::build(status)
            .insert_header(("Location", "http://127.0.0.1:1/"))
            .finish();
    }
    HttpResponse::Ok().finish()
}

impl Receiver {
    async fn start() -> Self {
        Self::refusing(0, 500).await
    }

    /// Answers `status` to the first `k` requests, then 200.
    async fn refusing(k: usize, status: u16) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = ReceiverState {
            tx,
            refuse: Arc::new(AtomicUsize::new(k)),
            refuse_with: status,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/fal?tag=x", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url,
            rx,
            server: handle,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a webhook arrives")
            .unwrap()
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

fn prompt(text: &str) -> Value {
    json!({ "prompt": text })
}

// ---------------------------------------------------------------- lifecycle and webhook

#[tokio::test]
async fn a_request_moves_through_the_queue_and_its_signed_webhook_verifies() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let body = json!({"prompt": "a red fox [sim:queue=400][sim:delay=300]", "seed": 7});
    let response = app
        .submit_raw("fal-ai/flux-2/turbo", &body, Some(&receiver.url))
        .await;
    assert_eq!(response.status(), 200);
    let header_id = response.headers()["x-fal-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let submitted: Value = response.json().await.unwrap();
    let id = submitted["request_id"].as_str().unwrap();
    assert_eq!(
        (header_id.as_str(), submitted["gateway_request_id"].as_str()),
        (id, Some(id))
    );
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    let base = app.url("/fal-ai/flux-2/requests");
    assert_eq!(submitted["status_url"], format!("{base}/{id}/status"));
    assert_eq!(submitted["response_url"], format!("{base}/{id}"));
    assert_eq!(submitted["cancel_url"], format!("{base}/{id}/cancel"));
    assert_eq!(submitted["queue_position"], 0);

    let (code, status) = app.get(submitted["status_url"].as_str().unwrap()).await;
    assert_eq!(
        (
            code,
            status["status"].as_str(),
            status["queue_position"].as_u64()
        ),
        (202, Some("IN_QUEUE"), Some(0))
    );
    let (code, early) = app.get(submitted["response_url"].as_str().unwrap()).await;
    assert_eq!(
        (code, early),
        (400, json!({"detail": "Request is still in progress"}))
    );

    // The SSE stream shows every transition, then closes.
    let stream_url = format!("{}/stream", submitted["status_url"].as_str().unwrap());
    let mut stream = app
        .http
        .get(&stream_url)
        .header("Authorization", format!("Key {KEY}"))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("stream closes after COMPLETED");
    let phases: Vec<String> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(|data| {
            serde_json::from_str::<Value>(data).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(phases, ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]);

    let status = app.wait_completed(&submitted).await;
    assert_eq!(status["metrics"]["inference_time"], 0.3);
    assert!(status.get("error").is_none());
    let (code, output) = app.get(submitted["response_url"].as_str().unwrap()).await;
    assert_eq!(code, 200);
    let (_, same) = app
        .get(&format!(
            "{}/response",
            submitted["response_url"].as_str().unwrap()
        ))
        .await;
    assert_eq!(same, output);
    assert_eq!(
        (output["seed"].as_u64(), output["prompt"].as_str()),
        (Some(7), body["prompt"].as_str())
    );
    assert_eq!(output["has_nsfw_concepts"], json!([false]));
    assert_eq!(output["timings"]["inference"], 0.3);

    let hook = receiver.next().await;
    app.verify(&hook).await;
    assert_eq!(hook.header("content-type"), "application/json");
    assert_eq!(hook.header(HEADER_REQUEST_ID), id);
    assert_eq!(hook.header(HEADER_USER_ID), "fluxgate-sim-user");
    let expected =
        json!({"request_id": id, "gateway_request_id": id, "status": "OK", "payload": output});
    assert_eq!(hook.json(), expected);
    let stats = app.sim.stats();
    assert_eq!(
        (stats.submissions, stats.completed, stats.webhooks_delivered),
        (1, 1, 1)
    );
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn every_model_s_urls_keep_only_owner_and_app() {
    let app = spawn_sim().await;
    let edit = json!({"prompt": "x", "image_urls": ["https://example.com/a.png"]});
    for (model, body) in [
        ("fal-ai/flux-2/turbo/edit", edit.clone()),
        ("fal-ai/flux-2/flash", prompt("x")),
        ("fal-ai/flux-2/flash/edit", edit.clone()),
        (
            "fal-ai/flux-2",
            json!({"prompt": "x", "num_inference_steps": 8}),
        ),
        ("fal-ai/flux-2/edit", edit),
    ] {
        let submitted = app.submit(model, body, None).await;
        let id = submitted["request_id"].as_str().unwrap();
        assert_eq!(
            submitted["status_url"],
            app.url(&format!("/fal-ai/flux-2/requests/{id}/status")),
            "{model}"
        );
        app.wait_completed(&submitted).await;
    }
    // The same id under another app is not found.
    let submitted = app.submit("fal-ai/flux-2/turbo", prompt("x"), None).await;
    let id = submitted["request_id"].as_str().unwrap();
    let (code, body) = app
        .get(&app.url(&format!("/fal-ai/other/requests/{id}/status")))
        .await;
    assert_eq!((code, body), (404, json!({"status": "NOT_FOUND"})));
    let unknown = app.url(&format!(
        "/fal-ai/flux-2/requests/{}/status",
        uuid::Uuid::new_v4()
    ));
    assert_eq!(
        app.get(&unknown).await,
        (404, json!({"status": "NOT_FOUND"}))
    );
    app.sim.stop().await;
}

// ---------------------------------------------------------------- images

#[tokio::test]
async fn images_have_the_requested_size_and_format_and_depend_only_on_their_inputs() {
    let app = spawn_sim().await;
    let body = |seed: u64, format: &str| {
        json!({"prompt": "a lighthouse", "seed": seed, "num_images": 2, "output_format": format,
               "image_size": {"width": 640, "height": 520}})
    };
    let mut first = Vec::new();
    for (format, content_type, kind) in [
        ("jpeg", "image/jpeg", image::ImageFormat::Jpeg),
        ("png", "image/png", image::ImageFormat::Png),
        ("webp", "image/webp", image::ImageFormat::WebP),
    ] {
        let output = app.generate("fal-ai/flux-2/turbo", body(42, format)).await;
        let images = output["images"].as_array().unwrap();
        assert_eq!(images.len(), 2);
        for image in images {
            assert_eq!(
                (image["width"].as_u64(), image["height"].as_u64()),
                (Some(640), Some(520))
            );
            assert_eq!(image["content_type"], content_type);
            let (served_type, bytes) = app.download(image["url"].as_str().unwrap()).await;
            assert_eq!(served_type, content_type);
            assert_eq!(image::guess_format(&bytes).unwrap(), kind);
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (640, 520));
        }
        let (_, a) = app.download(images[0]["url"].as_str().unwrap()).await;
        let (_, b) = app.download(images[1]["url"].as_str().unwrap()).await;
        assert_ne!(a, b, "each index is its own image");
        first.push(a);
    }
    // Same prompt and seed: byte-identical; another seed: different.
    let again = app.generate("fal-ai/flux-2/turbo", body(42, "jpeg")).await;
    let (_, same) = app
        .download(again["images"][0]["url"].as_str().unwrap())
        .await;
    assert_eq!(same, first[0]);
    let other = app.generate("fal-ai/flux-2/turbo", body(43, "jpeg")).await;
    let (_, different) = app
        .download(other["images"][0]["url"].as_str().unwrap())
        .await;
    assert_ne!(different, first[0]);

    // Without a seed the simulator draws a large integer, as fal does.
    let drawn = app.generate("fal-ai/flux-2/turbo", prompt("no seed")).await;
    assert!(
        drawn["seed"].as_u64().unwrap() >= 100_000_000_000_000_000,
        "{}",
        drawn["seed"]
    );
    assert_eq!(
        (
            drawn["images"][0]["width"].as_u64(),
            drawn["images"][0]["height"].as_u64()
        ),
        (Some(1024), Some(768))
    );
    app.sim.stop().await;
}

#[tokio::test]
async fn the_nsfw_trigger_yields_black_flagged_images() {
    let app = spawn_sim().await;
    let body = json!({"prompt": "Something NSFW here", "num_images": 2, "image_size": "square"});
    let output = app.generate("fal-ai/flux-2/turbo", body).await;
    assert_eq!(output["has_nsfw_concepts"], json!([true, true]));
    let (_, bytes) = app
        .download(output["images"][0]["url"].as_str().unwrap())
        .await;
    let pixels = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert!(pixels.pixels().all(|p| p.0 == [0, 0, 0]));
    // With the safety checker off nothing is flagged.
    let off = json!({"prompt": "nsfw", "enable_safety_checker": false, "image_size": "square"});
    assert_eq!(
        app.generate("fal-ai/flux-2/turbo", off).await["has_nsfw_concepts"],
        json!([false])
    );
    app.sim.stop().await;
}

#[tokio::test]
async fn sync_mode_returns_images_inline_as_data_uris_in_the_webhook_only() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let body = json!({"prompt": "inline", "sync_mode": true, "output_format": "webp", "image_size": "square", "seed": 1});
    let submitted = app
        .submit("fal-ai/flux-2/turbo", body, Some(&receiver.url))
        .await;
    let hook = receiver.next().await;
    app.verify(&hook).await;
    let output = hook.json()["payload"].clone();
    // fal keeps no sync_mode output in its request history.
    app.wait_completed(&submitted).await;
    let (code, kept) = app.get(submitted["response_url"].as_str().unwrap()).await;
    assert_eq!(code, 404, "{kept}");
    let url = output["images"][0]["url"].as_str().unwrap();
    let data = url
        .strip_prefix("data:image/webp;base64,")
        .expect("a webp data URI");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(
        output["images"][0]["file_size"].as_u64(),
        Some(bytes.len() as u64)
    );
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 512));
    receiver.stop().await;
    app.sim.stop().await;
}

// ---------------------------------------------------------------- auth and validation

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_like_fal() {
    let app = spawn_sim().await;
    let url = app.url("/fal-ai/flux-2/turbo");
    let unauthorized = json!({"detail": "No user found for Key ID and Secret"});
    for auth in [
        None,
        Some("Key wrong:key"),
        Some(&*format!("Bearer {KEY}")),
        Some("Key "),
    ] {
        let mut request = app.http.post(&url).json(&prompt("x"));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(response.json::<Value>().await.unwrap(), unauthorized);
    }
    let submitted = app.submit("fal-ai/flux-2/turbo", prompt("x"), None).await;
    let status = app
        .http
        .get(submitted["status_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 401);
    app.sim.stop().await;

    // Without a configured key, any non-empty key is accepted.
    let open = spawn_sim_with(SimConfig {
        api_key: None,
        ..config()
    })
    .await;
    let response = open
        .http
        .post(open.url("/fal-ai/flux-2/turbo"))
        .header("Authorization", "Key anything")
        .json(&prompt("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    open.sim.stop().await;
}

#[tokio::test]
async fn invalid_input_gets_fal_s_422_shape_naming_every_field() {
    let app = spawn_sim().await;
    let body = json!({"prompt": "", "guidance_scale": 30, "colour": "red", "image_urls": ["https://a/b.png", "ftp://x"]});
    let response = app
        .submit_raw("fal-ai/flux-2/turbo/edit", &body, None)
        .await;
    assert_eq!(response.status(), 422);
    let detail = response.json::<Value>().await.unwrap()["detail"].clone();
    let got: Vec<(Value, &str)> = detail
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["loc"].clone(), d["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (json!(["body", "prompt"]), "string_too_short"),
            (json!(["body", "guidance_scale"]), "less_than_equal"),
            (json!(["body", "image_urls", 1]), "url_parsing"),
            (json!(["body", "colour"]), "extra_forbidden"),
        ]
    );
    assert!(detail[0]["msg"].is_string());

    let not_json = app
        .http
        .post(app.url("/fal-ai/flux-2/turbo"))
        .header("Authorization", format!("Key {KEY}"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    assert_eq!(
        not_json.json::<Value>().await.unwrap()["detail"][0]["type"],
        "json_invalid"
    );
    let unknown = app
        .submit_raw("fal-ai/flux-3/turbo", &prompt("x"), None)
        .await;
    assert_eq!(unknown.status(), 404);
    let bad_hook = app
        .submit_raw("fal-ai/flux-2/turbo", &prompt("x"), Some("not a url"))
        .await;
    assert_eq!(bad_hook.status(), 422);
    assert_eq!(app.sim.stats().submissions, 0);
    app.sim.stop().await;
}

// ---------------------------------------------------------------- submission faults

#[tokio::test]
async fn submission_fault_markers_answer_exactly_like_fal() {
    let app = spawn_sim().await;
    let cases = [
        ("[sim:401]", 401, None),
        ("[sim:403]", 403, None),
        ("[sim:429]", 429, None),
        ("[sim:500]", 500, Some("runner_server_error")),
        ("[sim:502]", 502, Some("runner_incomplete_response")),
        ("[sim:503]", 503, Some("runner_scheduling_failure")),
        ("[sim:504]", 504, Some("request_timeout")),
    ];
    for (marker, code, error_type) in cases {
        let response = app
            .submit_raw(
                "fal-ai/flux-2/turbo",
                &prompt(&format!("cat {marker}")),
                None,
            )
            .await;
        assert_eq!(response.status(), code, "{marker}");
        let header = response
            .headers()
            .get("x-fal-error-type")
            .map(|v| v.to_str().unwrap().to_string());
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].is_string(), "{marker}: {body}");
        assert_eq!(header.as_deref(), error_type, "{marker}");
        assert_eq!(body["error_type"].as_str(), error_type, "{marker}");
        match code {
            401 => assert_eq!(body["detail"], "No user found for Key ID and Secret"),
            403 => assert!(body["detail"]
                .as_str()
                .unwrap()
                .starts_with("User is locked. Reason: Exhausted balance.")),
            429 => assert_eq!(retry_after.as_deref(), Some("1")),
            _ => {}
        }
    }
    let policy = app
        .submit_raw("fal-ai/flux-2/turbo", &prompt("cat [sim:policy]"), None)
        .await;
    assert_eq!(policy.status(), 422);
    let detail = &policy.json::<Value>().await.unwrap()["detail"][0];
    assert_eq!(
        (detail["type"].as_str(), detail["loc"].clone()),
        (Some("content_policy_violation"), json!(["body", "prompt"]))
    );
    assert_eq!(app.sim.stats().rejected, 8);
    app.sim.stop().await;
}

#[tokio::test]
async fn a_counted_marker_fails_n_times_then_succeeds() {
    let app = spawn_sim().await;
    let body = prompt("retry me [sim:503x2]");
    let codes = [
        app.submit_raw("fal-ai/flux-2/turbo", &body, None)
            .await
            .status()
            .as_u16(),
        app.submit_raw("fal-ai/flux-2/turbo", &body, None)
            .await
            .status()
            .as_u16(),
        app.submit_raw("fal-ai/flux-2/turbo", &body, None)
            .await
            .status()
            .as_u16(),
    ];
    assert_eq!(codes, [503, 503, 200]);
    let other = prompt("retry me too [sim:429x1]");
    assert_eq!(
        app.submit_raw("fal-ai/flux-2/turbo", &other, None)
            .await
            .status(),
        429
    );
    assert_eq!(
        app.submit_raw("fal-ai/flux-2/turbo", &other, None)
            .await
            .status(),
        200
    );
    app.sim.stop().await;
}

#[tokio::test]
async fn random_faults_follow_the_rates_set_at_run_time() {
    let app = spawn_sim().await;
    app.sim
        .set_faults(FaultRates {
            rate_limited: 1.0,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        app.submit_raw("fal-ai/flux-2/turbo", &prompt("x"), None)
            .await
            .status(),
        429
    );
    assert!(app
        .sim
        .set_faults(FaultRates {
            unavailable: 2.0,
            ..Default::default()
        })
        .is_err());

    // The admin route replaces them, and reports them back.
    let admin = app.url("/_sim/faults");
    let response = app
        .http
        .put(&admin)
        .json(&json!({"gateway_timeout": 1.0, "seed": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.submit_raw("fal-ai/flux-2/turbo", &prompt("x"), None)
            .await
            .status(),
        504
    );
    let current: Value = app
        .http
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            current["gateway_timeout"].as_f64(),
            current["seed"].as_u64()
        ),
        (Some(1.0), Some(3))
    );
    let bad = app
        .http
        .put(&admin)
        .json(&json!({"nonsense": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.http.put(&admin).json(&json!({})).send().await.unwrap();
    assert_eq!(
        app.submit_raw("fal-ai/flux-2/turbo", &prompt("x"), None)
            .await
            .status(),
        200
    );
    let stats: Value = app
        .http
        .get(app.url("/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["submissions"].as_u64(), stats["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    app.sim.stop().await;
}

// ---------------------------------------------------------------- job faults and webhooks

#[tokio::test]
async fn a_failed_run_completes_with_an_error_and_an_error_webhook() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let submitted = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("x [sim:fail]"),
            Some(&receiver.url),
        )
        .await;
    let status = app.wait_completed(&submitted).await;
    assert_eq!(
        (status["error"].as_str(), status["error_type"].as_str()),
        (Some("Invalid status code: 422"), Some("no_media_generated"))
    );
    let (code, body) = app.get(submitted["response_url"].as_str().unwrap()).await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["type"], "no_media_generated");
    let hook = receiver.next().await;
    app.verify(&hook).await;
    let id = submitted["request_id"].clone();
    let expected = json!({"request_id": id, "gateway_request_id": id, "status": "ERROR", "error": "Invalid status code: 422", "payload": body});
    assert_eq!(hook.json(), expected);
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn a_payload_error_webhook_carries_no_payload() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let submitted = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("x [sim:payload-error]"),
            Some(&receiver.url),
        )
        .await;
    let hook = receiver.next().await;
    app.verify(&hook).await;
    let body = hook.json();
    assert_eq!(
        (body["status"].as_str(), body.get("payload")),
        (Some("OK"), Some(&Value::Null))
    );
    assert!(body["payload_error"].is_string());
    assert_eq!(body["request_id"], submitted["request_id"]);
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn a_dropped_webhook_is_never_sent_but_the_result_is_there() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let dropped = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("x [sim:drop-webhook]"),
            Some(&receiver.url),
        )
        .await;
    app.wait_completed(&dropped).await;
    assert_eq!(
        app.get(dropped["response_url"].as_str().unwrap()).await.0,
        200
    );
    // The next webhook to arrive belongs to a later request: the dropped one never came.
    let later = app
        .submit("fal-ai/flux-2/turbo", prompt("y"), Some(&receiver.url))
        .await;
    assert_eq!(
        receiver.next().await.header(HEADER_REQUEST_ID),
        later["request_id"]
    );
    assert_eq!(app.sim.stats().webhooks_attempted, 1);
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn a_duplicated_webhook_is_sent_twice_with_the_same_body() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let submitted = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("x [sim:dup-webhook]"),
            Some(&receiver.url),
        )
        .await;
    let (first, second) = (receiver.next().await, receiver.next().await);
    assert_eq!(first.body, second.body);
    assert_eq!(first.header(HEADER_REQUEST_ID), submitted["request_id"]);
    assert_eq!(second.header(HEADER_REQUEST_ID), submitted["request_id"]);
    app.verify(&first).await;
    app.verify(&second).await;
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn an_early_webhook_arrives_before_the_submit_response() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    let submitted = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("x [sim:early-webhook]"),
            Some(&receiver.url),
        )
        .await;
    // Already recorded by the receiver when submit answered: no waiting.
    let hook = receiver
        .rx
        .try_recv()
        .expect("webhook delivered before the submit response");
    assert_eq!(hook.header(HEADER_REQUEST_ID), submitted["request_id"]);
    app.verify(&hook).await;
    let (code, status) = app.get(submitted["status_url"].as_str().unwrap()).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("COMPLETED")));
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn a_refused_webhook_is_retried_with_the_same_bytes_until_accepted() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::refusing(2, 500).await;
    app.submit("fal-ai/flux-2/turbo", prompt("retry"), Some(&receiver.url))
        .await;
    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    for attempt in &attempts {
        app.verify(attempt).await;
        assert_eq!(attempt.body, attempts[0].body);
    }
    // The simulator counts the delivery once the receiver's answer reaches it, a moment after
    // the receiver saw the request; the receiver stays up until then.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.sim.stats().webhooks_delivered == 0 && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    receiver.stop().await;
    let stats = app.sim.stats();
    assert_eq!(
        (
            stats.webhooks_attempted,
            stats.webhooks_delivered,
            stats.webhooks_failed
        ),
        (3, 1, 0)
    );
    app.sim.stop().await;
}

#[tokio::test]
async fn a_redirecting_webhook_target_is_not_followed_and_is_given_up() {
    let app = spawn_sim().await;
    // 307 to every attempt: 1 + 3 retries, then the simulator gives up.
    let mut receiver = Receiver::refusing(usize::MAX, 307).await;
    app.submit(
        "fal-ai/flux-2/turbo",
        prompt("redirect"),
        Some(&receiver.url),
    )
    .await;
    for _ in 0..4 {
        receiver.next().await;
    }
    tokio::time::timeout(WAIT, async {
        while app.sim.stats().webhooks_failed == 0 {
            tokio::time::sleep(ms(5)).await;
        }
    })
    .await
    .expect("delivery is given up");
    assert_eq!(app.sim.stats().webhooks_attempted, 4);
    assert!(
        receiver.rx.try_recv().is_err(),
        "the Location was never followed"
    );
    receiver.stop().await;
    app.sim.stop().await;
}

// ---------------------------------------------------------------- cancel and lifecycle

#[tokio::test]
async fn cancel_answers_by_state_like_fal() {
    let app = spawn_sim().await;
    let mut receiver = Receiver::start().await;
    // Queued: removed at once, never completes.
    let queued = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("q [sim:queue=60000]"),
            Some(&receiver.url),
        )
        .await;
    let cancel = queued["cancel_url"].as_str().unwrap();
    assert_eq!(
        app.put(cancel).await,
        (202, json!({"status": "CANCELLATION_REQUESTED"}))
    );
    assert_eq!(app.get(queued["status_url"].as_str().unwrap()).await.0, 404);
    assert_eq!(app.put(cancel).await, (404, json!({"status": "NOT_FOUND"})));

    // Running: accepted, and it still completes with its webhook.
    let running = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("r [sim:delay=600]"),
            Some(&receiver.url),
        )
        .await;
    tokio::time::timeout(WAIT, async {
        while app.get(running["status_url"].as_str().unwrap()).await.1["status"] != "IN_PROGRESS" {
            tokio::time::sleep(ms(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        app.put(running["cancel_url"].as_str().unwrap()).await,
        (202, json!({"status": "CANCELLATION_REQUESTED"}))
    );
    assert_eq!(
        receiver.next().await.header(HEADER_REQUEST_ID),
        running["request_id"]
    );

    // Completed: 400.
    app.wait_completed(&running).await;
    assert_eq!(
        app.put(running["cancel_url"].as_str().unwrap()).await,
        (400, json!({"status": "ALREADY_COMPLETED"}))
    );
    let unknown = app.url(&format!(
        "/fal-ai/flux-2/requests/{}/cancel",
        uuid::Uuid::new_v4()
    ));
    assert_eq!(
        app.put(&unknown).await,
        (404, json!({"status": "NOT_FOUND"}))
    );
    assert_eq!(app.sim.stats().cancels, 2);
    receiver.stop().await;
    app.sim.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_when_the_caller_sets_a_maximum() {
    let app = spawn_sim().await;
    app.submit(
        "fal-ai/flux-2/turbo",
        prompt("wait [sim:queue=60000]"),
        None,
    )
    .await;
    let mut url = url::Url::parse(&app.url("/fal-ai/flux-2/turbo")).unwrap();
    url.query_pairs_mut()
        .append_pair("fal_max_queue_length", "1");
    let response = app
        .http
        .post(url)
        .header("Authorization", format!("Key {KEY}"))
        .json(&prompt("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let second = app
        .submit(
            "fal-ai/flux-2/turbo",
            prompt("behind [sim:queue=60000]"),
            None,
        )
        .await;
    assert_eq!(second["queue_position"], 1);
    app.sim.stop().await;
}

#[tokio::test]
async fn finished_requests_expire_after_the_retention_time() {
    let app = spawn_sim_with(SimConfig {
        result_retention: ms(50),
        ..config()
    })
    .await;
    let submitted = app
        .submit("fal-ai/flux-2/turbo", prompt("short-lived"), None)
        .await;
    app.wait_completed(&submitted).await;
    tokio::time::timeout(WAIT, async {
        while app.get(submitted["status_url"].as_str().unwrap()).await.0 != 404 {
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await
    .expect("the result expires");
    app.sim.stop().await;
}

#[tokio::test]
async fn binding_a_port_in_use_fails_clearly() {
    let app = spawn_sim().await;
    let error = simulator::start(SimConfig {
        bind: app.sim.addr(),
        ..config()
    })
    .await
    .err()
    .expect("port is taken");
    assert!(format!("{error:#}").contains("already in use"), "{error:#}");
    app.sim.stop().await;
}
