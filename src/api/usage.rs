//! `GET /v1/usage?from=&to=&end_user=`: per-day requests, images, megapixels, spend, cache hits
//! and savings, failures by code.
use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{Duration, NaiveDate, Utc};
use serde_json::json;

use crate::{
    api::auth::Caller, api::state::AppState, domain::generation::parse_end_user,
    domain::money::usd, domain::FieldError, error::ApiError, storage::usage,
};

const MAX_DAYS: i64 = 366;
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
    Ok(HttpResponse::Ok().json(json!({
        "object": "usage",
        "from": from,
        "to": to,
        "end_user": end_user,
        "totals": total_json,
        "days": days.iter().map(render).collect::<Vec<_>>(),
    })))
}
