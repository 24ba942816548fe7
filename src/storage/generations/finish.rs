//! Finishing generations: the rows callbacks read (and lock), the terminal states they and
//! cancels write, one row at a time or a whole batch in one statement.
use crate::domain::ids::GenerationId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow, PgExecutor};
use uuid::Uuid;

use super::{Generation, COLUMNS};
use crate::domain::states::GenerationStatus;

/// A generation locked for callbacks, with which of the callbacks' fal request ids were
/// already recorded (for any generation).
#[derive(Debug, FromRow)]
pub struct LockedForCallbacks {
    #[sqlx(flatten)]
    pub generation: Generation,
    pub seen: Option<Vec<String>>,
}

/// Reads the generations — and, with `lock`, locks them (in id order, so concurrent batches
/// never deadlock) — and which of `fal_request_ids` are recorded already: one round trip for a
/// whole batch of callbacks.
pub async fn for_callbacks(
    db: impl PgExecutor<'_>,
    ids: &[GenerationId],
    fal_request_ids: &[&str],
    lock: bool,
) -> Result<Vec<LockedForCallbacks>, sqlx::Error> {
    let lock = if lock { "ORDER BY id FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {COLUMNS},
                (SELECT array_agg(fal_request_id) FROM fal_callbacks WHERE fal_request_id = ANY($2)) AS seen
         FROM generations WHERE id = ANY($1) {lock}"
    ))
    .bind(ids)
    .bind(fal_request_ids)
    .fetch_all(db)
    .await
}

/// What a callback's door needs to know of its generation before anything is copied or
/// written: whether it exists, how far it got, and whether this result is recorded already.
#[derive(Debug, FromRow)]
pub struct CallbackTarget {
    pub status: GenerationStatus,
    pub fal_request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The images asked for (fal never returns more).
    pub num_images: Option<i32>,
    /// Whether a callback with this fal request id is recorded already.
    pub seen: bool,
}

pub async fn callback_target(
    db: impl PgExecutor<'_>,
    id: GenerationId,
    fal_request_id: &str,
) -> Result<Option<CallbackTarget>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, fal_request_id, created_at, (input->>'num_images')::int AS num_images,
                EXISTS (SELECT 1 FROM fal_callbacks WHERE fal_request_id = $2) AS seen
         FROM generations WHERE id = $1",
    )
    .bind(id)
    .bind(fal_request_id)
    .fetch_optional(db)
    .await
}

/// Whether any generation made before `at` may still get a callback (it is not finished).
pub async fn unfinished_created_before(
    db: impl PgExecutor<'_>,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        // One EXISTS per state, each over its partial index: only unfinished rows are read.
        "SELECT EXISTS (SELECT 1 FROM generations WHERE status = 'accepted' AND created_at < $1)
             OR EXISTS (SELECT 1 FROM generations WHERE status = 'queued' AND created_at < $1)",
    )
    .bind(at)
    .fetch_one(db)
    .await
}

/// The fields a terminal state sets.
#[derive(Debug)]
pub struct Finish<'a> {
    pub status: GenerationStatus,
    pub result: Option<&'a Value>,
    pub seed: Option<i64>,
    pub cost_micros: Option<i64>,
    pub error: Option<&'a Value>,
    pub fal_request_id: Option<&'a str>,
    /// Keep the budget reservation until fal's final word instead of settling it now (a
    /// cancel of work fal may already be running).
    pub hold_reservation: bool,
}

impl<'a> Finish<'a> {
    /// `failed` or `cancelled` with an error object and nothing spent.
    /// `status` and nothing else set yet.
    pub fn to(status: GenerationStatus) -> Finish<'a> {
        Finish {
            status,
            result: None,
            seed: None,
            cost_micros: None,
            error: None,
            fal_request_id: None,
            hold_reservation: false,
        }
    }

    pub fn unsuccessful(status: GenerationStatus, error: &'a Value) -> Finish<'a> {
        Finish {
            error: Some(error),
            cost_micros: Some(0),
            ..Finish::to(status)
        }
    }
}

/// Sets a terminal state with its fields, only from a non-terminal state, and settles the
/// budget reservation in the same transaction (the actual cost becomes spend), unless it is to
/// be held (`release_hold` settles it later).
pub async fn finish(
    tx: &mut sqlx::PgConnection,
    id: GenerationId,
    f: Finish<'_>,
) -> Result<Option<Generation>, sqlx::Error> {
    let row: Option<Generation> = sqlx::query_as(&format!(
        "UPDATE generations SET status = $2, result = $3, seed = COALESCE($4, seed), cost_micros = $5, error = $6,
                fal_request_id = COALESCE(fal_request_id, $7), finished_at = now(), updated_at = now(), lease_until = NULL,
                reservation_held_since = CASE WHEN $8 THEN now() END, last_checked_at = NULL
         WHERE id = $1 AND status IN ('accepted', 'queued') RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(f.status)
    .bind(f.result.map(Json))
    .bind(f.seed)
    .bind(f.cost_micros)
    .bind(f.error.map(Json))
    .bind(f.fal_request_id)
    .bind(f.hold_reservation)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(g) = row.as_ref().filter(|_| !f.hold_reservation) {
        crate::storage::budget_usage::settle(tx, g.settlement()).await?;
    }
    Ok(row)
}

/// fal's final word on a cancelled generation whose reservation was held: it cost `cost_micros`
/// (what fal ran, or 0), which settles the reservation. `None` when nothing was held (any more).
pub async fn release_hold(
    tx: &mut sqlx::PgConnection,
    id: GenerationId,
    cost_micros: i64,
) -> Result<Option<Generation>, sqlx::Error> {
    let row: Option<Generation> = sqlx::query_as(&format!(
        "UPDATE generations SET cost_micros = $2, reservation_held_since = NULL, updated_at = now(), lease_until = NULL
         WHERE id = $1 AND reservation_held_since IS NOT NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(cost_micros)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(g) = &row {
        crate::storage::budget_usage::settle(tx, g.settlement()).await?;
    }
    Ok(row)
}

/// A JSON column's value as text, the way the batch writers bind it (no copy of the tree).
fn json_text(v: &Option<Json<Value>>) -> Option<String> {
    v.as_ref().map(|v| v.0.to_string())
}

/// Generations finished in memory, as parameter arrays for `FINISH`.
pub struct FinishColumns {
    ids: Vec<GenerationId>,
    status: Vec<&'static str>,
    /// JSON text, as `error`.
    result: Vec<Option<String>>,
    seed: Vec<Option<i64>>,
    cost: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    rid: Vec<Option<String>>,
    at: Vec<Option<DateTime<Utc>>>,
    submitted: Vec<Option<DateTime<Utc>>>,
    /// `updated_at` as read (what an unlocked write must still find).
    version: Vec<DateTime<Utc>>,
    /// Read as `accepted`: the write may also find it `queued` by our record of the submission.
    was_accepted: Vec<bool>,
}

impl FinishColumns {
    /// `read` gives each row's `updated_at` as read and whether it was read as `accepted`.
    pub fn of(rows: &[&Generation], read: impl Fn(&Generation) -> (DateTime<Utc>, bool)) -> Self {
        let read: Vec<_> = rows.iter().map(|g| read(g)).collect();
        FinishColumns {
            ids: rows.iter().map(|g| g.id).collect(),
            status: rows.iter().map(|g| g.status.as_str()).collect(),
            result: rows.iter().map(|g| json_text(&g.result)).collect(),
            seed: rows.iter().map(|g| g.seed).collect(),
            cost: rows.iter().map(|g| g.cost_micros).collect(),
            error: rows.iter().map(|g| json_text(&g.error)).collect(),
            rid: rows.iter().map(|g| g.fal_request_id.clone()).collect(),
            at: rows.iter().map(|g| g.finished_at).collect(),
            submitted: rows.iter().map(|g| g.submitted_at).collect(),
            version: read.iter().map(|r| r.0).collect(),
            was_accepted: read.iter().map(|r| r.1).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Binds the arrays as `$first…$first+10`, in `finish_sql`'s order.
    pub fn bind<'q, O>(
        self,
        q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        q.bind(self.ids)
            .bind(self.status)
            .bind(self.result)
            .bind(self.seed)
            .bind(self.cost)
            .bind(self.error)
            .bind(self.rid)
            .bind(self.at)
            .bind(self.submitted)
            .bind(self.version)
            .bind(self.was_accepted)
    }
}

/// The UPDATE that stores generations finished in memory (`FinishColumns` bound from
/// `$first`), only from a non-terminal state. Returns the ids it updated. For rows the caller
/// has locked; see `finish_guarded_sql` for an unlocked write.
pub fn finish_sql(first: usize) -> String {
    format!(
        "{update} WHERE gen.id = x.id AND gen.status IN ('accepted', 'queued') RETURNING gen.id",
        update = finish_update(first)
    )
}

/// `finish_sql` for rows read without a lock, as two CTEs, `cur` and `g`: `cur` locks the rows
/// (in id order) as they are now, and `g` updates those that are still the version that was
/// read — or that were read `accepted` and have since only been recorded as submitted (the
/// usual race of fal's callback with our record of fal's answer). `g` returns each id updated
/// and `queued`: whether it was still `accepted`, i.e. whether this write announces
/// `generation.queued` (otherwise the record of the submission did).
pub fn finish_guarded_sql(first: usize) -> String {
    format!(
        "cur AS (
            SELECT id, status, updated_at, fal_request_id, cancel_requested_at FROM generations
            WHERE id = ANY(${first}::uuid[]) ORDER BY id FOR UPDATE
         ), g AS ({update} JOIN cur ON cur.id = x.id
            WHERE gen.id = x.id AND cur.status IN ('accepted', 'queued')
              AND (cur.updated_at = x.version
                   OR (x.was_accepted AND cur.status = 'queued' AND cur.fal_request_id = x.rid
                       AND cur.cancel_requested_at IS NULL))
            RETURNING gen.id, cur.status = 'accepted' AS queued
         )",
        update = finish_update(first)
    )
}

fn finish_update(first: usize) -> String {
    let p: Vec<String> = (first..first + 11).map(|i| format!("${i}")).collect();
    format!(
        "UPDATE generations gen SET status = x.status, result = x.result::jsonb, seed = x.seed, cost_micros = x.cost,
                error = x.error::jsonb, fal_request_id = x.rid, finished_at = x.at, updated_at = x.at, lease_until = NULL,
                submitted_at = x.submitted
         FROM unnest({}::uuid[], {}::text[], {}::text[], {}::int8[], {}::int8[], {}::text[], {}::text[],
                     {}::timestamptz[], {}::timestamptz[], {}::timestamptz[], {}::bool[])
              AS x(id, status, result, seed, cost, error, rid, at, submitted, version, was_accepted)",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    )
}

/// Writes the terminal state of generations finished in memory (locked, still non-terminal in
/// the database) in one statement; `finished_at` is the row's own value. The caller settles
/// their budgets (`budgets::settle_many`).
pub async fn finish_many(
    tx: &mut sqlx::PgConnection,
    rows: &[&Generation],
) -> Result<(), sqlx::Error> {
    let cols = FinishColumns::of(rows, |g| (g.updated_at, false));
    let expected = cols.len();
    let sql = finish_sql(1);
    let updated: Vec<(Uuid,)> = cols.bind(sqlx::query_as(&sql)).fetch_all(&mut *tx).await?;
    if updated.len() != expected {
        // The rows are locked by the caller: anything else is a bug; abort the transaction.
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}
