//! Pruning what is past retention, in batches that each commit on their own and are found by
//! index: events and generations have UUIDv7 ids, so "older than the cutoff" is a primary-key
//! range (`ids::v7_at`); deliveries (random ids before migration 15, which old rows keep) are
//! found by `created_at`, fal's callbacks by `received_at`. No table is rewritten or locked for long. Nothing unfinished is touched: a
//! pending delivery (waiting, leased or in flight) keeps itself, its attempts and its event.
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::ids::v7_at;

/// Deletes up to `batch` finished deliveries created before `cutoff` and not before `from`,
/// oldest first, with their attempts. Returns how many deliveries went, and the creation time
/// of the newest: the next batch starts there, rather than walking the index again past every
/// entry the batches before it deleted (they stay in the index until vacuum).
pub async fn deliveries(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    from: Option<DateTime<Utc>>,
    batch: i64,
) -> Result<(u64, Option<DateTime<Utc>>), sqlx::Error> {
    let (n, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH old AS (SELECT id FROM deliveries
                      WHERE created_at < $1 AND ($3::timestamptz IS NULL OR created_at >= $3)
                        AND status <> 'pending'
                      ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
              attempts AS (DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM old)),
              gone AS (DELETE FROM deliveries WHERE id IN (SELECT id FROM old) RETURNING created_at)
         SELECT count(*), max(created_at) FROM gone",
    )
    .bind(cutoff)
    .bind(batch)
    .bind(from)
    .fetch_one(db)
    .await?;
    Ok((n as u64, last))
}

/// The events that deliveries still pending from before `cutoff` carry: they stay. (Once the
/// finished ones are pruned, the deliveries left before the cutoff are only these few; a
/// delivery is created with its event, and a retry or a recovery keeps its `created_at`. The
/// margin covers the app's clock running behind the database's.)
pub async fn held_events(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT event_id FROM deliveries
         WHERE created_at < $1 + interval '5 minutes' AND status = 'pending'",
    )
    .bind(cutoff)
    .fetch_all(db)
    .await
}

/// Deletes up to `batch` events created before `cutoff` and after `after`, oldest first,
/// except `held` (`held_events`); returns how many went and the newest id deleted, where the
/// next batch starts.
pub async fn events(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    after: Option<Uuid>,
    held: &[Uuid],
    batch: i64,
) -> Result<(u64, Option<Uuid>), sqlx::Error> {
    let (n, last): (i64, Option<Uuid>) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM events WHERE id IN (
                 SELECT id FROM events WHERE id < $1 AND ($4::uuid IS NULL OR id > $4)
                   AND id <> ALL($2) ORDER BY id LIMIT $3)
             RETURNING id)
         SELECT count(*), (SELECT id FROM gone ORDER BY id DESC LIMIT 1) FROM gone",
    )
    .bind(v7_at(cutoff))
    .bind(held)
    .bind(batch)
    .bind(after)
    .fetch_one(db)
    .await?;
    Ok((n as u64, last))
}

/// Deletes up to `batch` of fal's stored callbacks received before `cutoff` and not before
/// `from`; returns how many went and the latest receipt time among them, where the next batch
/// starts: without it, every batch would read again the pages the ones before it emptied. The
/// index is a BRIN, which cannot order: rows come in the table's order, which is the order they
/// were received in (they are written once, never updated), and one that a group commit wrote
/// out of order is left for the next sweep. Their generations finished long ago: a
/// redelivery that late is recorded again, never announced.
pub async fn callbacks(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    from: Option<DateTime<Utc>>,
    batch: i64,
) -> Result<(u64, Option<DateTime<Utc>>), sqlx::Error> {
    let (n, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM fal_callbacks WHERE fal_request_id IN (
                 SELECT fal_request_id FROM fal_callbacks
                 WHERE received_at < $1 AND ($3::timestamptz IS NULL OR received_at >= $3)
                 LIMIT $2)
             RETURNING received_at)
         SELECT count(*), max(received_at) FROM gone",
    )
    .bind(cutoff)
    .bind(batch)
    .bind(from)
    .fetch_one(db)
    .await?;
    Ok((n as u64, last))
}

/// Deletes up to `batch` browser tokens that expired before `cutoff`. Past its expiry (and the
/// clock-skew margin) a token is refused on its signed expiry alone, before this row is read,
/// so the row is no longer needed by anything.
pub async fn expired_tokens(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM browser_tokens WHERE id IN (
             SELECT id FROM browser_tokens WHERE expires_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Generations from `after` (exclusive) to `cutoff`, finished, up to `batch` in id order: a
/// sweep walks them once, remembering the last id.
pub async fn finished_generations(
    db: impl PgExecutor<'_>,
    after: Uuid,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM generations WHERE id > $1 AND id < $2 AND finished_at IS NOT NULL
         ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(v7_at(cutoff))
    .bind(batch)
    .fetch_all(db)
    .await
}

/// The generations' large fields go: inline source images (`data:` URIs in `image_urls`) are
/// replaced by a marker. What usage reports and the seed cache read (cost, seed, model, size,
/// prompt) stays.
pub async fn slim_generations(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE generations SET input = jsonb_set(input, '{image_urls}', (
             SELECT COALESCE(jsonb_agg(CASE WHEN u LIKE 'data:%' THEN to_jsonb('data:,pruned'::text)
                                           ELSE to_jsonb(u) END), '[]'::jsonb)
             FROM jsonb_array_elements_text(input->'image_urls') u))
         WHERE id = ANY($1) AND jsonb_typeof(input->'image_urls') = 'array'
           AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(input->'image_urls') u
                       WHERE u LIKE 'data:%' AND u <> 'data:,pruned')",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
