//! `/v1/generations`, `/v1/edits`, `/v1/estimates`: validate exactly, price, store as the
//! outbox row and answer `202` at once; read, list and cancel.
use crate::domain::event_type::EventType;
use crate::domain::ids::GenerationId;
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::domain::states::GenerationStatus;
use crate::{
    api::state::AppState,
    api::{auth::Caller, body},
    domain::generation::{Endpoint, GenerationRequest},
    error::ApiError, domain::FieldError,
    fal::client::CancelOutcome,
    governance::{
        budgets, cache,
        idempotency::{self, Claim},
        money::format_usd,
        rate_limit,
    },
    pipeline::SUBMIT_CHANNEL,
    storage::{
        self,
        generations::{usd, Bookkeeping, Finish},
    },
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

/// A finished answer, kept as bytes so an Idempotency-Key can replay it exactly.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
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
    let raw_key = req.headers().get(idempotency::HEADER).map(|v| v.as_bytes());
    let Some(key) = idempotency::parse_key(raw_key).map_err(invalid_key)? else {
        return Ok(create_generation(&bytes, &state, &caller, endpoint)
            .await?
            .into_response(false));
    };
    let hash = idempotency::fingerprint(req.method().as_str(), req.path(), &bytes);
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
    let answer = match create_generation(&bytes, &state, &caller, endpoint).await {
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

async fn create_generation(
    bytes: &[u8],
    state: &AppState,
    caller: &Caller,
    endpoint: Endpoint,
) -> Result<Answer, ApiError> {
    let object = body::parse_json_object(bytes)?;
    let request = GenerationRequest::parse(object, endpoint, state.settings.allow_http_targets)
        .map_err(ApiError::validation)?;
    // Inline images become files only with a store; without one, subscribers would be sent
    // every image's bytes in every event.
    if request.input.sync_mode && state.pipeline.assets.is_none() {
        return Err(ApiError::validation(vec![crate::domain::FieldError::new(
            "sync_mode",
            "returns images inline, and this server keeps no image store (FLUXGATE_STORAGE) to turn them into URLs; leave sync_mode out, or configure a store",
        )]));
    }
    if let Some(url) = &request.webhook_url {
        super::subscriptions::vet_addresses(state, url)
            .await
            .map_err(|msg| {
                ApiError::validation(vec![crate::domain::FieldError::new("webhook_url", msg)])
            })?;
    }
    let seed = match request.seed_from {
        Some(source) => Some(seed_from(state, caller, source).await?),
        None => request.input.seed.map(|s| s as i64),
    };
    let end_user = request.end_user.as_deref();
    let limits = budgets::limits_for(&state.pool, caller.tenant_id, end_user).await?;
    let window = match rate_limit::admit(&state.pool, caller.tenant_id, end_user, &limits).await? {
        Ok(window) => window,
        Err(limited) => return Err(rate_limited(limited)),
    };
    let mut headers = window.map(rate_headers).unwrap_or_default();
    let input = storage::generations::stored_input(&request, seed);
    let cache_key = if request.cache {
        cache::key(request.model.id, &input)
    } else {
        None
    };
    let mut tx = state.pool.begin().await?;
    if let Some(key) = cache_key.as_deref() {
        if let Some(source) = storage::generations::cached_source(
            &mut *tx,
            caller.tenant_id,
            key,
            state.settings.cache_ttl.as_secs_f64(),
        )
        .await?
        {
            let hit = storage::generations::insert_cached(
                &mut *tx,
                caller.tenant_id,
                &request,
                &input,
                &source,
            )
            .await?;
            storage::events::append(
                &mut tx,
                hit.tenant_id,
                EventType::GenerationCompleted,
                Some(hit.id),
                hit.to_json(),
            )
            .await?;
            tx.commit().await?;
            state.pipeline.metrics.cache_hits.inc();
            tracing::info!(generation = %hit.public_id(), source = %source.public_id(), "answered from the seed cache");
            headers.push(("Location", format!("/v1/generations/{}", hit.public_id())));
            return Ok(Answer {
                status: StatusCode::OK,
                body: serde_json::to_vec(&hit.to_json()).unwrap_or_default(),
                headers,
            });
        }
    }
    let estimate = request.estimated_cost_micros();
    let budget_day =
        match budgets::reserve(&mut tx, caller.tenant_id, end_user, &limits, estimate).await? {
            Ok(day) => day,
            Err(exhausted) => return Err(budget_exhausted(exhausted)),
        };
    let book = Bookkeeping {
        cache_key: cache_key.as_deref(),
        budget_day,
        reserved_micros: if budget_day.is_some() { estimate } else { 0 },
    };
    let generation =
        storage::generations::insert(&mut *tx, caller.tenant_id, &request, &input, seed, book)
            .await?;
    storage::events::notify(&mut *tx, SUBMIT_CHANNEL, "").await?;
    tx.commit().await?;
    // Wake this instance's worker without waiting for the NOTIFY round trip.
    state.pipeline.submit_wake.notify_one();
    tracing::info!(generation = %generation.public_id(), model = %generation.model, cost_micros = generation.estimated_cost_micros, "generation accepted");
    headers.push((
        "Location",
        format!("/v1/generations/{}", generation.public_id()),
    ));
    Ok(Answer {
        status: StatusCode::ACCEPTED,
        body: serde_json::to_vec(&generation.to_json()).unwrap_or_default(),
        headers,
    })
}

fn rate_headers(w: rate_limit::Window) -> Vec<(&'static str, String)> {
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

/// The seed of an earlier generation of this tenant: variations in a consistent style.
async fn seed_from(
    state: &AppState,
    caller: &Caller,
    source: GenerationId,
) -> Result<i64, ApiError> {
    match storage::generations::seed_of(&state.pool, caller.tenant_id, source).await? {
        None => Err(ApiError::not_found(format!("seed_from: no generation {source}"))),
        Some((_, Some(seed))) => Ok(seed),
        Some((status, None)) => Err(ApiError::conflict(
            "seed_unavailable",
            format!("seed_from: generation {source} has no seed yet (it is {status}); retry once it has completed"),
        )),
    }
}

/// `POST /v1/estimates`: the price of a body, nothing stored or sent.
pub async fn estimate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    _caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, &state.settings).await?;
    let mut object = body::parse_json_object(&bytes)?;
    // Estimates accept both kinds of body: `image_urls` implies an edit.
    let endpoint = if object.contains_key("image_urls") {
        Endpoint::Edit
    } else {
        Endpoint::TextToImage
    };
    object.remove("seed_from");
    let request = GenerationRequest::parse(object, endpoint, true).map_err(ApiError::validation)?;
    let micros = request.estimated_cost_micros();
    Ok(HttpResponse::Ok().json(json!({
        "object": "estimate",
        "model": request.model.id,
        "input": request.input,
        "megapixels": request.input.megapixels_billed(),
        "price_per_megapixel_usd": usd(request.model.price_per_mp_micro_usd as i64),
        "estimated_cost_usd": usd(micros),
        "estimated_cost_micros": micros,
        "note": if endpoint == Endpoint::Edit { Some("fal may bill large input images at up to 4 MP each") } else { None },
    })))
}

pub async fn get(
    path: web::Path<GenerationId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let g = find(&state, &caller, *path).await?;
    Ok(HttpResponse::Ok().json(g.to_json()))
}

async fn find(
    state: &AppState,
    caller: &Caller,
    id: GenerationId,
) -> Result<storage::generations::Generation, ApiError> {
    storage::generations::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no generation {id}")))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    end_user: Option<String>,
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
    let limit = match query.limit.as_deref() {
        None | Some("") => 20,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    "must be a whole number from 1 to 100",
                ));
                20
            }
        },
    };
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<GenerationId>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new(
                    "cursor",
                    "must be the next_cursor of a previous page",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let rows = storage::generations::list(
        &state.pool,
        caller.tenant_id,
        status,
        query.end_user.as_deref(),
        cursor,
        limit + 1,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.iter().take(limit as usize).collect();
    let next = if has_more {
        page.last().map(|g| g.public_id())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": page.iter().map(|g| g.to_json()).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next,
    })))
}

/// Cancels at fal when submitted (PUT cancel_url), locally when not yet submitted. The answer
/// says which happened; no transaction is held across the call to fal.
pub async fn cancel(
    path: web::Path<GenerationId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let g = find(&state, &caller, *path).await?;
    if g.is_terminal() {
        return Err(ApiError::conflict(
            "not_cancellable",
            format!("generation {} is already {}", g.public_id(), g.status),
        ));
    }
    storage::generations::mark_cancel_requested(&state.pool, g.id).await?;
    let outcome = match (g.status, g.cancel_url.as_deref()) {
        (GenerationStatus::Queued, Some(url)) => match state.pipeline.fal.cancel(url).await {
            Ok(CancelOutcome::Requested) => "cancelled_at_fal",
            Ok(CancelOutcome::NotFound) => "not_found_at_fal",
            Ok(CancelOutcome::AlreadyCompleted) => {
                return Err(ApiError::conflict(
                    "already_completed",
                    "fal had already finished this request, so it was not cancelled; its result is on its way",
                )
                .with_extra("generation", g.to_json()));
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "Bad Gateway",
                    format!("could not reach fal to cancel: {e}"),
                ));
            }
        },
        _ => "cancelled_locally",
    };
    // fal may already be running it, and a running request can still complete and be billed:
    // its reservation is held, and its cost left open, until fal's final word.
    let held = outcome == "cancelled_at_fal";
    let error = json!({
        "code": "cancelled", "message": "cancelled by the caller", "cancellation": outcome,
        "charge": if held { "pending until fal reports whether the request ran" } else { "none" },
    });
    let finish = if held {
        Finish {
            error: Some(&error),
            hold_reservation: true,
            ..Finish::to(GenerationStatus::Cancelled)
        }
    } else {
        Finish::unsuccessful(GenerationStatus::Cancelled, &error)
    };
    let mut tx = state.pool.begin().await?;
    let row = match storage::generations::finish(&mut tx, g.id, finish).await? {
        Some(row) => {
            storage::events::append(
                &mut tx,
                row.tenant_id,
                EventType::GenerationCancelled,
                Some(row.id),
                row.to_json(),
            )
            .await?;
            row
        }
        // It finished while we were asking fal: report the state it reached.
        None => {
            let now = storage::generations::get(&mut *tx, caller.tenant_id, g.id)
                .await?
                .ok_or_else(|| ApiError::not_found("gone"))?;
            return Err(ApiError::conflict(
                "not_cancellable",
                format!("generation {} is already {}", now.public_id(), now.status),
            )
            .with_extra("generation", now.to_json()));
        }
    };
    tx.commit().await?;
    let mut body = row.to_json();
    body["cancellation"] = json!(outcome);
    Ok(HttpResponse::Ok().json(body))
}
