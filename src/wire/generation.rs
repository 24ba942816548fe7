//! The generation object.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    domain::{
        ids::{BatchId, GenerationId},
        money::usd,
        states::{GenerationStatus, Priority},
    },
    storage::generations::Generation,
};

/// A generation, as answers, events and webhooks carry it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Generation)]
pub struct GenerationObject<'a> {
    /// The batch it was accepted in (`POST /v1/batches`).
    pub batch_id: Option<BatchId>,
    pub cached: bool,
    /// When fal finished it (or it was cancelled or failed).
    pub completed_at: Option<DateTime<Utc>>,
    pub cost_micros: Option<i64>,
    #[schema(value_type = Option<f64>)]
    pub cost_usd: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub end_user: Option<&'a str>,
    /// Why it failed or was cancelled: `{code, message, …}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<&'a Value>,
    pub estimated_cost_micros: i64,
    #[schema(value_type = f64)]
    pub estimated_cost_usd: Value,
    pub fal_request_id: Option<&'a str>,
    #[schema(value_type = Option<Vec<bool>>)]
    pub has_nsfw_concepts: Option<Value>,
    pub id: GenerationId,
    /// `{url, width, height, content_type}` each, once completed.
    #[schema(value_type = Option<Vec<Object>>)]
    pub images: Option<Value>,
    /// The normalised input: defaults filled in, a preset resolved to pixels.
    #[schema(value_type = Object)]
    pub input: &'a Value,
    pub links: Links,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a Value>,
    pub model: &'a str,
    /// Always `generation`.
    pub object: &'static str,
    /// fal's queue priority: `normal`, or `low` (waits behind all normal work).
    pub priority: Priority,
    pub seed: Option<i64>,
    /// The endpoint that ran it, when fal reported a fallback to another one than `model`
    /// (only with `FLUXGATE_FAL_FALLBACKS=on`); `cost_micros` is then that endpoint's price.
    /// `null` otherwise.
    pub served_model: Option<&'a str>,
    pub status: GenerationStatus,
    pub submitted_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub timings: Option<Value>,
    pub webhook_url: Option<&'a str>,
}

/// Where to read, follow and cancel it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = GenerationLinks)]
pub struct Links {
    pub cancel: String,
    pub events: String,
    #[serde(rename = "self")]
    pub itself: String,
}

impl<'a> GenerationObject<'a> {
    pub fn of(g: &'a Generation) -> Self {
        let result = g.result.as_ref().map(|r| &r.0);
        let part = |name: &str| result.map(|r| r[name].clone());
        let id = g.id;
        GenerationObject {
            batch_id: g.batch_id,
            cached: g.cached,
            completed_at: g.finished_at,
            cost_micros: g.cost_micros,
            cost_usd: g.cost_micros.map(usd),
            created_at: g.created_at,
            end_user: g.end_user.as_deref(),
            error: g.error.as_ref().map(|e| &e.0),
            estimated_cost_micros: g.estimated_cost_micros,
            estimated_cost_usd: usd(g.estimated_cost_micros),
            fal_request_id: g.fal_request_id.as_deref(),
            has_nsfw_concepts: part("has_nsfw_concepts"),
            id,
            images: part("images"),
            input: &g.input.0,
            links: Links {
                cancel: format!("/v1/generations/{id}/cancel"),
                events: format!("/v1/generations/{id}/events"),
                itself: format!("/v1/generations/{id}"),
            },
            metadata: g.metadata.as_ref().map(|m| &m.0),
            model: &g.model,
            object: "generation",
            priority: g.priority,
            seed: g.seed,
            served_model: result.and_then(|r| r["served_model"].as_str()),
            status: g.status,
            submitted_at: g.submitted_at,
            timings: part("timings"),
            webhook_url: g.webhook_url.as_deref(),
        }
    }

    /// Each image's `url` passed through `relink` (which answers `None` to leave one as it is):
    /// how an answer mints fresh links to private copies.
    pub fn relinked(mut self, relink: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(images) = self.images.as_mut().and_then(Value::as_array_mut) {
            for image in images.iter_mut().filter_map(Value::as_object_mut) {
                let fresh = image.get("url").and_then(Value::as_str).and_then(&relink);
                if let Some(url) = fresh {
                    image.insert("url".into(), Value::String(url));
                }
            }
        }
        self
    }

    /// As a JSON value: the `data` of its events, which fan-out reads.
    pub fn value(&self) -> Value {
        serde_json::to_value(self).expect("a generation always serializes")
    }
}
