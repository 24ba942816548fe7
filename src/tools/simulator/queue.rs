//! The request store and its state machine: `IN_QUEUE` → `IN_PROGRESS` → `COMPLETED`, plus
//! cancellation. Sharded maps under std mutexes, each held only for a map operation and never
//! across an await, so thousands of zero-latency requests don't contend.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use super::faults::JobFaults;
use crate::fal::models::{Model, NormalizedInput};

const SHARDS: usize = 16;

/// What was submitted; immutable once accepted.
#[derive(Debug)]
pub(crate) struct JobSpec {
    pub id: Uuid,
    pub model: &'static Model,
    pub input: NormalizedInput,
    /// The caller's seed, or the one the simulator drew.
    pub seed: u64,
    pub webhook: Option<String>,
    pub faults: JobFaults,
    /// Submission order among queued requests, for `queue_position`.
    pub seq: u64,
    /// `X-Fal-Request-Timeout`: how long it may wait to start.
    pub start_timeout: Option<std::time::Duration>,
    /// `X-Fal-Queue-Priority: low`: waits for a runner behind all normal work.
    pub low: bool,
    /// The fallback endpoint it ran on instead of `model` (`[sim:fallback=…]`, and only when
    /// the submit allowed fallbacks); reported in its webhook as `endpoint_id`.
    pub served_by: Option<&'static Model>,
}

/// How a finished request ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The model output, as `GET response_url` returns it.
    Success { output: Value, inference_time: f64 },
    /// A failed run: `status` and `body` are what `GET response_url` answers.
    Failure {
        status: u16,
        body: Value,
        error: String,
        error_type: String,
        inference_time: f64,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Queued,
    Running,
    Completed(Arc<Outcome>),
}

impl Phase {
    fn kind(&self) -> PhaseKind {
        match self {
            Phase::Queued => PhaseKind::Queued,
            Phase::Running => PhaseKind::Running,
            Phase::Completed(_) => PhaseKind::Completed,
        }
    }
}

/// Phase without payload, for watchers (SSE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    Queued,
    Running,
    Completed,
}

/// The answer to `PUT cancel_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// Was queued: removed, will never run.
    Removed,
    /// Is running: noted, it will still complete.
    Requested,
    AlreadyCompleted,
    NotFound,
}

struct Entry {
    spec: Arc<JobSpec>,
    phase: Phase,
    completed_at: Option<Instant>,
    watch: watch::Sender<PhaseKind>,
}

#[derive(Default)]
pub(crate) struct Store {
    shards: [Mutex<HashMap<Uuid, Entry>>; SHARDS],
    next_seq: AtomicU64,
    left_queue: AtomicU64,
    queued: AtomicU64,
}

impl Store {
    fn shard(&self, id: &Uuid) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        // v4 ids are random in their last byte, which spreads them evenly.
        let index = usize::from(id.as_bytes()[15]) % SHARDS;
        self.shards[index].lock().expect("store shard lock")
    }

    /// The next submission number, for `JobSpec::seq`.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores a new request as queued, or already completed (early-webhook requests).
    pub fn insert(&self, spec: Arc<JobSpec>, phase: Phase) {
        let completed_at = matches!(phase, Phase::Completed(_)).then(Instant::now);
        if matches!(phase, Phase::Queued) {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        let (watch, _) = watch::channel(phase.kind());
        let entry = Entry {
            spec: spec.clone(),
            phase,
            completed_at,
            watch,
        };
        self.shard(&spec.id).insert(spec.id, entry);
    }

    pub fn get(&self, id: &Uuid) -> Option<(Arc<JobSpec>, Phase)> {
        self.shard(id)
            .get(id)
            .map(|e| (e.spec.clone(), e.phase.clone()))
    }

    pub fn subscribe(&self, id: &Uuid) -> Option<watch::Receiver<PhaseKind>> {
        self.shard(id).get(id).map(|e| e.watch.subscribe())
    }

    /// Moves a queued request to running; false if it was cancelled (removed) meanwhile.
    pub fn start(&self, id: &Uuid) -> bool {
        let mut shard = self.shard(id);
        let Some(entry) = shard
            .get_mut(id)
            .filter(|e| matches!(e.phase, Phase::Queued))
        else {
            return false;
        };
        entry.phase = Phase::Running;
        entry.watch.send_replace(PhaseKind::Running);
        self.leave_queue();
        true
    }

    /// Records the outcome; false if the request is gone.
    pub fn complete(&self, id: &Uuid, outcome: Arc<Outcome>) -> bool {
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id) else {
            return false;
        };
        if matches!(entry.phase, Phase::Queued) {
            self.leave_queue();
        }
        entry.phase = Phase::Completed(outcome);
        entry.completed_at = Some(Instant::now());
        entry.watch.send_replace(PhaseKind::Completed);
        true
    }

    pub fn cancel(&self, id: &Uuid) -> CancelOutcome {
        let mut shard = self.shard(id);
        let Some(entry) = shard.get(id) else {
            return CancelOutcome::NotFound;
        };
        match entry.phase {
            Phase::Queued => {
                shard.remove(id);
                self.leave_queue();
                CancelOutcome::Removed
            }
            Phase::Running => CancelOutcome::Requested,
            Phase::Completed(_) => CancelOutcome::AlreadyCompleted,
        }
    }

    fn leave_queue(&self) {
        self.left_queue.fetch_add(1, Ordering::Relaxed);
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests ahead of this one. Exact while the queue is FIFO (one queue delay for all);
    /// an approximation otherwise, clamped to what is actually queued.
    pub fn queue_position(&self, spec: &JobSpec) -> u64 {
        let left = self.left_queue.load(Ordering::Relaxed);
        let queued = self.queued.load(Ordering::Relaxed);
        spec.seq.saturating_sub(left).min(queued.saturating_sub(1))
    }

    /// Requests currently waiting.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Forgets requests completed longer than `retention` ago, as fal expires results.
    pub fn evict(&self, retention: Duration) -> usize {
        let mut evicted = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().expect("store shard lock");
            let before = shard.len();
            shard.retain(|_, e| still_kept(e.completed_at, retention));
            evicted += before - shard.len();
        }
        evicted
    }
}

/// Unfinished requests are always kept; finished ones for `retention`.
fn still_kept(completed_at: Option<Instant>, retention: Duration) -> bool {
    completed_at.is_none_or(|at| at.elapsed() < retention)
}
