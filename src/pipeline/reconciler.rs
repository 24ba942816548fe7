//! The reconciler covers lost callbacks: a generation `queued` longer than
//! `FLUXGATE_RECONCILE_AFTER_SECS` has its status checked at fal; a completed one has its
//! result fetched and processed exactly like a callback (recorded with source `reconciler`).
//! Generations stuck before submission need nothing here: their outbox lease expires and the
//! submission worker claims them again.
//!
//! It also settles cancels that fal may have been running (their reservation is held): a
//! result fal kept is processed like a callback, which charges what it cost; a request fal no
//! longer knows cost nothing; one still unsettled after `HOLD_LIMIT` is charged its estimate.
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{
    callback_urls::Door,
    callbacks::{self, FalResult},
    complete::Via,
    Pipeline,
};
use crate::{
    fal::{client::QueueStatus, errors::FalError},
    storage::{self, generations::Generation},
};

pub async fn run(p: Pipeline, stop: CancellationToken) {
    let mut last_prune = std::time::Instant::now();
    loop {
        if let Err(e) = reconcile_once(&p).await {
            tracing::warn!(error = %e, "reconciler pass failed");
        }
        // Housekeeping rides along: expired rate windows and idempotency keys.
        if last_prune.elapsed() > std::time::Duration::from_secs(60) {
            last_prune = std::time::Instant::now();
            let _ = crate::governance::rate_limit::prune(&p.pool).await;
            let _ = crate::governance::idempotency::prune(&p.pool).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(p.settings.fal.reconcile_interval) => {}
        }
    }
}

/// How long a cancelled generation's reservation waits for fal's final word before it is
/// charged as estimated (fal keeps results for about an hour; this leaves a margin).
pub const HOLD_LIMIT: chrono::Duration = chrono::Duration::hours(24);

/// One pass over overdue generations and held cancels; returns how many were checked.
pub async fn reconcile_once(p: &Pipeline) -> Result<usize, sqlx::Error> {
    let after = p.settings.fal.reconcile_after.as_secs_f64();
    let overdue = storage::generations::claim_overdue(&p.pool, after, 32, 60.0).await?;
    let held = storage::generations::claim_held(&p.pool, after, 32, 60.0).await?;
    let n = overdue.len() + held.len();
    for g in overdue {
        check(p, &g).await;
    }
    for g in held {
        check_held(p, &g).await;
    }
    Ok(n)
}

/// A cancelled generation whose reservation is held: what does fal say now?
#[tracing::instrument(skip_all, fields(generation = %g.public_id(), fal_request_id = ?g.fal_request_id))]
async fn check_held(p: &Pipeline, g: &Generation) {
    let expired = g
        .reservation_held_since
        .is_some_and(|since| chrono::Utc::now() - since > HOLD_LIMIT);
    let Some(status_url) = g.status_url.as_deref() else {
        return settle_held(p, g, 0, "fal was never asked").await;
    };
    match status_at_fal(p, status_url).await {
        Ok(s) if s.status == "COMPLETED" => recover(p, g, &s).await,
        Err(e) if e.status == Some(404) => {
            settle_held(p, g, 0, "fal no longer knows the request: it never ran").await
        }
        _ if expired => {
            let estimate = g.estimated_cost_micros;
            settle_held(p, g, estimate, "fal never said; charged as estimated").await
        }
        Ok(s) => tracing::info!(fal_status = %s.status, "a cancelled request is still at fal"),
        Err(e) => {
            tracing::warn!(error = %e, "status check of a cancelled request failed; will check again later")
        }
    }
}

async fn settle_held(p: &Pipeline, g: &Generation, cost_micros: i64, why: &str) {
    let settled = async {
        let mut tx = p.pool.begin().await?;
        let row = storage::generations::release_hold(&mut tx, g.id, cost_micros).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(row)
    };
    match settled.await {
        Ok(Some(_)) => tracing::info!(
            cost_micros,
            why,
            "a cancelled generation's reservation is settled"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not settle a cancelled generation's reservation")
        }
    }
}

#[tracing::instrument(skip_all, fields(generation = %g.public_id(), fal_request_id = ?g.fal_request_id))]
async fn check(p: &Pipeline, g: &Generation) {
    let Some(status_url) = g.status_url.as_deref() else {
        return;
    };
    let Ok(status) = status_at_fal(p, status_url).await else {
        return;
    };
    recover(p, g, &status).await;
}

/// fal's status of a request, counted and timed; a failure is logged (checked again later).
async fn status_at_fal(p: &Pipeline, status_url: &str) -> Result<QueueStatus, FalError> {
    let started = Instant::now();
    let status = p.fal.status(status_url).await;
    p.metrics
        .fal_duration
        .with_label_values(&["status"])
        .observe(started.elapsed().as_secs_f64());
    let outcome = status.as_ref().map_or_else(|e| e.class.label(), |_| "ok");
    p.metrics
        .fal_requests
        .with_label_values(&["status", outcome])
        .inc();
    if let Err(e) = &status {
        tracing::warn!(error = %e, "status check failed; will check again later");
    }
    status
}

/// Fetches a completed request's result and processes it exactly like a callback.
/// The `error_type` a lost sync_mode result is recorded with (and `error.code` fails it with).
pub const SYNC_RESULT_UNAVAILABLE: &str = "sync_result_unavailable";

/// A sync_mode request fal completed without error, whose result endpoint does not give its
/// images back (fal's docs say sync_mode outputs are not kept; what the endpoint answers then is
/// not documented, so anything but images counts).
fn sync_result_lost(
    g: &Generation,
    status: &QueueStatus,
    fetched: &crate::fal::client::FetchedResult,
) -> bool {
    let sync = g.input.0["sync_mode"] == serde_json::Value::Bool(true);
    let images = fetched.body["images"]
        .as_array()
        .is_some_and(|list| !list.is_empty());
    sync && status.error.is_none() && !((200..300).contains(&fetched.status) && images)
}

async fn recover(p: &Pipeline, g: &Generation, status: &QueueStatus) {
    let Some(request_id) = g.fal_request_id.as_deref() else {
        return;
    };
    if status.status != "COMPLETED" {
        tracing::info!(fal_status = %status.status, "still running at fal");
        return;
    }
    let Some(response_url) = g.response_url.as_deref() else {
        return;
    };
    let fetched = match p.fal.result(response_url).await {
        Ok(f) => {
            p.metrics
                .fal_requests
                .with_label_values(&["result", "ok"])
                .inc();
            f
        }
        Err(e) => {
            p.metrics
                .fal_requests
                .with_label_values(&["result", e.class.label()])
                .inc();
            tracing::warn!(error = %e, "result fetch failed; will check again later");
            return;
        }
    };
    // What the webhook fal would have sent, processed the way a webhook is.
    let ok = (200..300).contains(&fetched.status) && status.error.is_none();
    let error = (!ok).then(|| {
        status
            .error
            .clone()
            .unwrap_or_else(|| format!("Invalid status code: {}", fetched.status))
    });
    let result = if sync_result_lost(g, status, &fetched) {
        // fal does not keep sync_mode outputs in its request history: whatever its result
        // endpoint answers now, the images are gone. A failure of its own, not a retry.
        FalResult::recovered(
            request_id,
            Some("fal kept no result for this sync_mode request".into()),
            serde_json::json!({"error_type": SYNC_RESULT_UNAVAILABLE, "detail": fetched.body}),
        )
    } else {
        FalResult::recovered(request_id, error, fetched.body)
    };
    let incoming = callbacks::Incoming {
        generation_id: g.id,
        raw: result.to_body(),
        result,
        source: "reconciler",
        received_at: chrono::Utc::now(),
    };
    match p
        .complete(
            &p.pool,
            incoming,
            Door::Token { inline: false },
            Via::Direct,
        )
        .await
    {
        Ok(applied) => tracing::info!(
            outcome = applied.label(),
            "recovered a result whose callback never came"
        ),
        Err(e) => tracing::warn!(error = %e, "could not apply the recovered result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{domain::ids::GenerationId, fal::client::FetchedResult};
    use serde_json::json;

    fn done() -> QueueStatus {
        QueueStatus {
            status: "COMPLETED".into(),
            error: None,
            error_type: None,
        }
    }

    #[test]
    fn a_sync_mode_result_fal_did_not_keep_is_lost_and_any_other_is_not() {
        let mut g = crate::pipeline::submitted::tests::row(GenerationId::new());
        let images = FetchedResult {
            status: 200,
            body: json!({"images": [{"url": "data:image/png;base64,AAAA"}]}),
        };
        let gone = FetchedResult {
            status: 404,
            body: json!({"detail": "Request not found"}),
        };
        let empty = FetchedResult {
            status: 200,
            body: json!({"images": []}),
        };
        g.input.0 = json!({"prompt": "x", "sync_mode": true});
        assert!(!sync_result_lost(&g, &done(), &images));
        assert!(sync_result_lost(&g, &done(), &gone));
        assert!(sync_result_lost(&g, &done(), &empty));
        let failed = QueueStatus {
            error: Some("Invalid status code: 422".into()),
            ..done()
        };
        assert!(
            !sync_result_lost(&g, &failed, &gone),
            "fal's own error stands"
        );
        g.input.0 = json!({"prompt": "x", "sync_mode": false});
        assert!(!sync_result_lost(&g, &done(), &gone));
    }
}
