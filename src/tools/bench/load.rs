//! The load generator. Closed loop: `concurrency` connections, each sending its next request
//! as soon as the previous answer arrives. Open loop: requests leave at fixed times whatever
//! the server does (a slow answer never delays the next send), each on a free pooled connection.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;

use super::http::Conn;

/// What a closed-loop run did.
pub struct ClosedRun {
    pub elapsed: Duration,
    /// Per request: status (0 = transport error) and latency.
    pub results: Vec<(u16, Duration)>,
    /// The body of the first answer that was not `expect`, for the report.
    pub first_unexpected: Option<String>,
}

impl ClosedRun {
    pub fn count_status(&self, status: u16) -> usize {
        self.results.iter().filter(|r| r.0 == status).count()
    }

    pub fn latencies(&self) -> Vec<Duration> {
        self.results.iter().map(|r| r.1).collect()
    }
}

/// Sends every request in `requests` over `concurrency` keep-alive connections.
pub async fn closed_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Bytes>>,
    concurrency: usize,
    expect: u16,
) -> ClosedRun {
    let next = Arc::new(AtomicUsize::new(0));
    let unexpected: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (next, requests, unexpected) = (next.clone(), requests.clone(), unexpected.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else {
                    return out;
                };
                let t = Instant::now();
                let status = match conn.send(req).await {
                    Ok((status, body)) => {
                        if status != expect {
                            let mut u = unexpected.lock().expect("lock");
                            u.get_or_insert_with(|| {
                                format!("{status} {}", String::from_utf8_lossy(&body))
                            });
                        }
                        status
                    }
                    Err(e) => {
                        let mut u = unexpected.lock().expect("lock");
                        u.get_or_insert_with(|| format!("transport error: {e}"));
                        0
                    }
                };
                out.push((status, t.elapsed()));
            }
        }));
    }
    let mut results = Vec::with_capacity(requests.len());
    for w in workers {
        results.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    let first_unexpected = unexpected.lock().expect("lock").take();
    ClosedRun {
        elapsed,
        results,
        first_unexpected,
    }
}

/// One open-loop answer: which request, when it left (wall clock), status and body.
pub struct Answer {
    pub index: usize,
    pub sent_at: SystemTime,
    pub latency: Duration,
    pub status: u16,
    pub body: Bytes,
}

/// Sends request `i` (built by `make`) at `start + i / rate` for `count` requests; returns
/// every answer once all have arrived.
pub async fn open_loop(
    addr: SocketAddr,
    rate: f64,
    count: usize,
    make: impl Fn(usize) -> Bytes,
) -> Vec<Answer> {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::default();
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        tokio::time::sleep_until(start + interval.mul_f64(index as f64)).await;
        let req = make(index);
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let popped = pool.lock().expect("lock").pop();
            let mut conn = popped.unwrap_or_else(|| Conn::new(addr));
            let sent_at = SystemTime::now();
            let t = Instant::now();
            let (status, body) = conn.send(&req).await.unwrap_or((0, Bytes::new()));
            let latency = t.elapsed();
            pool.lock().expect("lock").push(conn);
            Answer {
                index,
                sent_at,
                latency,
                status,
                body,
            }
        }));
    }
    let mut answers = Vec::with_capacity(count);
    for t in tasks {
        if let Ok(a) = t.await {
            answers.push(a);
        }
    }
    answers
}
