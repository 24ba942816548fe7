//! The document's `components`: request and answer schemas, error answers, the key scheme.
use crate::domain::{
    ids::{BatchId, DeliveryId, EventId, GenerationId, SubscriptionId},
    states::{BatchStatus, DeliveryStatus, GenerationStatus, Priority, SubscriptionStatus},
};
use crate::{
    pipeline::accept::Estimate,
    wire::{
        batch::{Counts as BatchCounts, Links as BatchLinks},
        generation::Links as GenerationLinks,
        BatchObject, DeliveryObject, GenerationObject, SubscriptionObject,
    },
};
use serde_json::{json, Map, Value};

use super::schema_ref;
use crate::{
    domain::event_type::EventType,
    fal::models::{Acceleration, ImagePreset, OutputFormat, MODELS},
};

/// The error answers: every one is a problem document.
fn error_responses() -> Value {
    let mut m = Map::new();
    for (status, description) in [
        ("400", "The body is not JSON, or not of the expected shape"),
        (
            "401",
            "Missing, malformed, unknown or revoked API key (or, on fal's callback, a URL without its token or a bad signature)",
        ),
        ("402", "A budget would be exceeded (`code` says which)"),
        (
            "403",
            "`insufficient_scope`: the key may not use this route; `scope` names the scope it needs",
        ),
        ("404", "No such object for this tenant"),
        ("409", "The object's state does not allow this"),
        ("408", "The body did not arrive within the deadline"),
        ("413", "The body is too large"),
        ("422", "Invalid input: `errors` names every bad field"),
        ("429", "A rate limit or a cap was hit; see Retry-After"),
        ("503", "Not ready, or a dependency is unavailable; retry"),
    ] {
        m.insert(
            format!("E{status}"),
            json!({"description": description, "content": {"application/problem+json": {"schema": schema_ref("Problem")}}}),
        );
    }
    Value::Object(m)
}

/// The answers' schemas, derived from the types they are serialized from.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    GenerationObject,
    GenerationLinks,
    BatchObject,
    BatchCounts,
    BatchLinks,
    BatchStatus,
    Priority,
    BatchId,
    SubscriptionObject,
    DeliveryObject,
    Estimate,
    GenerationStatus,
    DeliveryStatus,
    SubscriptionStatus,
    EventType,
    GenerationId,
    SubscriptionId,
    DeliveryId,
    EventId,
)))]
struct Answers;

fn derived_schemas() -> Map<String, Value> {
    use utoipa::OpenApi;
    let components = Answers::openapi().components.unwrap_or_default();
    match serde_json::to_value(components.schemas) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

pub(super) fn components() -> Value {
    let models_t2i: Vec<&str> = MODELS.iter().filter(|m| !m.is_edit).map(|m| m.id).collect();
    // On /v1/edits a family's name means its edit endpoint.
    let models_edit: Vec<&str> = MODELS.iter().map(|m| m.id).collect();
    let presets: Vec<&str> = ImagePreset::ALL.iter().map(|p| p.as_str()).collect();
    let formats: Vec<&str> = OutputFormat::ALL.iter().map(|f| f.as_str()).collect();
    let accelerations: Vec<&str> = Acceleration::ALL.iter().map(|a| a.as_str()).collect();
    let input = |edit: bool| {
        let models: &Vec<&str> = if edit { &models_edit } else { &models_t2i };
        let mut props = json!({
            "prompt": {"type": "string", "minLength": 1, "example": "a lighthouse at dusk, oil painting"},
            "image_size": {
                "description": "a preset name, or the canvas in pixels",
                "oneOf": [
                    {"type": "string", "enum": presets},
                    {"type": "object", "additionalProperties": false, "required": ["width", "height"],
                     "properties": {"width": {"type": "integer", "minimum": 512, "maximum": 2048},
                                    "height": {"type": "integer", "minimum": 512, "maximum": 2048}}},
                ],
                "example": "landscape_4_3",
            },
            "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20, "default": 2.5, "example": 3.5},
            "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1, "example": 2},
            "seed": {"type": "integer", "minimum": 0, "example": 42, "description": "with a seed, an identical request is answered from the cache"},
            "output_format": {"type": "string", "enum": formats, "default": "png", "example": "webp"},
            "enable_safety_checker": {"type": "boolean", "default": true, "example": true},
            "enable_prompt_expansion": {"type": "boolean", "default": false, "example": false},
            "sync_mode": {"type": "boolean", "default": false, "example": false},
            "acceleration": {"type": "string", "enum": accelerations, "default": "regular", "example": "high",
                             "description": "fal-ai/flux-2 ([dev]) only"},
            "num_inference_steps": {"type": "integer", "minimum": 4, "maximum": 50, "default": 28, "example": 20,
                                    "description": "fal-ai/flux-2 ([dev]) only"},
            "model": {"type": "string", "enum": models, "default": crate::fal::models::DEFAULT_MODEL},
            "webhook_url": {"type": "string", "format": "uri", "example": "https://hooks.example.com/fluxgate",
                            "description": "a one-off signed callback for this generation's events"},
            "metadata": {"type": "object", "description": "any JSON object of at most 4 KiB, echoed in every event", "example": {"order": "A-17"}},
            "end_user": {"type": "string", "maxLength": 255, "description": "your own user id, for per-user limits and usage", "example": "user-42"},
            "seed_from": {"type": "string", "pattern": "^gen_", "description": "reuse the seed of an earlier generation (not accepted by /v1/estimates, which ignores it)"},
            "cache": {"type": "boolean", "default": true, "description": "false skips the seed cache", "example": false},
            "start_timeout_secs": {"type": "integer", "minimum": 1, "maximum": crate::domain::generation::MAX_START_TIMEOUT_SECS,
                                   "description": "how long fal may keep it waiting to start (queue and fal's retries); then it fails with start_timeout, unrun and uncharged. Default FLUXGATE_FAL_START_TIMEOUT_SECS", "example": 120},
            "priority": {"type": "string", "enum": Priority::names(), "default": "normal",
                         "description": "fal's queue priority: low waits behind all normal work (a batch's members default to the batch's, itself low by default)"},
        });
        if edit {
            props["image_urls"] = json!({"type": "array", "minItems": 1, "maxItems": 4,
                "items": {"type": "string", "description": "https URL or data URI"},
                "example": ["https://images.example.com/source.png"]});
        }
        json!({"type": "object", "additionalProperties": false, "required": if edit { json!(["prompt", "image_urls"]) } else { json!(["prompt"]) }, "properties": props})
    };
    let list = |item: &str| {
        json!({"type": "object", "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": schema_ref(item)},
            "has_more": {"type": "boolean"}, "next_cursor": {"type": ["string", "null"]},
            "retained_since": {"type": ["string", "null"], "format": "date-time",
                "description": "Event and delivery listings: nothing created before this is kept (FLUXGATE_EVENT_RETENTION), except unfinished deliveries and their events; null when kept forever."},
        }})
    };
    let subscription_body = |patch: bool| {
        let mut props = json!({
            "target_url": {"type": "string", "format": "uri", "example": "https://hooks.example.com/fluxgate"},
            "event_types": {"type": "array", "minItems": 1, "items": {"type": "string"},
                            "description": "exact types, or `prefix.*` wildcards", "example": ["generation.*"]},
            "filter": {"type": ["object", "null"], "description": "exact values to match: `metadata` (an object) and `end_user`",
                       "example": {"end_user": "user-42"}},
            "description": {"type": ["string", "null"], "example": "orders pipeline"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "extra headers sent with every delivery (not the signed ones)", "example": {"X-Team": "imaging"}},
            "max_in_flight": {"type": "integer", "minimum": 1, "default": 8, "example": 4},
            "rate_limit_per_sec": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000, "example": 50},
        });
        if patch {
            props["status"] = json!({"type": "string", "enum": SubscriptionStatus::names(), "example": SubscriptionStatus::Active});
        }
        let required = if patch {
            json!([])
        } else {
            json!(["target_url", "event_types"])
        };
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
    };
    let mut components = json!({
        "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key (`fg_…`) from `fluxgate keys create`"},
        },
        "responses": error_responses(),
        "schemas": {
            "Object": {"type": "object"},
            "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string", "description": "stable and machine-readable"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            }},
            "GenerationRequest": input(false),
            "EditRequest": input(true),
            "BatchRequest": {"type": "object", "additionalProperties": false, "required": ["requests"], "properties": {
                "requests": {"type": "array", "minItems": 1, "maxItems": crate::domain::batch::MAX_MEMBERS,
                             "description": "generation requests, or edit requests (those with image_urls); all are validated, priced and reserved together, or none is",
                             "items": {"oneOf": [schema_ref("GenerationRequest"), schema_ref("EditRequest")]},
                             "example": [{"prompt": "a red kite"}, {"prompt": "a blue kite", "seed": 7}]},
                "webhook_url": {"type": "string", "format": "uri", "example": "https://hooks.example.com/batches",
                                "description": "gets batch.completed, and the events of every member that names no webhook_url of its own"},
                "metadata": {"type": "object", "description": "any JSON object of at most 4 KiB, carried by the batch", "example": {"job": "catalog-7"}},
                "priority": {"type": "string", "enum": Priority::names(), "default": "low", "description": "the members' default priority"},
            }},
            "GenerationList": list("Generation"),
            "BatchList": list("Batch"),
            "Event": {"type": "object", "description": "what webhooks deliver, signed per Standard Webhooks", "properties": {
                "id": {"type": "string", "pattern": "^evt_"}, "type": schema_ref("EventType"),
                "timestamp": {"type": "string", "format": "date-time"}, "data": {"type": "object"},
            }},
            "EventList": list("Event"),
            "SubscriptionRequest": subscription_body(false),
            "SubscriptionPatch": subscription_body(true),
            "RotateRequest": {"type": "object", "additionalProperties": false, "properties": {
                "grace_period_secs": {"type": "integer", "minimum": 0, "default": 86400, "example": 3600},
            }},
            "RecoverRequest": {"type": "object", "additionalProperties": false, "required": ["since"], "properties": {
                "since": {"type": "string", "format": "date-time", "example": "2026-11-24T00:00:00Z"},
                "until": {"type": "string", "format": "date-time", "example": "2026-11-24T12:00:00Z"},
            }},
            "Recovered": {"type": "object"},
            "SubscriptionList": list("Subscription"),
            "DeliveryList": list("Delivery"),
            "Usage": {"type": "object", "properties": {
                "object": {"const": "usage"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                "end_user": {"type": ["string", "null"]}, "totals": {"type": "object"}, "days": {"type": "array", "items": {"type": "object"}},
            }},
        },
    });
    components["schemas"]
        .as_object_mut()
        .expect("schemas is an object")
        .extend(derived_schemas());
    components
}
