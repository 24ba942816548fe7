//! The demo subscriber of `fluxgate dev`: a tiny local webhook receiver that prints one line per
//! delivery, so a newcomer sees fan-out arrive without writing a receiver of their own.
use std::net::SocketAddr;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

pub struct DemoSubscriber {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

impl DemoSubscriber {
    pub async fn start() -> anyhow::Result<DemoSubscriber> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(|| App::new().default_service(web::to(receive)))
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(DemoSubscriber {
            url: format!("http://127.0.0.1:{port}/hooks/demo"),
            handle,
        })
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn receive(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    println!("{}", describe(&req, &body));
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
