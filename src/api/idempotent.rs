//! The `Idempotency-Key` door every creating POST goes through (`/v1/generations`,
//! `/v1/edits`, `/v1/batches`): the first request with a key is answered and its answer kept;
//! the same request with the same key is answered with those exact bytes
//! (`Idempotent-Replayed: true`); another body with the key is refused, and one still being
//! answered is a 409.
use std::future::Future;

use actix_web::{http::StatusCode, HttpRequest, HttpResponse};

use crate::{
    api::{auth::Caller, state::AppState},
    error::ApiError,
    governance::idempotency::{self, Claim},
};

/// A finished answer, kept as bytes so an Idempotency-Key can replay it exactly.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn into_response(self, replayed: bool) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        let json = self.status.is_success();
        res.content_type(if json {
            "application/json"
        } else {
            crate::error::PROBLEM_JSON
        });
        for (name, value) in &self.headers {
            res.insert_header((*name, value.as_str()));
        }
        if replayed {
            res.insert_header(("Idempotent-Replayed", "true"));
        }
        res.body(self.body)
    }
}

/// Answers `req` (whose body is `bytes`) with `create`, under its Idempotency-Key if it has one.
pub async fn answer<F, Fut>(
    req: &HttpRequest,
    bytes: &[u8],
    state: &AppState,
    caller: &Caller,
    create: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    let raw_key = req.headers().get(idempotency::HEADER).map(|v| v.as_bytes());
    let Some(key) = idempotency::parse_key(raw_key).map_err(invalid_key)? else {
        return Ok(create().await?.into_response(false));
    };
    let hash = idempotency::fingerprint(req.method().as_str(), req.path(), bytes);
    match idempotency::claim(&state.pool, caller.tenant_id, &key, &hash).await? {
        Claim::Fresh => {}
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return Ok(Answer {
                status,
                body,
                headers: Vec::new(),
            }
            .into_response(true));
        }
        Claim::Reused => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency Key Reused",
                "this Idempotency-Key was already used with a different request; use a new key for a new request",
            ))
        }
        Claim::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            ))
        }
    }
    let answer = match create().await {
        Ok(answer) => answer,
        // A refused body is the answer to this key; limits, conflicts and our own failures are
        // not: the same request may succeed when retried.
        Err(e) if matches!(e.status.as_u16(), 400 | 413 | 422) => Answer {
            status: e.status,
            body: e.body_bytes(),
            headers: e.headers.clone(),
        },
        Err(e) => {
            idempotency::abandon(&state.pool, caller.tenant_id, &key).await?;
            return Err(e);
        }
    };
    idempotency::complete(
        &state.pool,
        caller.tenant_id,
        &key,
        answer.status.as_u16(),
        &answer.body,
    )
    .await?;
    Ok(answer.into_response(false))
}

fn invalid_key(why: idempotency::InvalidKey) -> ApiError {
    ApiError::bad_request(
        "invalid_idempotency_key",
        format!("Idempotency-Key {}", why.0),
    )
    .with_extra("field", serde_json::json!("Idempotency-Key"))
}
