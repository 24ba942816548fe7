//! `GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document, for client generators and
//! integration platforms. The answers' schemas (a generation, a subscription, a delivery, an
//! estimate, their states and ids) are derived with `utoipa` from the very types the handlers
//! serialize (`src/wire`); enumerations (models, presets, formats, event types) and the fields
//! each request body accepts come from the code that validates them. The tests check the rest:
//! every documented operation is routed, every routed path is documented, every documented
//! request field is accepted, every documented bound is the validator's, and every answer
//! carries exactly its documented fields.
//!
//! Paths are listed here rather than by `utoipa`'s actix integration: it collects only routes
//! registered with its own macros, while ours live in one table (`api::configure`) with
//! per-resource 405 and panic handling.
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{json, Value};

mod paths;
mod schemas;

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
        "paths": with_scopes(paths::paths()),
        "components": schemas::components(),
    })
}

/// Each `/v1` operation that needs a scope names it in its security requirement (OpenAPI 3.1
/// allows roles for any scheme) and documents the 403 a key without it gets; the scopes come
/// from the same table the authentication middleware asks.
fn with_scopes(mut paths: Value) -> Value {
    let Some(paths_map) = paths.as_object_mut() else {
        return paths;
    };
    for (path, ops) in paths_map.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            let Ok(m) = method.to_uppercase().parse::<actix_web::http::Method>() else {
                continue;
            };
            if let crate::api::scopes::Need::Scope(scope) = crate::api::scopes::needed(&m, path) {
                op["security"] = json!([{"apiKey": [scope.as_str()]}]);
                op["responses"]["403"] = json!({"$ref": "#/components/responses/E403"});
            }
        }
    }
    paths
}

/// A reference to a schema in `components`.
pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        api::subscriptions,
        domain::generation::FLUXGATE_FIELDS,
        fal::models::{known_fields, MODELS},
    };

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
        assert_eq!(
            properties(&doc, "BatchRequest"),
            set(crate::domain::batch::FIELDS)
        );
    }

    /// Every path the route table registers is documented (and nothing else is).
    #[test]
    fn every_routed_path_is_documented() {
        let table = include_str!("../mod.rs");
        let quoted = |after: &str| {
            table
                .split(after)
                .skip(1)
                .map(|rest| rest[..rest.find('"').expect("closing quote")].to_owned())
                // A segment's pattern (`{file:.*}`) is documented by its name (`{file}`).
                .map(|path| path.replace(":.*}", "}"))
                .collect::<Vec<_>>()
        };
        let routed = quoted("resource(\"");
        // Resources under `web::scope("/v1")` are registered relative to it.
        let scope = quoted("web::scope(\"").pop().expect("the /v1 scope");
        assert!(routed.len() > 20, "{routed:?}");
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

    /// Every `/v1` operation but `GET /v1/me` and the browser tokens' (any key, checked by
    /// the handler) needs a scope, and says which.
    #[test]
    fn every_v1_operation_names_the_scope_it_needs() {
        let doc = document();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, op) in ops.as_object().unwrap() {
                let named = op["security"][0]["apiKey"][0].as_str();
                if path == "/v1/me" || path.starts_with("/v1/tokens") {
                    assert!(named.is_none());
                } else {
                    assert!(named.is_some(), "{method} {path} names no scope");
                    assert!(op["responses"]["403"].is_object(), "{method} {path}");
                }
            }
        }
    }
}
