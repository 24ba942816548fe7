//! Alerts over a sliding window, computed from Postgres so every instance sees the same
//! numbers:
//!
//! - `fal_error_rate`: generations that finished in the window and failed on fal's side
//!   (`error.code` in [`FAL_SIDE_CODES`]) over all that completed or failed in it;
//! - `delivery_failure_rate`: delivery attempts started in the window without a 2xx over all.
//!
//! State lives in `alert_state`, one row per alert. An evaluation locks its row (`FOR UPDATE
//! SKIP LOCKED`) for the whole read–decide–write, and the transition and its `alert.*` events
//! commit in one transaction: however many instances evaluate, and across restarts, each
//! transition is announced exactly once. Below the minimum volume the state holds: no traffic
//! is no evidence either way.
use crate::domain::event_type::EventType;
use std::{sync::Arc, time::Duration};

use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    storage::{alert_state, events},
};

/// `error.code`s of generations that failed because of fal or our fal account — not the
/// caller's input (content policy, validation, the caller's own deadline are left out).
pub const FAL_SIDE_CODES: &[&str] = &[
    "upstream_unavailable",
    "upstream_rate_limited",
    "upstream_auth",
    "fal_error",
    "fal_payload_error",
    "no_media_generated",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    FalErrorRate,
    DeliveryFailureRate,
}

impl Alert {
    pub const ALL: [Alert; 2] = [Alert::FalErrorRate, Alert::DeliveryFailureRate];

    /// The `alert_state` key and the `alert.<name>` event type.
    pub fn name(self) -> &'static str {
        match self {
            Alert::FalErrorRate => "fal_error_rate",
            Alert::DeliveryFailureRate => "delivery_failure_rate",
        }
    }

    pub fn event_type(self, firing: bool) -> EventType {
        match (self, firing) {
            (Alert::FalErrorRate, true) => EventType::AlertFalErrorRate,
            (Alert::FalErrorRate, false) => EventType::AlertFalErrorRateRecovered,
            (Alert::DeliveryFailureRate, true) => EventType::AlertDeliveryFailureRate,
            (Alert::DeliveryFailureRate, false) => EventType::AlertDeliveryFailureRateRecovered,
        }
    }

    fn threshold(self, s: &Settings) -> f64 {
        match self {
            Alert::FalErrorRate => s.alerts.fal_error_ratio,
            Alert::DeliveryFailureRate => s.alerts.delivery_failure_ratio,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Alert::FalErrorRate => "of generations failed on fal's side",
            Alert::DeliveryFailureRate => "of webhook delivery attempts got no 2xx",
        }
    }
}

/// A state change that was committed (and announced) by this call.
#[derive(Debug, Clone)]
pub struct Transition {
    pub alert: Alert,
    pub firing: bool,
    pub ratio: f64,
    pub failures: i64,
    pub total: i64,
    /// Tenants that received the event (those subscribed to it).
    pub tenants: usize,
}

/// Evaluates every `alert_interval` until cancelled. An evaluation another instance made less
/// than half an interval ago is skipped, so the cluster evaluates about once per interval.
pub async fn run(pool: PgPool, settings: Arc<Settings>, stop: CancellationToken) {
    let every = settings.alerts.interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = evaluate(&pool, &settings, every / 2).await {
            tracing::warn!(error = %e, "evaluating alerts failed; will retry");
        }
    }
}

/// Evaluates every alert now (for tests and tools); returns the transitions it committed.
pub async fn evaluate_once(
    pool: &PgPool,
    settings: &Settings,
) -> Result<Vec<Transition>, sqlx::Error> {
    evaluate(pool, settings, Duration::ZERO).await
}

async fn evaluate(
    pool: &PgPool,
    settings: &Settings,
    min_gap: Duration,
) -> Result<Vec<Transition>, sqlx::Error> {
    let mut transitions = Vec::new();
    let mut failed = None;
    for alert in Alert::ALL {
        match evaluate_alert(pool, settings, alert, min_gap).await {
            Ok(t) => transitions.extend(t),
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(transitions),
    }
}

#[tracing::instrument(skip_all, fields(alert = alert.name()))]
async fn evaluate_alert(
    pool: &PgPool,
    s: &Settings,
    alert: Alert,
    min_gap: Duration,
) -> Result<Option<Transition>, sqlx::Error> {
    alert_state::ensure(pool, alert.name()).await?;
    let mut tx = pool.begin().await?;
    let Some((firing, previous)) = alert_state::lock(&mut tx, alert.name(), min_gap).await? else {
        return Ok(None); // another instance is evaluating, or just did
    };
    let (failures, total) = match alert {
        Alert::FalErrorRate => {
            alert_state::fal_outcomes(&mut tx, s.alerts.window, FAL_SIDE_CODES).await?
        }
        Alert::DeliveryFailureRate => {
            alert_state::delivery_outcomes(&mut tx, s.alerts.window).await?
        }
    };
    let ratio = if total > 0 {
        failures as f64 / total as f64
    } else {
        0.0
    };
    let threshold = alert.threshold(s);
    let now_firing = if total < s.alerts.min_volume {
        firing
    } else {
        ratio >= threshold
    };
    let since =
        alert_state::save(&mut tx, alert.name(), now_firing, ratio, failures, total).await?;
    if now_firing == firing {
        tx.commit().await?;
        return Ok(None);
    }
    let kind = alert.event_type(now_firing);
    let window_secs = s.alerts.window.as_secs();
    let percent = |r: f64| (r * 1000.0).round() / 10.0;
    let message = format!(
        "{}% {} in the last {window_secs} s (threshold {}%)",
        percent(ratio),
        alert.describe(),
        percent(threshold),
    );
    // Counts stay in the log and `alert_state`: tenants see ratios, not the platform's volume.
    let data = json!({
        "alert": alert.name(),
        "state": if now_firing { "firing" } else { "resolved" },
        "ratio": (ratio * 10_000.0).round() / 10_000.0,
        "threshold": threshold,
        "window_secs": window_secs,
        "min_volume": s.alerts.min_volume,
        "since": since,
        "firing_since": if now_firing { None } else { previous },
        "message": message,
    });
    let tenants = alert_state::subscribed_tenants(&mut tx, kind.as_str()).await?;
    for tenant in &tenants {
        events::append(&mut tx, *tenant, kind, None, data.clone()).await?;
    }
    tx.commit().await?;
    if now_firing {
        tracing::error!(
            ratio,
            threshold,
            failures,
            total,
            window_secs,
            tenants = tenants.len(),
            "ALERT {}: {message}",
            alert.name()
        );
    } else {
        tracing::info!(
            ratio,
            threshold,
            failures,
            total,
            window_secs,
            tenants = tenants.len(),
            "alert {} recovered: {message}",
            alert.name()
        );
    }
    Ok(Some(Transition {
        alert,
        firing: now_firing,
        ratio,
        failures,
        total,
        tenants: tenants.len(),
    }))
}
