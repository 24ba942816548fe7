//! `sse`: K clients on `GET /v1/events/stream`, each expected to receive every one of E events
//! appended at a fixed rate. Each event carries the wall-clock time it was appended, so a
//! client's latency is "appended (before commit) → frame parsed". When run from the CLI the
//! clients live in a child process (`fluxgate bench sse-clients`): the server's RSS is then
//! this process's own, and the two processes share the file-descriptor budget.
use crate::domain::event_type::EventType;
use std::{
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{
    env::{self, Fluxgate},
    http,
    report::{Basis, ScenarioResult},
    sse_clients::{self, ClientsReport},
    Sizes,
};
use crate::startup::Workers;

/// Where the SSE clients run.
#[derive(Debug, Clone)]
pub enum ClientsIn {
    /// This process (tests; small K). RSS then includes the clients.
    Process,
    /// A child process of this executable (`fluxgate bench sse-clients`).
    Child(std::path::PathBuf),
}

pub async fn run(
    db_url: &str,
    sizes: &Sizes,
    clients_in: &ClientsIn,
) -> anyhow::Result<ScenarioResult> {
    let mut r = ScenarioResult::new("sse");
    let sim = env::start_sim().await?;
    let app = Fluxgate::start(db_url, &sim, Workers::NONE).await?;
    let (tenant_id, key) = env::tenant(&app.pool, "bench").await?;
    let url = format!("http://{}/v1/events/stream", app.addr);
    if !route_exists(&app, &key).await? {
        r.available = false;
        r.note =
            "GET /v1/events/stream answers 404 on this build (the SSE branch is not merged)".into();
        app.stop().await;
        sim.stop().await;
        return Ok(r);
    }
    let k = sizes.sse_clients;
    let events = ((f64::from(sizes.sse_rate) * sizes.sse_duration.as_secs_f64()) as usize).max(1);
    let timeout = sizes.sse_duration + Duration::from_secs(30);
    let rss_before = env::rss_mib().unwrap_or(0.0);

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<usize>();
    let clients = match clients_in {
        ClientsIn::Process => {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move {
                Ok::<_, anyhow::Error>(
                    sse_clients::run(&url, &key, k, events, timeout, Some(ready_tx)).await,
                )
            })
        }
        ClientsIn::Child(exe) => {
            tokio::spawn(child(exe.clone(), url, key, k, events, timeout, ready_tx))
        }
    };
    let connected = ready_rx.await.unwrap_or(0);
    let rss_connected = env::rss_mib().unwrap_or(0.0);

    // Emit the events at the fixed rate while sampling our RSS.
    let mut rss_peak = rss_connected;
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(sizes.sse_rate.max(1)));
    for i in 0..events {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let sent_at_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        let mut tx = app.pool.begin().await?;
        crate::storage::events::append(
            &mut tx,
            tenant_id,
            EventType::TestPing,
            None,
            json!({"bench_seq": i, "sent_at_us": sent_at_us}),
        )
        .await?;
        tx.commit().await?;
        rss_peak = rss_peak.max(env::rss_mib().unwrap_or(0.0));
    }
    let report: ClientsReport = clients.await.context("SSE clients task")??;
    rss_peak = rss_peak.max(env::rss_mib().unwrap_or(0.0));

    let p = &report.latency_ms;
    r.figure(
        "clients connected",
        connected as f64,
        "streams",
        Basis::None,
        None,
    );
    r.latency(
        &format!("append → client ({k} streams)"),
        p,
        [None, Some(250.0), None],
    );
    let in_process = matches!(clients_in, ClientsIn::Process);
    let rss_label = if in_process {
        "RSS peak (clients in-process)"
    } else {
        "server RSS peak"
    };
    r.figure(
        rss_label,
        rss_peak,
        "MiB",
        Basis::None,
        Some(("≤ 300 MiB", rss_peak <= 300.0)),
    );
    r.figure("RSS before clients", rss_before, "MiB", Basis::None, None);
    r.note = format!(
        "{} events at {}/s; RSS is the whole bench process (fluxgate + simulator + driver{})",
        events,
        sizes.sse_rate,
        if in_process {
            " + clients"
        } else {
            "; clients in a child process"
        }
    );
    r.details = json!({"clients": k, "events": events, "rss_mib": {"before": rss_before,
        "connected": rss_connected, "peak": rss_peak}, "clients_report": report});
    r.check("clients connected", k, connected);
    r.check("clients that got every event", k, report.complete_clients);
    r.check("frames received", k * events, report.frames);
    app.stop().await;
    sim.stop().await;
    Ok(r)
}

async fn route_exists(app: &Fluxgate, key: &str) -> anyhow::Result<bool> {
    let auth = format!("Bearer {key}");
    let req = http::request("GET", "/v1/events/stream", &[("authorization", &auth)], b"");
    let mut conn = http::Conn::new(app.addr);
    let (status, _) = conn.send(&req).await?;
    Ok(status != 404)
}

/// Runs the clients as `<exe> bench sse-clients`, the key in the environment (never argv).
async fn child(
    exe: std::path::PathBuf,
    url: String,
    key: String,
    k: usize,
    events: usize,
    timeout: Duration,
    ready: tokio::sync::oneshot::Sender<usize>,
) -> anyhow::Result<ClientsReport> {
    let mut proc = tokio::process::Command::new(exe)
        .args(["bench", "sse-clients", "--sse-url", &url])
        .args([
            "--sse-clients",
            &k.to_string(),
            "--sse-events",
            &events.to_string(),
        ])
        .args(["--sse-timeout-secs", &timeout.as_secs().to_string()])
        .env(sse_clients::KEY_ENV, key)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the SSE client process")?;
    let mut lines = BufReader::new(proc.stdout.take().context("child stdout")?).lines();
    let mut ready = Some(ready);
    while let Some(line) = lines.next_line().await? {
        if let Some(n) = line.strip_prefix("ready ") {
            if let Some(tx) = ready.take() {
                let _ = tx.send(n.trim().parse().unwrap_or(0));
            }
        } else if line.starts_with('{') {
            let _ = proc.wait().await;
            return Ok(serde_json::from_str(&line)?);
        }
    }
    anyhow::bail!("the SSE client process ended without a report")
}
