//! A batch as fluxgate accepts it: up to `MAX_MEMBERS` generation or edit requests, each
//! validated exactly as it would be alone, plus the batch's own `webhook_url`, `metadata` and
//! `priority`. A `BatchRequest` that exists is valid in every member: validation is
//! all-or-nothing, and each error names its member (`requests[3].prompt`).
use serde_json::{Map, Value};
use url::Url;

use crate::domain::{
    generation::{parse_target_url, Endpoint, GenerationRequest, MAX_METADATA_BYTES},
    states::Priority,
    FieldError,
};

/// The most requests one batch may hold.
pub const MAX_MEMBERS: usize = 100;

/// The batch's own fields; anything else at its top level is refused.
pub const FIELDS: &[&str] = &["requests", "webhook_url", "metadata", "priority"];

/// `errors` of member `i`, named as the batch names them: `requests[i].field`.
pub fn member_errors(i: usize, errors: Vec<FieldError>) -> impl Iterator<Item = FieldError> {
    errors
        .into_iter()
        .map(move |e| FieldError::new(format!("requests[{i}].{}", e.field), e.message))
}

#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// In the order given; each already carries the batch's priority and webhook_url unless it
    /// set its own.
    pub members: Vec<GenerationRequest>,
    /// Gets `batch.completed`, and every member's events when the member names none.
    pub webhook_url: Option<Url>,
    pub metadata: Option<Map<String, Value>>,
    /// Batches wait behind interactive work unless they say otherwise.
    pub priority: Priority,
}

impl BatchRequest {
    pub fn parse(mut body: Map<String, Value>, allow_http: bool) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for name in body.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            errors.push(FieldError::new(
                name.clone(),
                format!(
                    "is not a batch field (one of {}); put model fields in each of requests[]",
                    FIELDS.join(", ")
                ),
            ));
        }
        let webhook_url = match body.remove("webhook_url") {
            None | Some(Value::Null) => None,
            Some(v) => parse_target_url(&v, allow_http)
                .map_err(|msg| errors.push(FieldError::new("webhook_url", msg)))
                .ok(),
        };
        let metadata = match body.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m))
                if serde_json::to_vec(&m).map_or(usize::MAX, |v| v.len()) <= MAX_METADATA_BYTES =>
            {
                Some(m)
            }
            Some(Value::Object(_)) => {
                errors.push(FieldError::new(
                    "metadata",
                    format!("must serialise to at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
                None
            }
            Some(_) => {
                errors.push(FieldError::new("metadata", "must be a JSON object"));
                None
            }
        };
        let priority = match body.remove("priority") {
            None | Some(Value::Null) => Priority::Low,
            Some(v) => v.as_str().and_then(Priority::parse).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "priority",
                    format!("must be one of {}", Priority::names().join(", ")),
                ));
                Priority::Low
            }),
        };
        let requests = match body.remove("requests") {
            Some(Value::Array(list)) if (1..=MAX_MEMBERS).contains(&list.len()) => list,
            Some(Value::Array(list)) => {
                errors.push(FieldError::new(
                    "requests",
                    format!(
                        "must hold 1 to {MAX_MEMBERS} requests (it holds {})",
                        list.len()
                    ),
                ));
                Vec::new()
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "requests",
                    "must be an array of request objects",
                ));
                Vec::new()
            }
            None => {
                errors.push(FieldError::new("requests", "is required"));
                Vec::new()
            }
        };
        let mut members = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let Value::Object(mut object) = request else {
                errors.push(FieldError::new(
                    format!("requests[{i}]"),
                    "must be an object",
                ));
                continue;
            };
            // A member with source images is an edit; the batch's priority is the default.
            let endpoint = if object.contains_key("image_urls") {
                Endpoint::Edit
            } else {
                Endpoint::TextToImage
            };
            object
                .entry("priority")
                .or_insert_with(|| Value::from(priority.as_str()));
            match GenerationRequest::parse(object, endpoint, allow_http) {
                Ok(mut member) => {
                    if member.webhook_url.is_none() {
                        member.webhook_url = webhook_url.clone();
                    }
                    members.push(member);
                }
                Err(e) => errors.extend(member_errors(i, e)),
            }
        }
        if errors.is_empty() {
            Ok(BatchRequest {
                members,
                webhook_url,
                metadata,
                priority,
            })
        } else {
            Err(errors)
        }
    }

    /// The sum of the members' estimates, micro-USD.
    pub fn estimated_cost_micros(&self) -> i64 {
        self.members.iter().map(|m| m.estimated_cost_micros()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<BatchRequest, Vec<FieldError>> {
        BatchRequest::parse(body.as_object().cloned().unwrap(), false)
    }

    #[test]
    fn a_batch_defaults_to_low_priority_and_lends_its_webhook_to_its_members() {
        let b = parse(json!({
            "webhook_url": "https://hooks.example.com/batch",
            "requests": [
                {"prompt": "a fox"},
                {"prompt": "an owl", "priority": "normal", "webhook_url": "https://hooks.example.com/own"},
                {"prompt": "make it blue", "image_urls": ["https://example.com/a.png"]},
            ]
        }))
        .unwrap();
        assert_eq!(b.priority, Priority::Low);
        let priorities: Vec<_> = b.members.iter().map(|m| m.priority).collect();
        assert_eq!(priorities, [Priority::Low, Priority::Normal, Priority::Low]);
        let hooks: Vec<_> = b
            .members
            .iter()
            .map(|m| m.webhook_url.as_ref().unwrap().path().to_owned())
            .collect();
        assert_eq!(hooks, ["/batch", "/own", "/batch"]);
        assert!(b.members[2].model.is_edit);
        assert_eq!(b.estimated_cost_micros(), 8_000 + 8_000 + 16_000);
    }

    #[test]
    fn every_bad_member_field_is_named_with_its_index_and_nothing_is_accepted() {
        let errors = parse(json!({
            "requests": [{"prompt": "fine"}, {"prompt": ""}, {"prompt": "x", "num_images": 9}, 7],
            "color": "red"
        }))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "color",
                "requests[1].prompt",
                "requests[2].num_images",
                "requests[3]"
            ]
        );
    }

    #[test]
    fn a_batch_holds_one_to_a_hundred_requests() {
        let many: Vec<Value> = (0..101)
            .map(|i| json!({"prompt": format!("p{i}")}))
            .collect();
        for requests in [json!([]), Value::Array(many), json!("nope")] {
            let errors = parse(json!({ "requests": requests })).unwrap_err();
            assert_eq!(errors[0].field, "requests");
        }
        assert_eq!(parse(json!({})).unwrap_err()[0].field, "requests");
    }
}
