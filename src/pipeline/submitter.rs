//! The submission worker: claims `accepted` generations from the outbox with a lease (committed
//! before the HTTP call), submits them to fal with the webhook URL, and records the answer —
//! `queued`, a scheduled retry, or a terminal failure — according to fal's error class.
use crate::delivery::retry::jittered;
use crate::domain::event_type::EventType;
use crate::domain::ids::GenerationId;
use crate::wire::GenerationObject;
use chrono::SubsecRound;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{submitted::Callback, Pipeline};
use crate::domain::states::GenerationStatus;
use crate::{
    fal::errors::{ErrorClass, FalError},
    storage::{
        self,
        generations::{Finish, Generation},
    },
};

/// A lease longer than the fal timeout, so a live worker never loses its row mid-call.
fn lease_secs(p: &Pipeline) -> f64 {
    p.settings.fal.timeout.as_secs_f64() + 5.0
}

/// Transient failures (5xx, timeouts, connection errors) allowed before giving up.
pub const TRANSIENT_ATTEMPTS: i32 = 3;
/// The cap of the exponential 429 backoff.
pub const RATE_LIMIT_BACKOFF_CAP: Duration = Duration::from_secs(32);

/// Runs until cancelled: wakes on NOTIFY, on local inserts, or when the next retry is due.
pub async fn run(p: Pipeline, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(p.settings.fal.submit_concurrency));
    let tracker = TaskTracker::new();
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<GenerationId>>> =
        Default::default();
    while !stop.is_cancelled() {
        let available = permits.available_permits();
        let claimed = if available == 0 {
            Vec::new()
        } else {
            match storage::generations::claim_submissions(&p.pool, available as i64, lease_secs(&p))
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming submissions failed; retrying shortly");
                    tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(1)) => {} }
                    continue;
                }
            }
        };
        let full = !claimed.is_empty() && claimed.len() == available;
        for generation in claimed {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore open");
            let p = p.clone();
            let in_flight = in_flight.clone();
            in_flight.lock().expect("lock").insert(generation.id);
            tracker.spawn(async move {
                let id = generation.id;
                submit_one(&p, generation, Some(permit)).await;
                in_flight.lock().expect("lock").remove(&id);
            });
        }
        if full {
            // More may be waiting: claim again as soon as a permit frees up.
            tokio::select! { _ = stop.cancelled() => break, _ = permits.acquire() => {} }
            continue;
        }
        let wait = next_wait(&p).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = p.submit_wake.notified() => {},
            _ = tokio::time::sleep(wait) => {},
        }
    }
    tracker.close();
    let drain = p.settings.server.shutdown_drain;
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        let left: Vec<GenerationId> = in_flight.lock().expect("lock").iter().copied().collect();
        tracing::warn!(
            count = left.len(),
            "drain time over: releasing submission leases"
        );
        let _ = storage::generations::release_submissions(&p.pool, &left).await;
    }
}

/// Until the next scheduled retry (or lease expiry), at most 5 s: the short ceiling also
/// covers a NOTIFY lost while the listener was reconnecting.
async fn next_wait(p: &Pipeline) -> Duration {
    let ceiling = Duration::from_secs(5);
    match storage::generations::next_submission_due(&p.pool).await {
        Ok(Some(due)) => (due - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(ceiling),
        _ => ceiling,
    }
}

/// Claims and submits everything due now, one batch at a time; for tests and tools that drive
/// the worker step by step. Returns how many generations were processed.
pub async fn drain_once(p: &Pipeline) -> Result<usize, sqlx::Error> {
    let rows = storage::generations::claim_submissions(&p.pool, 64, lease_secs(p)).await?;
    let n = rows.len();
    futures_util::future::join_all(rows.into_iter().map(|g| submit_one(p, g, None))).await;
    Ok(n)
}

#[tracing::instrument(skip_all, fields(generation = %g.public_id(), model = %g.model, attempt = g.submit_attempts))]
async fn submit_one(p: &Pipeline, g: Generation, permit: Option<OwnedSemaphorePermit>) {
    let started = Instant::now();
    let webhook = p.webhook_url(g.id, &g.input.0);
    let input = fal_body(&g);
    // fal may call back before its answer to the submit is recorded: remember the row as leased.
    let callback = p.submitted.remember(g.clone());
    let options = crate::fal::client::SubmitOptions {
        priority: g.priority,
        start_timeout_secs: g
            .start_timeout_secs
            .map(|s| s as u32)
            .or(p.settings.fal.start_timeout_secs),
        fallbacks: p.settings.fal.fallbacks,
    };
    let result = p.fal.submit(&g.model, &input, &webhook, options).await;
    // The permit bounds the calls to fal, not the bookkeeping after them.
    drop(permit);
    let elapsed = started.elapsed();
    p.metrics
        .fal_duration
        .with_label_values(&["submit"])
        .observe(elapsed.as_secs_f64());
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) => e.class.label(),
    };
    p.metrics
        .fal_requests
        .with_label_values(&["submit", outcome])
        .inc();
    tracing::info!(
        outcome,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "fal submit"
    );
    let recorded = match result {
        Ok(sub) if result_applied(callback).await => {
            tracing::info!(fal_request_id = %sub.request_id, "submitted to fal; its result arrived first and finished the generation");
            Ok(())
        }
        Ok(sub) => record_accepted(p, &g, sub).await,
        Err(e) => record_failure(p, &g, e).await,
    };
    if let Err(e) = recorded {
        p.submitted.forget(g.id);
        // The lease will expire and another attempt will be made; nothing is lost.
        tracing::error!(error = %e, "could not record the fal answer; the generation will be retried");
    }
}

/// The input exactly as fal should receive it: the normalised input minus fluxgate's own
/// bookkeeping (the preset name is sent instead of its pixels, as the caller wrote it).
fn fal_body(g: &Generation) -> serde_json::Value {
    let mut input = g.input.0.clone();
    if let Some(obj) = input.as_object_mut() {
        if let Some(preset) = obj.remove("image_size_preset") {
            obj.insert("image_size".into(), preset);
        }
    }
    input
}

/// How long fal's answer to a submit waits for fal's result before it is recorded on its own.
/// A result that arrives meanwhile is written with it, in one commit (`callbacks::plan` then
/// announces `generation.queued` before the outcome); otherwise the result's write would queue
/// behind the answer's — two commits in a row on the result's path. Real fal takes seconds, so
/// there this only delays `generation.queued` by as much; fast fals (the simulator, cached
/// results) are spared a commit.
pub const RESULT_WINDOW: Duration = Duration::from_millis(3);

/// Whether fal's result reached this instance within `RESULT_WINDOW` of fal's answer to the
/// submit (or before it) and finished the generation: then the answer has nothing left to
/// record — the result stored the request id, queued and finished — and writing it would only
/// queue behind the result's lock on the row.
async fn result_applied(mut callback: watch::Receiver<Callback>) -> bool {
    let arrived = tokio::time::timeout(
        RESULT_WINDOW,
        callback.wait_for(|c| *c != Callback::Awaited),
    )
    .await
    .is_ok_and(|heard| heard.is_ok());
    if !arrived {
        return false;
    }
    let settled = tokio::time::timeout(
        Duration::from_secs(2),
        callback.wait_for(|c| matches!(c, Callback::Settled { .. })),
    )
    .await;
    matches!(settled, Ok(Ok(c)) if *c == Callback::Settled { finished: true })
}

async fn record_accepted(
    p: &Pipeline,
    g: &Generation,
    sub: crate::fal::client::Submitted,
) -> Result<(), sqlx::Error> {
    // The row as it reads once queued: the body of its `generation.queued` event.
    let at = chrono::Utc::now().trunc_subsecs(6);
    let mut queued = g.clone();
    queued.status = GenerationStatus::Queued;
    queued.fal_request_id = queued
        .fal_request_id
        .or_else(|| Some(sub.request_id.clone()));
    queued.submitted_at = queued.submitted_at.or(Some(at));
    queued.updated_at = at;
    let event = storage::events::NewEvent {
        tenant_id: g.tenant_id,
        kind: EventType::GenerationQueued,
        generation_id: Some(g.id),
        data: GenerationObject::of(&queued).value(),
    };
    // (`queued` is remembered below only if it is what was stored.)
    // Its deliveries go straight to this instance's loop when it has room, as a callback's do
    // (under the same lock: see `Handoff::lease_for`).
    let lease = p.handoff.as_ref().and_then(|h| h.lease_for(1));
    let leasing = match (&p.handoff, lease) {
        (Some(h), Some(_)) => Some(h.lock().await),
        _ => None,
    };
    let recorded =
        storage::generations::record_submitted(&p.pool, g.id, &sub, at, event, lease).await;
    drop(leasing);
    let Some(recorded) = recorded? else {
        p.submitted.forget(g.id);
        return Ok(());
    };
    let storage::generations::Recorded {
        status,
        moved,
        leased,
        unleased,
    } = recorded;
    if let Some(h) = &p.handoff {
        h.dispatch(&p.pool, leased, unleased).await;
    }
    if moved {
        let _ = p.submitted.remember(queued);
    } else {
        p.submitted.forget(g.id);
    }
    tracing::info!(fal_request_id = %sub.request_id, status = %status, "submitted to fal");
    if status == GenerationStatus::Cancelled {
        // Cancelled while the submit was in flight: ask fal to drop it too.
        if let Some(url) = sub.cancel_url.as_deref() {
            let _ = p.fal.cancel(url).await;
        }
    }
    Ok(())
}

async fn record_failure(p: &Pipeline, g: &Generation, e: FalError) -> Result<(), sqlx::Error> {
    p.submitted.forget(g.id);
    let base = p.settings.fal.retry_base;
    match e.class {
        ErrorClass::RateLimited => {
            let exp = (g.submit_attempts - g.transient_failures - 1).clamp(0, 16) as u32;
            let backoff = jittered(
                (base * 2u32.saturating_pow(exp)).min(RATE_LIMIT_BACKOFF_CAP),
                &mut rand::thread_rng(),
            );
            let delay = e.retry_after.map_or(backoff, |ra| ra.max(backoff));
            let waited = (chrono::Utc::now() - g.created_at)
                .to_std()
                .unwrap_or_default();
            if waited + delay > p.settings.fal.rate_limit_budget {
                let msg = format!(
                    "fal kept answering 429 for {}s; gave up (budget {}s)",
                    waited.as_secs(),
                    p.settings.fal.rate_limit_budget.as_secs()
                );
                return fail(p, g, "upstream_rate_limited", &msg, &e).await;
            }
            tracing::warn!(
                delay_ms = delay.as_millis() as u64,
                "fal rate-limited the submit; backing off"
            );
            storage::generations::reschedule(&p.pool, g.id, delay.as_secs_f64(), false).await
        }
        ErrorClass::Timeout if g.transient_failures + 1 < TRANSIENT_ATTEMPTS => {
            // fal may have queued it before our deadline passed, and its callback (whose URL
            // names this generation) would finish it. Sending it again now could run and bill
            // the work twice, so the next attempt waits as long as the reconciler waits for a
            // lost callback: a request fal queued is never resubmitted while its result can
            // still come.
            let delay = p.settings.fal.reconcile_after;
            tracing::warn!(delay_s = delay.as_secs(), error = %e, "fal's answer to the submit timed out; waiting for its callback before trying again");
            storage::generations::reschedule(&p.pool, g.id, delay.as_secs_f64(), true).await
        }
        class if class.is_transient() => {
            if g.transient_failures + 1 >= TRANSIENT_ATTEMPTS {
                let msg = format!(
                    "fal was unavailable for {TRANSIENT_ATTEMPTS} attempts: {}",
                    e.message
                );
                return fail(p, g, "upstream_unavailable", &msg, &e).await;
            }
            let delay = jittered(
                base * 2u32.pow(g.transient_failures.clamp(0, 16) as u32),
                &mut rand::thread_rng(),
            );
            tracing::warn!(delay_ms = delay.as_millis() as u64, error = %e, "fal unavailable; will retry");
            storage::generations::reschedule(&p.pool, g.id, delay.as_secs_f64(), true).await
        }
        ErrorClass::Auth => {
            tracing::error!(
                status = e.status,
                "ALERT: fal refused our API key ({}); check FAL_KEY and the fal account",
                e.message
            );
            fail(
                p,
                g,
                "upstream_auth",
                "fal refused fluxgate's credentials; the operator has been alerted",
                &e,
            )
            .await
        }
        ErrorClass::ContentPolicy => {
            let msg = "fal's content policy refused this request. Rephrase the prompt (or replace the source images) without the flagged content and try again.";
            fail(p, g, "content_policy_violation", msg, &e).await
        }
        ErrorClass::UserDeadline => fail(p, g, "upstream_deadline", &e.message, &e).await,
        _ => {
            fail(
                p,
                g,
                "upstream_validation",
                &format!("fal refused the input: {}", e.message),
                &e,
            )
            .await
        }
    }
}

async fn fail(
    p: &Pipeline,
    g: &Generation,
    code: &str,
    message: &str,
    e: &FalError,
) -> Result<(), sqlx::Error> {
    let error = json!({
        "code": code,
        "message": message,
        "fal_status": e.status,
        "fal_class": e.class.label(),
        "details": e.body.as_ref().map(|b| b.get("detail").cloned().unwrap_or_else(|| b.clone())),
    });
    let mut tx = p.pool.begin().await?;
    if let Some(row) = storage::generations::finish(
        &mut tx,
        g.id,
        Finish::unsuccessful(GenerationStatus::Failed, &error),
    )
    .await?
    {
        storage::events::append(
            &mut tx,
            row.tenant_id,
            EventType::GenerationFailed,
            Some(row.id),
            GenerationObject::of(&row).value(),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(code, "generation failed at submission");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::submitted::{tests::row, Submitted};

    /// fal's answer waits for a result that arrives just after it, and records nothing when
    /// that result finished the generation.
    #[tokio::test(start_paused = true)]
    async fn a_result_arriving_within_the_window_spares_the_answer_its_write() {
        let s = Submitted::default();
        let id = GenerationId::new();
        let heard = s.remember(row(id));
        let waiting = tokio::spawn(result_applied(heard));
        // The answer is waiting before the result arrives.
        tokio::task::yield_now().await;
        tokio::time::sleep(RESULT_WINDOW / 3).await;
        assert!(s.take(id).is_some(), "the result takes the row");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the answer waits for the result's write"
        );
        s.settled(id, true);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_is_recorded_when_no_result_comes_in_the_window_or_it_did_not_finish() {
        let s = Submitted::default();
        let (late, unfinished) = (GenerationId::new(), GenerationId::new());
        let started = tokio::time::Instant::now();
        assert!(!result_applied(s.remember(row(late))).await);
        assert_eq!(
            started.elapsed(),
            RESULT_WINDOW,
            "it waited the window, no more"
        );
        assert!(
            s.take(late).is_some(),
            "a result after the window still takes the row"
        );

        let heard = s.remember(row(unfinished));
        let waiting = tokio::spawn(result_applied(heard));
        assert!(s.take(unfinished).is_some());
        s.settled(unfinished, false);
        assert!(
            !waiting.await.unwrap(),
            "a result that did not finish leaves the answer to record"
        );
    }
}
