//! `GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document, for client generators and
//! integration platforms. Enumerations (models, presets, formats, event types) and the fields
//! each body accepts come from the code that validates them; the tests check the rest — every
//! documented operation is routed, every routed path is documented, every documented field is
//! accepted and every documented bound is the validator's.
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use crate::{
    domain::subscription::EVENT_TYPES,
    fal::models::{Acceleration, ImagePreset, OutputFormat, MODELS},
};

/// fluxgate's own fields of a generation request, beside fal's input.
pub const FLUXGATE_FIELDS: &[&str] = &[
    "model",
    "webhook_url",
    "metadata",
    "end_user",
    "seed_from",
    "cache",
];

pub async fn serve() -> HttpResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| document().to_string());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fluxgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Images from fal.ai's FLUX.2 models without polling: submit a generation, and its events reach your webhooks, per-request callbacks and live streams. Errors are application/problem+json (RFC 9457) with a stable `code` and, for validation failures, `errors: [{field, message}]`. Public ids carry a type prefix (gen_, sub_, evt_, dlv_).",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "tags": [
            {"name": "generations"}, {"name": "subscriptions"}, {"name": "events"},
            {"name": "account"}, {"name": "operations"},
        ],
        "paths": paths(),
        "components": components(),
    })
}

fn paths() -> Value {
    let id = |name: &str, prefix: &str| {
        json!({"name": name, "in": "path", "required": true,
               "schema": {"type": "string", "pattern": format!("^{prefix}_")}})
    };
    let (gen_id, sub_id, dlv_id) = (id("id", "gen"), id("id", "sub"), id("id", "dlv"));
    let page = [
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}}),
        json!({"name": "cursor", "in": "query", "description": "`next_cursor` of the previous page", "schema": {"type": "string"}}),
    ];
    let idempotency = json!({"name": "Idempotency-Key", "in": "header",
        "description": "The same key and body within 24 h returns the original answer and submits nothing; the same key with another body is a 422.",
        "schema": {"type": "string", "maxLength": 255}});
    let with = |mut params: Vec<Value>, more: &[Value]| {
        params.extend(more.iter().cloned());
        Value::Array(params)
    };
    json!({
        "/v1/generations": {
            "post": op("generations", "Generate images from text", "createGeneration")
                .params(json!([idempotency]))
                .body("GenerationRequest")
                .answer("202", "Accepted: stored, and submitted to fal in the background", "Generation")
                .errors(&["401", "402", "409", "413", "422", "429"]).done(),
            "get": op("generations", "List generations, newest first", "listGenerations")
                .params(with(vec![
                    json!({"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/GenerationStatus"}}),
                    json!({"name": "end_user", "in": "query", "schema": {"type": "string"}}),
                ], &page))
                .answer("200", "A page of generations", "GenerationList")
                .errors(&["401", "422"]).done(),
        },
        "/v1/edits": {
            "post": op("generations", "Edit images (1–4 source images)", "createEdit")
                .params(json!([idempotency]))
                .body("EditRequest")
                .answer("202", "Accepted: stored, and submitted to fal in the background", "Generation")
                .errors(&["401", "402", "409", "413", "422", "429"]).done(),
        },
        "/v1/estimates": {
            "post": op("generations", "Price a generation or edit request without submitting it", "estimate")
                .body_one_of(&["GenerationRequest", "EditRequest"])
                .answer("200", "What the request would cost", "Estimate")
                .errors(&["401", "413", "422"]).done(),
        },
        "/v1/generations/{id}": {
            "get": op("generations", "One generation", "getGeneration")
                .params(json!([gen_id]))
                .answer("200", "The generation", "Generation")
                .errors(&["401", "404"]).done(),
        },
        "/v1/generations/{id}/cancel": {
            "post": op("generations", "Cancel a generation (at fal too); one already running may still complete", "cancelGeneration")
                .params(json!([gen_id]))
                .answer("200", "The generation after the request; its status says what happened", "Generation")
                .errors(&["401", "404", "409"]).done(),
        },
        "/v1/generations/{id}/events": {
            "get": op("generations", "Server-sent events of one generation: its state now, then every change; closes after a terminal state", "streamGeneration")
                .params(json!([gen_id]))
                .stream()
                .errors(&["401", "404"]).done(),
        },
        "/v1/events": {
            "get": op("events", "The tenant's events, newest first, exactly as webhooks deliver them", "listEvents")
                .params(with(vec![
                    json!({"name": "type", "in": "query", "schema": {"$ref": "#/components/schemas/EventType"}}),
                    json!({"name": "after", "in": "query", "description": "only events after this event id", "schema": {"type": "string", "pattern": "^evt_"}}),
                    json!({"name": "undelivered", "in": "query", "description": "only events with a delivery not (yet) succeeded", "schema": {"type": "boolean"}}),
                ], &page))
                .answer("200", "A page of events", "EventList")
                .errors(&["401", "422"]).done(),
        },
        "/v1/events/stream": {
            "get": op("events", "Server-sent events of the tenant as they happen; heartbeats every 15 s; resumes after Last-Event-ID", "streamEvents")
                .params(json!([
                    {"name": "types", "in": "query", "description": "comma-separated event types or `prefix.*` wildcards", "schema": {"type": "string"}},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ]))
                .stream()
                .errors(&["401", "422"]).done(),
        },
        "/v1/subscriptions": {
            "post": op("subscriptions", "Subscribe a URL to events (REST Hooks: Zapier's performSubscribe)", "createSubscription")
                .body("SubscriptionRequest")
                .answer("201", "Created; `secret` (whsec_…) is shown this once", "Subscription")
                .errors(&["401", "413", "422"]).done(),
            "get": op("subscriptions", "List subscriptions", "listSubscriptions")
                .params(Value::Array(page.to_vec()))
                .answer("200", "A page of subscriptions", "SubscriptionList")
                .errors(&["401", "422"]).done(),
        },
        "/v1/subscriptions/{id}": {
            "get": op("subscriptions", "One subscription", "getSubscription")
                .params(json!([sub_id]))
                .answer("200", "The subscription", "Subscription")
                .errors(&["401", "404"]).done(),
            "patch": op("subscriptions", "Change a subscription; `status: active` re-enables a disabled one", "updateSubscription")
                .params(json!([sub_id]))
                .body("SubscriptionPatch")
                .answer("200", "The subscription", "Subscription")
                .errors(&["401", "404", "413", "422"]).done(),
            "delete": op("subscriptions", "Delete a subscription; idempotent (Zapier's performUnsubscribe)", "deleteSubscription")
                .params(json!([sub_id]))
                .empty("204", "Deleted, or already gone")
                .errors(&["401"]).done(),
        },
        "/v1/subscriptions/{id}/rotate-secret": {
            "post": op("subscriptions", "New signing secret; the old one keeps signing beside it for the grace period", "rotateSecret")
                .params(json!([sub_id]))
                .body_optional("RotateRequest")
                .answer("200", "The subscription with its new `secret`", "Subscription")
                .errors(&["401", "404", "422"]).done(),
        },
        "/v1/subscriptions/{id}/test": {
            "post": op("subscriptions", "Send a `test.ping` event to this subscription now", "testSubscription")
                .params(json!([sub_id]))
                .answer("202", "The `test.ping` event and its delivery: `event_id`, `delivery_id`", "Object")
                .errors(&["401", "404", "409"]).done(),
        },
        "/v1/subscriptions/{id}/recover": {
            "post": op("subscriptions", "Queue again every event in a window whose delivery to this subscription failed", "recoverSubscription")
                .params(json!([sub_id]))
                .body("RecoverRequest")
                .answer("202", "How many deliveries were queued again", "Recovered")
                .errors(&["401", "404", "422"]).done(),
        },
        "/v1/subscriptions/{id}/deliveries": {
            "get": op("subscriptions", "Deliveries to this subscription, newest first", "listDeliveries")
                .params(with(vec![sub_id.clone()], &page))
                .answer("200", "A page of deliveries", "DeliveryList")
                .errors(&["401", "404", "422"]).done(),
        },
        "/v1/deliveries/{id}": {
            "get": op("subscriptions", "One delivery with every attempt", "getDelivery")
                .params(json!([dlv_id]))
                .answer("200", "The delivery and its attempts", "Delivery")
                .errors(&["401", "404"]).done(),
        },
        "/v1/deliveries/{id}/retry": {
            "post": op("subscriptions", "Send a delivery again now", "retryDelivery")
                .params(json!([dlv_id]))
                .answer("202", "The delivery, pending again", "Delivery")
                .errors(&["401", "404", "409"]).done(),
        },
        "/v1/usage": {
            "get": op("account", "Requests, images, megapixels, spend and cache hits, by day", "getUsage")
                .params(json!([
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "end_user", "in": "query", "schema": {"type": "string"}},
                ]))
                .answer("200", "Usage totals and days", "Usage")
                .errors(&["401", "422"]).done(),
        },
        "/v1/me": {
            "get": op("account", "The calling key's tenant", "me")
                .answer("200", "The tenant and key", "Object")
                .errors(&["401"]).done(),
        },
        "/v1/webhook-secret": {
            "get": op("account", "How per-request `webhook_url` callbacks are signed for this tenant", "webhookSecret")
                .answer("200", "The signing secret for per-request callbacks", "Object")
                .errors(&["401"]).done(),
        },
        "/hooks/fal/{generation_id}": {
            "post": op("operations", "fal's completion callback; authenticated by fal's Ed25519 signature, not by an API key", "falCallback")
                .public()
                .params(json!([{"name": "generation_id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]))
                .body("Object")
                .empty("200", "Recorded (or a duplicate)")
                .errors(&["401", "404", "409", "503"]).done(),
        },
        "/.well-known/jwks.json": {
            "get": op("operations", "fluxgate's public keys for asymmetrically signed webhooks", "jwks")
                .public()
                .answer("200", "A JSON Web Key Set", "Object").done(),
        },
        "/healthz": {
            "get": op("operations", "The process is up", "healthz").public()
                .answer("200", "Up", "Object").done(),
        },
        "/readyz": {
            "get": op("operations", "The database is reachable and migrated", "readyz").public()
                .answer("200", "Ready", "Object")
                .errors(&["503"]).done(),
        },
        "/metrics": {
            "get": op("operations", "Prometheus metrics", "metrics").public()
                .text("200", "Prometheus text exposition format").done(),
        },
        "/openapi.json": {
            "get": op("operations", "This document", "openapi").public()
                .answer("200", "OpenAPI 3.1", "Object").done(),
        },
    })
}

/// One operation, built up.
struct Op(Map<String, Value>);

fn op(tag: &str, summary: &str, id: &str) -> Op {
    let mut m = Map::new();
    m.insert("tags".into(), json!([tag]));
    m.insert("summary".into(), json!(summary));
    m.insert("operationId".into(), json!(id));
    m.insert("responses".into(), json!({}));
    Op(m)
}

impl Op {
    fn params(mut self, p: Value) -> Self {
        self.0.insert("parameters".into(), p);
        self
    }
    fn body(mut self, schema: &str) -> Self {
        self.0.insert("requestBody".into(), json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}}));
        self
    }
    fn body_optional(mut self, schema: &str) -> Self {
        self.0.insert("requestBody".into(), json!({"required": false, "content": {"application/json": {"schema": schema_ref(schema)}}}));
        self
    }
    fn body_one_of(mut self, schemas: &[&str]) -> Self {
        let one: Vec<Value> = schemas.iter().map(|s| schema_ref(s)).collect();
        self.0.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": {"oneOf": one}}}}),
        );
        self
    }
    fn responses(&mut self) -> &mut Map<String, Value> {
        self.0["responses"].as_object_mut().expect("responses")
    }
    fn answer(mut self, status: &str, description: &str, schema: &str) -> Self {
        self.responses().insert(status.into(), json!({"description": description, "content": {"application/json": {"schema": schema_ref(schema)}}}));
        self
    }
    fn empty(mut self, status: &str, description: &str) -> Self {
        self.responses()
            .insert(status.into(), json!({"description": description}));
        self
    }
    fn text(mut self, status: &str, description: &str) -> Self {
        self.responses().insert(status.into(), json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}));
        self
    }
    fn stream(mut self) -> Self {
        self.responses().insert("200".into(), json!({
            "description": "An event stream: each frame's `id` is the event's sequence number, `event` its type, `data` the event exactly as webhooks deliver it",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }));
        self
    }
    fn errors(mut self, statuses: &[&str]) -> Self {
        for status in statuses {
            self.responses().insert(
                (*status).into(),
                json!({"$ref": format!("#/components/responses/E{status}")}),
            );
        }
        self
    }
    fn public(mut self) -> Self {
        self.0.insert("security".into(), json!([]));
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The error answers: every one is a problem document.
fn error_responses() -> Value {
    let mut m = Map::new();
    for (status, description) in [
        (
            "401",
            "Missing, malformed, unknown or revoked API key (or a bad fal signature)",
        ),
        ("402", "A budget would be exceeded (`code` says which)"),
        ("404", "No such object for this tenant"),
        ("409", "The object's state does not allow this"),
        ("413", "The body is too large"),
        ("422", "Invalid input: `errors` names every bad field"),
        ("429", "A rate limit was hit; see Retry-After"),
        ("503", "Not ready, or a dependency is unavailable; retry"),
    ] {
        m.insert(
            format!("E{status}"),
            json!({"description": description, "content": {"application/problem+json": {"schema": schema_ref("Problem")}}}),
        );
    }
    Value::Object(m)
}

fn components() -> Value {
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
            props["status"] =
                json!({"type": "string", "enum": ["active", "disabled"], "example": "active"});
        }
        let required = if patch {
            json!([])
        } else {
            json!(["target_url", "event_types"])
        };
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": props})
    };
    json!({
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
            "GenerationStatus": {"type": "string", "enum": ["accepted", "queued", "completed", "failed", "cancelled"]},
            "EventType": {"type": "string", "enum": EVENT_TYPES},
            "GenerationRequest": input(false),
            "EditRequest": input(true),
            "Generation": {"type": "object", "properties": {
                "id": {"type": "string", "pattern": "^gen_"}, "object": {"const": "generation"},
                "status": schema_ref("GenerationStatus"), "model": {"type": "string"},
                "input": {"type": "object", "description": "the normalised input: defaults filled in, a preset resolved to pixels"},
                "metadata": {"type": ["object", "null"]}, "end_user": {"type": ["string", "null"]},
                "webhook_url": {"type": ["string", "null"]},
                "estimated_cost_usd": {"type": "number"}, "estimated_cost_micros": {"type": "integer"},
                "cost_usd": {"type": ["number", "null"]}, "cost_micros": {"type": ["integer", "null"]},
                "fal_request_id": {"type": ["string", "null"]}, "seed": {"type": ["integer", "null"]},
                "images": {"type": ["array", "null"], "items": {"type": "object", "properties": {
                    "url": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"}, "content_type": {"type": "string"}}}},
                "has_nsfw_concepts": {"type": ["array", "null"], "items": {"type": "boolean"}},
                "timings": {"type": ["object", "null"]},
                "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                "cached": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"},
                "submitted_at": {"type": ["string", "null"], "format": "date-time"},
                "completed_at": {"type": ["string", "null"], "format": "date-time"},
                "links": {"type": "object"},
            }},
            "GenerationList": list("Generation"),
            "Estimate": {"type": "object", "properties": {
                "object": {"const": "estimate"}, "model": {"type": "string"}, "input": {"type": "object"},
                "megapixels": {"type": "integer"}, "price_per_megapixel_usd": {"type": "number"},
                "estimated_cost_usd": {"type": "number"}, "estimated_cost_micros": {"type": "integer"},
                "note": {"type": ["string", "null"]},
            }},
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
            "Subscription": {"type": "object", "properties": {
                "id": {"type": "string", "pattern": "^sub_"}, "object": {"const": "subscription"},
                "target_url": {"type": "string"}, "event_types": {"type": "array", "items": {"type": "string"}},
                "filter": {"type": ["object", "null"]}, "description": {"type": ["string", "null"]},
                "headers": {"type": "object"}, "status": {"type": "string", "enum": ["active", "disabled"]},
                "disabled_reason": {"type": ["string", "null"]},
                "failing_since": {"type": ["string", "null"], "format": "date-time"},
                "max_in_flight": {"type": "integer"}, "rate_limit_per_sec": {"type": ["integer", "null"]},
                "previous_secret_expires_at": {"type": ["string", "null"], "format": "date-time"},
                "secret": {"type": "string", "pattern": "^whsec_", "description": "only when created or rotated"},
                "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
            }},
            "SubscriptionList": list("Subscription"),
            "Delivery": {"type": "object", "properties": {
                "id": {"type": "string", "pattern": "^dlv_"}, "object": {"const": "delivery"},
                "event_id": {"type": "string"}, "event_type": {"type": "string"},
                "subscription_id": {"type": ["string", "null"]}, "target_url": {"type": "string"},
                "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                "attempts": {"description": "a count in lists; every attempt (time, duration, status code, error class, response excerpt) on GET /v1/deliveries/{id}"},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                "last_status_code": {"type": ["integer", "null"]}, "last_error_class": {"type": ["string", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
            }},
            "DeliveryList": list("Delivery"),
            "Usage": {"type": "object", "properties": {
                "object": {"const": "usage"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                "end_user": {"type": ["string", "null"]}, "totals": {"type": "object"}, "days": {"type": "array", "items": {"type": "object"}},
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{api::subscriptions, fal::models::known_fields};

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has properties"))
            .keys()
            .cloned()
            .collect()
    }

    /// The request schemas list exactly the fields the validators accept: fal's input of every
    /// model of the endpoint, plus fluxgate's own.
    #[test]
    fn documented_request_fields_are_the_validators_fields() {
        let doc = document();
        for (schema, edit) in [("GenerationRequest", false), ("EditRequest", true)] {
            let mut accepted: BTreeSet<String> =
                FLUXGATE_FIELDS.iter().map(|f| f.to_string()).collect();
            for model in MODELS.iter().filter(|m| m.is_edit == edit) {
                accepted.extend(known_fields(model).map(str::to_owned));
            }
            assert_eq!(properties(&doc, schema), accepted, "{schema}");
        }
        let set = |fields: &[&str]| {
            fields
                .iter()
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            properties(&doc, "SubscriptionRequest"),
            set(subscriptions::CREATE_FIELDS)
        );
        assert_eq!(
            properties(&doc, "SubscriptionPatch"),
            set(subscriptions::PATCH_FIELDS)
        );
        assert_eq!(
            properties(&doc, "RotateRequest"),
            set(subscriptions::ROTATE_FIELDS)
        );
        assert_eq!(
            properties(&doc, "RecoverRequest"),
            set(subscriptions::RECOVER_FIELDS)
        );
    }

    /// Every path the route table registers is documented (and nothing else is).
    #[test]
    fn every_routed_path_is_documented() {
        let table = include_str!("mod.rs");
        let mut routed = BTreeSet::new();
        let mut scope = "";
        for part in table.split("resource(\"").skip(1) {
            let path = &part[..part.find('"').expect("closing quote")];
            routed.insert(path.to_owned());
        }
        // Resources under `web::scope("/v1")` are registered relative to it.
        if let Some(at) = table.find("web::scope(\"") {
            let rest = &table[at + "web::scope(\"".len()..];
            scope = &rest[..rest.find('"').expect("closing quote")];
        }
        let doc = document();
        let documented: BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let routed: BTreeSet<String> = routed
            .into_iter()
            .map(|p| {
                if documented.contains(&p) {
                    p
                } else {
                    format!("{scope}{p}")
                }
            })
            .collect();
        assert_eq!(routed, documented);
    }
}
