//! Turning fal results (webhooks or the reconciler) into state: atomically, each callback is
//! recorded (unique on fal's request id), its generation finishes, and its events are appended
//! with their fan-out — a whole batch of callbacks at a time (`ingest.rs` gathers them).
//! A duplicate changes nothing; a result for a generation that already finished is recorded but
//! never announced, so a generation finishes — and fans out — exactly once.
use crate::domain::event_type::EventType;
use crate::domain::ids::GenerationId;
mod plan;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use self::plan::Plan;
use crate::storage::{
    self,
    delivery_queue::Claimed,
    generations::{FinishColumns, Generation, LockedForCallbacks},
};

/// fal's webhook body, parsed leniently (fal's own clients treat every field but these two as optional): only `request_id` and `status` are
/// required; `payload` may be absent or null.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FalResult {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_request_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_error: Option<String>,
    /// The endpoint that ran the request, if fal says (a model fallback may run another one
    /// than the endpoint it was submitted to). How fal reports it is not documented; this is
    /// read where fal's own requests name an endpoint, and ignored when it is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
}

impl FalResult {
    /// A result the reconciler fetched, as fal's webhook would have carried it: `OK` with its
    /// payload, or `ERROR` with what went wrong.
    pub fn recovered(request_id: &str, error: Option<String>, payload: Value) -> FalResult {
        FalResult {
            request_id: request_id.to_owned(),
            gateway_request_id: None,
            status: if error.is_none() { "OK" } else { "ERROR" }.to_owned(),
            error,
            payload: (!payload.is_null()).then_some(payload),
            payload_error: None,
            endpoint_id: None,
        }
    }

    /// The body recorded for a result that came without one (`recovered`).
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The generation finished with this event type.
    Finished(EventType),
    /// Already recorded: nothing changed.
    Duplicate,
    /// Recorded, but the generation had already finished: not announced.
    RecordedOnly,
    /// Taken, and queued for its images to be copied: announced once they are (`copier.rs`).
    Copying,
}

impl Applied {
    pub fn label(&self) -> &'static str {
        match self {
            Applied::Finished(_) => "applied",
            Applied::Duplicate => "duplicate",
            Applied::RecordedOnly => "recorded_only",
            Applied::Copying => "copying",
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
    pub generation_id: GenerationId,
    pub result: FalResult,
    /// The body as received (JSON): recorded verbatim.
    pub raw: String,
    /// `webhook` or `reconciler`.
    pub source: &'static str,
    /// When the request reached us (or the reconciler fetched the result).
    pub received_at: DateTime<Utc>,
}

impl Incoming {
    /// Whether this is a successful result with images to copy.
    pub fn has_images(&self) -> bool {
        self.result.status == "OK"
            && self
                .result
                .payload
                .as_ref()
                .is_some_and(|p| p["images"].as_array().is_some_and(|i| !i.is_empty()))
    }
}

/// Applies one result; see `apply_many`.
pub async fn apply(pool: &sqlx::PgPool, incoming: Incoming) -> Result<Applied, ApplyError> {
    apply_on(&mut *pool.acquire().await?, incoming).await
}

/// `apply` on a connection the caller holds.
pub async fn apply_on(conn: &mut PgConnection, incoming: Incoming) -> Result<Applied, ApplyError> {
    let (mut answers, _) =
        apply_many(conn, std::slice::from_ref(&incoming), None, Vec::new()).await?;
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

/// Applies a batch of results, answering each in order. Usually in one or two round trips
/// whatever its size: take the generations as this instance remembers submitting them
/// (`remembered`, in the batch's order, or empty), or read them and which results are
/// recorded already (no lock); decide everything in memory (`plan.rs`); write it all in ONE
/// statement that commits on its own, guarded by each generation's version as read — or, for
/// one read `accepted`, by its having only been recorded as submitted since (fal's answer and
/// its callback race). A generation that moved on otherwise is applied again the careful way:
/// `apply_locked`. Batches that settle budgets always go that way. With `lease`, the
/// deliveries come back claimed by the caller, to send once this returns (see
/// `events::append_many`).
pub async fn apply_many(
    conn: &mut PgConnection,
    batch: &[Incoming],
    lease: Option<f64>,
    remembered: Vec<Option<Generation>>,
) -> Result<(Answers, Written), ApplyError> {
    let read = read(conn, batch, remembered).await?;
    let plan = Plan::make(batch, read);
    if plan.callbacks.is_empty() {
        // Unknown, duplicate or contradicting: all final, nothing to write.
        return Ok((plan.answers, Written::default()));
    }
    let done = plan.done();
    if done.iter().any(|g| g.settlement().reserves()) || !plan.released.is_empty() {
        return apply_locked(conn, batch, lease).await;
    }
    let finished = FinishColumns::of(&done, |g| {
        (plan.versions[&g.id], plan.read_accepted.contains(&g.id))
    });
    let appended = storage::callbacks::write_unlocked(
        &mut *conn,
        finished,
        &plan.callbacks,
        &plan.events,
        lease,
    )
    .await?;
    let applied: HashSet<GenerationId> = appended
        .events
        .iter()
        .filter_map(|e| e.generation_id)
        .collect();
    let mut written = Written {
        leased: appended.leased,
        unleased: appended.unleased,
    };
    let mut answers = plan.answers;
    let missed: Vec<usize> = (0..batch.len())
        .filter(|&i| {
            matches!(answers[i], Ok(Applied::Finished(_)))
                && !applied.contains(&batch[i].generation_id)
        })
        .collect();
    if !missed.is_empty() {
        let again: Vec<Incoming> = missed.iter().map(|&i| batch[i].clone()).collect();
        let (retried, more) = apply_locked(conn, &again, lease).await?;
        for (i, answer) in missed.into_iter().zip(retried) {
            answers[i] = answer;
        }
        written.leased.extend(more.leased);
        written.unleased += more.unleased;
    }
    Ok((answers, written))
}

/// The careful way, in one transaction: lock the generations (in id order) and read which
/// results are recorded already; decide in memory; write the terminal states, the callbacks,
/// the budget settlements (held ones that fal's word releases too) and the events with their
/// fan-out, one statement each.
async fn apply_locked(
    conn: &mut PgConnection,
    batch: &[Incoming],
    lease: Option<f64>,
) -> Result<(Answers, Written), ApplyError> {
    let (ids, request_ids) = keys(batch);
    let mut tx = conn.begin().await?;
    let locked = storage::generations::for_callbacks(&mut *tx, &ids, &request_ids, true).await?;
    let plan = Plan::make(batch, locked);
    let done = plan.done();
    if !done.is_empty() {
        storage::generations::finish_many(&mut tx, &done).await?;
        let settlements: Vec<_> = done.iter().map(|g| g.settlement()).collect();
        storage::budget_usage::settle_many(&mut tx, &settlements).await?;
    }
    for &(id, cost) in &plan.released {
        storage::generations::release_hold(&mut tx, id, cost).await?;
    }
    if !plan.callbacks.is_empty() {
        storage::callbacks::record_many(&mut *tx, &plan.callbacks).await?;
    }
    let mut written = Written::default();
    if !plan.events.is_empty() {
        let appended = storage::events::append_many(&mut *tx, &plan.events, lease).await?;
        written = Written {
            leased: appended.leased,
            unleased: appended.unleased,
        };
    }
    tx.commit().await?;
    Ok((plan.answers, written))
}

/// The generations of `batch` as last written: as this instance remembers submitting them, else
/// read (without a lock) with which of the results are recorded already. A remembered row is
/// taken as unseen: a duplicate then fails the write's guard and is sorted out under the lock.
async fn read(
    conn: &mut PgConnection,
    batch: &[Incoming],
    mut remembered: Vec<Option<Generation>>,
) -> Result<Vec<LockedForCallbacks>, sqlx::Error> {
    let (ids, request_ids) = keys(batch);
    remembered.resize(ids.len(), None);
    let (mut read, mut missing, mut missing_rids) = (Vec::new(), Vec::new(), Vec::new());
    for ((row, id), rid) in remembered.into_iter().zip(ids).zip(request_ids) {
        match row {
            Some(generation) => read.push(LockedForCallbacks {
                generation,
                seen: None,
            }),
            None => {
                missing.push(id);
                missing_rids.push(rid);
            }
        }
    }
    if !missing.is_empty() {
        read.extend(
            storage::generations::for_callbacks(conn, &missing, &missing_rids, false).await?,
        );
    }
    Ok(read)
}

fn keys(batch: &[Incoming]) -> (Vec<GenerationId>, Vec<&str>) {
    batch
        .iter()
        .map(|i| (i.generation_id, i.result.request_id.as_str()))
        .unzip()
}
