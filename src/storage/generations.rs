//! Generations: the row is the request, its state machine, and the submission outbox.
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{types::Json, FromRow, PgExecutor};
use uuid::Uuid;

use crate::domain::{generation::GenerationRequest, ids};

pub const COLUMNS: &str = "id, tenant_id, status, model, input, webhook_url, metadata, end_user, \
    estimated_cost_micros, cost_micros, fal_request_id, status_url, response_url, cancel_url, seed, result, \
    error, submit_attempts, transient_failures, created_at, updated_at, submitted_at, finished_at, cancel_requested_at, \
    cached, budget_day, reserved_micros";

#[derive(Debug, Clone, FromRow)]
pub struct Generation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub status: String,
    pub model: String,
    pub input: Json<Value>,
    pub webhook_url: Option<String>,
    pub metadata: Option<Json<Value>>,
    pub end_user: Option<String>,
    pub estimated_cost_micros: i64,
    pub cost_micros: Option<i64>,
    pub fal_request_id: Option<String>,
    pub status_url: Option<String>,
    pub response_url: Option<String>,
    pub cancel_url: Option<String>,
    pub seed: Option<i64>,
    pub result: Option<Json<Value>>,
    pub error: Option<Json<Value>>,
    pub submit_attempts: i32,
    pub transient_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub cached: bool,
    pub budget_day: Option<chrono::NaiveDate>,
    pub reserved_micros: i64,
}

impl Generation {
    pub fn public_id(&self) -> String {
        ids::encode(ids::Kind::Generation, self.id)
    }

    /// What finishing this generation does to its budget reservation.
    pub fn settlement(&self) -> crate::governance::budgets::Settlement<'_> {
        crate::governance::budgets::Settlement {
            tenant_id: self.tenant_id,
            end_user: self.end_user.as_deref(),
            day: self.budget_day,
            reserved: self.reserved_micros,
            actual: self.cost_micros.unwrap_or(0),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }

    /// The generation object of the API, of events and of webhooks: one shape everywhere.
    pub fn to_json(&self) -> Value {
        let id = self.public_id();
        let result = self.result.as_ref().map(|r| &r.0);
        json!({
            "id": id,
            "object": "generation",
            "status": self.status,
            "model": self.model,
            "input": self.input.0,
            "metadata": self.metadata.as_ref().map(|m| &m.0),
            "end_user": self.end_user,
            "webhook_url": self.webhook_url,
            "estimated_cost_usd": usd(self.estimated_cost_micros),
            "estimated_cost_micros": self.estimated_cost_micros,
            "cost_usd": self.cost_micros.map(usd),
            "cost_micros": self.cost_micros,
            "fal_request_id": self.fal_request_id,
            "seed": self.seed,
            "images": result.map(|r| r["images"].clone()),
            "has_nsfw_concepts": result.map(|r| r["has_nsfw_concepts"].clone()),
            "timings": result.map(|r| r["timings"].clone()),
            "error": self.error.as_ref().map(|e| &e.0),
            "cached": self.cached,
            "created_at": self.created_at,
            "submitted_at": self.submitted_at,
            "completed_at": self.finished_at,
            "links": {
                "self": format!("/v1/generations/{id}"),
                "events": format!("/v1/generations/{id}/events"),
                "cancel": format!("/v1/generations/{id}/cancel"),
            },
        })
    }
}

/// Micro-USD as a decimal USD number for display (exact for every value we produce: at most six
/// decimals). Stored and computed amounts stay integers.
pub fn usd(micros: i64) -> Value {
    let text = format!("{}.{:06}", micros / 1_000_000, (micros % 1_000_000).abs());
    serde_json::from_str::<Value>(text.trim_end_matches('0').trim_end_matches('.'))
        .unwrap_or(json!(0))
}

/// The normalised input as stored (and as fal receives it, preset aside), with the seed the
/// generation will use when it has one.
pub fn stored_input(req: &GenerationRequest, seed: Option<i64>) -> Value {
    let mut input = serde_json::to_value(&req.input).unwrap_or(Value::Null);
    if let Some(seed) = seed {
        input["seed"] = json!(seed);
    }
    input
}

/// What an insert records beyond the request itself.
#[derive(Debug, Default)]
pub struct Bookkeeping<'a> {
    pub cache_key: Option<&'a str>,
    pub budget_day: Option<chrono::NaiveDate>,
    pub reserved_micros: i64,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    req: &GenerationRequest,
    input: &Value,
    seed: Option<i64>,
    book: Bookkeeping<'_>,
) -> Result<Generation, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO generations (id, tenant_id, model, input, webhook_url, metadata, end_user, estimated_cost_micros, seed,
                                  cache_key, budget_day, reserved_micros)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    ))
    .bind(ids::new_uuid())
    .bind(tenant_id)
    .bind(req.model.id)
    .bind(Json(input))
    .bind(req.webhook_url.as_ref().map(|u| u.as_str()))
    .bind(req.metadata.as_ref().map(Json))
    .bind(&req.end_user)
    .bind(req.estimated_cost_micros())
    .bind(seed)
    .bind(book.cache_key)
    .bind(book.budget_day)
    .bind(book.reserved_micros)
    .fetch_one(db)
    .await
}

/// The newest completed generation of this tenant with this cache key, within the TTL.
pub async fn cached_source(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    cache_key: &str,
    ttl_secs: f64,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations
         WHERE tenant_id = $1 AND cache_key = $2 AND status = 'completed' AND finished_at > now() - make_interval(secs => $3)
         ORDER BY finished_at DESC LIMIT 1"
    ))
    .bind(tenant_id)
    .bind(cache_key)
    .bind(ttl_secs)
    .fetch_optional(db)
    .await
}

/// A new generation answered from `source`'s result: completed at once, `cached`, cost 0.
pub async fn insert_cached(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    req: &GenerationRequest,
    input: &Value,
    source: &Generation,
) -> Result<Generation, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO generations (id, tenant_id, status, model, input, webhook_url, metadata, end_user, estimated_cost_micros,
                                  cost_micros, seed, result, cached, finished_at)
         VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7, $8, 0, $9, $10, true, now()) RETURNING {COLUMNS}"
    ))
    .bind(ids::new_uuid())
    .bind(tenant_id)
    .bind(req.model.id)
    .bind(Json(input))
    .bind(req.webhook_url.as_ref().map(|u| u.as_str()))
    .bind(req.metadata.as_ref().map(Json))
    .bind(&req.end_user)
    .bind(req.estimated_cost_micros())
    .bind(source.seed)
    // Hits are not sources themselves: the TTL counts from fal's own result (its URLs expire).
    .bind(source.result.as_ref())
    .fetch_one(db)
    .await
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await
}

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
    ids: &[Uuid],
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

/// Newest first; `before` is the id of the last row of the previous page (UUIDv7 ids sort by time).
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    status: Option<&str>,
    end_user: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Generation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM generations
         WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR end_user = $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(tenant_id)
    .bind(status)
    .bind(end_user)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Claims due outbox rows with a lease, committed by the caller before any HTTP call.
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
                      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
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
    id: Uuid,
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
    id: Uuid,
    sub: &crate::fal::client::Submitted,
    at: DateTime<Utc>,
    queued_event: super::events::NewEvent,
    lease: Option<f64>,
) -> Result<Option<Recorded>, sqlx::Error> {
    let (rid, status_url, response_url, cancel_url) = (
        sub.request_id.clone(),
        sub.status_url.clone(),
        sub.response_url.clone(),
        sub.cancel_url.clone(),
    );
    let guard = super::events::Guard {
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
    let appended = super::events::append_guarded(pool, &[queued_event], lease, Some(guard)).await?;
    if !appended.events.is_empty() {
        return Ok(Some(Recorded {
            status: "queued".to_owned(),
            moved: true,
            leased: appended.leased,
            unleased: appended.unleased,
        }));
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM generations WHERE id = $1")
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
    pub status: String,
    /// Whether this moved it to `queued` (and announced it).
    pub moved: bool,
    /// The `generation.queued` deliveries created leased to the caller: to send now.
    pub leased: Vec<super::delivery_queue::Claimed>,
    /// Those left for the delivery loops to claim.
    pub unleased: i64,
}

/// The fields a terminal state sets.
#[derive(Debug, Default)]
pub struct Finish<'a> {
    pub status: &'a str,
    pub result: Option<&'a Value>,
    pub seed: Option<i64>,
    pub cost_micros: Option<i64>,
    pub error: Option<&'a Value>,
    pub fal_request_id: Option<&'a str>,
}

impl<'a> Finish<'a> {
    /// `failed` or `cancelled` with an error object and nothing spent.
    pub fn unsuccessful(status: &'a str, error: &'a Value) -> Finish<'a> {
        Finish {
            status,
            error: Some(error),
            cost_micros: Some(0),
            ..Default::default()
        }
    }
}

/// Sets a terminal state with its fields, only from a non-terminal state, and settles the
/// budget reservation in the same transaction (the actual cost becomes spend).
pub async fn finish(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    f: Finish<'_>,
) -> Result<Option<Generation>, sqlx::Error> {
    let row: Option<Generation> = sqlx::query_as(&format!(
        "UPDATE generations SET status = $2, result = $3, seed = COALESCE($4, seed), cost_micros = $5, error = $6,
                fal_request_id = COALESCE(fal_request_id, $7), finished_at = now(), updated_at = now(), lease_until = NULL
         WHERE id = $1 AND status IN ('accepted', 'queued') RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(f.status)
    .bind(f.result.map(Json))
    .bind(f.seed)
    .bind(f.cost_micros)
    .bind(f.error.map(Json))
    .bind(f.fal_request_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(g) = &row {
        crate::governance::budgets::settle(tx, g.settlement()).await?;
    }
    Ok(row)
}

/// A JSON column's value as text, the way the batch writers bind it (no copy of the tree).
fn json_text(v: &Option<Json<Value>>) -> Option<String> {
    v.as_ref().map(|v| v.0.to_string())
}

/// Generations finished in memory, as parameter arrays for `FINISH`.
pub struct FinishColumns {
    ids: Vec<Uuid>,
    status: Vec<String>,
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
            status: rows.iter().map(|g| g.status.clone()).collect(),
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

pub async fn mark_cancel_requested(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE generations SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now() WHERE id = $1")
        .bind(id)
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
    sqlx::query_as(&format!(
        "UPDATE generations SET lease_until = now() + make_interval(secs => $3), last_checked_at = now()
         WHERE id IN (SELECT id FROM generations
                      WHERE status = 'queued' AND submitted_at < now() - make_interval(secs => $1)
                        AND (lease_until IS NULL OR lease_until < now())
                        AND (last_checked_at IS NULL OR last_checked_at < now() - make_interval(secs => $1))
                      ORDER BY submitted_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(older_than_secs)
    .bind(batch)
    .bind(lease_secs)
    .fetch_all(db)
    .await
}

pub async fn seed_of(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<(String, Option<i64>)>, sqlx::Error> {
    sqlx::query_as("SELECT status, seed FROM generations WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::usd;
    use serde_json::json;

    #[test]
    fn micro_usd_renders_as_exact_decimals() {
        assert_eq!(usd(8000), json!(0.008));
        assert_eq!(usd(64000), json!(0.064));
        assert_eq!(usd(1_500_000), json!(1.5));
        assert_eq!(usd(2_000_000), json!(2));
        assert_eq!(usd(0), json!(0));
    }
}
