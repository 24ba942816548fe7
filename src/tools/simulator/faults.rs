//! Fault injection: random rates (seeded, changeable at run time) and `[sim:…]` prompt markers
//! (see the module doc of [`crate::tools::simulator`]), and the exact error answers fal gives for each.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::markers;

/// Probabilities (0–1) of each fault, drawn independently per submission from a seeded RNG.
/// The submission-level rates must sum to ≤ 1 (at most one applies), and so must the job-level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    /// RNG seed: the same seed and the same submissions give the same faults.
    pub seed: u64,
    // Submission-level: the submit call itself fails.
    pub unauthorized: f64,
    pub locked: f64,
    pub content_policy: f64,
    pub rate_limited: f64,
    pub server_error: f64,
    pub bad_gateway: f64,
    pub unavailable: f64,
    pub gateway_timeout: f64,
    // Job-level: the submission is accepted, then something goes wrong.
    pub fail: f64,
    pub payload_error: f64,
    pub drop_webhook: f64,
    pub dup_webhook: f64,
}

/// Rates that are not probabilities, or overlap.
#[derive(Debug, thiserror::Error)]
#[error("invalid fault rates: {0}")]
pub struct InvalidFaultRates(String);

impl FaultRates {
    fn submit_rates(&self) -> [(Rejection, f64); 8] {
        [
            (Rejection::Unauthorized, self.unauthorized),
            (Rejection::Locked, self.locked),
            (Rejection::ContentPolicy, self.content_policy),
            (Rejection::RateLimited, self.rate_limited),
            (Rejection::Infra(500), self.server_error),
            (Rejection::Infra(502), self.bad_gateway),
            (Rejection::Infra(503), self.unavailable),
            (Rejection::Infra(504), self.gateway_timeout),
        ]
    }

    fn job_rates(&self) -> [f64; 4] {
        [
            self.fail,
            self.payload_error,
            self.drop_webhook,
            self.dup_webhook,
        ]
    }

    pub fn validate(&self) -> Result<(), InvalidFaultRates> {
        let submit: Vec<f64> = self.submit_rates().iter().map(|(_, p)| *p).collect();
        let job = self.job_rates();
        if submit.iter().chain(&job).any(|p| !(0.0..=1.0).contains(p)) {
            return Err(InvalidFaultRates("each rate must be within 0..=1".into()));
        }
        if submit.iter().sum::<f64>() > 1.0 || job.iter().sum::<f64>() > 1.0 {
            return Err(InvalidFaultRates(
                "submission and job rates must each sum to ≤ 1".into(),
            ));
        }
        Ok(())
    }

    /// Parses `"429=0.05,503=0.01,drop-webhook=0.02,seed=7"`; names are prompt-marker names or
    /// field names.
    pub fn parse_list(list: &str) -> anyhow::Result<FaultRates> {
        let mut rates = FaultRates::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("fault {item:?}: expected name=probability"))?;
            let value = value.trim();
            if name == "seed" {
                rates.seed = value.parse()?;
                continue;
            }
            let p: f64 = value
                .parse()
                .map_err(|_| anyhow::anyhow!("fault {item:?}: not a number"))?;
            let slot = match name.trim() {
                "401" | "unauthorized" => &mut rates.unauthorized,
                "403" | "locked" => &mut rates.locked,
                "policy" | "content_policy" => &mut rates.content_policy,
                "429" | "rate_limited" => &mut rates.rate_limited,
                "500" | "server_error" => &mut rates.server_error,
                "502" | "bad_gateway" => &mut rates.bad_gateway,
                "503" | "unavailable" => &mut rates.unavailable,
                "504" | "gateway_timeout" => &mut rates.gateway_timeout,
                "fail" => &mut rates.fail,
                "payload-error" | "payload_error" => &mut rates.payload_error,
                "drop-webhook" | "drop_webhook" => &mut rates.drop_webhook,
                "dup-webhook" | "dup_webhook" => &mut rates.dup_webhook,
                other => anyhow::bail!("unknown fault {other:?}"),
            };
            *slot = p;
        }
        rates.validate()?;
        Ok(rates)
    }
}

/// A submission answered with an error instead of being queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    Unauthorized,
    Locked,
    ContentPolicy,
    RateLimited,
    /// 500, 502, 503 or 504 with fal's infrastructure body.
    Infra(u16),
}

/// What happens to an accepted job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobFaults {
    pub fail: bool,
    pub payload_error: bool,
    pub drop_webhook: bool,
    pub dup_webhook: bool,
    pub early_webhook: bool,
    pub queue_delay: Option<Duration>,
    pub run_delay: Option<Duration>,
    /// Queued at once, but the answer to the submit comes this late (a caller that gives up
    /// first cannot tell whether fal took the request).
    pub answer_delay: Option<Duration>,
    /// The endpoint asked for is "unhealthy": fal reroutes the request to this one, if the
    /// submit allows fallbacks.
    pub fallback: Option<&'static crate::fal::models::Model>,
}

/// The faults decided for one submission.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub reject: Option<Rejection>,
    pub job: JobFaults,
}

/// Run-time fault state: the rates with their RNG, and per-prompt counters for `xN` markers.
pub(crate) struct Faults {
    random: Mutex<(FaultRates, StdRng)>,
    counted: Mutex<HashMap<String, u32>>,
}

impl Faults {
    pub fn new(rates: FaultRates) -> Self {
        let rng = StdRng::seed_from_u64(rates.seed);
        Faults {
            random: Mutex::new((rates, rng)),
            counted: Mutex::new(HashMap::new()),
        }
    }

    pub fn set(&self, rates: FaultRates) -> Result<(), InvalidFaultRates> {
        rates.validate()?;
        let rng = StdRng::seed_from_u64(rates.seed);
        *self.random.lock().expect("fault lock") = (rates, rng);
        Ok(())
    }

    pub fn rates(&self) -> FaultRates {
        self.random.lock().expect("fault lock").0.clone()
    }

    /// Draws the random faults, then applies the prompt's markers on top.
    pub fn decide(&self, prompt: &str) -> Decision {
        let mut decision = self.draw();
        let markers = markers::parse(prompt);
        if markers.is_empty() {
            return decision;
        }
        // A counted marker is live for the first N submissions of this exact prompt.
        let seen = if markers.iter().any(|m| m.count.is_some()) {
            let mut counted = self.counted.lock().expect("marker lock");
            let n = counted.entry(prompt.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        } else {
            0
        };
        for marker in markers
            .iter()
            .filter(|m| !matches!(m.count, Some(n) if seen >= n))
        {
            markers::apply(&mut decision, marker.name, marker.value);
        }
        decision
    }

    fn draw(&self) -> Decision {
        let mut guard = self.random.lock().expect("fault lock");
        let (rates, rng) = &mut *guard;
        let (a, b): (f64, f64) = (rng.gen(), rng.gen());
        let mut decision = Decision::default();
        let mut acc = 0.0;
        for (rejection, p) in rates.submit_rates() {
            acc += p;
            if a < acc {
                decision.reject = Some(rejection);
                break;
            }
        }
        let job = &mut decision.job;
        let flags = [
            &mut job.fail,
            &mut job.payload_error,
            &mut job.drop_webhook,
            &mut job.dup_webhook,
        ];
        let mut acc = 0.0;
        for (flag, p) in flags.into_iter().zip(rates.job_rates()) {
            acc += p;
            if b < acc {
                *flag = true;
                break;
            }
        }
        decision
    }
}

/// fal's answer to a bad or missing key.
pub(crate) fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"detail": "No user found for Key ID and Secret"}))
}

impl Rejection {
    /// The response fal gives for this failure.
    pub fn response(self) -> HttpResponse {
        match self {
            Rejection::Unauthorized => unauthorized(),
            Rejection::Locked => HttpResponse::Forbidden().json(json!({
                "detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
            })),
            Rejection::ContentPolicy => HttpResponse::UnprocessableEntity().json(json!({
                "detail": [{
                    "loc": ["body", "prompt"],
                    "msg": "The prompt was flagged by the content checker. Please rephrase it.",
                    "type": "content_policy_violation",
                }]
            })),
            Rejection::RateLimited => HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1"))
                .json(json!({"detail": "Too many requests: rate limit exceeded"})),
            Rejection::Infra(code) => {
                let (error_type, detail) = match code {
                    502 => ("runner_incomplete_response", "The runner returned an incomplete response"),
                    503 => ("runner_scheduling_failure", "No runner could be scheduled for this request"),
                    504 => ("request_timeout", "The request timed out"),
                    _ => ("runner_server_error", "The runner failed with an internal error"),
                };
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                HttpResponse::build(status)
                    .insert_header(("X-Fal-Error-Type", error_type))
                    .json(json!({"detail": detail, "error_type": error_type}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse_with_counts_and_values() {
        let faults = Faults::new(FaultRates::default());
        let d = faults.decide("a [sim:503x2] cat [sim:delay=40][sim:dup-webhook]");
        assert_eq!(d.reject, Some(Rejection::Infra(503)));
        assert_eq!(d.job.run_delay, Some(Duration::from_millis(40)));
        assert!(d.job.dup_webhook);
        let prompt = "a [sim:503x2] cat [sim:delay=40][sim:dup-webhook]";
        assert!(faults.decide(prompt).reject.is_some());
        assert!(
            faults.decide(prompt).reject.is_none(),
            "third submission succeeds"
        );
        assert!(faults.decide("[sim:policy]").reject == Some(Rejection::ContentPolicy));
    }

    #[test]
    fn random_rates_are_deterministic_per_seed() {
        let rates = FaultRates::parse_list("429=0.3,fail=0.5,seed=11").unwrap();
        let run = || {
            let faults = Faults::new(rates.clone());
            (0..50)
                .map(|_| faults.decide("x"))
                .map(|d| (d.reject, d.job.fail))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        assert!(first.iter().any(|(r, _)| r.is_some()) && first.iter().any(|(r, _)| r.is_none()));
        assert!(FaultRates::parse_list("429=0.7,503=0.7").is_err());
        assert!(FaultRates::parse_list("teapot=0.1").is_err());
    }
}
