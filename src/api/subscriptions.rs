//! REST Hooks subscriptions (Zapier-style): create/list/get/patch/delete, rotate-secret, test,
//! recover, and a subscription's deliveries.
use crate::domain::states::{DeliveryStatus, SubscriptionStatus};
use crate::wire::{DeliveryObject, SubscriptionObject};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::{
    api::paging::{page, page_params},
    api::state::AppState,
    api::{auth::Caller, body},
    delivery::ssrf,
    domain::FieldError,
    domain::{
        generation::parse_target_url,
        ids::{DeliveryId, SubscriptionId},
        subscription as rules,
    },
    error::ApiError,
    storage::{self, subscriptions::Patch},
    subscriptions::{SubscriptionError, Wanted},
};

const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;

async fn find(
    state: &AppState,
    caller: &Caller,
    id: SubscriptionId,
) -> Result<storage::subscriptions::Subscription, ApiError> {
    state
        .subscriptions()
        .get(caller.tenant_id, id)
        .await
        .map_err(refused)
}

/// A subscription use case's refusal, as HTTP.
pub(super) fn refused(e: SubscriptionError) -> ApiError {
    let detail = e.to_string();
    match e {
        SubscriptionError::NotFound(_) | SubscriptionError::NoDelivery(_) => {
            ApiError::not_found(detail)
        }
        SubscriptionError::DeliveryInFlight => ApiError::conflict("delivery_in_flight", detail),
        SubscriptionError::TooMany(_) => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_subscriptions",
            "Unprocessable Entity",
            detail,
        ),
        SubscriptionError::Storage(e) => e.into(),
    }
}

/// Checks a target URL's shape and, resolving it, the addresses it leads to (SSRF guard).
async fn vet_target(
    state: &AppState,
    v: &Value,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let url = match parse_target_url(v, state.settings.delivery.allow_http_targets) {
        Ok(u) => u,
        Err(msg) => {
            errors.push(FieldError::new(field, msg));
            return None;
        }
    };
    match ssrf::vet(&state.settings.target_policy(), &url).await {
        Ok(()) => Some(url.to_string()),
        Err(msg) => {
            errors.push(FieldError::new(field, msg));
            None
        }
    }
}

/// The fields each body may carry; any other is refused by name (and `/openapi.json` documents
/// exactly these).
pub const CREATE_FIELDS: &[&str] = &[
    "target_url",
    "event_types",
    "filter",
    "description",
    "headers",
    "max_in_flight",
    "rate_limit_per_sec",
];
pub const PATCH_FIELDS: &[&str] = &[
    "target_url",
    "event_types",
    "filter",
    "description",
    "headers",
    "status",
    "max_in_flight",
    "rate_limit_per_sec",
];
pub const ROTATE_FIELDS: &[&str] = &["grace_period_secs"];
pub const RECOVER_FIELDS: &[&str] = &["since", "until"];

fn parse_limit(
    v: Option<&Value>,
    field: &str,
    default: i32,
    max: i32,
    errors: &mut Vec<FieldError>,
) -> Option<i32> {
    match v {
        None | Some(Value::Null) => Some(default),
        Some(v) => match v.as_i64() {
            Some(n) if (1..=i64::from(max)).contains(&n) => Some(n as i32),
            _ => {
                errors.push(FieldError::new(
                    field,
                    format!("must be a whole number from 1 to {max}"),
                ));
                None
            }
        },
    }
}

pub(crate) fn known_fields(
    obj: &Map<String, Value>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(FieldError::new(
                k.clone(),
                format!("unknown field; allowed: {}", allowed.join(", ")),
            ));
        }
    }
}

fn parse_description(v: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match v {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.len() <= 1000 => Some(Some(s.clone())),
        Some(_) => {
            errors.push(FieldError::new(
                "description",
                "must be a string of at most 1000 bytes",
            ));
            None
        }
    }
}

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let obj = body::parse_json_object(&body::read(&req, payload, &state.settings).await?)?;
    let mut errors = Vec::new();
    known_fields(&obj, CREATE_FIELDS, &mut errors);
    let target = match obj.get("target_url") {
        Some(v) => vet_target(&state, v, "target_url", &mut errors).await,
        None => {
            errors.push(FieldError::new("target_url", "is required"));
            None
        }
    };
    let types = match obj.get("event_types") {
        Some(v) => rules::parse_event_types(v, &mut errors),
        None => {
            errors.push(FieldError::new("event_types", "is required"));
            None
        }
    };
    let filter = rules::parse_filter(obj.get("filter").unwrap_or(&Value::Null), &mut errors);
    let headers = rules::parse_headers(obj.get("headers").unwrap_or(&Value::Null), &mut errors);
    let description = parse_description(obj.get("description"), &mut errors).flatten();
    let max_in_flight = parse_limit(
        obj.get("max_in_flight"),
        "max_in_flight",
        8,
        256,
        &mut errors,
    );
    let rate = match obj.get("rate_limit_per_sec") {
        None | Some(Value::Null) => Some(None),
        v => parse_limit(v, "rate_limit_per_sec", 1, 10_000, &mut errors).map(Some),
    };
    let (Some(target), Some(types), Some(headers), Some(max_in_flight), Some(rate), true) = (
        target,
        types,
        headers,
        max_in_flight,
        rate,
        errors.is_empty(),
    ) else {
        return Err(ApiError::validation(errors));
    };
    let wanted = Wanted {
        target_url: target,
        event_types: types,
        filter,
        description,
        headers,
        max_in_flight,
        rate_limit_per_sec: rate,
    };
    let (sub, secret) = state
        .subscriptions()
        .create(caller.tenant_id, wanted)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/subscriptions/{}", sub.public_id())))
        .json(SubscriptionObject::of(&sub, Some(secret.as_str()))))
}

pub async fn list(
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let (limit, cursor) = page_params::<SubscriptionId>(&query)?;
    let rows =
        storage::subscriptions::list(&state.pool, caller.tenant_id, cursor, limit + 1).await?;
    Ok(HttpResponse::Ok().json(page(
        rows.iter()
            .map(|s| (s.public_id(), SubscriptionObject::of(s, None).value()))
            .collect(),
        limit,
    )))
}

pub async fn get(
    path: web::Path<SubscriptionId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let sub = find(&state, &caller, *path).await?;
    Ok(HttpResponse::Ok().json(SubscriptionObject::of(&sub, None)))
}

pub async fn patch(
    req: HttpRequest,
    path: web::Path<SubscriptionId>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let obj = body::parse_json_object(&body::read(&req, payload, &state.settings).await?)?;
    let mut errors = Vec::new();
    known_fields(&obj, PATCH_FIELDS, &mut errors);
    let mut p = Patch::default();
    if let Some(v) = obj.get("target_url") {
        p.target_url = vet_target(&state, v, "target_url", &mut errors).await;
    }
    if let Some(v) = obj.get("event_types") {
        p.event_types = rules::parse_event_types(v, &mut errors);
    }
    if let Some(v) = obj.get("filter") {
        p.filter = Some(rules::parse_filter(v, &mut errors));
    }
    if let Some(v) = obj.get("headers") {
        p.headers = rules::parse_headers(v, &mut errors);
    }
    p.description = parse_description(obj.get("description"), &mut errors);
    match obj.get("status").map(|s| s.as_str()) {
        None => {}
        Some(Some(s)) if SubscriptionStatus::parse(s).is_some() => {
            p.status = SubscriptionStatus::parse(s)
        }
        Some(_) => errors.push(FieldError::new(
            "status",
            format!("must be one of {}", SubscriptionStatus::names().join(", ")),
        )),
    }
    if obj.contains_key("max_in_flight") {
        p.max_in_flight = parse_limit(
            obj.get("max_in_flight"),
            "max_in_flight",
            8,
            256,
            &mut errors,
        );
    }
    match obj.get("rate_limit_per_sec") {
        None => {}
        Some(Value::Null) => p.rate_limit_per_sec = Some(None),
        v => {
            p.rate_limit_per_sec =
                parse_limit(v, "rate_limit_per_sec", 1, 10_000, &mut errors).map(Some)
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let sub = state
        .subscriptions()
        .update(caller.tenant_id, id, p)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(SubscriptionObject::of(&sub, None)))
}

/// Idempotent (Zapier's performUnsubscribe may call it twice): 204 whether or not it existed.
pub async fn delete(
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    if let Ok(id) = path.parse::<SubscriptionId>() {
        state.subscriptions().delete(caller.tenant_id, id).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

pub async fn rotate_secret(
    req: HttpRequest,
    path: web::Path<SubscriptionId>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let bytes = body::read(&req, payload, &state.settings).await?;
    let grace = if bytes.iter().all(u8::is_ascii_whitespace) {
        86_400
    } else {
        let obj = body::parse_json_object(&bytes)?;
        let mut errors = Vec::new();
        known_fields(&obj, ROTATE_FIELDS, &mut errors);
        let grace = match obj.get("grace_period_secs") {
            None | Some(Value::Null) => 86_400,
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=MAX_GRACE_SECS).contains(n))
                .unwrap_or_else(|| {
                    errors.push(FieldError::new(
                        "grace_period_secs",
                        format!(
                            "must be a whole number of seconds from 0 to {MAX_GRACE_SECS} (7 days)"
                        ),
                    ));
                    0
                }),
        };
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        grace
    };
    let (sub, secret) = state
        .subscriptions()
        .rotate_secret(caller.tenant_id, id, grace)
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(SubscriptionObject::of(&sub, Some(secret.as_str()))))
}

/// Sends a `test.ping` event to this subscription only, now.
pub async fn test(
    path: web::Path<SubscriptionId>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let sub = find(&state, &caller, path.into_inner()).await?;
    let (event, delivery) = state.subscriptions().ping(&sub).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "event_id": event,
        "delivery_id": delivery,
    })))
}

fn parse_time(
    v: Option<&Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| errors.push(FieldError::new(field, "must be an RFC 3339 timestamp")))
            .ok(),
        Some(_) => {
            errors.push(FieldError::new(field, "must be an RFC 3339 timestamp"));
            None
        }
    }
}

/// `{since, until?}`: re-queues every failed delivery of this subscription in the window.
pub async fn recover(
    req: HttpRequest,
    path: web::Path<SubscriptionId>,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let sub = find(&state, &caller, path.into_inner()).await?;
    let obj = body::parse_json_object(&body::read(&req, payload, &state.settings).await?)?;
    let mut errors = Vec::new();
    known_fields(&obj, RECOVER_FIELDS, &mut errors);
    let since = parse_time(obj.get("since"), "since", &mut errors);
    if since.is_none() && !errors.iter().any(|e| e.field == "since") {
        errors.push(FieldError::new("since", "is required"));
    }
    let until = parse_time(obj.get("until"), "until", &mut errors).unwrap_or_else(Utc::now);
    if let Some(s) = since {
        if s >= until {
            errors.push(FieldError::new("until", "must be after since"));
        }
        if Utc::now() - s > chrono::Duration::days(14) {
            errors.push(FieldError::new("since", "must be within the last 14 days"));
        }
    }
    let Some(since) = since.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let n = state.subscriptions().recover(&sub, since, until).await?;
    Ok(HttpResponse::Accepted().json(json!({"requeued": n, "since": since, "until": until})))
}

pub async fn deliveries(
    path: web::Path<SubscriptionId>,
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let sub = find(&state, &caller, path.into_inner()).await?;
    let (limit, cursor) = page_params::<DeliveryId>(&query)?;
    let status = match query
        .get("status")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "status",
                format!("must be one of {}", DeliveryStatus::names().join(", ")),
            )])
        })?),
    };
    let before = match cursor {
        Some(c) => storage::deliveries::get(&state.pool, caller.tenant_id, c)
            .await?
            .map(|d| (d.created_at, d.id)),
        None => None,
    };
    let rows =
        storage::deliveries::for_subscription(&state.pool, sub.id, status, before, limit + 1)
            .await?;
    let mut answer = page(
        rows.iter()
            .map(|d| (d.id.to_string(), DeliveryObject::of(d).value()))
            .collect(),
        limit,
    );
    answer["retained_since"] = json!(super::events::retained_since(&state.settings));
    Ok(HttpResponse::Ok().json(answer))
}
