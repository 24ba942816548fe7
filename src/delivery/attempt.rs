//! One delivery attempt: sign the exact stored payload bytes (Standard Webhooks), send them
//! through the SSRF-guarded client, and judge the answer by the retry policy. Never fails:
//! every result becomes an [`Outcome`] for the delivery loop to record.
use crate::domain::states::DeliveryStatus;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use reqwest::header::{HeaderName, HeaderValue};

use super::{
    client::{Delivered, SendError},
    keys::OutboundKeys,
    retry::{self, AttemptOutcome, Decision},
    signing,
    target::Target,
    worker::Deliverer,
};
use crate::storage::delivery_queue::{Claimed, Settled};

/// One attempt's result, waiting to be recorded. `claimed.payload` has been sent and dropped.
pub struct Outcome {
    pub settled: Settled,
    pub claimed: Claimed,
    pub decision: Decision,
}

impl Deliverer {
    pub(super) async fn attempt(&self, mut c: Claimed, target: &Target) -> Outcome {
        let started_at = Utc::now();
        let msg_id = c.event_id.to_string();
        let body = Bytes::from(std::mem::take(&mut c.payload));
        let ts = started_at.timestamp();
        let signature = signing::sign(
            &msg_id,
            ts,
            &body,
            &target.secrets(),
            self.keys.as_deref().map(OutboundKeys::signing_key),
        );
        let mut headers = target.headers.clone();
        for (name, value) in [
            ("webhook-id", msg_id),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", signature),
        ] {
            if let Ok(v) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        let result = match &target.url {
            Ok(url) => self.client.post(url, headers, body).await,
            Err(e) => Err(SendError {
                class: super::client::ErrorClass::InvalidTarget,
                message: e.clone(),
                duration: Duration::ZERO,
            }),
        };
        self.judge(c, started_at, result)
    }

    /// What the answer (or its absence) means: the attempt row, the delivery's next state.
    fn judge(
        &self,
        c: Claimed,
        started_at: chrono::DateTime<Utc>,
        result: Result<Delivered, SendError>,
    ) -> Outcome {
        let (code, class, excerpt, outcome, retry_after, duration) = match result {
            Ok(d) => {
                let retry_after = d
                    .headers
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, Utc::now()));
                let class = (!d.is_success()).then_some("http_status");
                let outcome = AttemptOutcome::from_status(d.status);
                let code = Some(i32::from(d.status));
                (
                    code,
                    class,
                    d.body_excerpt,
                    outcome,
                    retry_after,
                    d.duration,
                )
            }
            Err(e) => {
                let outcome = if e.class == super::client::ErrorClass::Timeout {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::Failed
                };
                let class = Some(e.class.as_str());
                (None, class, e.message, outcome, None, e.duration)
            }
        };
        let decision = retry::next_attempt(
            &self.schedule,
            c.attempts.max(1) as u32,
            outcome,
            retry_after,
            &mut rand::thread_rng(),
        );
        let (new_status, next_attempt_at, label) = match decision {
            Decision::Done => (
                DeliveryStatus::Succeeded,
                None,
                DeliveryStatus::Succeeded.as_str(),
            ),
            Decision::Disable => (DeliveryStatus::Failed, None, "gone"),
            Decision::RetryIn(d) => (
                DeliveryStatus::Pending,
                Some(Utc::now() + chrono::Duration::from_std(d).unwrap_or_default()),
                "retry_scheduled",
            ),
            Decision::Exhausted => (
                DeliveryStatus::Exhausted,
                None,
                DeliveryStatus::Exhausted.as_str(),
            ),
        };
        self.metrics
            .deliveries
            .with_label_values(&[label, class.unwrap_or("none")])
            .inc();
        let duration_ms = duration.as_secs_f64() * 1000.0;
        if decision == Decision::Done {
            let latency = (Utc::now() - c.event_created_at).to_std();
            self.metrics
                .delivery_latency
                .observe(latency.unwrap_or_default().as_secs_f64());
            // Every attempt is in `delivery_attempts`; a log line per success is noise.
            tracing::debug!(delivery = %c.id.to_string(), attempt = c.attempts, status_code = code, duration_ms, "delivered");
        } else {
            tracing::info!(
                delivery = %c.id.to_string(),
                event = %c.event_id.to_string(),
                attempt = c.attempts,
                status_code = code,
                error_class = class.unwrap_or(""),
                duration_ms,
                outcome = label,
                "delivery attempt failed"
            );
        }
        Outcome {
            settled: Settled {
                delivery_id: c.id,
                attempt: c.attempts,
                started_at,
                duration_ms: duration.as_millis().min(i32::MAX as u128) as i32,
                status_code: code,
                error_class: class,
                excerpt: Some(excerpt),
                new_status,
                next_attempt_at,
            },
            claimed: c,
            decision,
        }
    }
}
