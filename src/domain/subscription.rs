//! What a subscription may ask for: known event types (exact or `prefix.*`), a filter on
//! `metadata`/`end_user`, and custom headers that cannot collide with the ones we sign.
use serde_json::{Map, Value};

use crate::domain::{event_type::EventType, FieldError};

pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_VALUE: usize = 1024;
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "user-agent",
];

/// Whether `kind` is matched by a subscription's `event_types` entry (exact, `prefix.*`, `*`).
pub fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

pub fn parse_event_types(v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let Some(items) = v.as_array() else {
        errors.push(FieldError::new(
            "event_types",
            "must be an array of event types",
        ));
        return None;
    };
    if items.is_empty() || items.len() > 50 {
        errors.push(FieldError::new(
            "event_types",
            "must list 1 to 50 event types",
        ));
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("event_types[{i}]");
        let Some(s) = item.as_str() else {
            errors.push(FieldError::new(field, "must be a string"));
            continue;
        };
        let known = s == "*"
            || EventType::parse(s).is_some()
            // A family wildcard (`batch.*`): any family an event type belongs to.
            || s.strip_suffix(".*").is_some_and(|family| {
                EventType::ALL
                    .iter()
                    .any(|t| t.as_str().split('.').next() == Some(family))
            })
            || s.strip_prefix("alert.").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
        if known {
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        } else {
            errors.push(FieldError::new(
                field,
                format!(
                    "unknown event type {s:?}; use one of {}, or a wildcard such as generation.*",
                    EventType::names().join(", ")
                ),
            ));
        }
    }
    Some(out)
}

/// `{"metadata": {k: v, …}, "end_user": "…"}`, both optional, exact matches.
pub fn parse_filter(v: &Value, errors: &mut Vec<FieldError>) -> Option<Value> {
    let obj = match v {
        Value::Null => return None,
        Value::Object(o) => o,
        _ => {
            errors.push(FieldError::new(
                "filter",
                "must be an object with optional `metadata` and `end_user`",
            ));
            return None;
        }
    };
    let mut out = Map::new();
    for (k, val) in obj {
        match (k.as_str(), val) {
            ("metadata", Value::Object(m)) => {
                out.insert(k.clone(), Value::Object(m.clone()));
            }
            ("metadata", _) => errors.push(FieldError::new(
                "filter.metadata",
                "must be an object of exact values to match",
            )),
            ("end_user", Value::String(s)) if !s.is_empty() && s.len() <= 255 => {
                out.insert(k.clone(), val.clone());
            }
            ("end_user", _) => errors.push(FieldError::new(
                "filter.end_user",
                "must be a non-empty string of at most 255 bytes",
            )),
            (other, _) => errors.push(FieldError::new(
                format!("filter.{other}"),
                "unknown filter key: use metadata or end_user",
            )),
        }
    }
    if serde_json::to_vec(&out).map_or(0, |b| b.len()) > 4096 {
        errors.push(FieldError::new("filter", "must be at most 4 KiB of JSON"));
    }
    Some(Value::Object(out))
}

/// Custom headers sent with every delivery: valid names, bounded values, none of ours.
pub fn parse_headers(v: &Value, errors: &mut Vec<FieldError>) -> Option<Value> {
    let obj = match v {
        Value::Null => return Some(Value::Object(Map::new())),
        Value::Object(o) => o,
        _ => {
            errors.push(FieldError::new(
                "headers",
                "must be an object of header names to string values",
            ));
            return None;
        }
    };
    if obj.len() > MAX_HEADERS {
        errors.push(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut out = Map::new();
    for (name, value) in obj {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        let token = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            errors.push(FieldError::new(field, "is not a valid header name"));
        } else if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            errors.push(FieldError::new(
                field,
                "is set by fluxgate and cannot be overridden",
            ));
        } else {
            match value.as_str() {
                Some(s)
                    if s.len() <= MAX_HEADER_VALUE
                        && s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) =>
                {
                    out.insert(name.clone(), value.clone());
                }
                _ => errors.push(FieldError::new(
                    field,
                    format!("must be a printable ASCII string of at most {MAX_HEADER_VALUE} bytes"),
                )),
            }
        }
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_by_prefix() {
        assert!(type_matches("generation.*", "generation.completed"));
        assert!(!type_matches("generation.*", "delivery.exhausted"));
        assert!(type_matches("*", "test.ping"));
        assert!(type_matches("generation.failed", "generation.failed"));
        assert!(!type_matches("generation.failed", "generation.failed2"));
    }

    #[test]
    fn bad_types_filters_and_headers_name_their_field() {
        let mut e = Vec::new();
        parse_event_types(&json!(["generation.*", "nope.x", 3]), &mut e);
        parse_filter(&json!({"metadata": 1, "user": "x"}), &mut e);
        parse_headers(
            &json!({"Host": "x", "webhook-id": "y", "X-Ok": "fine", "bad name": "z", "X-Long": "v".repeat(2000)}),
            &mut e,
        );
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "event_types[1]",
                "event_types[2]",
                "filter.metadata",
                "filter.user",
                "headers.Host",
                "headers.X-Long",
                "headers.bad name",
                "headers.webhook-id"
            ]
        );
        let mut e = Vec::new();
        parse_event_types(&json!([]), &mut e);
        assert_eq!(e[0].field, "event_types");
    }
}
