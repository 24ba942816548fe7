//! `GET /openapi.json`: served without a key, and true to the server — every documented
//! operation is routed, every documented example is accepted, every documented bound holds.
use std::time::Duration;

use fluxgate::domain::ids::{DeliveryId, GenerationId, SubscriptionId};
use serde_json::{json, Value};

use crate::{
    helpers::{spawn_app, TestApp},
    receiver::Receiver,
};

async fn document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// A syntactically valid id of the kind the path parameter's pattern names, for an object
/// that does not exist.
fn placeholder(param: &Value) -> String {
    let unknown = uuid::Uuid::now_v7();
    match param["schema"]["pattern"].as_str() {
        Some("^gen_") => GenerationId::from_uuid(unknown).to_string(),
        Some("^sub_") => SubscriptionId::from_uuid(unknown).to_string(),
        Some("^dlv_") => DeliveryId::from_uuid(unknown).to_string(),
        _ => unknown.to_string(),
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{} paths", paths.len());
    let mut probed = 0;
    for (template, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let mut path = template.clone();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    path = path.replace(&format!("{{{name}}}"), &placeholder(p));
                }
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = app.client.request(method.clone(), app.url(&path));
            if op["security"] != json!([]) {
                req = req.bearer_auth(&app.api_key);
            }
            if op.get("requestBody").is_some() {
                req = req.json(&json!({}));
            }
            let res = tokio::time::timeout(Duration::from_secs(10), req.send())
                .await
                .unwrap_or_else(|_| panic!("{method} {path} answered"))
                .unwrap();
            let status = res.status().as_u16();
            let documented = op["responses"].as_object().unwrap();
            let text = if path.ends_with("/stream") {
                String::new() // an open event stream: the status says enough
            } else {
                res.text().await.unwrap()
            };
            assert_ne!(status, 405, "{method} {path}: {text}");
            assert!(
                !text.contains("no route for"),
                "{method} {path} is not routed: {text}"
            );
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which is not documented: {text}"
            );
            probed += 1;
        }
    }
    assert!(probed >= 29, "{probed} operations");
}

async fn estimate(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.post("/v1/estimates", &body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn names_field(problem: &Value, field: &str) -> bool {
    problem["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|e| e["field"] == field))
}

/// Every example in the request schemas is accepted by `POST /v1/estimates`, and every
/// documented numeric or length bound is exactly where the validator draws it.
#[tokio::test]
async fn documented_examples_are_accepted_and_documented_bounds_hold() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (schema, base) in [
        ("GenerationRequest", json!({"prompt": "a lighthouse"})),
        (
            "EditRequest",
            json!({"prompt": "a lighthouse", "image_urls": ["https://images.example.com/a.png"]}),
        ),
    ] {
        let props = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap();
        for (field, spec) in props {
            // [dev]-only fields need the [dev] model.
            let model = if spec["description"]
                .as_str()
                .is_some_and(|d| d.contains("[dev]"))
            {
                json!("fal-ai/flux-2")
            } else {
                Value::Null
            };
            let with = |value: Value| {
                let mut body = base.clone();
                body[field.as_str()] = value;
                if !model.is_null() {
                    body["model"] = model.clone();
                }
                body
            };
            if let Some(example) = spec.get("example") {
                let (status, answer) = estimate(&app, with(example.clone())).await;
                assert_eq!(status, 200, "{schema}.{field} = {example}: {answer}");
            }
            // A bound as JSON of the field's own type.
            let num = |v: f64| match spec["type"].as_str() {
                Some("integer") => json!(v as i64),
                _ => json!(v),
            };
            if let Some(max) = spec["maximum"].as_f64() {
                let (at, answer) = estimate(&app, with(num(max))).await;
                assert_eq!(at, 200, "{schema}.{field} = {max} (its maximum): {answer}");
                let (over, answer) = estimate(&app, with(num(max + 1.0))).await;
                assert_eq!(over, 422, "{schema}.{field} = {}: {answer}", max + 1.0);
                assert!(names_field(&answer, field), "{answer}");
            }
            if let Some(min) = spec["minimum"].as_f64() {
                let (at, answer) = estimate(&app, with(num(min))).await;
                assert_eq!(at, 200, "{schema}.{field} = {min} (its minimum): {answer}");
                let (under, answer) = estimate(&app, with(num(min - 1.0))).await;
                assert_eq!(under, 422, "{schema}.{field} = {}: {answer}", min - 1.0);
                assert!(names_field(&answer, field), "{answer}");
            }
            if let Some(max) = spec["maxLength"].as_u64() {
                let at = "u".repeat(max as usize);
                assert_eq!(estimate(&app, with(json!(at))).await.0, 200);
                let (over, answer) = estimate(&app, with(json!(format!("{at}u")))).await;
                assert_eq!(over, 422, "{schema}.{field} longer than {max}: {answer}");
                assert!(names_field(&answer, field), "{answer}");
            }
        }
        // An undocumented field is refused by name.
        let mut body = base.clone();
        body["colour"] = json!("red");
        let (status, answer) = estimate(&app, body).await;
        assert_eq!(status, 422);
        assert!(names_field(&answer, "colour"), "{answer}");
    }

    // A subscription made of the documented examples (with a reachable target) is created.
    let receiver = Receiver::start().await;
    let props = doc["components"]["schemas"]["SubscriptionRequest"]["properties"]
        .as_object()
        .unwrap();
    let mut body = json!({});
    for (field, spec) in props {
        body[field.as_str()] = spec["example"].clone();
    }
    body["target_url"] = json!(receiver.url);
    let res = app.post("/v1/subscriptions", &body).await;
    assert_eq!(res.status(), 201, "{body}: {:?}", res.text().await);
}

/// The documented properties of `schema`, and the ones it says are always there.
fn documented(doc: &Value, schema: &str) -> (Vec<String>, Vec<String>) {
    let s = &doc["components"]["schemas"][schema];
    let mut all: Vec<String> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    all.sort();
    let required = s["required"]
        .as_array()
        .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (all, required)
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn answers_carry_exactly_the_documented_fields() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let rx = Receiver::start().await;
    let sub: Value = app
        .post(
            "/v1/subscriptions",
            &json!({"target_url": rx.url, "event_types": ["generation.*"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let g = app.generate(json!({"prompt": "a"})).await;
    let g = app.wait_terminal(g["id"].as_str().unwrap()).await;
    rx.wait_for(2, Duration::from_secs(10)).await;
    let deliveries: Value = app
        .get(&format!(
            "/v1/subscriptions/{}/deliveries",
            sub["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    let one = &deliveries["data"][0];
    let detail: Value = app
        .get(&format!("/v1/deliveries/{}", one["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    let (status, estimate) = estimate(&app, json!({"prompt": "a"})).await;
    assert_eq!(status, 200);
    for (schema, answer, optional) in [
        ("Generation", &g, &[][..]),
        ("Subscription", &sub, &[][..]),
        ("Delivery", one, &["attempts_log"][..]),
        ("Delivery", &detail, &[][..]),
        ("Estimate", &estimate, &[][..]),
    ] {
        let (all, required) = documented(&doc, schema);
        let given = keys(answer);
        let expected: Vec<String> = all
            .iter()
            .filter(|k| !optional.contains(&k.as_str()))
            .cloned()
            .collect();
        assert_eq!(given, expected, "{schema}: {answer}");
        for field in required {
            assert!(!answer[&field].is_null(), "{schema}.{field} is required");
        }
    }
}
