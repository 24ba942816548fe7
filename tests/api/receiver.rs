//! A tiny webhook receiver on loopback whose answers a test can change at run time (status,
//! Retry-After, delay), recording every request it gets.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
pub struct Behaviour {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests being answered now, and the most ever at once.
    concurrent: Arc<Mutex<(usize, usize)>>,
    behaviour: Arc<Mutex<Behaviour>>,
    notify: Arc<tokio::sync::Notify>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Shared {
            received: Arc::default(),
            concurrent: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour {
                status: 204,
                retry_after: None,
                delay: Duration::ZERO,
            })),
            notify: Arc::default(),
        };
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(s.clone()))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
        }
    }

    pub fn set(&self, status: u16, retry_after: Option<&str>, delay: Duration) {
        *self.shared.behaviour.lock().unwrap() = Behaviour {
            status,
            retry_after: retry_after.map(str::to_owned),
            delay,
        };
    }

    /// The most requests this receiver was answering at one moment.
    pub fn max_concurrent(&self) -> usize {
        self.shared.concurrent.lock().unwrap().1
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "expected {n} requests, got {}: {:?}",
                got.len(),
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(
                left.min(Duration::from_millis(50)),
                self.shared.notify.notified(),
            )
            .await;
        }
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, s: web::Data<Shared>) -> HttpResponse {
    let behaviour = s.behaviour.lock().unwrap().clone();
    {
        let mut c = s.concurrent.lock().unwrap();
        c.0 += 1;
        c.1 = c.1.max(c.0);
    }
    s.received.lock().unwrap().push(Received {
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    s.notify.notify_waiters();
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    s.concurrent.lock().unwrap().0 -= 1;
    let mut res =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(behaviour.status).unwrap());
    if let Some(ra) = behaviour.retry_after {
        res.insert_header(("Retry-After", ra));
    }
    res.body("receiver says hello")
}
