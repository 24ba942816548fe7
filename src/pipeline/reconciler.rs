//! The reconciler covers lost callbacks: a generation `queued` longer than
//! `FLUXGATE_RECONCILE_AFTER_SECS` has its status checked at fal; a completed one has its
//! result fetched and processed exactly like a callback (recorded with source `reconciler`).
//! Generations stuck before submission need nothing here: their outbox lease expires and the
//! submission worker claims them again.
use std::time::Instant;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    callbacks::{self, FalResult},
    Pipeline,
};
use crate::storage::{self, generations::Generation};

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
            _ = tokio::time::sleep(p.settings.reconcile_interval) => {}
        }
    }
}

/// One pass over overdue generations; returns how many were checked.
pub async fn reconcile_once(p: &Pipeline) -> Result<usize, sqlx::Error> {
    let overdue = storage::generations::claim_overdue(
        &p.pool,
        p.settings.reconcile_after.as_secs_f64(),
        32,
        60.0,
    )
    .await?;
    let n = overdue.len();
    for g in overdue {
        check(p, &g).await;
    }
    Ok(n)
}

#[tracing::instrument(skip_all, fields(generation = %g.public_id(), fal_request_id = ?g.fal_request_id))]
async fn check(p: &Pipeline, g: &Generation) {
    let (Some(request_id), Some(status_url)) =
        (g.fal_request_id.as_deref(), g.status_url.as_deref())
    else {
        return;
    };
    let started = Instant::now();
    let status = p.fal.status(status_url).await;
    p.metrics
        .fal_duration
        .with_label_values(&["status"])
        .observe(started.elapsed().as_secs_f64());
    let status = match status {
        Ok(s) => {
            p.metrics
                .fal_requests
                .with_label_values(&["status", "ok"])
                .inc();
            s
        }
        Err(e) => {
            p.metrics
                .fal_requests
                .with_label_values(&["status", e.class.label()])
                .inc();
            tracing::warn!(error = %e, "status check failed; will check again later");
            return;
        }
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
    // Shape it like the webhook fal would have sent, and process it the same way.
    let ok = (200..300).contains(&fetched.status) && status.error.is_none();
    let body = json!({
        "request_id": request_id,
        "status": if ok { "OK" } else { "ERROR" },
        "error": if ok { None } else { Some(status.error.clone().unwrap_or_else(|| format!("Invalid status code: {}", fetched.status))) },
        "payload": fetched.body,
    });
    let result: FalResult = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "unexpected result shape");
            return;
        }
    };
    let mut incoming = callbacks::Incoming {
        generation_id: g.id,
        result,
        raw: body.to_string(),
        source: "reconciler",
        received_at: chrono::Utc::now(),
    };
    if let Some(assets) = p.assets.as_deref() {
        let max = g.input.0["num_images"].as_u64().unwrap_or(1).clamp(1, 4) as usize;
        if let Err(e) = incoming.keep_images(assets, max).await {
            tracing::warn!(error = %e, "copying the recovered result's images failed; will check again later");
            return;
        }
    }
    match callbacks::apply(&p.pool, incoming).await {
        Ok(applied) => {
            p.metrics
                .callbacks
                .with_label_values(&["reconciler", applied.label()])
                .inc();
            tracing::info!(
                outcome = applied.label(),
                "recovered a result whose callback never came"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not apply the recovered result"),
    }
}
