//! The copier stage's queue (`image_copies`): verified results waiting for their images to be
//! copied. Enqueued by the webhook, leased by a copier, deleted once the result is applied.
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::ids::GenerationId;

/// A result to copy, as leased.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CopyJob {
    pub generation_id: GenerationId,
    pub fal_request_id: String,
    pub source: String,
    pub body: String,
    pub received_at: DateTime<Utc>,
    /// Tries so far, this one included.
    pub attempts: i32,
    /// The generation's `num_images`: a result's images beyond it are dropped unfetched.
    pub max_images: i32,
    pub give_up_at: DateTime<Utc>,
}

/// Queues a result for copying; a result already queued for the generation is kept (`false`).
pub async fn enqueue(db: impl PgExecutor<'_>, job: &CopyJob) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO image_copies (generation_id, fal_request_id, source, body, received_at, max_images, give_up_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (generation_id) DO NOTHING",
    )
    .bind(job.generation_id)
    .bind(&job.fal_request_id)
    .bind(&job.source)
    .bind(&job.body)
    .bind(job.received_at)
    .bind(job.max_images)
    .bind(job.give_up_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Leases up to `batch` due results for `lease_secs`, oldest due first.
pub async fn claim(
    db: impl PgExecutor<'_>,
    batch: i64,
    lease_secs: f64,
) -> Result<Vec<CopyJob>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE image_copies SET lease_until = now() + make_interval(secs => $2), attempts = attempts + 1
         WHERE generation_id IN (SELECT generation_id FROM image_copies
                                 WHERE due_at <= now() AND (lease_until IS NULL OR lease_until < now())
                                 ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING generation_id, fal_request_id, source, body, received_at, attempts, max_images, give_up_at",
    )
    .bind(batch)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

/// When the next queued result falls due (a leased one when its lease ends), if any is queued.
pub async fn next_due(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM image_copies",
    )
    .fetch_one(db)
    .await
}

/// A try failed: try again after `delay_secs`, remembering why.
pub async fn retry_later(
    db: impl PgExecutor<'_>,
    id: GenerationId,
    delay_secs: f64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE image_copies SET due_at = now() + make_interval(secs => $2), lease_until = NULL, last_error = $3
         WHERE generation_id = $1",
    )
    .bind(id)
    .bind(delay_secs)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// These results are applied: they leave the queue.
pub async fn done(db: impl PgExecutor<'_>, ids: &[GenerationId]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM image_copies WHERE generation_id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// A leased result this instance will not finish (shutting down): due again at once elsewhere.
pub async fn release(db: impl PgExecutor<'_>, ids: &[GenerationId]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE image_copies SET lease_until = NULL WHERE generation_id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}
