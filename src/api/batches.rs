//! `/v1/batches`: up to 100 generation or edit requests accepted all or nothing, read back as
//! counts by state and total cost (one, or a page of the tenant's newest), and cancelled as a
//! whole (the members not yet sent to fal).
use std::collections::HashMap;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};

use crate::{
    api::{
        auth::Caller,
        body,
        generations::{rate_headers, refused},
        idempotent::{self, Answer},
        paging::{page, page_params},
        state::AppState,
    },
    domain::{
        batch::{member_errors, BatchRequest},
        ids::BatchId,
        states::{BatchStatus, GenerationStatus},
        FieldError,
    },
    error::ApiError,
    storage,
    wire::BatchObject,
};

/// Validate every member → (Idempotency-Key) → the rate windows take the whole batch → every
/// member's reservation and row, and the batch's, in one transaction → `202`.
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.settings).await?;
    idempotent::answer(&req, &bytes, &state, &caller, || {
        create_batch(&bytes, &state, &caller)
    })
    .await
}

async fn create_batch(bytes: &[u8], state: &AppState, caller: &Caller) -> Result<Answer, ApiError> {
    let object = body::parse_json_object(bytes)?;
    let mut batch = BatchRequest::parse(object, state.settings.delivery.allow_http_targets)
        .map_err(ApiError::validation)?;
    let policy = caller.request_policy();
    let mut errors = Vec::new();
    for (i, member) in batch.members.iter_mut().enumerate() {
        if let Err(e) = policy.apply(member) {
            errors.extend(member_errors(i, e));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let accepted = state
        .pipeline
        .accept_batch(&state.pool, caller.tenant_id, batch)
        .await
        .map_err(refused)?;
    let mut headers = accepted.window.map(rate_headers).unwrap_or_default();
    headers.push(("Location", format!("/v1/batches/{}", accepted.batch.id)));
    let body = BatchObject::of(&accepted.batch, &accepted.tally).value();
    Ok(Answer {
        status: StatusCode::ACCEPTED,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        headers,
    })
}

/// The tenant's batches, newest first (`status`, `limit`, `cursor`), each with its tally.
pub async fn list(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(BatchStatus::parse(s).ok_or_else(|| {
            let all = BatchStatus::names().join(", ");
            ApiError::validation(vec![FieldError::new(
                "status",
                format!("must be one of {all}"),
            )])
        })?),
    };
    let (limit, cursor) = page_params::<BatchId>(&query)?;
    let rows =
        storage::batches::list(&state.pool, caller.tenant_id, status, cursor, limit + 1).await?;
    let ids: Vec<BatchId> = rows.iter().map(|b| b.id).collect();
    let tallies = storage::batches::tallies(&state.pool, &ids).await?;
    let none = storage::batches::Tally::default();
    let shown = rows
        .iter()
        .map(|b| {
            let tally = tallies.get(&b.id).unwrap_or(&none);
            (b.id.to_string(), BatchObject::of(b, tally).value())
        })
        .collect();
    Ok(HttpResponse::Ok().json(page(shown, limit)))
}

pub async fn get(
    path: web::Path<BatchId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let batch = find(&state, &caller, *path).await?;
    let tally = storage::batches::tally(&state.pool, batch.id).await?;
    Ok(HttpResponse::Ok().json(BatchObject::of(&batch, &tally)))
}

/// Cancels the members fal has not been sent yet; those already at fal run on (cancel them one
/// by one to ask fal). The batch completes once every member is terminal, as always.
pub async fn cancel(
    path: web::Path<BatchId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let batch = find(&state, &caller, *path).await?;
    storage::batches::mark_cancel_requested(&state.pool, batch.id).await?;
    let members =
        storage::batches::members_in(&state.pool, batch.id, GenerationStatus::Accepted).await?;
    let mut cancelled = 0;
    for id in members {
        // One that reached fal or finished meanwhile is left as it is.
        if state
            .pipeline
            .cancel(&state.pool, caller.tenant_id, id)
            .await
            .is_ok()
        {
            cancelled += 1;
        }
    }
    let batch = find(&state, &caller, batch.id).await?;
    let tally = storage::batches::tally(&state.pool, batch.id).await?;
    let mut body = BatchObject::of(&batch, &tally).value();
    body["cancelled_now"] = serde_json::json!(cancelled);
    Ok(HttpResponse::Ok().json(body))
}

async fn find(
    state: &AppState,
    caller: &Caller,
    id: BatchId,
) -> Result<storage::batches::Batch, ApiError> {
    storage::batches::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no batch {id}")))
}
