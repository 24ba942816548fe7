//! How webhooks are delivered: which targets may be called, the retry schedule, timeouts,
//! concurrency, leases, when a failing subscription is disabled, and fluxgate's signing keys.
use std::{sync::Arc, time::Duration};

use super::{
    parse::{parse_bool, Parser},
    Cidr, Mode, RawSettings,
};
use crate::delivery::{keys::OutboundKeys, retry::RetrySchedule};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub allow_http_targets: bool,
    /// Private ranges a target may resolve to all the same (a receiver on the LAN).
    pub allowed_target_cidrs: Vec<Cidr>,
    pub retry_schedule: RetrySchedule,
    pub timeout: Duration,
    pub concurrency: usize,
    pub disable_after_failing: Duration,
    pub lease: Duration,
    /// fluxgate's own Ed25519 keys for `v1a` signatures; `None` when not configured.
    pub keys: Option<Arc<OutboundKeys>>,
}

impl DeliverySettings {
    pub(super) fn read(raw: &RawSettings, mode: Mode, p: &mut Parser) -> Self {
        let timeout = p.number(
            "FLUXGATE_WEBHOOK_TIMEOUT_SECS",
            &raw.webhook_timeout_secs,
            15,
            (1, 300),
        );
        let lease = p.number(
            "FLUXGATE_DELIVERY_LEASE_SECS",
            &raw.delivery_lease_secs,
            60,
            (2, 3600),
        );
        if lease <= timeout {
            p.problems.push(format!(
                "FLUXGATE_DELIVERY_LEASE_SECS ({lease}) must be longer than FLUXGATE_WEBHOOK_TIMEOUT_SECS ({timeout})"
            ));
        }
        let keys = match OutboundKeys::from_env_value(raw.webhook_ed25519_keys.as_deref()) {
            Ok(k) => k.map(Arc::new),
            Err(e) => {
                p.problems.push(e.to_string());
                None
            }
        };
        DeliverySettings {
            allow_http_targets: p.value(
                "FLUXGATE_ALLOW_HTTP_TARGETS",
                &raw.allow_http_targets,
                mode == Mode::Dev,
                parse_bool,
            ),
            allowed_target_cidrs: p.value(
                "FLUXGATE_ALLOWED_TARGET_CIDRS",
                &raw.allowed_target_cidrs,
                Vec::new(),
                |v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Cidr::parse)
                        .collect()
                },
            ),
            retry_schedule: p.value(
                "FLUXGATE_WEBHOOK_RETRY_SCHEDULE",
                &raw.webhook_retry_schedule,
                RetrySchedule::default(),
                |v| RetrySchedule::parse(v).map_err(|e| e.to_string()),
            ),
            timeout: Duration::from_secs(timeout),
            concurrency: p.number(
                "FLUXGATE_DELIVERY_CONCURRENCY",
                &raw.delivery_concurrency,
                256,
                (1, 10_000),
            ) as usize,
            disable_after_failing: p.seconds(
                "FLUXGATE_DISABLE_AFTER_FAILING_SECS",
                &raw.disable_after_failing_secs,
                5 * 86_400,
                (1, 365 * 86_400),
            ),
            lease: Duration::from_secs(lease),
            keys,
        }
    }
}
