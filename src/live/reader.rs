//! The hub's reader: loads committed events in `seq` order and publishes them.
//!
//! Order is what makes `Last-Event-ID` exact. `seq` is allocated at INSERT but becomes visible
//! at COMMIT, so two transactions can commit 11 before 10. The reader therefore publishes
//! strictly in `seq` order: a hole after the horizon is waited for (it fills when the slower
//! transaction commits) until the snapshot shows that every transaction that could still fill
//! it has ended (a rollback); only then is it skipped. No schema change and no lock on the
//! write path: the order is recovered on the read side.
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, LiveEvent};
use crate::storage::{
    events::{self, Observed},
    held::Held,
};

/// How often the credentials of open streams are checked: a revoked key's streams end
/// within about this long (the loop wakes at least every `FALLBACK_POLL`).
const KEY_RECHECK: Duration = Duration::from_secs(2);
/// Rows read per query when catching up.
const BATCH: i64 = 500;
/// Re-read even without a NOTIFY (one lost while the listener reconnected, say).
const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// How often a hole in `seq` is looked at again.
const GAP_RECHECK: Duration = Duration::from_millis(20);
/// A hole is never declared permanent younger than this (margin for a transaction that took
/// its `seq` an instant before its transaction id).
const GAP_MIN_AGE: Duration = Duration::from_millis(100);
/// Past this, a hole is skipped even if the cluster still has older transactions open (a long
/// write elsewhere must not stall every stream). An event committed later than that is still
/// stored, listed and delivered by webhooks; only live streams miss it.
const GAP_MAX_WAIT: Duration = Duration::from_secs(5);

impl Hub {
    /// Reads and publishes until stopped. Ready once the starting horizon is safe.
    pub async fn run(self, stop: CancellationToken) {
        let mut horizon = None;
        while horizon.is_none() {
            match self.starting_horizon().await {
                Ok(h) => horizon = Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "live hub cannot read the event log yet; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return self.close(),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.start(horizon.unwrap_or_default());
        let mut gap = None;
        let mut held = Held::new(self.pool().clone());
        let mut keys_checked = Instant::now();
        loop {
            if keys_checked.elapsed() >= KEY_RECHECK {
                keys_checked = Instant::now();
                self.recheck_keys().await;
            }
            if let Err(e) = self.catch_up(&mut held, &mut gap).await {
                tracing::warn!(error = %e, "live hub could not read new events; retrying");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            let pause = if gap.is_some() {
                GAP_RECHECK
            } else {
                FALLBACK_POLL
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.woken() => {}
                _ = tokio::time::sleep(pause) => held.release(),
            }
        }
        self.close();
    }

    /// Closes the streams whose API key has been revoked since they opened, and those of browser
    /// tokens revoked or expired since. One query per kind, and none while no stream is open.
    async fn recheck_keys(&self) {
        use crate::domain::{browser_token::CLOCK_SKEW_SECS, ids::CredentialId};
        let (mut keys, mut tokens) = (Vec::new(), Vec::new());
        for held in self.gate().credentials() {
            match held {
                CredentialId::Key(id) => keys.push(id),
                CredentialId::Token(id) => tokens.push(id),
            }
        }
        let pool = self.pool();
        let ended = async {
            let mut ended = Vec::new();
            if !keys.is_empty() {
                let revoked = crate::storage::keys::revoked_among(pool, &keys).await?;
                ended.extend(revoked.into_iter().map(CredentialId::Key));
            }
            if !tokens.is_empty() {
                let unusable =
                    crate::storage::browser_tokens::unusable_among(pool, &tokens, CLOCK_SKEW_SECS)
                        .await?;
                ended.extend(unusable.into_iter().map(CredentialId::Token));
            }
            Ok::<_, sqlx::Error>(ended)
        };
        match ended.await {
            Ok(ended) => {
                for credential in ended {
                    tracing::info!(
                        ?credential,
                        "closing the live streams of a revoked or expired credential"
                    );
                    self.gate().revoke(credential);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check the credentials of open streams"),
        }
    }

    /// The last `seq` handed out, once every transaction that might still commit a `seq` up to
    /// it has ended: from there on, every event is either in the past or seen by `catch_up`.
    async fn starting_horizon(&self) -> Result<i64, sqlx::Error> {
        let pool = self.pool();
        let last = events::last_allocated_seq(pool).await?;
        let (_, xmax) = events::snapshot_bounds(pool).await?;
        let deadline = Instant::now() + GAP_MAX_WAIT;
        while events::snapshot_bounds(pool).await?.0 < xmax && Instant::now() < deadline {
            tokio::time::sleep(GAP_RECHECK).await;
        }
        Ok(last)
    }

    /// Publishes every event after the horizon up to the first hole that may still fill. While
    /// no stream is open, the events are read without their bodies and only passed by.
    async fn catch_up(&self, held: &mut Held, gap: &mut Option<Gap>) -> Result<(), sqlx::Error> {
        'read: loop {
            let horizon = self.horizon();
            let lean = self.unwatched();
            let rows = events::observe_after(held.conn().await?, horizon, BATCH, !lean).await;
            held.done(rows.is_ok());
            let rows = rows?;
            let full = rows.len() as i64 == BATCH;
            let mut next = horizon + 1;
            for row in rows {
                if row.event.seq != next && !Gap::is_final(gap, next, &row) {
                    return Ok(());
                }
                next = row.event.seq + 1;
                if gap.as_ref().is_some_and(|g| g.start <= row.event.seq) {
                    *gap = None;
                }
                if !lean {
                    self.publish(LiveEvent::from_row(&row.event));
                } else if !self.pass(row.event.seq) {
                    continue 'read; // a stream opened: read the rest with their bodies
                }
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// A hole right after the horizon: `seq`s from `start` were handed out but are not visible.
struct Gap {
    start: i64,
    /// `xmax` of the first snapshot that showed the hole: every transaction that held one of
    /// its `seq`s then is below it.
    xmax: i64,
    since: Instant,
}

impl Gap {
    /// Whether the hole before `row` will never fill. It will not once a snapshot's xmin has
    /// passed the xmax recorded when the hole was first seen: every transaction that could hold
    /// those `seq`s has ended, and this very snapshot (the one `row` was read in) would show
    /// their rows had they committed.
    fn is_final(gap: &mut Option<Gap>, start: i64, row: &Observed) -> bool {
        match gap {
            Some(g) if g.start == start => {
                let age = g.since.elapsed();
                if row.snap_xmin >= g.xmax && age >= GAP_MIN_AGE {
                    tracing::debug!(
                        from = start,
                        to = row.event.seq - 1,
                        "skipping seqs that were never committed"
                    );
                    true
                } else if age >= GAP_MAX_WAIT {
                    tracing::warn!(from = start, to = row.event.seq - 1, "skipping seqs still held by open transactions; live streams will not show them");
                    true
                } else {
                    false
                }
            }
            _ => {
                *gap = Some(Gap {
                    start,
                    xmax: row.snap_xmax,
                    since: Instant::now(),
                });
                false
            }
        }
    }
}
