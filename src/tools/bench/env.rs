//! The pieces every scenario assembles: a fal simulator with zero latency and a known signing
//! key, fluxgate itself in-process on a loopback port, a tenant with a key, subscriptions, and
//! reading the process's resident memory.
use crate::domain::ids::SubscriptionId;
use crate::domain::ids::TenantId;
use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::{
    config::{Cidr, Settings},
    delivery::signing::SigningSecret,
    domain::{api_key::NewApiKey, tenant::TenantName},
    metrics::Metrics,
    startup::{Application, Workers},
    storage::{self, subscriptions::NewSubscription},
    tools::simulator::{self, SimConfig, SimHandle},
};

/// The simulator's webhook-signing seed: the bench signs callbacks with the same key.
pub const SIM_SEED: [u8; 32] = [42; 32];
pub const SIM_KEY: &str = "bench-id:bench-secret";
pub const SIM_USER_ID: &str = "fluxgate-bench";

pub fn sim_signing_key() -> SigningKey {
    SigningKey::from_bytes(&SIM_SEED)
}

/// A simulator that answers at once and completes every request with zero delay.
pub async fn start_sim() -> anyhow::Result<SimHandle> {
    start_sim_with(Duration::ZERO).await
}

/// A simulator that answers at once and completes every request after `latency`.
pub async fn start_sim_with(latency: Duration) -> anyhow::Result<SimHandle> {
    simulator::start(SimConfig {
        api_key: Some(SecretString::from(SIM_KEY)),
        signing_seed: Some(SIM_SEED),
        user_id: SIM_USER_ID.into(),
        queue_delay: Duration::ZERO,
        run_delay: latency,
        workers: 1,
        draw_once: true,
        ..Default::default()
    })
    .await
}

/// Production settings except what a loopback bench needs: port 0, the simulator as fal, and
/// local receivers allowed past the SSRF guard.
pub fn settings(sim: &SimHandle) -> anyhow::Result<Settings> {
    let mut s = Settings::for_dev();
    s.server.bind = [127, 0, 0, 1].into();
    s.server.port = 0;
    s.fal.queue_url = sim.base_url().parse()?;
    s.fal.jwks_url = sim.jwks_url().parse()?;
    s.fal.key = Some(SecretString::from(SIM_KEY));
    s.delivery.allow_http_targets = true;
    s.delivery.allowed_target_cidrs = vec![Cidr::parse("127.0.0.0/8").map_err(anyhow::Error::msg)?];
    s.server.shutdown_drain = Duration::from_secs(2);
    // `sse` holds 10,000 streams of one tenant.
    s.server.max_streams_per_tenant = 1_000_000;
    Ok(s)
}

/// fluxgate running in this process.
pub struct Fluxgate {
    pub addr: SocketAddr,
    /// fluxgate's own pool (the one its handlers use).
    pub pool: PgPool,
    /// Its pipeline (for the callback URLs it hands fal).
    pub pipeline: crate::pipeline::Pipeline,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Fluxgate {
    pub async fn start(db_url: &str, sim: &SimHandle, workers: Workers) -> anyhow::Result<Self> {
        Self::start_with(db_url, settings(sim)?, workers).await
    }

    /// With settings of the scenario's own (built from [`settings`]).
    pub async fn start_with(
        db_url: &str,
        settings: Settings,
        workers: Workers,
    ) -> anyhow::Result<Self> {
        let pool = storage::connect(db_url, settings.storage.db_pool_size)
            .await
            .context("connecting fluxgate's pool")?;
        let app = Application::build_with(settings, pool.clone(), Metrics::new(), workers).await?;
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let handle = app.handle();
        let pipeline = app.pipeline();
        let task = tokio::spawn(app.run_until_stopped());
        Ok(Fluxgate {
            addr,
            pool,
            pipeline,
            handle,
            task,
        })
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
        self.pool.close().await;
    }
}

/// A tenant and an API key for it: (tenant id, key).
pub async fn tenant(pool: &PgPool, name: &str) -> anyhow::Result<(TenantId, String)> {
    let name = TenantName::parse(name).map_err(anyhow::Error::msg)?;
    let t = storage::tenants::ensure(pool, &name).await?;
    let key = NewApiKey::generate();
    storage::keys::create(
        pool,
        t.id,
        &key,
        Some("bench"),
        crate::domain::scope::Scopes::all(),
    )
    .await?;
    Ok((t.id, key.secret.expose_secret().to_owned()))
}

/// `n` active subscriptions to `generation.completed`, each to its own path on `receiver`.
pub async fn subscribe(
    pool: &PgPool,
    tenant_id: TenantId,
    receiver: &super::receiver::Receiver,
    n: usize,
    max_in_flight: i32,
) -> anyhow::Result<Vec<SubscriptionId>> {
    let types = vec!["generation.completed".to_owned()];
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let secret = SigningSecret::generate();
        let sub = storage::subscriptions::insert(
            pool,
            tenant_id,
            NewSubscription {
                id: SubscriptionId::new(),
                target_url: &receiver.url(&format!("s{i}")),
                event_types: &types,
                filter: None,
                description: Some("bench"),
                headers: &serde_json::json!({}),
                secret: secret.as_str(),
                max_in_flight,
                rate_limit_per_sec: None,
            },
        )
        .await?;
        ids.push(sub.id);
    }
    Ok(ids)
}

/// Hands the memory the allocator kept from earlier scenarios back to the system, so that a
/// scenario's RSS figure (this whole process's) is its own and not that of the ones before it:
/// moved after `sse` with its 10 000 streams, `ingest`'s peak read 141 MiB against its 100 MiB
/// target. glibc's allocator only; elsewhere a no-op.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes the
        // allocator's own locks and is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// This process's resident set size in MiB (Linux), from /proc/self/status.
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A realistic normalised FLUX.2 Turbo input, as `POST /v1/generations` stores it.
pub fn generation_input(i: usize) -> serde_json::Value {
    serde_json::json!({
        "prompt": format!("bench lighthouse at dawn, film photo #{i}"),
        "image_size": {"width": 1024, "height": 768},
        "num_inference_steps": 8, "guidance_scale": 2.5, "num_images": 1,
        "enable_safety_checker": true, "enable_prompt_expansion": false,
        "output_format": "png", "sync_mode": false, "seed": i,
    })
}
