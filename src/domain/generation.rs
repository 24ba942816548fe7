//! A generation request as fluxgate accepts it: fal's FLUX.2 input (validated exactly by
//! `fal::models`) plus fluxgate's own fields. A `GenerationRequest` that exists is valid.
use serde_json::{Map, Value};
use url::Url;

use crate::{
    domain::ids::{BatchId, GenerationId},
    domain::states::Priority,
    domain::FieldError,
    fal::models::{self, Model, NormalizedInput},
};

pub const MAX_METADATA_BYTES: usize = 4096;
/// fluxgate's own fields of a generation request, beside fal's input (`parse` takes these out
/// before fal's schema sees the rest).
pub const FLUXGATE_FIELDS: &[&str] = &[
    "model",
    "webhook_url",
    "metadata",
    "end_user",
    "seed_from",
    "cache",
    "priority",
    "start_timeout_secs",
];
/// The longest start timeout a request may ask fal for: a day.
pub const MAX_START_TIMEOUT_SECS: u32 = 86_400;
pub const MAX_END_USER_LEN: usize = 255;

#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub model: &'static Model,
    pub input: NormalizedInput,
    pub webhook_url: Option<Url>,
    pub metadata: Option<Map<String, Value>>,
    pub end_user: Option<String>,
    pub seed_from: Option<SeedSource>,
    pub cache: bool,
    /// fal's queue priority: `normal` unless the request (or its batch) says `low`.
    pub priority: Priority,
    /// The batch it is accepted in: set by the batch's acceptance, never by a body.
    pub batch: Option<BatchId>,
    /// How long fal may keep it queued (and retrying) before it starts; past it the
    /// generation fails with `start_timeout`, unrun. `None`: the deployment's default.
    pub start_timeout_secs: Option<u32>,
}

/// `seed_from`: the earlier generation whose seed a request reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSource {
    pub id: GenerationId,
    /// Whose generation it must be: set when the caller sees only one end user's (a browser
    /// token), so a page cannot learn another user's seed. `None`: any of the tenant's.
    pub owner: Option<String>,
}

/// Which endpoint the body came to: `/v1/generations` or `/v1/edits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TextToImage,
    Edit,
}

impl GenerationRequest {
    /// Parses and validates a body, collecting every bad field.
    pub fn parse(
        mut body: Map<String, Value>,
        endpoint: Endpoint,
        allow_http: bool,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let model = parse_model(body.remove("model"), endpoint, &mut errors);
        let webhook_url = match body.remove("webhook_url") {
            None | Some(Value::Null) => None,
            Some(v) => match parse_target_url(&v, allow_http) {
                Ok(u) => Some(u),
                Err(msg) => {
                    errors.push(FieldError::new("webhook_url", msg));
                    None
                }
            },
        };
        let metadata = match body.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                let size = serde_json::to_vec(&m)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > MAX_METADATA_BYTES {
                    errors.push(FieldError::new("metadata", format!("must serialise to at most {MAX_METADATA_BYTES} bytes of JSON (it is {size})")));
                }
                Some(m)
            }
            Some(_) => {
                errors.push(FieldError::new("metadata", "must be a JSON object"));
                None
            }
        };
        let end_user = match body.remove("end_user") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match parse_end_user(&s) {
                Ok(s) => Some(s),
                Err(msg) => {
                    errors.push(FieldError::new("end_user", msg));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new("end_user", "must be a string"));
                None
            }
        };
        let seed_from = match body.remove("seed_from") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.parse::<GenerationId>() {
                Ok(id) => Some(SeedSource { id, owner: None }),
                Err(_) => {
                    errors.push(FieldError::new(
                        "seed_from",
                        "must be a generation id (gen_…)",
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(
                    "seed_from",
                    "must be a generation id (gen_…)",
                ));
                None
            }
        };
        if seed_from.is_some() && body.get("seed").is_some_and(|s| !s.is_null()) {
            errors.push(FieldError::new(
                "seed_from",
                "give either seed or seed_from, not both",
            ));
        }
        let priority = match body.remove("priority") {
            None | Some(Value::Null) => Priority::Normal,
            Some(v) => match v.as_str().and_then(Priority::parse) {
                Some(p) => p,
                None => {
                    errors.push(FieldError::new(
                        "priority",
                        format!("must be one of {}", Priority::names().join(", ")),
                    ));
                    Priority::Normal
                }
            },
        };
        let start_timeout_secs = match body.remove("start_timeout_secs") {
            None | Some(Value::Null) => None,
            Some(v) => {
                match v
                    .as_u64()
                    .filter(|n| (1..=MAX_START_TIMEOUT_SECS as u64).contains(n))
                {
                    Some(n) => Some(n as u32),
                    None => {
                        errors.push(FieldError::new(
                        "start_timeout_secs",
                        format!("must be a whole number of seconds from 1 to {MAX_START_TIMEOUT_SECS}"),
                    ));
                        None
                    }
                }
            }
        };
        let cache = match body.remove("cache") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                errors.push(FieldError::new("cache", "must be a boolean"));
                true
            }
        };
        // A null seed means "let fal choose", like an absent one.
        if body.get("seed").is_some_and(Value::is_null) {
            body.remove("seed");
        }
        let input = match model {
            Some(m) => match models::validate(m, &Value::Object(body)) {
                Ok(input) => Some(input),
                Err(field_errors) => {
                    errors.extend(
                        field_errors
                            .into_iter()
                            .map(|e| FieldError::new(e.field, e.msg)),
                    );
                    None
                }
            },
            None => None,
        };
        match (model, input) {
            (Some(model), Some(input)) if errors.is_empty() => Ok(GenerationRequest {
                model,
                input,
                webhook_url,
                metadata,
                end_user,
                seed_from,
                cache,
                priority,
                batch: None,
                start_timeout_secs,
            }),
            _ => Err(errors),
        }
    }

    /// The estimated cost in micro-USD, by the billing rule in `fal::models`.
    pub fn estimated_cost_micros(&self) -> i64 {
        self.model.price_micro_usd(&self.input) as i64
    }
}

fn parse_model(
    v: Option<Value>,
    endpoint: Endpoint,
    errors: &mut Vec<FieldError>,
) -> Option<&'static Model> {
    let name = match v {
        None | Some(Value::Null) => models::DEFAULT_MODEL.to_owned(),
        Some(Value::String(s)) => s,
        Some(_) => {
            errors.push(FieldError::new("model", "must be a string"));
            return None;
        }
    };
    // On /v1/edits a family name (`fal-ai/flux-2/turbo`) means its edit endpoint.
    let wanted = match endpoint {
        Endpoint::Edit if !name.ends_with("/edit") => format!("{name}/edit"),
        _ => name.clone(),
    };
    let known = || {
        models::MODELS
            .iter()
            .filter(|m| m.is_edit == (endpoint == Endpoint::Edit))
            .map(|m| m.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match Model::lookup(&wanted) {
        Some(m) if m.is_edit == (endpoint == Endpoint::Edit) => Some(m),
        Some(_) => {
            errors.push(FieldError::new(
                "model",
                format!("{name} is an edit model: send it to /v1/edits"),
            ));
            None
        }
        None => {
            errors.push(FieldError::new(
                "model",
                format!("unknown model {name:?}; one of: {}", known()),
            ));
            None
        }
    }
}

/// An outbound target: http(s), a host, no userinfo. (The SSRF guard checks addresses too.)
pub fn parse_target_url(v: &Value, allow_http: bool) -> Result<Url, String> {
    let s = v.as_str().ok_or("must be a URL string")?;
    let url = Url::parse(s).map_err(|e| format!("is not a valid URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err("must use https (plain http targets are not allowed on this server)".into())
        }
        other => return Err(format!("must be an https URL, not {other}:")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (user:password@)".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a #fragment".into());
    }
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    Ok(url)
}

pub fn parse_end_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_END_USER_LEN {
        return Err(format!("must be at most {MAX_END_USER_LEN} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value, endpoint: Endpoint) -> Result<GenerationRequest, Vec<FieldError>> {
        GenerationRequest::parse(v.as_object().unwrap().clone(), endpoint, false)
    }

    fn fields(r: Result<GenerationRequest, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn every_bad_fluxgate_field_is_named_alongside_fal_fields() {
        let f = fields(parse(
            json!({"prompt": "", "model": 3, "webhook_url": "ftp://x", "metadata": [1], "end_user": "a\u{7}b", "seed_from": "sub_1", "cache": "yes", "priority": "urgent", "start_timeout_secs": 0}),
            Endpoint::TextToImage,
        ));
        for name in FLUXGATE_FIELDS {
            assert!(f.contains(&name.to_string()), "{name} in {f:?}");
        }
        let f = fields(parse(
            json!({"prompt": "", "guidance_scale": 50, "bogus": 1}),
            Endpoint::TextToImage,
        ));
        assert!(
            f.contains(&"prompt".into())
                && f.contains(&"guidance_scale".into())
                && f.contains(&"bogus".into()),
            "{f:?}"
        );
    }

    #[test]
    fn models_go_to_their_own_endpoint_and_the_price_follows_the_rule() {
        let r = parse(json!({"prompt": "a cat"}), Endpoint::TextToImage).unwrap();
        assert_eq!(r.model.id, "fal-ai/flux-2/turbo");
        assert_eq!(r.estimated_cost_micros(), 8000);
        let r = parse(
            json!({"prompt": "a", "image_size": {"width": 1920, "height": 1080}}),
            Endpoint::TextToImage,
        )
        .unwrap();
        assert_eq!(r.estimated_cost_micros(), 16000);
        let r = parse(
            json!({"prompt": "a", "num_images": 4, "image_size": {"width": 1448, "height": 1448}}),
            Endpoint::TextToImage,
        )
        .unwrap();
        assert_eq!(r.estimated_cost_micros(), 64000);
        let r = parse(json!({"prompt": "a", "image_size": "square_hd", "image_urls": ["https://x.test/a.png"]}), Endpoint::Edit).unwrap();
        assert_eq!(
            (r.model.id, r.estimated_cost_micros()),
            ("fal-ai/flux-2/turbo/edit", 16000)
        );
        let r = parse(
            json!({"prompt": "a", "model": "fal-ai/flux-2/flash", "image_size": "square"}),
            Endpoint::TextToImage,
        )
        .unwrap();
        assert_eq!(r.estimated_cost_micros(), 5000);
        assert_eq!(
            fields(parse(
                json!({"prompt": "a", "model": "fal-ai/flux-2/turbo/edit"}),
                Endpoint::TextToImage
            )),
            vec!["model"]
        );
    }

    #[test]
    fn metadata_is_limited_and_seed_conflicts_with_seed_from() {
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert_eq!(
            fields(parse(
                json!({"prompt": "a", "metadata": {"k": big}}),
                Endpoint::TextToImage
            )),
            vec!["metadata"]
        );
        let id = GenerationId::new().to_string();
        assert_eq!(
            fields(parse(
                json!({"prompt": "a", "seed": 1, "seed_from": id}),
                Endpoint::TextToImage
            )),
            vec!["seed_from"]
        );
        assert_eq!(
            fields(parse(
                json!({"prompt": "a", "end_user": "u".repeat(256)}),
                Endpoint::TextToImage
            )),
            vec!["end_user"]
        );
    }

    #[test]
    fn target_urls_must_be_https_without_credentials() {
        assert!(parse_target_url(&json!("https://hooks.example.com/x"), false).is_ok());
        assert!(parse_target_url(&json!("http://hooks.example.com/x"), false).is_err());
        assert!(parse_target_url(&json!("http://hooks.example.com/x"), true).is_ok());
        for bad in [
            json!("https://u:p@example.com/"),
            json!("javascript:alert(1)"),
            json!(42),
            json!("not a url"),
        ] {
            assert!(parse_target_url(&bad, true).is_err(), "{bad}");
        }
    }
}
