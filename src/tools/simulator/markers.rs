//! `[sim:…]` prompt markers (listed in the module doc of [`crate::tools::simulator`]): parsing them out
//! of a prompt and applying each to a submission's fault decision.
use std::time::Duration;

use super::faults::{Decision, Rejection};

pub(super) struct Marker<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
    pub count: Option<u32>,
}

/// Finds every `[sim:name]`, `[sim:namexN]` and `[sim:name=value]` in a prompt.
pub(super) fn parse(prompt: &str) -> Vec<Marker<'_>> {
    let mut markers = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("[sim:") {
        rest = &rest[start + 5..];
        let Some(end) = rest.find(']') else { break };
        let token = &rest[..end];
        rest = &rest[end + 1..];
        let marker = match token.split_once('=') {
            Some((name, value)) => Marker {
                name,
                value: Some(value),
                count: None,
            },
            None => match token.rsplit_once('x').map(|(n, c)| (n, c.parse::<u32>())) {
                Some((name, Ok(count))) => Marker {
                    name,
                    value: None,
                    count: Some(count),
                },
                _ => Marker {
                    name: token,
                    value: None,
                    count: None,
                },
            },
        };
        markers.push(marker);
    }
    markers
}

pub(super) fn apply(decision: &mut Decision, name: &str, value: Option<&str>) {
    let millis = || {
        value
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    };
    let job = &mut decision.job;
    match name {
        "401" => decision.reject = Some(Rejection::Unauthorized),
        "403" => decision.reject = Some(Rejection::Locked),
        "policy" => decision.reject = Some(Rejection::ContentPolicy),
        "429" => decision.reject = Some(Rejection::RateLimited),
        "500" | "502" | "503" | "504" => {
            decision.reject = name.parse().ok().map(Rejection::Infra);
        }
        "fail" => job.fail = true,
        "payload-error" => job.payload_error = true,
        "drop-webhook" => job.drop_webhook = true,
        "dup-webhook" => job.dup_webhook = true,
        "early-webhook" => job.early_webhook = true,
        "delay" => job.run_delay = millis(),
        "queue" => job.queue_delay = millis(),
        "slow-answer" => job.answer_delay = millis(),
        "fallback" => job.fallback = value.and_then(crate::fal::models::Model::lookup),
        other => tracing::debug!(
            marker = other,
            "fal simulator: unknown prompt marker ignored"
        ),
    }
}
