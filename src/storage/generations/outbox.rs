//! The submission outbox: claiming `accepted` generations with a lease, rescheduling them, and
//! recording fal's answer; and the queued generations overdue for their callback.
use crate::domain::ids::GenerationId;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::{Generation, COLUMNS};
use crate::domain::states::GenerationStatus;
use crate::storage::{delivery_queue::Claimed, events};

/// Claims due outbox rows with a lease, committed by the caller before any HTTP call: every due
/// `normal` row before any `low` one (the outbox index is in that order). The submitter claims
/// only as many as it has free slots, so a normal request waits behind low work for at most
/// one slot to free.
pub async fn claim_submissions(
    db: impl PgExecutor<'_>,
    batch: i64,
    lease_secs: f64,
) -> Result<Vec<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE generations SET lease_until = now() + make_interval(secs => $2), submit_attempts = submit_attempts + 1,
                updated_at = now()
         WHERE id IN (SELECT id FROM generations
                      WHERE status = 'accepted' AND next_attempt_at <= now()
                        AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY (priority = 'low'), next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(batch)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

/// When the next outbox row becomes due (for the worker's timer).
pub async fn next_submission_due(
    db: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(GREATEST(next_attempt_at, COALESCE(lease_until, next_attempt_at))) FROM generations WHERE status = 'accepted'",
    )
    .fetch_one(db)
    .await
}

/// Puts a claimed row back for a later attempt.
pub async fn reschedule(
    db: impl PgExecutor<'_>,
    id: GenerationId,
    delay_secs: f64,
    transient: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE generations SET next_attempt_at = now() + make_interval(secs => $2), lease_until = NULL,
                transient_failures = transient_failures + CASE WHEN $3 THEN 1 ELSE 0 END, updated_at = now()
         WHERE id = $1 AND status = 'accepted'",
    )
    .bind(id)
    .bind(delay_secs)
    .bind(transient)
    .execute(db)
    .await?;
    Ok(())
}

/// Records fal's answer to our submission in ONE statement that commits on its own (the row is
/// locked only while it runs): the request id and URLs, `queued` if the generation is still
/// `accepted` — and then, in the same statement, its `generation.queued` event (`queued_event`,
/// the row as it will read) with its fan-out, leased to the caller with `lease` (as
/// `events::append_many`). `None` if there is no such generation; a result that arrived first
/// has announced queued itself.
pub async fn record_submitted(
    pool: &sqlx::PgPool,
    id: GenerationId,
    sub: &crate::fal::client::Submitted,
    at: DateTime<Utc>,
    queued_event: events::NewEvent,
    lease: Option<f64>,
) -> Result<Option<Recorded>, sqlx::Error> {
    let (rid, status_url, response_url, cancel_url) = (
        sub.request_id.clone(),
        sub.status_url.clone(),
        sub.response_url.clone(),
        sub.cancel_url.clone(),
    );
    let guard = events::Guard {
        ctes: "cur AS (SELECT id, status FROM generations WHERE id = $13 FOR UPDATE),
            g AS (UPDATE generations gen SET
                status = CASE WHEN cur.status = 'accepted' THEN 'queued' ELSE gen.status END,
                fal_request_id = COALESCE(gen.fal_request_id, $14),
                status_url = COALESCE(gen.status_url, $15), response_url = COALESCE(gen.response_url, $16),
                cancel_url = COALESCE(gen.cancel_url, $17), submitted_at = COALESCE(gen.submitted_at, $18),
                lease_until = NULL, updated_at = CASE WHEN cur.status = 'accepted' THEN $18 ELSE gen.updated_at END
              FROM cur WHERE gen.id = cur.id
              RETURNING gen.id, cur.status = 'accepted' AS queued),"
            .to_owned(),
        keep: "t.generation_id IN (SELECT id FROM g WHERE queued)",
        bind: Box::new(move |q| {
            q.bind(id)
                .bind(rid)
                .bind(status_url)
                .bind(response_url)
                .bind(cancel_url)
                .bind(at)
        }),
    };
    let appended = events::append_guarded(pool, &[queued_event], lease, Some(guard)).await?;
    if !appended.events.is_empty() {
        return Ok(Some(Recorded {
            status: GenerationStatus::Queued,
            moved: true,
            leased: appended.leased,
            unleased: appended.unleased,
        }));
    }
    let status: Option<GenerationStatus> =
        sqlx::query_scalar("SELECT status FROM generations WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(status.map(|status| Recorded {
        status,
        moved: false,
        leased: Vec::new(),
        unleased: 0,
    }))
}

/// What `record_submitted` did.
#[derive(Debug)]
pub struct Recorded {
    /// The generation's status afterwards.
    pub status: GenerationStatus,
    /// Whether this moved it to `queued` (and announced it).
    pub moved: bool,
    /// The `generation.queued` deliveries created leased to the caller: to send now.
    pub leased: Vec<Claimed>,
    /// Those left for the delivery loops to claim.
    pub unleased: i64,
}

pub async fn mark_cancel_requested(
    db: impl PgExecutor<'_>,
    id: GenerationId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE generations SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives back the leases of submissions not made (a stop's drain ran out): the next worker
/// claims them at once.
pub async fn release_submissions(
    db: impl PgExecutor<'_>,
    ids: &[GenerationId],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE generations SET lease_until = NULL WHERE id = ANY($1) AND status = 'accepted'",
    )
    .bind(ids)
    .execute(db)
    .await?;
    Ok(())
}

/// Queued generations that have waited too long for their callback, leased for a status check.
pub async fn claim_overdue(
    db: impl PgExecutor<'_>,
    older_than_secs: f64,
    batch: i64,
    lease_secs: f64,
) -> Result<Vec<Generation>, sqlx::Error> {
    claim_for_a_look(
        db,
        // A result waiting for the copier has come: nothing to ask fal.
        "status = 'queued' AND NOT EXISTS (SELECT 1 FROM image_copies c WHERE c.generation_id = generations.id) AND submitted_at",
        older_than_secs,
        batch,
        lease_secs,
    )
    .await
}

/// Cancelled generations whose reservation has waited longer than `older_than_secs` for fal's
/// final word, leased for a look at fal.
pub async fn claim_held(
    db: impl PgExecutor<'_>,
    older_than_secs: f64,
    batch: i64,
    lease_secs: f64,
) -> Result<Vec<Generation>, sqlx::Error> {
    claim_for_a_look(
        db,
        "reservation_held_since",
        older_than_secs,
        batch,
        lease_secs,
    )
    .await
}

/// Leases, oldest first, up to `batch` generations whose `since` (a timestamp column, after an
/// optional condition) is older than `older_than_secs` and that were not looked at for as long.
async fn claim_for_a_look(
    db: impl PgExecutor<'_>,
    since: &str,
    older_than_secs: f64,
    batch: i64,
    lease_secs: f64,
) -> Result<Vec<Generation>, sqlx::Error> {
    let order = since.rsplit(' ').next().unwrap_or(since);
    sqlx::query_as(&format!(
        "UPDATE generations SET lease_until = now() + make_interval(secs => $3), last_checked_at = now()
         WHERE id IN (SELECT id FROM generations
                      WHERE {since} < now() - make_interval(secs => $1)
                        AND (lease_until IS NULL OR lease_until < now())
                        AND (last_checked_at IS NULL OR last_checked_at < now() - make_interval(secs => $1))
                      ORDER BY {order} LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(older_than_secs)
    .bind(batch)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}
