//! A JWKS server on 127.0.0.1 whose answer tests change at run time and whose fetches they
//! count, a signing key, and a harness tying both to a verifier on a manual clock.
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use fluxgate::fal::signature::sign_hex;
use fluxgate::fal::verify::{FalSignatureHeaders, FalVerifier, ManualClock};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An arbitrary moment (2026-01-01T00:00:00Z) the manual clocks start at.
pub const NOW: i64 = 1_767_225_600;

pub struct JwksServer {
    url: url::Url,
    state: Arc<ServerState>,
}

struct ServerState {
    fetches: AtomicUsize,
    response: Mutex<(u16, String)>,
    delay_ms: AtomicU64,
}

impl JwksServer {
    pub async fn start(jwks: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(ServerState {
            fetches: AtomicUsize::new(0),
            response: Mutex::new((200, jwks.to_string())),
            delay_ms: AtomicU64::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, shared.clone()));
            }
        });
        Self {
            url: url.parse().unwrap(),
            state,
        }
    }

    pub fn url(&self) -> url::Url {
        self.url.clone()
    }

    /// Requests answered so far.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    pub fn serve(&self, status: u16, body: impl Into<String>) {
        *self.state.response.lock().unwrap() = (status, body.into());
    }

    pub fn serve_jwks(&self, jwks: Value) {
        self.serve(200, jwks.to_string());
    }

    /// Holds each answer back, so that concurrent callers overlap with an in-flight fetch.
    pub fn delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Minimal HTTP/1.1: read the request head, answer, close. Counts a fetch once answered.
async fn answer(mut stream: TcpStream, state: Arc<ServerState>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (status, body) = state.response.lock().unwrap().clone();
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `{"keys": [...]}`
pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// An Ed25519 JWK with the given `x`.
pub fn okp(x: &str) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "alg": "EdDSA" })
}

/// A key signing with `fluxgate::fal::signature::sign_hex` (ed25519-dalek).
pub struct TestKey(SigningKey);

impl TestKey {
    pub fn new(seed: u8) -> Self {
        Self(SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.verifying_key().as_bytes())
    }

    pub fn jwk(&self) -> Value {
        okp(&self.x())
    }

    /// Headers for a webhook signed now-ish (`timestamp`) with a fixed request and user id.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> FalSignatureHeaders {
        let (request_id, user_id, ts) = ("req-1", "user-1", timestamp.to_string());
        let signature = sign_hex(&self.0, request_id, user_id, &ts, body);
        FalSignatureHeaders::new(request_id, user_id, &ts, &signature).unwrap()
    }
}

pub struct Harness {
    pub server: JwksServer,
    pub clock: Arc<ManualClock>,
    pub verifier: FalVerifier,
}

impl Harness {
    /// A verifier with default settings, its clock at `now`, over a server serving `jwks`.
    pub async fn start(jwks: Value, now: i64) -> Self {
        let server = JwksServer::start(jwks).await;
        let clock = Arc::new(ManualClock::new(now));
        let verifier = FalVerifier::new(server.url(), client(), clock.clone());
        Self {
            server,
            clock,
            verifier,
        }
    }

    pub fn now(&self) -> i64 {
        fluxgate::fal::verify::Clock::now_unix(&*self.clock)
    }
}

/// Loopback only: ignore any proxy the environment configures.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}
