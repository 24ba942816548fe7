//! The HTTP server's settings: where it listens and how it is reached, its request limits,
//! its logs, shutdown, metrics and live streams.
use std::{net::IpAddr, time::Duration};

use url::Url;

use super::{
    parse::{parse_http_url, Parser},
    Mode, RawSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: IpAddr,
    pub port: u16,
    /// How fal and subscribers reach this deployment (required in serve).
    pub public_url: Option<Url>,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub shutdown_drain: Duration,
    pub metrics_refresh: Duration,
    pub sse_heartbeat: Duration,
    pub max_streams_per_tenant: usize,
    pub max_subscriptions_per_tenant: i64,
}

impl ServerSettings {
    pub(super) fn read(raw: &RawSettings, mode: Mode, p: &mut Parser) -> Self {
        let serve = mode == Mode::Serve;
        let port = p.value("PORT", &raw.port, 8080u16, |v| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("must be a port number 1-65535".into())
        });
        // `dev` allows plain http and loopback targets: reachable only from this machine.
        let bind_default = if serve {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        };
        let bind = p.value("FLUXGATE_BIND", &raw.bind, bind_default, |v| {
            v.parse::<IpAddr>()
                .map_err(|_| "must be an IP address such as 0.0.0.0 or ::".into())
        });
        let log_default = if serve {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        ServerSettings {
            bind,
            port,
            public_url: p.optional(
                "FLUXGATE_PUBLIC_URL",
                &raw.public_url,
                serve,
                parse_http_url,
            ),
            log_format: p.value(
                "FLUXGATE_LOG_FORMAT",
                &raw.log_format,
                log_default,
                |v| match v {
                    "json" => Ok(LogFormat::Json),
                    "pretty" => Ok(LogFormat::Pretty),
                    _ => Err("must be `json` or `pretty`".into()),
                },
            ),
            max_body_bytes: p.number(
                "FLUXGATE_MAX_BODY_BYTES",
                &raw.max_body_bytes,
                1 << 20,
                (1024, 64 << 20),
            ) as usize,
            body_timeout: p.seconds(
                "FLUXGATE_BODY_TIMEOUT_SECS",
                &raw.body_timeout_secs,
                10,
                (1, 600),
            ),
            shutdown_drain: p.seconds(
                "FLUXGATE_SHUTDOWN_DRAIN_SECS",
                &raw.shutdown_drain_secs,
                20,
                (0, 3600),
            ),
            metrics_refresh: p.seconds(
                "FLUXGATE_METRICS_REFRESH_SECS",
                &raw.metrics_refresh_secs,
                5,
                (1, 3600),
            ),
            sse_heartbeat: p.seconds(
                "FLUXGATE_SSE_HEARTBEAT_SECS",
                &raw.sse_heartbeat_secs,
                15,
                (1, 3600),
            ),
            max_streams_per_tenant: p.number(
                "FLUXGATE_MAX_STREAMS_PER_TENANT",
                &raw.max_streams_per_tenant,
                1000,
                (1, 1_000_000),
            ) as usize,
            max_subscriptions_per_tenant: p.number(
                "FLUXGATE_MAX_SUBSCRIPTIONS_PER_TENANT",
                &raw.max_subscriptions_per_tenant,
                1000,
                (1, 1_000_000),
            ) as i64,
        }
    }
}
