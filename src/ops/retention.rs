//! Retention: what is past `FLUXGATE_EVENT_RETENTION` (events, deliveries, their attempts,
//! fal's stored callbacks) is deleted, and generations that old lose their large fields; image
//! copies past `FLUXGATE_IMAGE_RETENTION` are deleted from the store. Generations themselves
//! stay, for usage reports and the seed cache. Browser tokens are deleted an hour after they
//! expire, whatever the retention settings: an expired token is refused without its row.
//!
//! A sweep runs every `EVERY`, in batches of `BATCH` rows that each commit on their own (short
//! transactions: no long lock, no bloat wave), with a pause between batches so a sweep never
//! holds the database against the hot paths. Batched deletes found by index were chosen over
//! time partitions although dropping a day's partition wrote 0.12 MB of WAL against ~100 MB for
//! deleting and vacuuming the same 97 k rows: a partitioned table's primary key must contain the
//! partition key, and a lookup by id alone then probed every partition (500 µs against 8 µs).
//! ARCHITECTURE.md has the measurement; the sweep beside the pipeline is `bench --preload`'s.
//!
//! Several instances may sweep at once: batches lock with SKIP LOCKED or delete idempotently.
use std::time::Duration;

use chrono::Utc;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{assets::Assets, config::Settings, domain::ids::GenerationId, storage};

/// How often a sweep starts.
pub const EVERY: Duration = Duration::from_secs(60);
/// Rows per statement: a few milliseconds of work each.
pub const BATCH: i64 = 200;
/// The shortest rest between batches. The first delete from each page after a checkpoint
/// writes the whole page to the WAL, and every commit of the hot paths waits for the WAL to
/// reach the disk: measured at 100 k preloaded rows, batches of 2 000 with 20 ms rests moved the
/// pipeline's callback → subscriber p99 from 3 to 130 ms; at 1 M, batches of 500 with 50 ms
/// rests still moved it 3–5 ms. Small batches, rests that grow with how long a batch took
/// (`WORK_SHARE`: a busy database makes batches slower and the sweep backs off), and the sweep's
/// own commits not waiting for the disk keep the WAL a trickle.
pub const PAUSE: Duration = Duration::from_millis(50);
/// How long an expired browser token's row is kept: far beyond the clock-skew margin within
/// which it is still taken, so no instance's clock can still want it.
const TOKEN_GRACE: chrono::Duration = chrono::Duration::hours(1);
/// The sweep works at most 1/WORK_SHARE of its time: each rest is at least WORK_SHARE − 1 times
/// as long as the batch before it.
const WORK_SHARE: u32 = 5;

/// Rests between batches: `pause`, or longer after a slow batch; and, with a gate, as long as
/// the gate is shut.
struct Pace {
    pause: Duration,
    since: std::time::Instant,
    gate: Option<Gate>,
}

/// Lets a sweep work only while it is open: `bench --preload` opens and shuts it in alternate
/// slots of one run, so the pipeline's latency with the sweep working and without it is compared
/// under the same conditions of the machine.
pub type Gate = tokio::sync::watch::Receiver<bool>;

impl Pace {
    fn new(pause: Duration, gate: Option<Gate>) -> Pace {
        Pace {
            pause,
            since: std::time::Instant::now(),
            gate,
        }
    }

    async fn rest(&mut self) {
        let worked = self.since.elapsed();
        tokio::time::sleep(self.pause.max(worked * (WORK_SHARE - 1))).await;
        self.opened().await;
    }

    /// Waits for the gate, if there is one, to be open; work starts counting from then.
    async fn opened(&mut self) {
        if let Some(gate) = &mut self.gate {
            // A dropped sender leaves the gate as it was last set: open is the only safe end.
            let _ = gate.wait_for(|open| *open).await;
        }
        self.since = std::time::Instant::now();
    }
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub deliveries: u64,
    pub events: u64,
    pub callbacks: u64,
    pub generations_slimmed: u64,
    pub image_folders: u64,
    pub browser_tokens: u64,
}

/// Where the walks over old generations have reached (per process: a restart walks once more
/// from the start, cheaply, as the rows are already slim).
#[derive(Debug, Default)]
pub struct Sweeper {
    slimmed_to: Uuid,
    images_to: Uuid,
    gate: Option<Gate>,
}

pub async fn run(
    pool: sqlx::PgPool,
    settings: std::sync::Arc<Settings>,
    assets: Option<std::sync::Arc<Assets>>,
    stop: CancellationToken,
) {
    let mut sweeper = Sweeper::default();
    loop {
        // A sweep through a large backlog takes minutes, mostly resting: stopping must not wait
        // for it. Dropped mid-batch, the batch's transaction rolls back with its connection and
        // the next sweep (here or on another instance) deletes those rows.
        let swept = tokio::select! {
            swept = sweeper.sweep(&pool, &settings, assets.as_deref(), PAUSE) => swept,
            _ = stop.cancelled() => return,
        };
        match swept {
            Ok(swept) if swept != Swept::default() => tracing::info!(?swept, "retention sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will try again"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

impl Sweeper {
    /// A sweeper that works only while `gate` is open (see [`Gate`]).
    pub fn gated(gate: Gate) -> Sweeper {
        Sweeper {
            gate: Some(gate),
            ..Sweeper::default()
        }
    }

    /// One sweep to the end, resting `pause` between batches.
    pub async fn sweep(
        &mut self,
        pool: &sqlx::PgPool,
        settings: &Settings,
        assets: Option<&Assets>,
        pause: Duration,
    ) -> Result<Swept, sqlx::Error> {
        let mut swept = Swept::default();
        let mut pace = Pace::new(pause, self.gate.clone());
        pace.opened().await;
        // Its own connection, whose commits do not wait for the WAL flush: a batch lost in a
        // crash is simply deleted by the next sweep.
        let mut own = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut own)
            .await?;
        let pool = &mut own;
        let token_cutoff = Utc::now() - TOKEN_GRACE;
        while let n @ 1.. =
            storage::retention::expired_tokens(&mut *pool, token_cutoff, BATCH).await?
        {
            swept.browser_tokens += n;
            pace.rest().await;
        }
        if let Some(keep) = settings.storage.event_retention {
            let cutoff =
                Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            // Deliveries (with their attempts) first: an event goes once nothing needs it. Each
            // walk goes on from where its last batch ended.
            let mut from = None;
            while let (n @ 1.., last) =
                storage::retention::deliveries(&mut *pool, cutoff, from, BATCH).await?
            {
                swept.deliveries += n;
                from = last;
                pace.rest().await;
            }
            let held = storage::retention::held_events(&mut *pool, cutoff).await?;
            let mut after = None;
            while let (n @ 1.., last) =
                storage::retention::events(&mut *pool, cutoff, after, &held, BATCH).await?
            {
                swept.events += n;
                after = last;
                if n < BATCH as u64 {
                    break;
                }
                pace.rest().await;
            }
            let mut from = None;
            while let (n @ 1.., last) =
                storage::retention::callbacks(&mut *pool, cutoff, from, BATCH).await?
            {
                swept.callbacks += n;
                from = last;
                pace.rest().await;
            }
            loop {
                let ids = storage::retention::finished_generations(
                    &mut *pool,
                    self.slimmed_to,
                    cutoff,
                    BATCH,
                )
                .await?;
                let Some(&last) = ids.last() else { break };
                swept.generations_slimmed +=
                    storage::retention::slim_generations(&mut *pool, &ids).await?;
                self.slimmed_to = last;
                pace.rest().await;
            }
        }
        if let (Some(keep), Some(assets)) = (settings.storage.image_retention, assets) {
            let cutoff =
                Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            loop {
                let ids = storage::retention::finished_generations(
                    &mut *pool,
                    self.images_to,
                    cutoff,
                    BATCH,
                )
                .await?;
                let Some(&last) = ids.last() else { break };
                for id in ids {
                    let folder = GenerationId::from_uuid(id).to_string();
                    match assets.store().delete_folder(&folder).await {
                        Ok(0) => {}
                        Ok(_) => swept.image_folders += 1,
                        Err(e) => {
                            // Stop here; the next sweep starts again from this generation.
                            tracing::warn!(error = %e, "could not delete expired image copies");
                            return Ok(swept);
                        }
                    }
                    self.images_to = id;
                }
                self.images_to = last;
                pace.rest().await;
            }
        }
        Ok(swept)
    }
}
