//! The fastest subscriber we can write: HTTP/1.1 keep-alive on tokio, every request answered
//! `204` as soon as its body has arrived, counted, and (when asked) its `webhook-id` recorded
//! with the wall-clock time it arrived, for latency joins against the database.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use bytes::BytesMut;
use tokio::{io::AsyncWriteExt, net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use super::http;

const RESPONSE: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

#[derive(Default)]
struct Shared {
    count: AtomicU64,
    record: bool,
    /// (webhook-id, arrival) per request, when recording.
    arrivals: Mutex<Vec<(String, SystemTime)>>,
    notify: Notify,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Receiver {
    /// Listens on a free loopback port; `record` keeps each request's webhook-id and time.
    pub async fn start(record: bool) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            record,
            ..Default::default()
        });
        let stop = CancellationToken::new();
        let (s, st) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted =
                    tokio::select! { _ = st.cancelled() => return, a = listener.accept() => a };
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, s.clone(), st.clone()));
                }
            }
        });
        Ok(Receiver { addr, shared, stop })
    }

    /// A target URL on this receiver; `path` tells subscriptions apart in logs only.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    pub fn arrivals(&self) -> Vec<(String, SystemTime)> {
        self.shared.arrivals.lock().expect("lock").clone()
    }

    /// Waits until `n` requests have arrived or `within` has passed; returns the count.
    pub async fn wait_for(&self, n: u64, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.notify.notified();
            let got = self.count();
            if got >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                notified,
            )
            .await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(mut stream: tokio::net::TcpStream, s: Arc<Shared>, stop: CancellationToken) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let head = tokio::select! { _ = stop.cancelled() => return, h = http::read_message(&mut stream, &mut buf) => h };
        let Ok(head) = head else { return };
        if s.record {
            let at = SystemTime::now();
            let id = http::header(&buf[..head.len], "webhook-id")
                .unwrap_or("")
                .to_owned();
            s.arrivals.lock().expect("lock").push((id, at));
        }
        let _ = buf.split_to(head.len + head.content_length);
        if stream.write_all(RESPONSE).await.is_err() {
            return;
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.notify.notify_waiters();
    }
}
