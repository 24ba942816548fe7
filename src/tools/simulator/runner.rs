//! Drives each accepted request through its lifecycle on tokio timers: queue delay, run delay,
//! completion, then the webhook(s). One lightweight task per request, on the runtime that
//! started the simulator (so it outlives any one actix worker).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::output::{self, OutputContext};
use super::queue::{JobSpec, Outcome, Phase};
use super::runners::Place;
use super::{webhook, SimState};

/// Queues `spec` and starts its lifecycle.
pub(crate) fn enqueue(state: &Arc<SimState>, spec: Arc<JobSpec>) {
    state.store.insert(spec.clone(), Phase::Queued);
    state.rt.spawn(drive(state.clone(), spec));
}

async fn drive(state: Arc<SimState>, spec: Arc<JobSpec>) {
    let queue_delay = spec.faults.queue_delay.unwrap_or(state.config.queue_delay);
    let place = Place {
        low: spec.low,
        seq: spec.seq,
    };
    // Queued: the queue delay, then a free runner in priority order — both within the start
    // timeout, if the request set one.
    let runners = state.runners.clone();
    let queued = async {
        if !state.sleep(queue_delay).await {
            return None;
        }
        tokio::select! {
            slot = runners.acquire(place) => Some(slot),
            _ = state.shutdown.cancelled() => None,
        }
    };
    let slot = match spec.start_timeout {
        None => queued.await,
        Some(timeout) => tokio::select! {
            slot = queued => slot,
            _ = tokio::time::sleep(timeout) => {
                start_timed_out(&state, spec);
                return;
            }
        },
    };
    let Some(_slot) = slot else { return };
    if !state.store.start(&spec.id) {
        tracing::debug!(request_id = %spec.id, "fal simulator: cancelled while queued");
        return;
    }
    let run_delay = run_delay(&state, &spec);
    if !state.sleep(run_delay).await {
        return;
    }
    let outcome = produce(&state, &spec, run_delay).await;
    if state.store.complete(&spec.id, outcome.clone()) {
        state.stats.completed.fetch_add(1, Ordering::Relaxed);
        send_webhooks(&state, spec, &outcome, None);
    }
}

/// fal fails a request whose start timeout passed while it was queued: unrun, unbilled.
fn start_timed_out(state: &Arc<SimState>, spec: Arc<JobSpec>) {
    if state.shutdown.is_cancelled() {
        return;
    }
    let outcome = Arc::new(Outcome::Failure {
        status: 504,
        body: serde_json::json!({
            "detail": "Request timed out before it could start (X-Fal-Request-Timeout)",
            "error_type": "request_timeout",
            "timeout_type": "user",
        }),
        error: "Invalid status code: 504".into(),
        error_type: "request_timeout".into(),
        inference_time: 0.0,
    });
    if state.store.complete(&spec.id, outcome.clone()) {
        state.stats.start_timeouts.fetch_add(1, Ordering::Relaxed);
        send_webhooks(state, spec, &outcome, None);
    }
}

/// `[sim:early-webhook]`: completes at once and resolves when the first webhook attempt is done,
/// so the caller can answer the submit only afterwards.
pub(crate) async fn complete_early(state: &Arc<SimState>, spec: Arc<JobSpec>) {
    let outcome = produce(state, &spec, run_delay(state, &spec)).await;
    state
        .store
        .insert(spec.clone(), Phase::Completed(outcome.clone()));
    state.stats.completed.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    send_webhooks(state, spec, &outcome, Some(tx));
    // An error only means no webhook was due (no URL, dropped) or the simulator is stopping.
    let _ = rx.await;
}

fn run_delay(state: &SimState, spec: &JobSpec) -> Duration {
    spec.faults.run_delay.unwrap_or(state.config.run_delay)
}

/// Builds the output off the async threads: `sync_mode` encodes images inline.
async fn produce(state: &Arc<SimState>, spec: &Arc<JobSpec>, run_delay: Duration) -> Arc<Outcome> {
    let (st, sp) = (state.clone(), spec.clone());
    let build = move || {
        let ctx = OutputContext {
            base_url: &st.base_url,
            nsfw_trigger: &st.config.nsfw_trigger,
            inference_time: run_delay.as_secs_f64(),
        };
        output::build(&sp, &ctx)
    };
    let outcome = if spec.input.sync_mode {
        state
            .rt
            .spawn_blocking(build)
            .await
            .expect("output builder panicked")
    } else {
        build()
    };
    Arc::new(outcome)
}

fn send_webhooks(
    state: &Arc<SimState>,
    spec: Arc<JobSpec>,
    outcome: &Outcome,
    first_attempt: Option<oneshot::Sender<bool>>,
) {
    let Some(url) = spec.webhook.clone() else {
        return;
    };
    if spec.faults.drop_webhook {
        tracing::debug!(request_id = %spec.id, "fal simulator: webhook dropped on purpose");
        return;
    }
    let body = webhook::body(&spec, outcome);
    let state = state.clone();
    let rt = state.rt.clone();
    rt.spawn(async move {
        let twice = spec.faults.dup_webhook;
        webhook::deliver(
            state.clone(),
            spec.clone(),
            url.clone(),
            body.clone(),
            first_attempt,
        )
        .await;
        if twice {
            webhook::deliver(state, spec, url, body, None).await;
        }
    });
}
