//! `GET /v1/events`: the tenant's events, newest first, each exactly as webhooks deliver it —
//! what Zapier's performList (the "test trigger") reads. `undelivered=true` lists the events
//! that have not reached one of their subscribers (Stripe's pattern).
use crate::domain::ids::EventId;
use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    api::auth::Caller, api::state::AppState, domain::event_type::EventType, domain::FieldError,
    error::ApiError, storage,
};

pub async fn list(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let kind = query
        .get("type")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    if let Some(t) = kind {
        let ok = t == "*"
            || EventType::parse(t).is_some()
            || t.ends_with(".*")
            || (t.starts_with("alert.") && !t.chars().any(char::is_control));
        if !ok {
            errors.push(FieldError::new("type", format!("unknown event type {t:?}")));
        }
    }
    let limit = super::paging::parse_page_limit(&query, &mut errors);
    let undelivered = match query.get("undelivered").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.push(FieldError::new("undelivered", "must be true or false"));
            false
        }
    };
    let after = match query
        .get("after")
        .map(String::as_str)
        .filter(|a| !a.is_empty())
    {
        None => None,
        Some(a) => match a.parse::<EventId>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new("after", "must be an event id (evt_…)"));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let before_seq = match after {
        Some(id) => Some(
            storage::events::seq_of(&state.pool, caller.tenant_id, id)
                .await?
                .ok_or_else(|| {
                    ApiError::validation(vec![FieldError::new("after", "no such event")])
                })?,
        ),
        None => None,
    };
    let rows = storage::events::list(
        &state.pool,
        caller.tenant_id,
        kind,
        before_seq,
        undelivered,
        limit + 1,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let data: Vec<_> = rows.iter().take(limit as usize).collect();
    let next = if has_more {
        data.last().map(|e| e.public_id())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data.iter().map(|e| &e.payload.0).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next,
        "retained_since": retained_since(&state.settings),
    })))
}

/// Where retention cut a listing: nothing created before this is kept (`null`: kept forever).
/// Pending deliveries, and the events they carry, are kept past it until they finish.
pub fn retained_since(settings: &crate::config::Settings) -> Option<chrono::DateTime<chrono::Utc>> {
    let keep = chrono::Duration::from_std(settings.storage.event_retention?).ok()?;
    Some(chrono::Utc::now() - keep)
}
