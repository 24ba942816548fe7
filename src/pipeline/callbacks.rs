//! Turning a fal result (webhook or reconciler) into state: in ONE transaction the callback is
//! recorded (unique on fal's request id), the generation finishes, and its event is appended.
//! A duplicate changes nothing; a result for a generation that already finished is recorded but
//! never announced, so a generation finishes — and fans out — exactly once.
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    fal::{errors::has_content_policy_violation, models},
    storage::{
        self,
        generations::{Finish, Generation},
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
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn apply(
    pool: &sqlx::PgPool,
    generation_id: Uuid,
    result: &FalResult,
    raw: &Value,
    source: &str,
) -> Result<Applied, ApplyError> {
    let mut tx = pool.begin().await?;
    let locked =
        storage::generations::lock_for_callback(&mut *tx, generation_id, &result.request_id)
            .await?
            .ok_or(ApplyError::UnknownGeneration)?;
    if locked.seen {
        return Ok(Applied::Duplicate);
    }
    let g = locked.generation;
    if g.is_terminal() {
        storage::callbacks::record(
            &mut *tx,
            g.id,
            &result.request_id,
            source,
            &result.status,
            raw,
            false,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(generation = %g.public_id(), fal_request_id = %result.request_id, status = %g.status, "result for a finished generation recorded, not announced");
        return Ok(Applied::RecordedOnly);
    }
    if let Some(stored) = g
        .fal_request_id
        .as_deref()
        .filter(|s| *s != result.request_id)
    {
        return Err(ApplyError::Contradiction {
            stored: stored.to_owned(),
            received: result.request_id.clone(),
        });
    }
    let outcome = outcome(&g, result);
    let finish = Finish {
        status: outcome.status,
        result: outcome.result.as_ref(),
        seed: outcome.seed,
        cost_micros: Some(outcome.cost_micros),
        error: outcome.error.as_ref(),
        fal_request_id: Some(&result.request_id),
    };
    let row = storage::generations::finish(&mut tx, g.id, finish)
        .await?
        .expect("locked, non-terminal row updates");
    storage::callbacks::record(
        &mut *tx,
        g.id,
        &result.request_id,
        source,
        &result.status,
        raw,
        true,
    )
    .await?;
    let kind = if outcome.status == "completed" {
        "generation.completed"
    } else {
        "generation.failed"
    };
    storage::events::append(&mut tx, row.tenant_id, kind, Some(row.id), row.to_json()).await?;
    tx.commit().await?;
    Ok(Applied::Finished(kind))
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
