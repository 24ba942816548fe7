//! `GET /v1/usage?from=&to=&end_user=`: per-day requests, images, megapixels, spend, cache hits
//! and savings, failures by code; the end users who spent most; each cap with what is left of it
//! now; and the alerts' state.
use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{Duration, NaiveDate, Utc};
use serde_json::json;

use crate::{
    api::auth::Caller,
    api::state::AppState,
    domain::generation::parse_end_user,
    domain::money::usd,
    domain::FieldError,
    error::ApiError,
    governance::standing::{standing, Standing},
    storage::{self, usage},
};

const MAX_DAYS: i64 = 366;
/// End users listed by spend: the heaviest, for a chart.
const TOP_END_USERS: i64 = 20;
/// Dates outside these are refused by name (chrono parses years far beyond any id's clock, and
/// date arithmetic on them would overflow).
const EARLIEST: NaiveDate = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid");
const LATEST: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 1).expect("valid");

pub async fn get(
    query: web::Query<HashMap<String, String>>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let today = Utc::now().date_naive();
    let mut date = |name: &str, default: NaiveDate| match query
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
    {
        None => Some(default),
        Some(v) => match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) if (EARLIEST..=LATEST).contains(&d) => Some(d),
            _ => {
                errors.push(FieldError::new(
                    name,
                    format!("must be a date as YYYY-MM-DD, from {EARLIEST} to {LATEST}"),
                ));
                None
            }
        },
    };
    let to = date("to", today);
    let from = date(
        "from",
        (to.unwrap_or(today) - Duration::days(29)).max(EARLIEST),
    );
    let end_user = match query.get("end_user").map(String::as_str) {
        None => None,
        Some(u) => match parse_end_user(u) {
            Ok(u) => Some(u),
            Err(msg) => {
                errors.push(FieldError::new("end_user", msg));
                None
            }
        },
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            errors.push(FieldError::new("from", "must not be after `to`"));
        } else if (t - f).num_days() >= MAX_DAYS {
            errors.push(FieldError::new(
                "from",
                format!("the range may span at most {MAX_DAYS} days"),
            ));
        }
    }
    let (Some(from), Some(to), true) = (from, to, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let days = usage::by_day(&state.pool, caller.tenant_id, from, to, end_user.as_deref()).await?;
    let mut totals = usage::Day {
        date: from,
        ..Default::default()
    };
    for d in &days {
        totals.requests += d.requests;
        totals.completed += d.completed;
        totals.failed += d.failed;
        totals.cancelled += d.cancelled;
        totals.images += d.images;
        totals.megapixels += d.megapixels;
        totals.spend_micros += d.spend_micros;
        totals.cache_hits += d.cache_hits;
        totals.cache_savings_micros += d.cache_savings_micros;
        for (code, n) in &d.failures {
            *totals.failures.entry(code.clone()).or_default() += n;
        }
    }
    let render = |d: &usage::Day| {
        json!({
            "date": d.date,
            "requests": d.requests,
            "completed": d.completed,
            "failed": d.failed,
            "cancelled": d.cancelled,
            "images": d.images,
            "megapixels": d.megapixels,
            "spend_usd": usd(d.spend_micros),
            "spend_micros": d.spend_micros,
            "cache_hits": d.cache_hits,
            "cache_savings_usd": usd(d.cache_savings_micros),
            "cache_savings_micros": d.cache_savings_micros,
            "failures": d.failures,
        })
    };
    let mut total_json = render(&totals);
    total_json.as_object_mut().map(|o| o.remove("date"));
    let tenant = standing(&state.pool, caller.tenant_id, None).await?;
    let user = match end_user.as_deref() {
        Some(u) => Some(standing(&state.pool, caller.tenant_id, Some(u)).await?),
        None => None,
    };
    let defaults = storage::tenants::limits(&state.pool, caller.tenant_id).await?;
    let end_users =
        usage::top_end_users(&state.pool, caller.tenant_id, from, to, TOP_END_USERS).await?;
    let alerts = storage::alert_state::shown(&state.pool).await?;
    let mut limits = json!({
        "tenant": render_standing(&tenant),
        "end_user_defaults": {
            "daily_budget_usd": defaults.end_user_daily_budget_micros.map(usd),
            "requests_per_minute": defaults.end_user_requests_per_minute,
        },
    });
    if let Some(user) = &user {
        limits["end_user"] = render_standing(user);
    }
    Ok(HttpResponse::Ok().json(json!({
        "object": "usage",
        "from": from,
        "to": to,
        "end_user": end_user,
        "totals": total_json,
        "days": days.iter().map(render).collect::<Vec<_>>(),
        "end_users": end_users.iter().map(|e| json!({
            "end_user": e.end_user,
            "requests": e.requests,
            "images": e.images,
            "spend_usd": usd(e.spend_micros),
            "spend_micros": e.spend_micros,
        })).collect::<Vec<_>>(),
        "limits": limits,
        "alerts": alerts,
    })))
}

/// Caps and what is left of them now (`null`: no cap).
fn render_standing(s: &Standing) -> serde_json::Value {
    json!({
        "daily_budget_usd": s.daily_budget_micros.map(usd),
        "spent_today_usd": usd(s.used_today_micros),
        "budget_remaining_usd": s.budget_remaining_micros().map(usd),
        "budget_resets_at": s.budget_resets_at,
        "requests_per_minute": s.requests_per_minute,
        "requests_this_minute": s.requests_this_minute,
        "requests_remaining": s.requests_remaining(),
    })
}
