//! Pages of a listing: the `limit` (1–100, default 20) and `cursor` query parameters every list
//! takes, and the page object (`data`, `has_more`, `next_cursor`) built from `limit + 1` rows.
use serde_json::{json, Value};

use crate::{
    domain::{ids::PrefixedId, FieldError},
    error::ApiError,
};

/// `limit` (1–100, default 20) and an id `cursor`.
pub fn page_params<Id: PrefixedId>(
    query: &std::collections::HashMap<String, String>,
) -> Result<(i64, Option<Id>), ApiError> {
    let mut errors = Vec::new();
    let limit = parse_page_limit(query, &mut errors);
    let cursor = cursor_of(query.get("cursor").map(String::as_str), &mut errors);
    if errors.is_empty() {
        Ok((limit, cursor))
    } else {
        Err(ApiError::validation(errors))
    }
}

/// The `limit` query parameter of every list: 1–100, default 20.
pub fn parse_page_limit(
    query: &std::collections::HashMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> i64 {
    limit_of(query.get("limit").map(String::as_str), errors)
}

/// A `limit` as given (absent or empty: 20); a problem with it joins `errors`, so a list with
/// more filters of its own names every bad field in one answer.
pub fn limit_of(raw: Option<&str>, errors: &mut Vec<FieldError>) -> i64 {
    match raw {
        None | Some("") => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "limit",
                    "must be a whole number from 1 to 100",
                ));
                20
            }),
    }
}

/// A `cursor` as given (absent or empty: the first page); a problem with it joins `errors`.
pub fn cursor_of<Id: PrefixedId>(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Id> {
    match raw {
        None | Some("") => None,
        Some(c) => c.parse().ok().or_else(|| {
            errors.push(FieldError::new(
                "cursor",
                "must be the next_cursor of a previous page",
            ));
            None
        }),
    }
}

/// A list page from `limit + 1` rows.
pub fn page(rows: Vec<(String, Value)>, limit: i64) -> Value {
    let has_more = rows.len() as i64 > limit;
    let data: Vec<(String, Value)> = rows.into_iter().take(limit as usize).collect();
    let next = if has_more {
        data.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    json!({"object": "list", "data": data.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), "has_more": has_more, "next_cursor": next})
}
