//! The demo subscriber of `fluxgate dev`: a tiny local webhook receiver that verifies each
//! delivery's Standard Webhooks signature and prints one line per event, so a newcomer sees
//! fan-out arrive without writing a receiver of their own.
use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::delivery::signing::{self, SigningSecret};

/// The subscription's secret, known once the subscription exists.
type Secret = Arc<RwLock<Option<SigningSecret>>>;

pub struct DemoSubscriber {
    pub url: String,
    secret: Secret,
    handle: actix_web::dev::ServerHandle,
}

impl DemoSubscriber {
    pub async fn start() -> anyhow::Result<DemoSubscriber> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = listener.local_addr()?.port();
        let secret: Secret = Arc::default();
        let shared = secret.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(DemoSubscriber {
            url: format!("http://127.0.0.1:{port}/hooks/demo"),
            secret,
            handle,
        })
    }

    pub fn set_secret(&self, secret: SigningSecret) {
        *self.secret.write().expect("lock") = Some(secret);
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, secret: web::Data<Secret>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let verdict = match secret.read().expect("lock").as_ref() {
        None => "unverified (no secret yet)".to_owned(),
        Some(s) => match signing::verify(
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &header("webhook-signature"),
            &body,
            s,
            chrono::Utc::now().timestamp(),
        ) {
            Ok(()) => "signature ok".to_owned(),
            Err(e) => format!("SIGNATURE REJECTED: {e}"),
        },
    };
    println!("{} [{verdict}]", describe(&req, &body));
    HttpResponse::NoContent().finish()
}

/// `demo subscriber ← generation.completed evt_… gen_… completed (1 image)`-style summary.
fn describe(req: &HttpRequest, body: &[u8]) -> String {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let kind = parsed["type"].as_str().unwrap_or("(not a fluxgate event)");
    let data = &parsed["data"];
    let subject = data["id"].as_str().unwrap_or("");
    let status = data["status"].as_str().unwrap_or("");
    format!(
        "demo subscriber ← {} {kind} {subject} {status} ({} bytes, webhook-id {})",
        req.method(),
        body.len(),
        header("webhook-id")
    )
}
