//! How fluxgate talks to fal: the key and URLs, submission and its retries, the reconciler,
//! and the door fal's callbacks come in by.
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{
    parse::{bounded, parse_bool, parse_http_url, Parser},
    Mode, RawSettings,
};

pub const DEFAULT_FAL_QUEUE_URL: &str = "https://queue.fal.run";
pub const DEFAULT_FAL_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";

#[derive(Debug, Clone)]
pub struct FalSettings {
    /// `key_id:key_secret` (required in serve).
    pub key: Option<SecretString>,
    pub queue_url: Url,
    pub jwks_url: Url,
    pub timeout: Duration,
    pub retry_base: Duration,
    pub rate_limit_budget: Duration,
    pub submit_concurrency: usize,
    pub reconcile_after: Duration,
    pub reconcile_interval: Duration,
    /// The fal account callbacks must be signed for, when pinned.
    pub user_id: Option<String>,
    pub legacy_callback_grace: Duration,
    pub max_callback_bytes: usize,
    pub max_inline_callback_bytes: usize,
    pub callback_concurrency: usize,
    /// Whether fal may run a request on a fallback endpoint (`FLUXGATE_FAL_FALLBACKS`).
    pub fallbacks: bool,
    /// The start timeout of requests that set none (`FLUXGATE_FAL_START_TIMEOUT_SECS`).
    pub start_timeout_secs: Option<u32>,
}

impl FalSettings {
    pub(super) fn read(raw: &RawSettings, mode: Mode, p: &mut Parser) -> Self {
        let serve = mode == Mode::Serve;
        let key = p.secret("FAL_KEY", &raw.fal_key, serve, |v| {
            match v.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(()),
                _ => Err("must have the form key_id:key_secret".into()),
            }
        });
        let default_url = |u: &str| Url::parse(u).expect("a valid default");
        let queue_url = p.value(
            "FLUXGATE_FAL_QUEUE_URL",
            &raw.fal_queue_url,
            default_url(DEFAULT_FAL_QUEUE_URL),
            parse_http_url,
        );
        let jwks_url = p.value(
            "FLUXGATE_FAL_JWKS_URL",
            &raw.fal_jwks_url,
            default_url(DEFAULT_FAL_JWKS_URL),
            parse_http_url,
        );
        let insecure = p.value(
            "FLUXGATE_ALLOW_INSECURE_FAL",
            &raw.allow_insecure_fal,
            false,
            parse_bool,
        );
        if serve && !insecure {
            // The fal key travels to the queue URL, and the JWKS is the trust anchor of every
            // callback: in clear, either can be read or replaced on the way.
            for (name, url, given) in [
                ("FLUXGATE_FAL_QUEUE_URL", &queue_url, &raw.fal_queue_url),
                ("FLUXGATE_FAL_JWKS_URL", &jwks_url, &raw.fal_jwks_url),
            ] {
                if given.is_some() && url.scheme() != "https" {
                    p.problems.push(format!(
                        "{name} must be https in serve: the fal key and the keys that verify fal's callbacks would travel in clear (set FLUXGATE_ALLOW_INSECURE_FAL=true for a local simulator)"
                    ));
                }
            }
        }
        // A result whose images are URLs is a few KB; inline images have their own limit.
        let max_callback_bytes = p.number(
            "FLUXGATE_MAX_CALLBACK_BYTES",
            &raw.max_callback_bytes,
            256 << 10,
            (1024, 1 << 30),
        );
        // A deployment that raised the old single limit for large inline results keeps it.
        let max_inline_callback_bytes = p.value(
            "FLUXGATE_MAX_INLINE_CALLBACK_BYTES",
            &raw.max_inline_callback_bytes,
            (64u64 << 20).max(max_callback_bytes),
            |v| bounded(v, 1024, 1 << 30),
        );
        // Off by default: fluxgate prices, budgets and reports the endpoint it was asked for, and
        // a fallback may run (and bill) another one, with other prices and other output.
        let fallbacks = p.value(
            "FLUXGATE_FAL_FALLBACKS",
            &raw.fal_fallbacks,
            false,
            |v| match v {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err("must be on or off".into()),
            },
        );
        let start_timeout_secs = p.optional(
            "FLUXGATE_FAL_START_TIMEOUT_SECS",
            &raw.fal_start_timeout_secs,
            false,
            |v| {
                bounded(
                    v,
                    1,
                    crate::domain::generation::MAX_START_TIMEOUT_SECS as u64,
                )
                .map(|n| n as u32)
            },
        );
        FalSettings {
            fallbacks,
            start_timeout_secs,
            key,
            queue_url,
            jwks_url,
            timeout: p.seconds(
                "FLUXGATE_FAL_TIMEOUT_SECS",
                &raw.fal_timeout_secs,
                60,
                (1, 600),
            ),
            retry_base: Duration::from_millis(p.number(
                "FLUXGATE_FAL_RETRY_BASE_MS",
                &raw.fal_retry_base_ms,
                1000,
                (1, 60_000),
            )),
            rate_limit_budget: p.seconds(
                "FLUXGATE_FAL_RATE_LIMIT_BUDGET_SECS",
                &raw.fal_rate_limit_budget_secs,
                300,
                (0, 86_400),
            ),
            submit_concurrency: p.number(
                "FLUXGATE_SUBMIT_CONCURRENCY",
                &raw.submit_concurrency,
                32,
                (1, 1024),
            ) as usize,
            reconcile_after: p.seconds(
                "FLUXGATE_RECONCILE_AFTER_SECS",
                &raw.reconcile_after_secs,
                300,
                (1, 86_400),
            ),
            reconcile_interval: p.seconds(
                "FLUXGATE_RECONCILE_INTERVAL_SECS",
                &raw.reconcile_interval_secs,
                30,
                (1, 3600),
            ),
            user_id: p.optional("FLUXGATE_FAL_USER_ID", &raw.fal_user_id, false, |v| {
                if v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()) {
                    Ok(v.to_owned())
                } else {
                    Err("must be fal's user id as sent in X-Fal-Webhook-User-Id".into())
                }
            }),
            legacy_callback_grace: p.seconds(
                "FLUXGATE_LEGACY_CALLBACK_GRACE_SECS",
                &raw.legacy_callback_grace_secs,
                86_400,
                (0, 30 * 86_400),
            ),
            max_callback_bytes: max_callback_bytes as usize,
            max_inline_callback_bytes: max_inline_callback_bytes as usize,
            callback_concurrency: p.number(
                "FLUXGATE_CALLBACK_CONCURRENCY",
                &raw.callback_concurrency,
                256,
                (1, 100_000),
            ) as usize,
        }
    }
}
