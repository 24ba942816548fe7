//! The `/metrics` gauges that describe the whole cluster rather than one process — queue
//! depths and oldest-pending ages, spend, alert state — re-read from Postgres every
//! `metrics_refresh`. Every instance reports the same values: aggregate with `max`, not `sum`.
use crate::storage;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Rows finished longer ago than this can no longer change (no transaction runs this long),
/// so their cost is summed once and kept; only the recent tail is re-read.
const SETTLED_AFTER_SECS: f64 = 600.0;

/// Refreshes the gauges until cancelled, the first time at once.
pub async fn run(pool: PgPool, metrics: Metrics, every: Duration, stop: CancellationToken) {
    let mut spend = SpendTally::default();
    loop {
        if let Err(e) = refresh(&pool, &metrics, &mut spend).await {
            tracing::warn!(error = %e, "refreshing queue metrics failed; will retry");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One refresh of every gauge.
pub async fn refresh(
    pool: &PgPool,
    metrics: &Metrics,
    spend: &mut SpendTally,
) -> Result<(), sqlx::Error> {
    for (queue, lane, depth, age) in queue_stats(pool).await? {
        metrics
            .queue_depth
            .with_label_values(&[queue, lane])
            .set(depth);
        metrics
            .queue_oldest_age
            .with_label_values(&[queue, lane])
            .set(age);
    }
    let micros = spend.refresh(pool).await?;
    metrics.spend.set(micros as f64 / 1_000_000.0);
    let alerts = storage::alert_state::all(pool).await?;
    for (name, firing) in alerts {
        metrics
            .alert_firing
            .with_label_values(&[name.as_str()])
            .set(i64::from(firing));
    }
    Ok(())
}

/// (queue, lane, depth, oldest age in seconds) for all four lanes, zeros included. An item is
/// in the retry lane once an attempt has been made and is over (one in flight for the first
/// time is still `first`); `accepted` generations are the submission queue.
async fn queue_stats(
    pool: &PgPool,
) -> Result<Vec<(&'static str, &'static str, i64, f64)>, sqlx::Error> {
    let rows = storage::gauges::queue_lanes(pool).await?;
    let mut stats = Vec::with_capacity(4);
    for queue in ["submissions", "deliveries"] {
        for lane in ["first", "retry"] {
            let found = rows.iter().find(|r| r.0 == queue && r.1 == lane);
            let (depth, age) = found.map_or((0, 0.0), |r| (r.2, r.3.max(0.0)));
            stats.push((queue, lane, depth, age));
        }
    }
    Ok(stats)
}

/// Spend, summed incrementally: see [`SETTLED_AFTER_SECS`].
#[derive(Debug, Default)]
pub struct SpendTally {
    settled_until: Option<DateTime<Utc>>,
    settled_micros: i64,
}

impl SpendTally {
    /// Total `cost_micros` of completed generations.
    pub async fn refresh(&mut self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        let from = self.settled_until.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        // Unnamed statement: planned with the actual bound each time, so after the first full
        // sum it reads only the recent range of the `finished_at` index.
        let (cutoff, newly_settled, recent) =
            storage::gauges::spend_since(pool, from, SETTLED_AFTER_SECS).await?;
        self.settled_micros += newly_settled;
        self.settled_until = Some(cutoff);
        Ok(self.settled_micros + recent)
    }
}
