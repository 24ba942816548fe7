//! `fluxgate fal-sim`: the simulator as a standalone server, configured by flags or
//! `FLUXGATE_SIM_*` variables, running until Ctrl-C or SIGTERM.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;

use super::config::{parse_durations, SimConfig};
use super::faults::FaultRates;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Port to listen on.
    #[arg(long, env = "FLUXGATE_SIM_PORT", default_value_t = 9090)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "FLUXGATE_SIM_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Require exactly this fal key (`Authorization: Key …`); any non-empty key when unset.
    #[arg(long, env = "FLUXGATE_SIM_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Base URL handed out in response/status/image URLs (default: http://BIND:PORT).
    #[arg(long, env = "FLUXGATE_SIM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Time each request spends IN_PROGRESS, in milliseconds.
    #[arg(long, env = "FLUXGATE_SIM_LATENCY_MS", default_value_t = 500)]
    pub latency_ms: u64,
    /// Time each request spends IN_QUEUE, in milliseconds.
    #[arg(long, env = "FLUXGATE_SIM_QUEUE_MS", default_value_t = 0)]
    pub queue_ms: u64,
    /// Prompt word that makes the safety checker flag the output (black images).
    #[arg(long, env = "FLUXGATE_SIM_NSFW_TRIGGER", default_value = "nsfw")]
    pub nsfw_trigger: String,
    /// Path the JWKS is served at.
    #[arg(
        long,
        env = "FLUXGATE_SIM_JWKS_PATH",
        default_value = "/.well-known/jwks.json"
    )]
    pub jwks_path: String,
    /// Webhook retry waits, e.g. "1s,5s,30s" (default: fal's 10 retries over ~2 h).
    #[arg(long, env = "FLUXGATE_SIM_WEBHOOK_RETRIES")]
    pub webhook_retries: Option<String>,
    /// Random faults, e.g. "429=0.05,503=0.02,drop-webhook=0.01,seed=7".
    #[arg(long, env = "FLUXGATE_SIM_FAULTS")]
    pub faults: Option<String>,
    /// 64 hex characters: a fixed signing key, so the JWKS survives restarts.
    #[arg(long, env = "FLUXGATE_SIM_SIGNING_SEED", hide_env_values = true)]
    pub signing_seed: Option<String>,
    /// Value of `X-Fal-Webhook-User-Id`.
    #[arg(
        long,
        env = "FLUXGATE_SIM_USER_ID",
        default_value = "fluxgate-sim-user"
    )]
    pub user_id: String,
    /// Requests running at once, like fal's per-account concurrency; queued ones wait for a
    /// runner, normal priority before low (default: no limit).
    #[arg(long, env = "FLUXGATE_SIM_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// HTTP worker threads (default: one per CPU, at most 8).
    #[arg(long, env = "FLUXGATE_SIM_WORKERS")]
    pub workers: Option<usize>,
}

impl SimArgs {
    pub fn into_config(self) -> anyhow::Result<SimConfig> {
        let defaults = SimConfig::default();
        let webhook_retry_schedule = match &self.webhook_retries {
            Some(list) => parse_durations(list).context("--webhook-retries")?,
            None => defaults.webhook_retry_schedule.clone(),
        };
        let faults = match &self.faults {
            Some(list) => FaultRates::parse_list(list).context("--faults")?,
            None => FaultRates::default(),
        };
        let signing_seed = match &self.signing_seed {
            Some(seed) => {
                let bytes = hex::decode(seed.trim()).context("--signing-seed: not hex")?;
                Some(<[u8; 32]>::try_from(bytes).map_err(|_| {
                    anyhow::anyhow!("--signing-seed: need 32 bytes (64 hex characters)")
                })?)
            }
            None => None,
        };
        if !self.jwks_path.starts_with('/') {
            anyhow::bail!("--jwks-path must start with '/'");
        }
        Ok(SimConfig {
            bind: SocketAddr::new(self.bind, self.port),
            public_base_url: self.public_url,
            api_key: self.key.map(SecretString::from),
            signing_seed,
            user_id: self.user_id,
            jwks_path: self.jwks_path,
            queue_delay: Duration::from_millis(self.queue_ms),
            run_delay: Duration::from_millis(self.latency_ms),
            webhook_retry_schedule,
            nsfw_trigger: self.nsfw_trigger,
            faults,
            workers: self.workers.unwrap_or(defaults.workers),
            concurrency: self.concurrency.map(|n| n as usize),
            ..defaults
        })
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM, printing where it listens.
pub async fn run_standalone(args: SimArgs) -> anyhow::Result<()> {
    let handle = super::start(args.into_config()?).await?;
    println!("fal simulator listening on {}", handle.base_url());
    println!("  queue URL: FLUXGATE_FAL_QUEUE_URL={}", handle.base_url());
    println!("  JWKS:      FLUXGATE_FAL_JWKS_URL={}", handle.jwks_url());
    wait_for_shutdown().await?;
    println!("fal simulator stopping");
    handle.stop().await;
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Without the fal key it expects.
impl std::fmt::Debug for SimArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimArgs")
            .field("port", &self.port)
            .field("bind", &self.bind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_become_a_config() {
        let cli = Cli::parse_from([
            "sim",
            "--port",
            "0",
            "--key",
            "id:secret",
            "--latency-ms",
            "5",
            "--webhook-retries",
            "10ms,1s",
            "--faults",
            "429=0.5,seed=3",
            "--signing-seed",
            &"ab".repeat(32),
        ]);
        let config = cli.sim.into_config().unwrap();
        assert_eq!(config.bind.port(), 0);
        assert_eq!(config.run_delay, Duration::from_millis(5));
        assert_eq!(
            config.webhook_retry_schedule,
            [Duration::from_millis(10), Duration::from_secs(1)]
        );
        assert_eq!((config.faults.rate_limited, config.faults.seed), (0.5, 3));
        assert_eq!(config.signing_seed, Some([0xab; 32]));
        assert!(config.api_key.is_some());
    }
}
