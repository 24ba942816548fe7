//! Turning fal results (webhooks or the reconciler) into state: in ONE transaction each callback
//! is recorded (unique on fal's request id), its generation finishes, and its event is appended
//! — a whole batch of callbacks at a time (`ingest.rs` gathers them).
//! A duplicate changes nothing; a result for a generation that already finished is recorded but
//! never announced, so a generation finishes — and fans out — exactly once.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use crate::{
    fal::{errors::has_content_policy_violation, models},
    governance::budgets,
    storage::{
        self, callbacks::NewCallback, delivery_queue::Claimed, events::NewEvent,
        generations::Generation,
    },
};

/// fal's webhook body (fal-api.md §3), parsed leniently: only `request_id` and `status` are
/// required; `payload` may be absent or null.
#[derive(Debug, Clone, Deserialize)]
pub struct FalResult {
    pub request_id: String,
    #[serde(default)]
    pub gateway_request_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default)]
    pub payload_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The generation finished with this event type.
    Finished(&'static str),
    /// Already recorded: nothing changed.
    Duplicate,
    /// Recorded, but the generation had already finished: not announced.
    RecordedOnly,
}

impl Applied {
    pub fn label(&self) -> &'static str {
        match self {
            Applied::Finished(_) => "applied",
            Applied::Duplicate => "duplicate",
            Applied::RecordedOnly => "recorded_only",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no such generation")]
    UnknownGeneration,
    #[error("this generation is bound to fal request {stored}, not {received}")]
    Contradiction { stored: String, received: String },
    #[error("callbacks are not being processed right now (shutting down)")]
    Unavailable,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A fal result to apply to its generation.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub generation_id: Uuid,
    pub result: FalResult,
    /// The body as received: recorded verbatim.
    pub raw: Value,
    /// `webhook` or `reconciler`.
    pub source: &'static str,
    /// When the request reached us (or the reconciler fetched the result).
    pub received_at: DateTime<Utc>,
}

/// Applies one result; see `apply_many`.
pub async fn apply(pool: &sqlx::PgPool, incoming: Incoming) -> Result<Applied, ApplyError> {
    let (mut answers, _) = apply_many(pool, std::slice::from_ref(&incoming), None).await?;
    answers.pop().unwrap_or(Err(ApplyError::UnknownGeneration))
}

/// One answer per result, in order.
pub type Answers = Vec<Result<Applied, ApplyError>>;

/// The deliveries a batch created.
#[derive(Debug, Default)]
pub struct Written {
    /// Leased to the caller, to send now that the batch has committed.
    pub leased: Vec<Claimed>,
    /// Left for the delivery workers to claim.
    pub unleased: i64,
}

/// Applies a batch of results in ONE transaction of four round trips whatever its size: lock
/// the generations and read which results are recorded already; finish them in memory; then
/// write the terminal states, the callbacks, the budget settlements and the events with their
/// fan-out, one statement each. A failed transaction fails the whole batch (the caller retries
/// its items one by one). With `lease`, the deliveries come back claimed by the caller, to send
/// once this returns (see `events::append_many`).
pub async fn apply_many(
    pool: &sqlx::PgPool,
    batch: &[Incoming],
    lease: Option<f64>,
) -> Result<(Answers, Written), ApplyError> {
    let ids: Vec<Uuid> = batch.iter().map(|i| i.generation_id).collect();
    let request_ids: Vec<&str> = batch.iter().map(|i| i.result.request_id.as_str()).collect();
    let mut tx = pool.begin().await?;
    let locked = storage::generations::lock_for_callbacks(&mut *tx, &ids, &request_ids).await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut rows: HashMap<Uuid, Generation> = HashMap::with_capacity(locked.len());
    for l in locked {
        seen.extend(l.seen.unwrap_or_default());
        rows.insert(l.generation.id, l.generation);
    }
    let now = Utc::now().trunc_subsecs(6);
    let mut answers = Vec::with_capacity(batch.len());
    let mut callbacks = Vec::with_capacity(batch.len());
    let mut finished: Vec<Uuid> = Vec::new();
    let mut events: Vec<NewEvent> = Vec::new();
    for item in batch {
        let r = &item.result;
        let Some(g) = rows.get_mut(&item.generation_id) else {
            answers.push(Err(ApplyError::UnknownGeneration));
            continue;
        };
        if seen.contains(&r.request_id) {
            answers.push(Ok(Applied::Duplicate));
            continue;
        }
        let record = |announced| NewCallback {
            generation_id: g.id,
            fal_request_id: &r.request_id,
            source: item.source,
            fal_status: &r.status,
            body: &item.raw,
            announced,
            received_at: item.received_at,
        };
        if g.is_terminal() {
            tracing::info!(generation = %g.public_id(), fal_request_id = %r.request_id, status = %g.status, "result for a finished generation recorded, not announced");
            callbacks.push(record(false));
            seen.insert(r.request_id.clone());
            answers.push(Ok(Applied::RecordedOnly));
            continue;
        }
        if let Some(stored) = g.fal_request_id.as_deref().filter(|s| *s != r.request_id) {
            answers.push(Err(ApplyError::Contradiction {
                stored: stored.to_owned(),
                received: r.request_id.clone(),
            }));
            continue;
        }
        callbacks.push(record(true));
        if g.status == "accepted" {
            // fal's result beat the stored answer to our submission: announce the queued state
            // first, so every generation's stream reads queued → completed/failed.
            g.status = "queued".to_owned();
            g.fal_request_id = Some(r.request_id.clone());
            g.submitted_at = Some(now);
            g.updated_at = now;
            events.push(NewEvent {
                tenant_id: g.tenant_id,
                kind: "generation.queued",
                generation_id: Some(g.id),
                data: g.to_json(),
            });
        }
        let kind = finish(g, r, now);
        events.push(NewEvent {
            tenant_id: g.tenant_id,
            kind,
            generation_id: Some(g.id),
            data: g.to_json(),
        });
        seen.insert(r.request_id.clone());
        finished.push(g.id);
        answers.push(Ok(Applied::Finished(kind)));
    }
    if !finished.is_empty() {
        let done: Vec<&Generation> = finished.iter().map(|id| &rows[id]).collect();
        storage::generations::finish_many(&mut tx, &done).await?;
        let settlements: Vec<_> = done.iter().map(|g| g.settlement()).collect();
        budgets::settle_many(&mut tx, &settlements).await?;
    }
    if !callbacks.is_empty() {
        storage::callbacks::record_many(&mut *tx, &callbacks).await?;
    }
    let mut written = Written::default();
    if !events.is_empty() {
        let batch = storage::events::append_many(&mut tx, &events, lease).await?;
        written = Written {
            leased: batch.leased,
            unleased: batch.unleased,
        };
    }
    tx.commit().await?;
    Ok((answers, written))
}

/// Finishes `g` in memory exactly as `generations::finish_many` stores it; returns the event
/// type that announces it.
fn finish(g: &mut Generation, r: &FalResult, at: DateTime<Utc>) -> &'static str {
    let o = outcome(g, r);
    g.status = o.status.to_owned();
    g.result = o.result.map(Json);
    g.seed = o.seed.or(g.seed);
    g.cost_micros = Some(o.cost_micros);
    g.error = o.error.map(Json);
    g.fal_request_id.get_or_insert_with(|| r.request_id.clone());
    g.finished_at = Some(at);
    g.updated_at = at;
    if o.status == "completed" {
        "generation.completed"
    } else {
        "generation.failed"
    }
}

struct Outcome {
    status: &'static str,
    result: Option<Value>,
    seed: Option<i64>,
    cost_micros: i64,
    error: Option<Value>,
}

fn outcome(g: &Generation, r: &FalResult) -> Outcome {
    let failed = |error: Value| Outcome {
        status: "failed",
        result: None,
        seed: None,
        cost_micros: 0,
        error: Some(error),
    };
    let payload = r.payload.as_ref().filter(|p| !p.is_null());
    if r.status != "OK" {
        let policy = payload.is_some_and(has_content_policy_violation);
        let (code, message) = if policy {
            ("content_policy_violation", "fal's content policy refused this request. Rephrase the prompt (or replace the source images) without the flagged content and try again.".to_owned())
        } else {
            (
                "fal_error",
                r.error
                    .clone()
                    .unwrap_or_else(|| "fal reported an error".into()),
            )
        };
        return failed(json!({
            "code": code,
            "message": message,
            "fal_error": r.error,
            "details": payload.map(|p| p.get("detail").cloned().unwrap_or_else(|| p.clone())),
        }));
    }
    let Some(payload) = payload else {
        return failed(json!({
            "code": "fal_payload_error",
            "message": r.payload_error.clone().unwrap_or_else(|| "fal completed the request without a result".into()),
        }));
    };
    let images = payload["images"].as_array().cloned().unwrap_or_default();
    if images.is_empty() {
        return failed(
            json!({"code": "no_media_generated", "message": "fal completed the request but returned no images"}),
        );
    }
    let seed = payload["seed"]
        .as_i64()
        .or_else(|| payload["seed"].as_u64().map(|s| s as i64));
    let result = json!({
        "images": images,
        "seed": payload["seed"],
        "has_nsfw_concepts": payload.get("has_nsfw_concepts").cloned().unwrap_or(json!([])),
        "timings": payload.get("timings").cloned().unwrap_or(json!({})),
        "prompt": payload.get("prompt").cloned().unwrap_or(Value::Null),
    });
    Outcome {
        status: "completed",
        cost_micros: actual_cost(g, &images),
        result: Some(result),
        seed,
        error: None,
    }
}

/// The price rule applied to what fal actually produced (real sizes), falling back to the
/// estimate when fal did not report dimensions.
fn actual_cost(g: &Generation, images: &[Value]) -> i64 {
    let Some(model) = models::Model::lookup(&g.model) else {
        return g.estimated_cost_micros;
    };
    let mut mp = 0u64;
    for img in images {
        match (img["width"].as_u64(), img["height"].as_u64()) {
            (Some(w), Some(h)) if w > 0 && h > 0 => {
                mp += (w * h).div_ceil(models::MEGAPIXEL).max(1)
            }
            _ => return g.estimated_cost_micros,
        }
    }
    let sources = g.input.0["image_urls"].as_array().map_or(0, Vec::len) as u64;
    ((mp + sources) * model.price_per_mp_micro_usd) as i64
}
