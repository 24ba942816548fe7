//! The copier stage: results whose images go to the store wait in `image_copies` (the webhook
//! queued them and answered at once). A copier, on any instance, leases a few, downloads their
//! images through the SSRF-guarded client, writes them to the store, and only then applies the
//! result — so `generation.completed` is announced once, with the copies' links. A try that
//! fails is tried again with backoff (1 s, doubling to 1 min) until the result's deadline
//! (`FLUXGATE_COPY_DEADLINE_SECS` after fal's callback), after which it is announced with fal's
//! URLs and a `copy_error` per image.
//!
//! Crash safety: the row leaves the queue only after the result is applied. A copier that dies
//! mid-copy leaves its lease to expire and another copies again (the same objects, the same
//! bytes); one that dies between applying and deleting finds the result recorded when it tries
//! again (a duplicate, never announced twice) and only deletes the row.
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{
    callbacks::{self, Applied, FalResult, Incoming},
    Pipeline,
};
use crate::{
    assets::{Assets, COPY_TIMEOUT},
    storage::{self, image_copies::CopyJob},
};

/// Results leased per pass.
const BATCH: i64 = 16;
/// A lease outlives a try (the copy's own timeout, then the apply) with room to spare.
const LEASE: Duration = Duration::from_secs(COPY_TIMEOUT.as_secs() + 30);
/// The longest wait between tries of one result.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle copier looks for work other instances queued (theirs wake only them).
const POLL: Duration = Duration::from_secs(1);

pub async fn run(p: Pipeline, stop: CancellationToken) {
    let Some(assets) = p.assets.clone() else {
        return;
    };
    loop {
        let busy = match copy_once_with(&p, &assets).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "copier pass failed");
                false
            }
        };
        if busy {
            continue;
        }
        let wait = match storage::image_copies::next_due(&p.pool).await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(POLL),
            _ => POLL,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = p.copy_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass: lease the due results and copy (or give up on) each; returns how many were taken.
pub async fn copy_once(p: &Pipeline) -> Result<usize, sqlx::Error> {
    match p.assets.clone() {
        Some(assets) => copy_once_with(p, &assets).await,
        None => Ok(0),
    }
}

async fn copy_once_with(p: &Pipeline, assets: &Assets) -> Result<usize, sqlx::Error> {
    let jobs = storage::image_copies::claim(&p.pool, BATCH, LEASE.as_secs_f64()).await?;
    let n = jobs.len();
    join_all(jobs.into_iter().map(|job| copy(p, assets, job))).await;
    Ok(n)
}

#[tracing::instrument(skip_all, fields(generation = %job.generation_id, fal_request_id = %job.fal_request_id, attempt = job.attempts))]
async fn copy(p: &Pipeline, assets: &Assets, job: CopyJob) {
    let mut result: FalResult = match serde_json::from_str(&job.body) {
        Ok(r) => r,
        Err(e) => {
            // It parsed when it was queued; only a hand-edited row fails here.
            tracing::error!(error = %e, "a queued result does not parse; it is dropped");
            let _ = storage::image_copies::done(&p.pool, job.generation_id).await;
            return;
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
                return;
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
    match callbacks::apply(&p.pool, incoming).await {
        Ok(applied) => {
            let label = applied.label();
            p.metrics
                .callbacks
                .with_label_values(&[source, label])
                .inc();
            tracing::info!(outcome = label, "a copied result is applied");
            debug_assert!(applied != Applied::Copying);
            if let Err(e) = storage::image_copies::done(&p.pool, job.generation_id).await {
                // Applied, so a try again finds it recorded: it only deletes the row.
                tracing::warn!(error = %e, "could not take an applied result off the copy queue");
            }
        }
        // The lease runs out and another try applies it.
        Err(e) => tracing::warn!(error = %e, "could not apply a copied result; will try again"),
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
