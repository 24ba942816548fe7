//! `POST /hooks/fal/{generation_id}`: fal's completion callback. The raw body is verified
//! (Ed25519, fal-api.md §4) before it is parsed; then one transaction (shared with the callbacks
//! that arrive meanwhile, `pipeline::ingest`) records it, finishes the generation and appends
//! the event. Answers in milliseconds, far inside fal's 15 s.
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::{
    api::body,
    domain::ids,
    error::ApiError,
    fal::verify::FalSignatureHeaders,
    metrics::Metrics,
    pipeline::callbacks::{ApplyError, FalResult, Incoming},
    startup::AppState,
};

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    let received_at = chrono::Utc::now();
    let raw = body::read_limited(&req, payload, state.settings.max_callback_bytes).await?;
    let verified = match FalSignatureHeaders::from_headers(req.headers()) {
        Ok(headers) => state.verifier.verify(&headers, &raw).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = verified {
        metrics
            .fal_verifications
            .with_label_values(&[e.outcome_label()])
            .inc();
        tracing::warn!(reason = %e, "fal callback refused");
        // A JWKS we cannot fetch is our problem, not a forgery: 503 makes fal redeliver later.
        return Err(if e.is_transient() {
            ApiError::unavailable(
                "jwks_unavailable",
                format!("cannot verify fal's signature right now: {e}"),
            )
        } else {
            ApiError::new(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "Unauthorized",
                format!("fal webhook signature check failed: {e}"),
            )
        });
    }
    metrics
        .fal_verifications
        .with_label_values(&["valid"])
        .inc();
    let generation_id = ids::decode(ids::Kind::Generation, &path)
        .ok_or_else(|| ApiError::not_found(format!("no generation {}", path.as_str())))?;
    // One parse on the way in; only a body that fails it is parsed again, to tell JSON that
    // is not fal's webhook from text that is not JSON. A body that parses is valid UTF-8, so
    // it is kept as text.
    let not_json = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(
            "invalid_json",
            format!("the callback body is not valid JSON: {e}"),
        )
    };
    let result: FalResult =
        serde_json::from_slice(&raw).map_err(|e| {
            match serde_json::from_slice::<serde::de::IgnoredAny>(&raw) {
                Ok(_) => ApiError::bad_request(
                    "invalid_callback",
                    format!("the callback body is not a fal webhook: {e}"),
                ),
                Err(e) => not_json(&e),
            }
        })?;
    let body = std::str::from_utf8(&raw).map_err(|e| not_json(&e))?;
    let span = tracing::info_span!("fal_callback", generation = %path.as_str(), fal_request_id = %result.request_id, fal_status = %result.status);
    let mut incoming = Incoming {
        generation_id,
        result,
        raw: body.to_owned(),
        source: "webhook",
        received_at,
    };
    // Copied before anything is recorded: a result is announced with its copies or not yet.
    if let Err(e) = incoming.keep_images(state.pipeline.assets.as_deref()).await {
        span.in_scope(
            || tracing::warn!(error = %e, "copying the result's images failed; fal will redeliver"),
        );
        return Err(ApiError::unavailable(
            "image_copy_failed",
            format!(
                "could not copy the result's images ({e}); fal will deliver this callback again"
            ),
        ));
    }
    match state.ingest.apply(incoming).await {
        Ok(applied) => {
            metrics
                .callbacks
                .with_label_values(&["webhook", applied.label()])
                .inc();
            span.in_scope(|| tracing::info!(outcome = applied.label(), "fal callback processed"));
            Ok(HttpResponse::Ok().json(json!({"received": true, "outcome": applied.label()})))
        }
        Err(ApplyError::UnknownGeneration) => {
            metrics
                .callbacks
                .with_label_values(&["webhook", "unknown_generation"])
                .inc();
            Err(ApiError::not_found(format!(
                "no generation {}",
                path.as_str()
            )))
        }
        Err(e @ ApplyError::Contradiction { .. }) => {
            metrics
                .callbacks
                .with_label_values(&["webhook", "contradiction"])
                .inc();
            Err(ApiError::conflict("request_id_mismatch", e.to_string()))
        }
        Err(ApplyError::Unavailable) => Err(ApiError::unavailable(
            "shutting_down",
            "this instance is shutting down; fal will redeliver the callback",
        )),
        Err(ApplyError::Db(e)) => Err(e.into()),
    }
}
