//! The SSE clients of the `sse` scenario: K streams opened with bounded concurrency (a connect
//! storm would only measure the listen backlog), each parsing `data:` lines and timing every
//! event from the `sent_at_us` it carries. Shared by the in-process run and the child process.
//!
//! Each stream is one task reading its socket with the bench's own HTTP/1.1 (`http.rs`): the
//! clients share the machine's cores with the server they measure, and reqwest/hyper cost two
//! task wakeups, a channel hop and an allocation-heavy JSON parse per frame. A frame is timed
//! when the read that brought it returns, before it is parsed.
use std::{
    net::SocketAddr,
    pin::pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{oneshot, Barrier, Semaphore},
};

use super::{http, report::Percentiles};

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
    let target = match Target::parse(url, key) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            return ClientsReport {
                first_connect_error: Some(e),
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
        let (target, gate, barrier) = (target.clone(), gate.clone(), barrier.clone());
        let connected = connected.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("open semaphore");
            let res = tokio::time::timeout(Duration::from_secs(10), target.open()).await;
            drop(permit);
            let res = match res {
                Ok(Ok(stream)) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    Ok(stream)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err("connect timed out".to_owned()),
            };
            barrier.wait().await;
            match res {
                Ok((stream, buf)) => Ok(read_stream(stream, buf, events, deadline).await),
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

/// Where the streams are opened, and the request that opens one.
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

impl Target {
    fn parse(url: &str, key: &str) -> Result<Target, String> {
        let url = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let addr = url
            .socket_addrs(|| None)
            .ok()
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| format!("{url}: no address"))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\naccept: text/event-stream\r\n\r\n",
            &url[url::Position::BeforePath..],
            url.authority()
        );
        Ok(Target {
            addr,
            request: request.into_bytes(),
        })
    }

    /// Connects and reads the response head: the socket and what followed the head.
    async fn open(&self) -> Result<(TcpStream, BytesMut), String> {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .write_all(&self.request)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(4096);
        let head = http::read_message(&mut stream, &mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&head.status) {
            return Err(format!("status {}", head.status));
        }
        let chunked = http::header(&buf[..head.len], "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if !chunked {
            return Err("the stream is not chunked".to_owned());
        }
        buf.advance(head.len);
        Ok((stream, buf))
    }
}

/// Reads frames until `events` carried a bench timestamp or the deadline; returns latencies
/// in milliseconds.
async fn read_stream(
    mut stream: TcpStream,
    mut raw: BytesMut,
    events: usize,
    deadline: tokio::time::Instant,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(events);
    let mut body: Vec<u8> = Vec::new();
    let mut chunked = http::Chunked::default();
    let mut timeout = pin!(tokio::time::sleep_until(deadline));
    let mut at = now_us();
    loop {
        if chunked.decode(&mut raw, &mut body).is_err() {
            break;
        }
        let mut start = 0;
        while let Some(nl) = body[start..].iter().position(|b| *b == b'\n') {
            let line = &body[start..start + nl];
            start += nl + 1;
            if let Some(sent) = line.strip_prefix(b"data:").and_then(sent_at_us) {
                out.push((at - sent).max(0.0) / 1000.0);
            }
        }
        body.drain(..start);
        if out.len() >= events {
            break;
        }
        raw.reserve(4096);
        tokio::select! {
            read = stream.read_buf(&mut raw) => match read {
                Ok(n) if n > 0 => at = now_us(),
                _ => break,
            },
            _ = &mut timeout => break,
        }
    }
    out
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_micros() as f64)
}

/// The `data.sent_at_us` of one `data:` payload (other fields are skipped, not built).
fn sent_at_us(data: &[u8]) -> Option<f64> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        sent_at_us: u64,
    }
    let e: Envelope = serde_json::from_slice(data.trim_ascii()).ok()?;
    Some(e.data.sent_at_us as f64)
}
