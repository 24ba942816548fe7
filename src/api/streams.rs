//! Server-Sent-Event streams: `GET /v1/events/stream` (the tenant's events, filtered by type,
//! resumable with Last-Event-ID) and `GET /v1/generations/{id}/events` (one generation, from its
//! current state to its end).
use crate::domain::ids::{EventId, GenerationId};
use crate::wire::GenerationObject;
use actix_web::{http::header, web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::auth::Caller,
    api::state::AppState,
    domain::FieldError,
    error::ApiError,
    live::{
        gate::{Admission, Refusal},
        sse, Feed, Hub, Scope, TypeFilter, Unavailable,
    },
    storage,
};

/// How long a client waits before reconnecting, told once at the start of each stream.
const RETRY_MS: u64 = 1000;

#[derive(Deserialize)]
struct StreamQuery {
    types: Option<String>,
    last_event_id: Option<String>,
}

/// `GET /v1/events/stream?types=…` with optional `Last-Event-ID` (header or `last_event_id`).
pub async fn tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let query = parse_query(&req)?;
    let types = match query.types.as_deref().map(str::trim) {
        None | Some("") => TypeFilter::default(),
        Some(list) => TypeFilter::parse(list)
            .map_err(|why| ApiError::validation(vec![FieldError::new("types", why)]))?,
    };
    let resume = resume_point(&req, &query, &state, &caller).await?;
    let admission = admit(&state, &caller)?;
    let scope = Scope::Tenant {
        tenant_id: caller.tenant_id,
        types,
        end_user: caller.end_user().map(str::to_owned),
    };
    let sub = subscribe(&state.live, scope.clone()).await?;
    // Without a resume point the stream starts now: nothing to read from the past.
    let cursor = resume.unwrap_or(sub.horizon);
    let mut feed = Feed::new(
        state.live.clone(),
        state.pool.clone(),
        scope,
        cursor,
        sub,
        state.settings.server.sse_heartbeat,
        admission,
    );
    feed.push(&sse::retry(RETRY_MS));
    Ok(sse_response(HttpResponse::Ok()).streaming(feed.into_body()))
}

/// `GET /v1/generations/{id}/events`: the stored events of the generation (or, before it has
/// any, a `generation.state` frame with the current object), then each change; the stream
/// closes after a terminal event.
pub async fn generation(
    req: HttpRequest,
    path: web::Path<GenerationId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let query = parse_query(&req)?;
    let generation_id = path.into_inner();
    let not_found = || ApiError::not_found(format!("no generation {generation_id}"));
    let resume = resume_point(&req, &query, &state, &caller).await?;
    let admission = admit(&state, &caller)?;
    let scope = Scope::Generation {
        tenant_id: caller.tenant_id,
        generation_id,
    };
    // Subscribed before the row is read: a change committed in between arrives live.
    let sub = subscribe(&state.live, scope.clone()).await?;
    let g = storage::generations::get(&state.pool, caller.tenant_id, generation_id)
        .await?
        .filter(|g| caller.may_see(g))
        .ok_or_else(not_found)?;
    let mut feed = Feed::new(
        state.live.clone(),
        state.pool.clone(),
        scope,
        resume.unwrap_or(0),
        sub,
        state.settings.server.sse_heartbeat,
        admission,
    );
    feed.push(&sse::retry(RETRY_MS));
    let replayed = feed.replay_page().await?;
    if replayed == 0 && resume.is_none() {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let payload =
            json!({"type": "generation.state", "timestamp": now, "data": GenerationObject::of(&g).value()}).to_string();
        feed.push(&sse::frame(None, "generation.state", &payload));
    }
    // Its terminal event (committed with the status) was in the replay; if there was none,
    // nothing more will ever come either.
    if g.is_terminal() {
        feed.finish();
    }
    let body = feed.into_body();
    Ok(sse_response(HttpResponse::Ok()).streaming(body))
}

fn parse_query(req: &HttpRequest) -> Result<StreamQuery, ApiError> {
    web::Query::<StreamQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request("invalid_query", format!("invalid query string: {e}")))
}

/// The `seq` to resume after, from `Last-Event-ID` (or `?last_event_id=`): one of the caller's
/// own stored events, else 400.
async fn resume_point(
    req: &HttpRequest,
    query: &StreamQuery,
    state: &AppState,
    caller: &Caller,
) -> Result<Option<i64>, ApiError> {
    let header = req.headers().get("Last-Event-ID").map(|v| v.to_str());
    let raw = match (header, query.last_event_id.as_deref()) {
        (Some(Ok(v)), _) => v.trim(),
        (Some(Err(_)), _) => return Err(bad_resume("is not valid text")),
        (None, Some(v)) => v.trim(),
        (None, None) => return Ok(None),
    };
    if raw.is_empty() {
        return Ok(None);
    }
    let id: EventId = raw
        .parse()
        .map_err(|_| bad_resume("must be the id of an event this stream sent (evt_…)"))?;
    storage::events::seq_of(&state.pool, caller.tenant_id, id)
        .await?
        .map(Some)
        .ok_or_else(|| bad_resume("is not an event of this account"))
}

fn bad_resume(why: &str) -> ApiError {
    ApiError::bad_request("invalid_last_event_id", format!("Last-Event-ID {why}"))
}

async fn subscribe(hub: &Hub, scope: Scope) -> Result<crate::live::Subscription, ApiError> {
    hub.subscribe(scope).await.map_err(|Unavailable| {
        ApiError::unavailable(
            "live_unavailable",
            "live streams are not available on this instance right now; retry shortly",
        )
    })
}

/// A place for one more stream of the caller's: 429 when its tenant holds its cap here.
fn admit(state: &AppState, caller: &Caller) -> Result<Admission, ApiError> {
    state
        .live
        .admit(caller.tenant_id, caller.credential())
        .map_err(|refusal| match refusal {
            Refusal::TooMany(cap) => ApiError::new(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "Too Many Requests",
                format!(
                    "{refusal}; close one, or raise FLUXGATE_MAX_STREAMS_PER_TENANT (now {cap})"
                ),
            )
            .with_header("Retry-After", "5"),
            Refusal::Revoked if caller.token.is_some() => ApiError {
                code: "revoked_token",
                ..ApiError::unauthorized("this browser token has been revoked or has expired")
            },
            Refusal::Revoked => ApiError {
                code: "revoked_api_key",
                ..ApiError::unauthorized("this API key has been revoked")
            },
        })
}

fn sse_response(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"));
    builder
}
