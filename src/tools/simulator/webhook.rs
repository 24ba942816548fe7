//! The completion webhook, exactly as fal sends it (its body shape and its Ed25519 signature headers): the body is serialised
//! once, each attempt signs those bytes with a fresh timestamp and sends those same bytes; any
//! non-2xx (3xx included: redirects are never followed) or transport error is retried on the
//! configured schedule, then given up.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::queue::{JobSpec, Outcome};
use super::SimState;
use crate::fal::signature::{
    sign_hex, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER_ID,
};

#[derive(Serialize)]
struct Body<'a> {
    request_id: String,
    gateway_request_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// Always present, `null` when there is none.
    payload: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_error: Option<&'static str>,
    /// The endpoint that ran the request, when a fallback ran it instead of the one asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<&'static str>,
}

/// The exact bytes fal would POST for this outcome.
pub(crate) fn body(spec: &JobSpec, outcome: &Outcome) -> Bytes {
    let id = spec.id.to_string();
    let mut body = Body {
        request_id: id.clone(),
        gateway_request_id: id,
        status: "OK",
        error: None,
        payload: None,
        payload_error: None,
        endpoint_id: spec.served_by.map(|m| m.id),
    };
    match outcome {
        Outcome::Success { .. } if spec.faults.payload_error => {
            body.payload_error =
                Some("Response payload is not JSON serializable. Fetch the result from the response URL.");
        }
        Outcome::Success { output, .. } => body.payload = Some(output),
        Outcome::Failure {
            body: detail,
            error,
            ..
        } => {
            body.status = "ERROR";
            body.error = Some(error);
            body.payload = Some(detail);
        }
    }
    Bytes::from(serde_json::to_vec(&body).expect("webhook body serialises"))
}

/// Delivers one webhook with retries. `first_attempt` hears whether the first attempt succeeded
/// (the early-webhook fault waits for it before answering the submit).
pub(crate) async fn deliver(
    state: Arc<SimState>,
    spec: Arc<JobSpec>,
    url: String,
    body: Bytes,
    mut first_attempt: Option<oneshot::Sender<bool>>,
) {
    let schedule = state.config.webhook_retry_schedule.clone();
    for attempt in 0..=schedule.len() {
        if attempt > 0 && !state.sleep(schedule[attempt - 1]).await {
            return;
        }
        let delivered = attempt_once(&state, &spec, &url, body.clone(), attempt).await;
        if let Some(tx) = first_attempt.take() {
            let _ = tx.send(delivered);
        }
        if delivered {
            state
                .stats
                .webhooks_delivered
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    state.stats.webhooks_failed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(request_id = %spec.id, "fal simulator: webhook given up after all retries");
}

async fn attempt_once(
    state: &SimState,
    spec: &JobSpec,
    url: &str,
    body: Bytes,
    attempt: usize,
) -> bool {
    state
        .stats
        .webhooks_attempted
        .fetch_add(1, Ordering::Relaxed);
    let request_id = spec.id.to_string();
    let user_id = &state.config.user_id;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = sign_hex(
        &state.keys.current(),
        &request_id,
        user_id,
        &timestamp,
        &body,
    );
    let result = state
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_REQUEST_ID, &request_id)
        .header(HEADER_USER_ID, user_id.as_str())
        .header(HEADER_TIMESTAMP, &timestamp)
        .header(HEADER_SIGNATURE, signature)
        .body(body)
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(request_id, attempt, status = %response.status(), "fal simulator: webhook delivered");
            true
        }
        Ok(response) => {
            tracing::debug!(request_id, attempt, status = %response.status(), "fal simulator: webhook rejected");
            false
        }
        Err(error) => {
            tracing::debug!(request_id, attempt, %error, "fal simulator: webhook transport error");
            false
        }
    }
}
