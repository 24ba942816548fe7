//! The SSE clients of the `sse` scenario: K streams opened with bounded concurrency (a connect
//! storm would only measure the listen backlog), each parsing `data:` lines and timing every
//! event from the `sent_at_us` it carries. Shared by the in-process run and the child process.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Barrier, Semaphore};

use super::report::Percentiles;

/// The environment variable that hands the API key to the child process.
pub const KEY_ENV: &str = "FLUXGATE_BENCH_KEY";
const CONNECT_CONCURRENCY: usize = 200;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientsReport {
    pub connected: usize,
    pub connect_errors: usize,
    pub first_connect_error: Option<String>,
    /// Clients that received all the events.
    pub complete_clients: usize,
    /// `data:` frames with a bench timestamp, over all clients.
    pub frames: usize,
    pub latency_ms: Percentiles,
}

/// Opens `k` streams, sends the number connected on `ready` once every attempt has ended, and
/// collects until
/// every client has `events` frames or `timeout` has passed.
pub async fn run(
    url: &str,
    key: &str,
    k: usize,
    events: usize,
    timeout: Duration,
    ready: Option<oneshot::Sender<usize>>,
) -> ClientsReport {
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return ClientsReport {
                first_connect_error: Some(e.to_string()),
                ..Default::default()
            }
        }
    };
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    // Every client passes the barrier once connected (or failed): then all are ready.
    let barrier = Arc::new(Barrier::new(k + 1));
    let connected = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tasks = Vec::with_capacity(k);
    for _ in 0..k {
        let (client, gate, barrier) = (client.clone(), gate.clone(), barrier.clone());
        let connected = connected.clone();
        let (url, key) = (url.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("open semaphore");
            let res = client.get(&url).bearer_auth(&key).send().await;
            drop(permit);
            let res = match res {
                Ok(r) if r.status().is_success() => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    Ok(r)
                }
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            barrier.wait().await;
            match res {
                Ok(r) => Ok(read_stream(r, events, deadline).await),
                Err(e) => Err(e),
            }
        }));
    }
    barrier.wait().await;
    if let Some(tx) = ready {
        let _ = tx.send(connected.load(Ordering::Relaxed));
    }
    let mut report = ClientsReport::default();
    let mut samples: Vec<f64> = Vec::with_capacity(k * events);
    let mut waited = Vec::with_capacity(k);
    for t in tasks {
        waited.push(t.await);
    }
    for w in waited {
        match w {
            Ok(Ok(lat)) => {
                report.connected += 1;
                report.frames += lat.len();
                report.complete_clients += usize::from(lat.len() >= events);
                samples.extend(lat);
            }
            Ok(Err(e)) => {
                report.connect_errors += 1;
                report.first_connect_error.get_or_insert(e);
            }
            Err(e) => {
                report.connect_errors += 1;
                report.first_connect_error.get_or_insert(e.to_string());
            }
        }
    }
    samples.sort_unstable_by(f64::total_cmp);
    report.latency_ms = Percentiles::of_sorted_ms(&samples);
    report
}

/// Reads frames until `events` carried a bench timestamp or the deadline; returns latencies
/// in milliseconds.
async fn read_stream(
    mut res: reqwest::Response,
    events: usize,
    deadline: tokio::time::Instant,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(events);
    let mut pending: Vec<u8> = Vec::new();
    while out.len() < events {
        let chunk = match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + nl];
            start += nl + 1;
            if let Some(data) = line.strip_prefix(b"data:") {
                if let Some(ms) = latency_ms(data) {
                    out.push(ms);
                }
            }
        }
        pending.drain(..start);
    }
    out
}

/// The latency of one `data:` payload: now − its `data.sent_at_us`.
fn latency_ms(data: &[u8]) -> Option<f64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_micros() as f64;
    let v: serde_json::Value = serde_json::from_slice(data.trim_ascii()).ok()?;
    let sent = v["data"]["sent_at_us"].as_u64()? as f64;
    Some((now - sent).max(0.0) / 1000.0)
}
