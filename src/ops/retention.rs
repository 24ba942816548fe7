//! Retention: what is past `FLUXGATE_EVENT_RETENTION` (events, deliveries, their attempts,
//! fal's stored callbacks) is deleted, and generations that old lose their large fields; image
//! copies past `FLUXGATE_IMAGE_RETENTION` are deleted from the store. Generations themselves
//! stay, for usage reports and the seed cache.
//!
//! A sweep runs every `EVERY`, in batches of `BATCH` rows that each commit on their own (short
//! transactions: no long lock, no bloat wave), with a pause between batches so a sweep never
//! holds the database against the hot paths. Batched deletes by primary-key range were chosen
//! over time partitions: they need no change to the hot tables' keys (a partitioned table's
//! primary key must contain the partition key) and measured cheap enough (README, "Scale").
//! Several instances may sweep at once: batches lock with SKIP LOCKED or delete idempotently.
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{assets::Assets, config::Settings, domain::ids::GenerationId, storage};

/// How often a sweep starts.
pub const EVERY: Duration = Duration::from_secs(60);
/// Rows per statement: a few milliseconds of work each.
pub const BATCH: i64 = 2_000;
/// Rest between batches.
const PAUSE: Duration = Duration::from_millis(20);

/// What one sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub deliveries: u64,
    pub events: u64,
    pub callbacks: u64,
    pub generations_slimmed: u64,
    pub image_folders: u64,
}

/// Where the walks over old generations have reached (per process: a restart walks once more
/// from the start, cheaply, as the rows are already slim).
#[derive(Debug, Default)]
pub struct Sweeper {
    slimmed_to: Uuid,
    images_to: Uuid,
}

pub async fn run(
    pool: sqlx::PgPool,
    settings: std::sync::Arc<Settings>,
    assets: Option<std::sync::Arc<Assets>>,
    stop: CancellationToken,
) {
    let mut sweeper = Sweeper::default();
    loop {
        match sweeper
            .sweep(&pool, &settings, assets.as_deref(), PAUSE)
            .await
        {
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
    /// One sweep to the end, resting `pause` between batches.
    pub async fn sweep(
        &mut self,
        pool: &sqlx::PgPool,
        settings: &Settings,
        assets: Option<&Assets>,
        pause: Duration,
    ) -> Result<Swept, sqlx::Error> {
        let mut swept = Swept::default();
        let rest = || tokio::time::sleep(pause);
        if let Some(keep) = settings.storage.event_retention {
            let cutoff =
                Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            // Deliveries (with their attempts) first: an event goes once nothing needs it.
            while let n @ 1.. = storage::retention::deliveries(pool, cutoff, BATCH).await? {
                swept.deliveries += n;
                rest().await;
            }
            while let n @ 1.. = storage::retention::events(pool, cutoff, BATCH).await? {
                swept.events += n;
                if n < BATCH as u64 {
                    break;
                }
                rest().await;
            }
            while let n @ 1.. = storage::retention::callbacks(pool, cutoff, BATCH).await? {
                swept.callbacks += n;
                rest().await;
            }
            loop {
                let ids =
                    storage::retention::finished_generations(pool, self.slimmed_to, cutoff, BATCH)
                        .await?;
                let Some(&last) = ids.last() else { break };
                swept.generations_slimmed +=
                    storage::retention::slim_generations(pool, &ids).await?;
                self.slimmed_to = last;
                rest().await;
            }
        }
        if let (Some(keep), Some(assets)) = (settings.storage.image_retention, assets) {
            let cutoff =
                Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            loop {
                let ids =
                    storage::retention::finished_generations(pool, self.images_to, cutoff, BATCH)
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
                rest().await;
            }
        }
        Ok(swept)
    }
}
