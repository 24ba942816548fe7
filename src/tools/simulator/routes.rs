//! The route table and the submit endpoint (`POST /{owner}/{app}[/{subpath}]`), plus the JWKS
//! and the `/_sim` admin routes. Per-request routes live in [`super::requests`].
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use uuid::Uuid;

use super::faults::{unauthorized, FaultRates, Rejection};
use super::queue::JobSpec;
use super::{requests, runner, SimState};
use crate::fal::models::{validate, FieldError, Model};

pub(crate) fn configure(cfg: &mut web::ServiceConfig, jwks_path: &str) {
    let request = "/{owner}/{app}/requests/{id}";
    cfg.route(jwks_path, web::get().to(jwks))
        .route("/_sim/faults", web::get().to(get_faults))
        .route("/_sim/faults", web::put().to(put_faults))
        .route("/_sim/stats", web::get().to(get_stats))
        .route("/_sim/rotate-key", web::post().to(rotate_key))
        .route("/files/{id}/{name}", web::get().to(requests::file))
        .route(
            &format!("{request}/status"),
            web::get().to(requests::status),
        )
        .route(
            &format!("{request}/status/stream"),
            web::get().to(requests::stream),
        )
        .route(
            &format!("{request}/cancel"),
            web::put().to(requests::cancel),
        )
        .route(request, web::get().to(requests::response))
        .route(
            &format!("{request}/response"),
            web::get().to(requests::response),
        )
        .route("/{model:.*}", web::post().to(submit))
        .default_service(web::to(|| async {
            HttpResponse::NotFound().json(json!({"detail": "Not Found"}))
        }));
}

/// `Authorization: Key …`: the configured key exactly, or any non-empty key when none is set.
pub(crate) fn authorized(state: &SimState, req: &HttpRequest) -> bool {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let Some(given) = header.and_then(|h| h.strip_prefix("Key ")) else {
        return false;
    };
    match &state.config.api_key {
        Some(expected) => {
            use subtle::ConstantTimeEq;
            bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
        }
        None => !given.trim().is_empty(),
    }
}

async fn submit(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let state = state.into_inner();
    if !authorized(&state, &req) {
        return reject(&state, unauthorized());
    }
    let model_id = req.match_info().query("model").trim_end_matches('/');
    let Some(model) = Model::lookup(model_id) else {
        let detail = format!("Application '{model_id}' not found");
        return reject(
            &state,
            HttpResponse::NotFound().json(json!({ "detail": detail })),
        );
    };
    let query = Query::parse(req.query_string());
    let json: Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(error) => {
            let detail = json!([{"loc": ["body"], "msg": format!("JSON decode error: {error}"), "type": "json_invalid"}]);
            return reject(
                &state,
                HttpResponse::UnprocessableEntity().json(json!({ "detail": detail })),
            );
        }
    };
    let prompt = json
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let decision = state.faults.decide(prompt);
    match decision.reject {
        Some(Rejection::ContentPolicy) | None => {}
        Some(rejection) => return reject(&state, rejection.response()),
    }
    if query
        .max_queue_length
        .is_some_and(|max| state.store.queued() >= max)
    {
        return reject(&state, Rejection::RateLimited.response());
    }
    if let Some(Err(msg)) = query.webhook.as_deref().map(check_webhook_url) {
        let detail = json!([{"loc": ["query", "fal_webhook"], "msg": msg, "type": "url_parsing"}]);
        return reject(
            &state,
            HttpResponse::UnprocessableEntity().json(json!({ "detail": detail })),
        );
    }
    let input = match validate(model, &json) {
        Ok(input) => input,
        Err(errors) => return reject(&state, validation_failed(&errors)),
    };
    if decision.reject == Some(Rejection::ContentPolicy) {
        return reject(&state, Rejection::ContentPolicy.response());
    }

    // fal draws seeds around 10^17: large, positive, and beyond what a float holds exactly.
    let seed = input
        .seed
        .unwrap_or_else(|| rand::thread_rng().gen_range(10u64.pow(17)..10u64.pow(18)));
    let low = req
        .headers()
        .get("x-fal-queue-priority")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"low"));
    let no_fallbacks = req
        .headers()
        .get("x-fal-disable-fallbacks")
        .is_some_and(|v| matches!(v.as_bytes(), b"1" | b"true" | b"yes"));
    let served_by = decision
        .job
        .fallback
        .filter(|other| !no_fallbacks && other.id != model.id);
    let spec = Arc::new(JobSpec {
        id: Uuid::new_v4(),
        model,
        input,
        seed,
        webhook: query.webhook,
        faults: decision.job,
        seq: state.store.next_seq(),
        start_timeout: req
            .headers()
            .get("x-fal-request-timeout")
            .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64),
        low,
        served_by,
    });
    state.stats.submissions.fetch_add(1, Ordering::Relaxed);
    if low {
        state.stats.low_priority.fetch_add(1, Ordering::Relaxed);
    }
    if served_by.is_some() {
        state.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
    if no_fallbacks {
        state
            .stats
            .fallbacks_disabled
            .fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(request_id = %spec.id, model = model.id, webhook = spec.webhook.is_some(), "fal simulator: accepted");
    let queue_position = if spec.faults.early_webhook {
        runner::complete_early(&state, spec.clone()).await;
        0
    } else {
        runner::enqueue(&state, spec.clone());
        state.store.queue_position(&spec)
    };
    if let Some(delay) = spec.faults.answer_delay {
        state.sleep(delay).await;
    }
    let urls = requests::Urls::new(&state.base_url, &spec);
    let id = spec.id.to_string();
    HttpResponse::Ok()
        .insert_header(("x-fal-request-id", id.as_str()))
        .json(json!({
            "request_id": id,
            "gateway_request_id": id,
            "response_url": urls.response,
            "status_url": urls.status,
            "cancel_url": urls.cancel,
            "queue_position": queue_position,
        }))
}

fn reject(state: &SimState, response: HttpResponse) -> HttpResponse {
    state.stats.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        status = response.status().as_u16(),
        "fal simulator: submission rejected"
    );
    response
}

/// fal's (FastAPI's) 422 shape; list indices in `loc` become numbers, as pydantic writes them.
fn validation_failed(errors: &[FieldError]) -> HttpResponse {
    let detail: Vec<Value> = errors
        .iter()
        .map(|e| {
            let loc: Vec<Value> = e
                .loc
                .iter()
                .map(|part| {
                    part.parse::<u64>()
                        .map_or_else(|_| json!(part), |i| json!(i))
                })
                .collect();
            json!({"loc": loc, "msg": e.msg, "type": e.kind})
        })
        .collect();
    HttpResponse::UnprocessableEntity().json(json!({ "detail": detail }))
}

fn check_webhook_url(url: &str) -> Result<(), &'static str> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err("fal_webhook must be an absolute http(s) URL"),
    }
}

/// The submit call's query parameters.
struct Query {
    webhook: Option<String>,
    max_queue_length: Option<u64>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut parsed = Query {
            webhook: None,
            max_queue_length: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "fal_webhook" => parsed.webhook = Some(value.into_owned()),
                "fal_max_queue_length" => parsed.max_queue_length = value.parse().ok(),
                _ => {}
            }
        }
        parsed
    }
}

async fn jwks(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.keys.jwks())
}

async fn rotate_key(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "kid": state.keys.rotate() }))
}

async fn get_faults(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.faults.rates())
}

async fn put_faults(state: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let rates: FaultRates = match serde_json::from_slice(&body) {
        Ok(rates) => rates,
        Err(error) => return HttpResponse::BadRequest().json(json!({"detail": error.to_string()})),
    };
    match state.faults.set(rates.clone()) {
        Ok(()) => HttpResponse::Ok().json(rates),
        Err(error) => {
            HttpResponse::UnprocessableEntity().json(json!({"detail": error.to_string()}))
        }
    }
}

async fn get_stats(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats.snapshot())
}
