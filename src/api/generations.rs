//! `/v1/generations`, `/v1/edits`, `/v1/estimates`: validate exactly, price, store as the
//! outbox row and answer `202` at once; read, list and cancel.
use crate::domain::ids::{BatchId, GenerationId};
use crate::wire::GenerationObject;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::domain::states::GenerationStatus;
use crate::{
    api::state::AppState,
    api::{
        auth::Caller,
        body,
        idempotent::{self, Answer},
        paging,
    },
    domain::generation::{parse_end_user, Endpoint, GenerationRequest},
    domain::money::format_usd,
    domain::FieldError,
    error::ApiError,
    governance::{budgets, rate_limit},
    pipeline::{
        accept::{self, Refusal},
        cancel::CancelError,
    },
    storage::{self},
};

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    submit(req, payload, state, caller, Endpoint::TextToImage).await
}

pub async fn create_edit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    submit(req, payload, state, caller, Endpoint::Edit).await
}

/// Validate → (Idempotency-Key) → rate limits → seed cache → budget reservation + the outbox row
/// in one transaction → `202`. Nothing is stored or sent before validation passes.
async fn submit(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
    endpoint: Endpoint,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.settings).await?;
    idempotent::answer(&req, &bytes, &state, &caller, || {
        create_generation(&bytes, &state, &caller, endpoint)
    })
    .await
}

async fn create_generation(
    bytes: &[u8],
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint,
) -> Result<Answer, ApiError> {
    let object = body::parse_json_object(bytes)?;
    let mut request =
        GenerationRequest::parse(object, endpoint, state.settings.delivery.allow_http_targets)
            .map_err(ApiError::validation)?;
    caller
        .request_policy()
        .apply(&mut request)
        .map_err(ApiError::validation)?;
    let accepted = state
        .pipeline
        .accept(&state.pool, caller.tenant_id, request)
        .await
        .map_err(refused)?;
    let mut headers = accepted.window.map(rate_headers).unwrap_or_default();
    let g = accepted.generation;
    headers.push(("Location", format!("/v1/generations/{}", g.public_id())));
    Ok(Answer {
        // A cached answer is complete at once: 200, not 202.
        status: if accepted.from_cache {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        body: serde_json::to_vec(&shown(state, &g)).unwrap_or_default(),
        headers,
    })
}

pub(super) fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Invalid(errors) => ApiError::validation(errors),
        Refusal::NoSeedSource(_) => ApiError::not_found(refusal.to_string()),
        Refusal::SeedUnavailable { .. } => ApiError::conflict(
            "seed_unavailable",
            format!("{refusal}; retry once it has completed"),
        ),
        Refusal::RateLimited(limited) => rate_limited(limited),
        Refusal::BudgetExhausted(exhausted) => budget_exhausted(exhausted),
        Refusal::BatchOverBudget {
            exhausted,
            lacks_micros,
        } => {
            let detail = format!(
                "the batch needs ${} more than {} daily budget of ${} has left today (${} spent or reserved); nothing was accepted",
                format_usd(lacks_micros),
                if exhausted.scope == "end_user" { "an end user's" } else { "this tenant's" },
                format_usd(exhausted.cap_micros),
                format_usd(exhausted.used_micros),
            );
            let mut e = budget_exhausted(exhausted)
                .with_extra("lacks_micros", json!(lacks_micros))
                .with_extra("lacks_usd", crate::domain::money::usd(lacks_micros));
            e.detail = detail;
            e
        }
        Refusal::Storage(e) => e.into(),
    }
}

pub(super) fn rate_headers(w: rate_limit::Window) -> Vec<(&'static str, String)> {
    vec![
        ("RateLimit-Limit", w.limit.to_string()),
        ("RateLimit-Remaining", w.remaining.to_string()),
        ("RateLimit-Reset", w.reset_secs.to_string()),
    ]
}

fn rate_limited(l: rate_limit::Limited) -> ApiError {
    let (code, who) = match l.scope {
        "end_user" => ("end_user_rate_limited", "this end user"),
        _ => ("tenant_rate_limited", "this tenant"),
    };
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        "Too Many Requests",
        format!(
            "{who} may make {} generation requests per minute; retry in {} s",
            l.window.limit, l.window.reset_secs
        ),
    )
    .with_header("Retry-After", l.window.reset_secs)
    .with_extra("limit_scope", json!(l.scope));
    for (name, value) in rate_headers(l.window) {
        e = e.with_header(name, value);
    }
    e
}

fn budget_exhausted(x: budgets::Exhausted) -> ApiError {
    let who = if x.scope == "end_user" {
        "this end user's"
    } else {
        "this tenant's"
    };
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "budget_exhausted",
        "Budget Exhausted",
        format!(
            "{who} daily budget of ${} is used up (${} spent or reserved today); it resets at {}",
            format_usd(x.cap_micros),
            format_usd(x.used_micros),
            x.resets_at.to_rfc3339()
        ),
    )
    .with_extra("budget_scope", json!(x.scope))
    .with_extra("resets_at", json!(x.resets_at))
    .with_header(
        "Retry-After",
        (x.resets_at - chrono::Utc::now()).num_seconds().max(1),
    )
}

/// `POST /v1/estimates`: the price of a body, nothing stored or sent.
pub async fn estimate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.settings).await?;
    let object = body::parse_json_object(&bytes)?;
    let estimate = accept::estimate(object).map_err(ApiError::validation)?;
    Ok(HttpResponse::Ok().json(estimate))
}

pub async fn get(
    path: web::Path<GenerationId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let g = find(&state, &caller, *path).await?;
    Ok(HttpResponse::Ok().json(shown(&state, &g)))
}

/// A generation as answered: links to private image copies are minted afresh, valid from now.
fn shown<'a>(
    state: &AppState,
    g: &'a crate::storage::generations::Generation,
) -> GenerationObject<'a> {
    let object = GenerationObject::of(g);
    match state.pipeline.assets.as_deref() {
        Some(assets) if assets.links().is_private() => {
            let now = chrono::Utc::now().timestamp();
            object.relinked(|url| assets.links().refresh(url, now))
        }
        _ => object,
    }
}

async fn find(
    state: &AppState,
    caller: &Caller,
    id: GenerationId,
) -> Result<storage::generations::Generation, ApiError> {
    storage::generations::get(&state.pool, caller.tenant_id, id)
        .await?
        .filter(|g| caller.may_see(g))
        .ok_or_else(|| ApiError::not_found(format!("no generation {id}")))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    model: Option<String>,
    end_user: Option<String>,
    batch_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => GenerationStatus::parse(s).or_else(|| {
            let all = GenerationStatus::names().join(", ");
            errors.push(FieldError::new("status", format!("must be one of {all}")));
            None
        }),
    };
    let limit = paging::limit_of(query.limit.as_deref(), &mut errors);
    let cursor = paging::cursor_of::<GenerationId>(query.cursor.as_deref(), &mut errors);
    let end_user = match query.end_user.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => parse_end_user(u)
            .map_err(|msg| errors.push(FieldError::new("end_user", msg)))
            .ok(),
    };
    // A browser token lists its own end user's generations, and only those.
    let end_user = match (caller.end_user(), end_user) {
        (Some(own), Some(asked)) if asked != own => {
            errors.push(FieldError::new(
                "end_user",
                "a browser token lists only its own end user's generations; leave end_user out",
            ));
            None
        }
        (Some(own), _) => Some(own.to_owned()),
        (None, asked) => asked,
    };
    let model = match query.model.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => crate::fal::models::MODELS
            .iter()
            .find(|known| known.id == m)
            .map(|known| known.id)
            .or_else(|| {
                let all: Vec<_> = crate::fal::models::MODELS.iter().map(|k| k.id).collect();
                errors.push(FieldError::new(
                    "model",
                    format!("must be one of {}", all.join(", ")),
                ));
                None
            }),
    };
    let batch = match query.batch_id.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => b.parse::<BatchId>().ok().or_else(|| {
            errors.push(FieldError::new("batch_id", "must be a batch id (bat_…)"));
            None
        }),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let rows = storage::generations::list(
        &state.pool,
        caller.tenant_id,
        storage::generations::ListFilter {
            status,
            model,
            end_user: end_user.as_deref(),
            batch,
        },
        cursor,
        limit + 1,
    )
    .await?;
    let rows = rows
        .iter()
        .map(|g| (g.public_id(), shown(&state, g).value()))
        .collect();
    Ok(HttpResponse::Ok().json(paging::page(rows, limit)))
}

/// Cancels at fal when submitted, locally when not; the answer says which (`cancellation`).
pub async fn cancel(
    path: web::Path<GenerationId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    match state
        .pipeline
        .cancel(&state.pool, caller.tenant_id, *path)
        .await
    {
        Ok((row, how)) => {
            let mut body = GenerationObject::of(&row).value();
            body["cancellation"] = json!(how.as_str());
            Ok(HttpResponse::Ok().json(body))
        }
        Err(e) => Err(cancel_refused(e)),
    }
}

fn cancel_refused(e: CancelError) -> ApiError {
    let detail = e.to_string();
    match e {
        CancelError::NotFound(_) => ApiError::not_found(detail),
        CancelError::Finished(_) => ApiError::conflict("not_cancellable", detail),
        CancelError::FinishedMeanwhile(g) => ApiError::conflict("not_cancellable", detail)
            .with_extra("generation", GenerationObject::of(&g).value()),
        CancelError::CompletedAtFal(g) => ApiError::conflict("already_completed", detail)
            .with_extra("generation", GenerationObject::of(&g).value()),
        CancelError::FalUnreachable(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "Bad Gateway",
            detail,
        ),
        CancelError::Storage(e) => e.into(),
    }
}
