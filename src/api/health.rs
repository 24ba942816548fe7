//! Liveness, readiness and metrics: unauthenticated, for load balancers and Prometheus.
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{api::state::AppState, error::ApiError, metrics::Metrics, storage};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the database answers and every migration this binary knows is applied.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match storage::migrations_applied(&state.pool).await {
        Ok(true) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Ok(false) => Err(ApiError::unavailable(
            "not_migrated",
            "the database schema is behind this binary: run `fluxgate migrate`",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::unavailable(
                "database_unavailable",
                "the database is not reachable",
            ))
        }
    }
}

pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// fluxgate's own Ed25519 public keys, for receivers that verify `v1a` signatures.
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(
            state
                .settings
                .delivery
                .keys
                .as_ref()
                .map_or_else(|| json!({"keys": []}), |k| k.jwks()),
        )
}
