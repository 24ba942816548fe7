//! The copier stage: results whose images go to the store wait in `image_copies` (the webhook
//! queued them and answered at once). A copier, on any instance, leases a few, downloads their
//! images through the SSRF-guarded client, writes them to the store, and only then applies the
//! result — so `generation.completed` is announced once, with the copies' links. A try that
//! fails is tried again with backoff (1 s, doubling to 1 min) until the result's deadline
//! (`FLUXGATE_COPY_DEADLINE_SECS` after fal's callback), after which it is announced with fal's
//! URLs and a `copy_error` per image.
//!
//! Up to 64 results copy at once, and freed slots are refilled while the others still copy.
//! Copied results are applied through the webhook's group commit (`Ingest`), sharing a
//! transaction with whatever else is queued, and those that finished together leave the queue
//! in one statement. Measured in `bench copies` at 200/s (178 KB PNGs): with each result
//! applied in its own transaction and passes of 16 waiting for their slowest, a pass took
//! 55–120 ms and the queue grew to seconds (callback → subscriber p50 5.6 s); through the group
//! commit, p50 84 ms; with slots refilled as they free and the store off the database's disk,
//! p50 26 / p99 164 ms.
//!
//! Crash safety: the row leaves the queue only after the result is applied. A copier that dies
//! mid-copy leaves its lease to expire and another copies again (the same objects, the same
//! bytes); one that dies between applying and deleting finds the result recorded when it tries
//! again (a duplicate, never announced twice) and only deletes the row.
use std::{collections::HashMap, time::Duration};

use futures_util::future::join_all;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    callbacks::{self, Applied, FalResult, Incoming},
    ingest::Ingest,
    Pipeline,
};
use crate::{
    assets::{Assets, COPY_TIMEOUT},
    domain::ids::GenerationId,
    storage::{self, image_copies::CopyJob},
};

/// Results copied at once by one instance: a result waits on its download (bounded on its own,
/// `FLUXGATE_IMAGE_DOWNLOAD_CONCURRENCY`), its write and the group commit in turn, and 16 slots
/// fell behind 200 results/s in `bench copies` (p50 0.3–2.2 s) when the commits slowed.
const BATCH: i64 = 64;
/// Free slots worth a lease statement while others copy (one per freed slot would be a
/// statement per result).
const REFILL: usize = 4;
/// A lease outlives a try (the copy's own timeout, then the apply) with room to spare.
const LEASE: Duration = Duration::from_secs(COPY_TIMEOUT.as_secs() + 30);
/// The longest wait between tries of one result.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle copier looks for work other instances queued (theirs wake only them).
const POLL: Duration = Duration::from_secs(1);

pub async fn run(p: Pipeline, ingest: Ingest, stop: CancellationToken) {
    let Some(assets) = p.assets.clone() else {
        return;
    };
    // Up to BATCH results in flight; freed slots are refilled while the others still copy, so
    // one slow download never holds the rest of a pass back.
    let mut running: JoinSet<Option<GenerationId>> = JoinSet::new();
    let mut leased: HashMap<tokio::task::Id, GenerationId> = HashMap::new();
    loop {
        let free = BATCH as usize - running.len();
        if running.is_empty() || free >= REFILL {
            match storage::image_copies::claim(&p.pool, free as i64, LEASE.as_secs_f64()).await {
                Ok(jobs) => {
                    for job in jobs {
                        let id = job.generation_id;
                        let (p, assets, ingest) = (p.clone(), assets.clone(), ingest.clone());
                        let task = running
                            .spawn(async move { copy(&p, &assets, Some(&ingest), job).await });
                        leased.insert(task.id(), id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not lease results to copy"),
            }
        }
        let wait = if running.is_empty() {
            match storage::image_copies::next_due(&p.pool).await {
                Ok(Some(due)) => (due - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(POLL),
                _ => POLL,
            }
        } else {
            POLL
        };
        tokio::select! {
            _ = stop.cancelled() => {
                // What is still copying is due again at once, for whichever instance is next.
                running.abort_all();
                let ids: Vec<GenerationId> = leased.into_values().collect();
                if let Err(e) = storage::image_copies::release(&p.pool, &ids).await {
                    tracing::warn!(error = %e, "could not release leased copies; their leases will run out");
                }
                return;
            }
            Some(first) = running.join_next_with_id(), if !running.is_empty() => {
                let mut finished = vec![first];
                while let Some(next) = running.try_join_next_with_id() {
                    finished.push(next);
                }
                let applied: Vec<GenerationId> = finished
                    .into_iter()
                    .filter_map(|f| {
                        let (task, applied) = f.map_or_else(|e| (e.id(), None), |(t, a)| (t, a));
                        leased.remove(&task);
                        applied
                    })
                    .collect();
                take_off(&p, &applied).await;
            }
            _ = p.copy_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass: lease the due results and copy (or give up on) each; returns how many were taken.
/// Each result is applied in a transaction of its own (tests drive passes by hand).
pub async fn copy_once(p: &Pipeline) -> Result<usize, sqlx::Error> {
    match p.assets.clone() {
        Some(assets) => copy_once_with(p, &assets, None).await,
        None => Ok(0),
    }
}

async fn copy_once_with(
    p: &Pipeline,
    assets: &Assets,
    ingest: Option<&Ingest>,
) -> Result<usize, sqlx::Error> {
    let jobs = storage::image_copies::claim(&p.pool, BATCH, LEASE.as_secs_f64()).await?;
    let n = jobs.len();
    let applied: Vec<_> = join_all(jobs.into_iter().map(|job| copy(p, assets, ingest, job)))
        .await
        .into_iter()
        .flatten()
        .collect();
    take_off(p, &applied).await;
    Ok(n)
}

/// Applied results leave the queue.
async fn take_off(p: &Pipeline, applied: &[GenerationId]) {
    if applied.is_empty() {
        return;
    }
    if let Err(e) = storage::image_copies::done(&p.pool, applied).await {
        // Applied, so a try again finds them recorded: it only deletes the rows.
        tracing::warn!(error = %e, "could not take applied results off the copy queue");
    }
}

#[tracing::instrument(skip_all, fields(generation = %job.generation_id, fal_request_id = %job.fal_request_id, attempt = job.attempts))]
/// Copies one result's images and applies it; `Some(its generation)` once it may leave the
/// queue.
async fn copy(
    p: &Pipeline,
    assets: &Assets,
    ingest: Option<&Ingest>,
    job: CopyJob,
) -> Option<GenerationId> {
    let mut result: FalResult = match serde_json::from_str(&job.body) {
        Ok(r) => r,
        Err(e) => {
            // It parsed when it was queued; only a hand-edited row fails here.
            tracing::error!(error = %e, "a queued result does not parse; it is dropped");
            return Some(job.generation_id);
        }
    };
    let max = job.max_images.clamp(1, 4) as usize;
    if let Some(payload) = result.payload.as_mut() {
        if let Err(e) = assets.copy(job.generation_id, payload, max).await {
            let reason = e.to_string();
            if chrono::Utc::now() < job.give_up_at {
                let delay = backoff(job.attempts);
                tracing::warn!(
                    reason,
                    retry_in_s = delay.as_secs_f64(),
                    "copying a result's images failed; will try again"
                );
                let _ = storage::image_copies::retry_later(
                    &p.pool,
                    job.generation_id,
                    delay.as_secs_f64(),
                    &reason,
                )
                .await;
                return None;
            }
            tracing::warn!(reason, "a result's images could not be copied before its deadline; announced with fal's URLs");
            // The payload may hold some copies already: start from fal's again.
            result = serde_json::from_str(&job.body).expect("it parsed above");
            if let Some(payload) = result.payload.as_mut() {
                Assets::give_up(payload, max, &reason);
            }
        }
    }
    let source: &'static str = if job.source == "reconciler" {
        "reconciler"
    } else {
        "webhook"
    };
    let incoming = Incoming {
        generation_id: job.generation_id,
        result,
        raw: job.body,
        source,
        received_at: job.received_at,
    };
    let id = job.generation_id;
    let applied = match ingest {
        Some(ingest) => ingest.apply(incoming).await,
        None => callbacks::apply(&p.pool, incoming).await,
    };
    match applied {
        Ok(applied) => {
            let label = applied.label();
            p.metrics
                .callbacks
                .with_label_values(&[source, label])
                .inc();
            tracing::info!(outcome = label, "a copied result is applied");
            debug_assert!(applied != Applied::Copying);
            Some(id)
        }
        // The lease runs out and another try applies it.
        Err(e) => {
            tracing::warn!(error = %e, "could not apply a copied result; will try again");
            None
        }
    }
}

/// 1 s after the first failed try, doubling to `MAX_BACKOFF`, give or take 20 %.
fn backoff(attempts: i32) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.clamp(1, 7).saturating_sub(1)).min(MAX_BACKOFF);
    crate::delivery::retry::jittered(base, &mut rand::thread_rng())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_back_off_from_a_second_to_a_minute() {
        let within = |d: Duration, s: f64| (s * 0.8..=s * 1.2).contains(&d.as_secs_f64());
        assert!(within(backoff(1), 1.0));
        assert!(within(backoff(2), 2.0));
        assert!(within(backoff(6), 32.0));
        assert!(within(backoff(7), 60.0));
        assert!(within(backoff(40), 60.0));
    }
}
