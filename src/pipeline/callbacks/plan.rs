//! Deciding what a batch of fal results does, in memory, from the generations as read: the
//! answer to each, the callbacks to record, the generations to finish (as they will be stored)
//! and the events that announce them. Both ways of writing a batch (`super::apply_many`) start
//! here.
use crate::domain::event_type::EventType;
use crate::domain::ids::GenerationId;
use crate::wire::GenerationObject;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Value};
use sqlx::types::Json;

use super::{Answers, Applied, ApplyError, FalResult, Incoming};
use crate::domain::states::GenerationStatus;
use crate::{
    fal::{errors::has_content_policy_violation, models},
    storage::{
        callbacks::NewCallback,
        events::NewEvent,
        generations::{Generation, LockedForCallbacks},
    },
};

pub struct Plan<'a> {
    pub answers: Answers,
    pub callbacks: Vec<NewCallback<'a>>,
    /// The generations this batch finishes, in order, as they will be stored.
    pub finished: Vec<GenerationId>,
    pub rows: HashMap<GenerationId, Generation>,
    /// Each generation's `updated_at` as read: the version an unlocked write must still find.
    pub versions: HashMap<GenerationId, DateTime<Utc>>,
    /// The generations read as `accepted` (not yet recorded as submitted).
    pub read_accepted: HashSet<GenerationId>,
    pub events: Vec<NewEvent>,
    /// Cancelled generations whose held reservation this batch settles (fal's final word), with
    /// what fal's result costs.
    pub released: Vec<(GenerationId, i64)>,
}

impl<'a> Plan<'a> {
    pub fn make(batch: &'a [Incoming], read: Vec<LockedForCallbacks>) -> Plan<'a> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut rows: HashMap<GenerationId, Generation> = HashMap::with_capacity(read.len());
        for l in read {
            seen.extend(l.seen.unwrap_or_default());
            rows.insert(l.generation.id, l.generation);
        }
        let versions = rows.values().map(|g| (g.id, g.updated_at)).collect();
        let read_accepted = rows
            .values()
            .filter(|g| g.status == GenerationStatus::Accepted)
            .map(|g| g.id)
            .collect();
        let now = Utc::now().trunc_subsecs(6);
        let mut plan = Plan {
            answers: Vec::with_capacity(batch.len()),
            callbacks: Vec::with_capacity(batch.len()),
            finished: Vec::new(),
            rows: HashMap::new(),
            versions,
            read_accepted,
            events: Vec::new(),
            released: Vec::new(),
        };
        for item in batch {
            let answer = plan.decide(item, &mut rows, &mut seen, now);
            plan.answers.push(answer);
        }
        plan.rows = rows;
        plan
    }

    fn decide(
        &mut self,
        item: &'a Incoming,
        rows: &mut HashMap<GenerationId, Generation>,
        seen: &mut HashSet<String>,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let r = &item.result;
        let g = rows
            .get_mut(&item.generation_id)
            .ok_or(ApplyError::UnknownGeneration)?;
        if seen.contains(&r.request_id) {
            return Ok(Applied::Duplicate);
        }
        let record = |announced| NewCallback {
            generation_id: item.generation_id,
            fal_request_id: &r.request_id,
            source: item.source,
            fal_status: &r.status,
            body: &item.raw,
            announced,
            received_at: item.received_at,
        };
        if g.is_terminal() {
            tracing::info!(generation = %g.public_id(), fal_request_id = %r.request_id, status = %g.status, "result for a finished generation recorded, not announced");
            // A cancel that fal may have been running held its reservation for this word.
            if g.reservation_held_since.take().is_some() {
                self.released.push((g.id, outcome(g, r).cost_micros));
            }
            self.callbacks.push(record(false));
            seen.insert(r.request_id.clone());
            return Ok(Applied::RecordedOnly);
        }
        if let Some(stored) = g.fal_request_id.as_deref().filter(|s| *s != r.request_id) {
            return Err(ApplyError::Contradiction {
                stored: stored.to_owned(),
                received: r.request_id.clone(),
            });
        }
        self.callbacks.push(record(true));
        if g.status == GenerationStatus::Accepted {
            // fal's result beat the stored answer to our submission: announce the queued state
            // first, so every generation's stream reads queued → completed/failed.
            g.status = GenerationStatus::Queued;
            debug_assert!(GenerationStatus::Accepted.may_become(g.status));
            g.fal_request_id = Some(r.request_id.clone());
            g.submitted_at = Some(now);
            g.updated_at = now;
            self.events.push(NewEvent {
                tenant_id: g.tenant_id,
                kind: EventType::GenerationQueued,
                generation_id: Some(g.id),
                data: GenerationObject::of(g).value(),
            });
        }
        let kind = finish(g, r, now);
        self.events.push(NewEvent {
            tenant_id: g.tenant_id,
            kind,
            generation_id: Some(g.id),
            data: GenerationObject::of(g).value(),
        });
        seen.insert(r.request_id.clone());
        self.finished.push(g.id);
        Ok(Applied::Finished(kind))
    }

    /// The finished generations, as they will be stored.
    pub fn done(&self) -> Vec<&Generation> {
        self.finished.iter().map(|id| &self.rows[id]).collect()
    }
}

/// Finishes `g` in memory exactly as `generations::finish_sql` stores it; returns the event
/// type that announces it.
fn finish(g: &mut Generation, r: &FalResult, at: DateTime<Utc>) -> EventType {
    let o = outcome(g, r);
    g.status = o.status;
    g.result = o.result.map(Json);
    g.seed = o.seed.or(g.seed);
    g.cost_micros = Some(o.cost_micros);
    g.error = o.error.map(Json);
    g.fal_request_id.get_or_insert_with(|| r.request_id.clone());
    g.finished_at = Some(at);
    g.updated_at = at;
    debug_assert!(GenerationStatus::Queued.may_become(o.status));
    o.status
        .announced_by()
        .expect("a finished state is announced")
}

struct Outcome {
    status: GenerationStatus,
    result: Option<Value>,
    seed: Option<i64>,
    cost_micros: i64,
    error: Option<Value>,
}

fn outcome(g: &Generation, r: &FalResult) -> Outcome {
    let failed = |error: Value| Outcome {
        status: GenerationStatus::Failed,
        result: None,
        seed: None,
        cost_micros: 0,
        error: Some(error),
    };
    let payload = r.payload.as_ref().filter(|p| !p.is_null());
    if r.status != "OK" {
        let policy = payload.is_some_and(has_content_policy_violation);
        // fal gave up waiting for it to start: the caller's own deadline, not a fault to retry.
        let timed_out = payload.is_some_and(|p| p["error_type"] == "request_timeout")
            && (g.start_timeout_secs.is_some()
                || payload.is_some_and(|p| p["timeout_type"] == "user"));
        let lost_sync = payload.is_some_and(|p| {
            p["error_type"] == crate::pipeline::reconciler::SYNC_RESULT_UNAVAILABLE
        });
        let (code, message) = if lost_sync {
            (
                "sync_result_unavailable",
                "fal's callback for this sync_mode request never came, and fal does not keep sync_mode results: the images are lost. Send it again (without sync_mode, fal keeps the result for recovery)".to_owned(),
            )
        } else if timed_out {
            (
                "start_timeout",
                "fal did not start this request before its start timeout (start_timeout_secs) passed; it did not run and is not charged".to_owned(),
            )
        } else if policy {
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
    let served = r.endpoint_id.as_deref().filter(|e| *e != g.model);
    let mut result = json!({
        "images": images,
        "seed": payload["seed"],
        "has_nsfw_concepts": payload.get("has_nsfw_concepts").cloned().unwrap_or(json!([])),
        "timings": payload.get("timings").cloned().unwrap_or(json!({})),
        "prompt": payload.get("prompt").cloned().unwrap_or(Value::Null),
    });
    if let Some(endpoint) = served {
        result["served_model"] = json!(endpoint);
    }
    Outcome {
        status: GenerationStatus::Completed,
        cost_micros: actual_cost(g, served, &images),
        result: Some(result),
        seed,
        error: None,
    }
}

/// The price rule applied to what fal actually produced (real sizes) on the endpoint that ran
/// it — a fallback's own price when fal reported one we know, else the endpoint asked for —
/// falling back to the estimate when fal did not report dimensions.
fn actual_cost(g: &Generation, served: Option<&str>, images: &[Value]) -> i64 {
    let Some(model) = served
        .and_then(models::Model::lookup)
        .or_else(|| models::Model::lookup(&g.model))
    else {
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
