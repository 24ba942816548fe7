//! The document's `paths`: every route, its parameters, body and answers.
use serde_json::{json, Map, Value};

use super::schema_ref;

pub(super) fn paths() -> Value {
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
    let mut all = json!({
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
                    json!({"name": "model", "in": "query", "schema": {"type": "string"}}),
                    json!({"name": "batch_id", "in": "query", "description": "only the members of this batch", "schema": {"type": "string", "pattern": "^bat_"}}),
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
                .errors(&["400", "401", "404", "429"]).done(),
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
                .errors(&["400", "401", "422", "429"]).done(),
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
        "/v1/tokens": {
            "post": op("account", "Mint a short-lived browser token (`fgt_…`) for one end user, holding at most this key's generations:write, generations:read and events:read; a browser token cannot mint one", "createToken")
                .body("Object")
                .answer("201", "The token (shown once), its id, end user, scopes and expiry", "Object")
                .errors(&["400", "401", "403", "422"]).done(),
        },
        "/v1/tokens/{id}": {
            "delete": op("account", "Revoke a browser token minted by this key", "revokeToken")
                .params(json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "example": "tok_0192f5e4c1d87a3b9e4f5a6b7c8d9e0f"}}]))
                .answer("200", "The token's id and when it was revoked", "Object")
                .errors(&["401", "403", "404"]).done(),
        },
        "/v1/webhook-secret": {
            "get": op("account", "How per-request `webhook_url` callbacks are signed for this tenant", "webhookSecret")
                .answer("200", "The signing secret for per-request callbacks", "Object")
                .errors(&["401"]).done(),
        },
        "/hooks/fal/{generation_id}": {
            "post": op("operations", "fal's completion callback, at the URL fluxgate gave fal; authenticated by that URL's token and fal's Ed25519 signature, not by an API key", "falCallback")
                .public()
                .params(json!([
                    {"name": "generation_id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}},
                    {"name": "token", "in": "query", "description": "the generation's callback token, as in the URL fluxgate gave fal", "schema": {"type": "string"}},
                    {"name": "inline", "in": "query", "description": "`1` when the generation's images may come back in the body (covered by the token)", "schema": {"type": "string"}},
                ]))
                .body("Object")
                .empty("200", "Recorded (or a duplicate)")
                .errors(&["400", "401", "404", "408", "409", "413", "503"]).done(),
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
        "/assets/{generation_id}/{file}": {
            "get": op("generations", "A copy of a result's image, when fluxgate keeps copies (FLUXGATE_STORAGE); its URL is in the result's `images[].url`", "getImage")
                .public()
                .params(json!([
                    {"name": "generation_id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^gen_"}},
                    {"name": "file", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]+-[0-9a-f]{16}\\.(png|jpg|webp|bin)$"}},
                ]))
                .image()
                .errors(&["404"]).done(),
        },
        "/console": {
            "get": op("operations", "The web console (sign in with `/console#key=<api key>`)", "console").public()
                .answer("200", "The console's page", "Object").done(),
        },
        "/console/{file}": {
            "get": op("operations", "The console's scripts and styles, embedded in the binary", "consoleFile").public()
                .params(json!([{"name": "file", "in": "path", "required": true, "schema": {"type": "string", "example": "js/main.js"}}]))
                .answer("200", "The file", "Object")
                .errors(&["404"]).done(),
        },
        "/openapi.json": {
            "get": op("operations", "This document", "openapi").public()
                .answer("200", "OpenAPI 3.1", "Object").done(),
        },
    });
    all.as_object_mut()
        .expect("paths is an object")
        .extend(batch_paths(&idempotency, &id("id", "bat"), &page));
    all
}

/// The batch routes (beside the rest: one `json!` of every path passes the macro's recursion
/// limit).
fn batch_paths(idempotency: &Value, bat_id: &Value, page: &[Value]) -> Map<String, Value> {
    let mut list_params = vec![
        json!({"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/BatchStatus"}}),
    ];
    list_params.extend(page.iter().cloned());
    let paths = json!({
        "/v1/batches": {
            "get": op("generations", "List batches, newest first, each with its members by state and their cost", "listBatches")
                .params(Value::Array(list_params))
                .answer("200", "A page of batches", "BatchList")
                .errors(&["401", "422"]).done(),
            "post": op("generations", "Accept up to 100 generation or edit requests together: validated, priced and reserved all or nothing (402 says how much the batch lacks); each becomes a generation of the batch", "createBatch")
                .params(json!([idempotency]))
                .body("BatchRequest")
                .answer("202", "Accepted: the batch with its members' ids, submitted to fal in the background", "Batch")
                .errors(&["401", "402", "413", "422", "429"]).done(),
        },
        "/v1/batches/{id}": {
            "get": op("generations", "One batch: its members by state, and their cost", "getBatch")
                .params(json!([bat_id]))
                .answer("200", "The batch", "Batch")
                .errors(&["401", "404"]).done(),
        },
        "/v1/batches/{id}/cancel": {
            "post": op("generations", "Cancel the batch's members not yet sent to fal (those at fal run on)", "cancelBatch")
                .params(json!([bat_id]))
                .answer("200", "The batch after the request, with `cancelled_now`", "Batch")
                .errors(&["401", "404"]).done(),
        },
    });
    match paths {
        Value::Object(map) => map,
        _ => Map::new(),
    }
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
    fn image(mut self) -> Self {
        self.responses().insert(
            "200".into(),
            json!({
                "description": "The image, cacheable for good",
                "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            }),
        );
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
