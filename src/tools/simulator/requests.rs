//! Per-request routes, at the URLs the submit answer hands out: status (+ SSE stream), response, cancel, and the output
//! files. The URLs keep only the model's `owner/app`, exactly as fal's do.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::faults::unauthorized;
use super::output::{self, response_of};
use super::queue::{CancelOutcome, JobSpec, Outcome, Phase, PhaseKind};
use super::routes::authorized;
use super::{images, SimState};

/// The three URLs fal hands out for a request.
pub(crate) struct Urls {
    pub response: String,
    pub status: String,
    pub cancel: String,
}

impl Urls {
    pub fn new(base_url: &str, spec: &JobSpec) -> Self {
        let response = format!("{base_url}/{}/requests/{}", spec.model.queue_app(), spec.id);
        Urls {
            status: format!("{response}/status"),
            cancel: format!("{response}/cancel"),
            response,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct RequestPath {
    owner: String,
    app: String,
    id: String,
}

#[derive(Deserialize)]
pub(crate) struct StatusQuery {
    #[serde(default)]
    logs: Option<String>,
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"status": "NOT_FOUND"}))
}

/// Why a request route can't proceed.
enum Refusal {
    Unauthorized,
    NotFound,
}

impl From<Refusal> for HttpResponse {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthorized => unauthorized(),
            Refusal::NotFound => not_found(),
        }
    }
}

/// Authenticates and finds the request.
fn lookup(
    state: &SimState,
    req: &HttpRequest,
    path: &RequestPath,
) -> Result<(Uuid, Arc<JobSpec>, Phase), Refusal> {
    if !authorized(state, req) {
        return Err(Refusal::Unauthorized);
    }
    let id = Uuid::parse_str(&path.id).map_err(|_| Refusal::NotFound)?;
    let (spec, phase) = state.store.get(&id).ok_or(Refusal::NotFound)?;
    // A request is only reachable under its own model's `owner/app`.
    if spec.model.queue_app() != format!("{}/{}", path.owner, path.app) {
        return Err(Refusal::NotFound);
    }
    Ok((id, spec, phase))
}

/// The status object and its HTTP status: 202 until completed, then 200.
fn status_body(state: &SimState, spec: &JobSpec, phase: &Phase, logs: bool) -> (StatusCode, Value) {
    let urls = Urls::new(&state.base_url, spec);
    let mut body = json!({
        "request_id": spec.id.to_string(),
        "response_url": urls.response,
        "status_url": urls.status,
        "cancel_url": urls.cancel,
        "logs": if logs { json!([]) } else { Value::Null },
        "metrics": {},
    });
    let code = match phase {
        Phase::Queued => {
            body["status"] = json!("IN_QUEUE");
            body["queue_position"] = json!(state.store.queue_position(spec));
            StatusCode::ACCEPTED
        }
        Phase::Running => {
            body["status"] = json!("IN_PROGRESS");
            StatusCode::ACCEPTED
        }
        Phase::Completed(outcome) => {
            body["status"] = json!("COMPLETED");
            match &**outcome {
                Outcome::Success { inference_time, .. } => {
                    body["metrics"] = json!({"inference_time": inference_time});
                }
                Outcome::Failure {
                    error,
                    error_type,
                    inference_time,
                    ..
                } => {
                    body["metrics"] = json!({"inference_time": inference_time});
                    body["error"] = json!(error);
                    body["error_type"] = json!(error_type);
                }
            }
            StatusCode::OK
        }
    };
    (code, body)
}

fn wants_logs(query: &StatusQuery) -> bool {
    matches!(query.logs.as_deref(), Some("1" | "true"))
}

pub(crate) async fn status(
    req: HttpRequest,
    path: web::Path<RequestPath>,
    query: web::Query<StatusQuery>,
    state: web::Data<SimState>,
) -> HttpResponse {
    match lookup(&state, &req, &path) {
        Ok((_, spec, phase)) => {
            let (code, body) = status_body(&state, &spec, &phase, wants_logs(&query));
            HttpResponse::build(code).json(body)
        }
        Err(refusal) => refusal.into(),
    }
}

/// `text/event-stream` of status objects; `: ping` every 10 s; ends after `COMPLETED`.
pub(crate) async fn stream(
    req: HttpRequest,
    path: web::Path<RequestPath>,
    query: web::Query<StatusQuery>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (id, _, _) = match lookup(&state, &req, &path) {
        Ok(found) => found,
        Err(refusal) => return refusal.into(),
    };
    let Some(watch) = state.store.subscribe(&id) else {
        return not_found();
    };
    let logs = wants_logs(&query);
    let state = state.into_inner();
    // (watch, first event still to send, finished)
    let events = stream::unfold((watch, true, false), move |(mut watch, first, done)| {
        let state = state.clone();
        async move {
            if done {
                return None;
            }
            if !first {
                match tokio::time::timeout(Duration::from_secs(10), watch.changed()).await {
                    Err(_) => {
                        return Some((Ok(Bytes::from_static(b": ping\n\n")), (watch, false, false)))
                    }
                    Ok(Err(_)) => return None, // cancelled while queued, or evicted
                    Ok(Ok(())) => {}
                }
            }
            let completed = *watch.borrow_and_update() == PhaseKind::Completed;
            let (spec, phase) = state.store.get(&id)?;
            let (_, body) = status_body(&state, &spec, &phase, logs);
            let event = Bytes::from(format!("data: {body}\n\n"));
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (watch, false, completed),
            ))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(events)
}

pub(crate) async fn response(
    req: HttpRequest,
    path: web::Path<RequestPath>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (_, spec, phase) = match lookup(&state, &req, &path) {
        Ok(found) => found,
        Err(refusal) => return refusal.into(),
    };
    let Phase::Completed(outcome) = phase else {
        return HttpResponse::BadRequest().json(json!({"detail": "Request is still in progress"}));
    };
    if spec.input.sync_mode && matches!(*outcome, Outcome::Success { .. }) {
        // fal keeps no sync_mode output in its request history: the result lived only in the
        // webhook. (What fal's endpoint answers then is not documented; a 404 is our guess.)
        return HttpResponse::NotFound()
            .json(json!({"detail": "The output of a sync_mode request is not stored"}));
    }
    let (code, body) = response_of(&outcome);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code).json(body)
}

pub(crate) async fn cancel(
    req: HttpRequest,
    path: web::Path<RequestPath>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (id, _, _) = match lookup(&state, &req, &path) {
        Ok(found) => found,
        Err(refusal) => return refusal.into(),
    };
    let outcome = state.store.cancel(&id);
    tracing::debug!(request_id = %id, ?outcome, "fal simulator: cancel");
    match outcome {
        CancelOutcome::Removed | CancelOutcome::Requested => {
            state.stats.cancels.fetch_add(1, Ordering::Relaxed);
            HttpResponse::Accepted().json(json!({"status": "CANCELLATION_REQUESTED"}))
        }
        CancelOutcome::AlreadyCompleted => {
            HttpResponse::BadRequest().json(json!({"status": "ALREADY_COMPLETED"}))
        }
        CancelOutcome::NotFound => not_found(),
    }
}

/// `GET /files/{request_id}/{index}.{ext}`: renders the image on demand (deterministic, so
/// nothing needs storing) while the request is retained.
pub(crate) async fn file(
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (id, name) = path.into_inner();
    let missing = || HttpResponse::NotFound().json(json!({"detail": "File not found"}));
    let Ok(id) = Uuid::parse_str(&id) else {
        return missing();
    };
    let Some((spec, Phase::Completed(_))) = state.store.get(&id) else {
        return missing();
    };
    let format = spec.input.output_format;
    let index = name
        .strip_suffix(&format!(".{}", format.extension()))
        .and_then(|i| i.parse::<u32>().ok())
        .filter(|i| *i < spec.input.num_images);
    let Some(index) = index else { return missing() };
    let nsfw = output::is_nsfw(&spec, &state.config.nsfw_trigger);
    let size = spec.input.image_size;
    let drawn_key = (size.width, size.height, format.as_str(), nsfw);
    if state.config.draw_once {
        if let Some(bytes) = state.drawn.lock().expect("lock").get(&drawn_key) {
            return HttpResponse::Ok()
                .content_type(format.content_type())
                .body(bytes.clone());
        }
    }
    let rendered = web::block(move || {
        images::render(&output::image_spec(&spec, index, nsfw)).map(bytes::Bytes::from)
    })
    .await;
    match rendered {
        Ok(Ok(bytes)) => {
            if state.config.draw_once {
                let mut drawn = state.drawn.lock().expect("lock");
                drawn.insert(drawn_key, bytes.clone());
            }
            HttpResponse::Ok()
                .content_type(format.content_type())
                .body(bytes)
        }
        Ok(Err(error)) => {
            HttpResponse::InternalServerError().json(json!({"detail": error.to_string()}))
        }
        Err(error) => {
            HttpResponse::InternalServerError().json(json!({"detail": error.to_string()}))
        }
    }
}
