//! `POST /hooks/fal/{generation_id}?token=…`: fal's completion callback, the one write path
//! anybody can reach. Each check runs as early as it can, and nothing is read, fetched or written
//! before the checks that can refuse it have passed:
//!
//! 1. from the URL: the generation id, and its token (`pipeline::callback_urls`);
//! 2. from the headers: fal's four signature headers, the timestamp window, the pinned fal
//!    account (`FLUXGATE_FAL_USER_ID`), and a free slot (`FLUXGATE_CALLBACK_CONCURRENCY`);
//! 3. the body, within its limit (small unless the URL says images come back inline) and its
//!    deadline, then fal's Ed25519 signature over it, then its request id against the signed one;
//! 4. with an image store, or through a token-less legacy URL: the generation as stored, so
//!    that only a result that will finish it has its images copied (`pipeline::complete`, the
//!    path the reconciler's recovered results take too);
//! 5. one transaction, shared with the callbacks that arrive meanwhile (`pipeline::ingest`),
//!    records it, finishes the generation and appends the event. Milliseconds, far inside
//!    fal's 15 s.
use crate::domain::ids::GenerationId;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::{
    api::body,
    api::state::AppState,
    error::ApiError,
    fal::verify::{FalSignatureHeaders, VerifyError},
    metrics::Metrics,
    pipeline::{
        callbacks::{FalResult, Incoming},
        complete::{CompleteError, Via},
    },
};

pub async fn receive(
    req: HttpRequest,
    path: web::Path<GenerationId>,
    payload: web::Payload,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let received_at = chrono::Utc::now();
    let refuse = |outcome: &'static str, e: ApiError| {
        metrics
            .fal_verifications
            .with_label_values(&[outcome])
            .inc();
        tracing::warn!(outcome, reason = %e.detail, "fal callback refused");
        e
    };
    let generation_id = path.into_inner();
    let door = state
        .pipeline
        .callbacks
        .admit(generation_id, req.query_string(), received_at)
        .map_err(|e| refuse("bad_token", unauthorized("invalid_callback_token", e)))?;
    let headers = FalSignatureHeaders::from_headers(req.headers())
        .and_then(|h| state.verifier.check_window(&h).map(|()| h))
        .map_err(|e| refuse(e.outcome_label(), signature_problem(&e)))?;
    if let Some(pinned) = state.settings.fal.user_id.as_deref() {
        if headers.user_id() != pinned {
            return Err(refuse(
                "wrong_account",
                unauthorized(
                    "unexpected_fal_account",
                    "the callback is signed for another fal account than FLUXGATE_FAL_USER_ID",
                ),
            ));
        }
    }
    let Ok(_slot) = state.callback_slots.clone().try_acquire_owned() else {
        return Err(refuse(
            "busy",
            ApiError::unavailable(
                "callbacks_busy",
                "this instance is processing as many callbacks as it may; fal will deliver this one again",
            )
            .with_header("Retry-After", "1"),
        ));
    };
    let limit = if door.inline() {
        state.settings.fal.max_inline_callback_bytes
    } else {
        state.settings.fal.max_callback_bytes
    };
    let raw = body::read_limited(&req, payload, limit, state.settings.server.body_timeout).await?;
    if let Err(e) = state.verifier.verify(&headers, &raw).await {
        return Err(refuse(e.outcome_label(), signature_problem(&e)));
    }
    metrics
        .fal_verifications
        .with_label_values(&["valid"])
        .inc();
    let result = parse(&raw)?;
    if result.request_id != headers.request_id() {
        return Err(ApiError::bad_request(
            "invalid_callback",
            "the body's request_id is not the signed X-Fal-Webhook-Request-Id",
        ));
    }
    let span = tracing::info_span!("fal_callback", generation = %generation_id, fal_request_id = %result.request_id, fal_status = %result.status);
    let incoming = Incoming {
        generation_id,
        result,
        // A body that parsed is valid UTF-8.
        raw: String::from_utf8_lossy(&raw).into_owned(),
        source: "webhook",
        received_at,
    };
    let completed = state
        .pipeline
        .complete(&state.pool, incoming, door, Via::Ingest(&state.ingest))
        .await
        .inspect_err(|e| span.in_scope(|| tracing::warn!(reason = %e, "fal callback not taken")));
    match completed {
        Ok(applied) => {
            span.in_scope(|| tracing::info!(outcome = applied.label(), "fal callback processed"));
            Ok(HttpResponse::Ok().json(json!({"received": true, "outcome": applied.label()})))
        }
        Err(e) => Err(not_taken(e)),
    }
}

fn not_taken(e: CompleteError) -> ApiError {
    let detail = e.to_string();
    match e {
        CompleteError::UnknownGeneration(_) => ApiError::not_found(detail),
        CompleteError::TokenMissing => unauthorized("invalid_callback_token", detail),
        CompleteError::Contradiction { .. } => ApiError::conflict("request_id_mismatch", detail),
        CompleteError::Unavailable => ApiError::unavailable(
            "shutting_down",
            "this instance is shutting down; fal will redeliver the callback",
        ),
        CompleteError::Db(e) => e.into(),
    }
}

/// One parse on the way in; only a body that fails it is parsed again, to tell JSON that is not
/// fal's webhook from text that is not JSON.
fn parse(raw: &[u8]) -> Result<FalResult, ApiError> {
    serde_json::from_slice(raw).map_err(|e| {
        match serde_json::from_slice::<serde::de::IgnoredAny>(raw) {
            Ok(_) => ApiError::bad_request(
                "invalid_callback",
                format!("the callback body is not a fal webhook: {e}"),
            ),
            Err(e) => ApiError::bad_request(
                "invalid_json",
                format!("the callback body is not valid JSON: {e}"),
            ),
        }
    })
}

fn unauthorized(code: &'static str, detail: impl ToString) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        code,
        "Unauthorized",
        detail.to_string(),
    )
}

/// A JWKS we cannot fetch is our problem, not a forgery: 503 makes fal redeliver later.
fn signature_problem(e: &VerifyError) -> ApiError {
    if e.is_transient() {
        ApiError::unavailable(
            "jwks_unavailable",
            format!("cannot verify fal's signature right now: {e}"),
        )
    } else {
        unauthorized(
            "invalid_signature",
            format!("fal webhook signature check failed: {e}"),
        )
    }
}
