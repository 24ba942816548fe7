//! fal callbacks as received (or fetched by the reconciler), unique on fal's request id.
use crate::domain::ids::GenerationId;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::{
    events::{self, AppendedBatch, Guard, NewEvent},
    generations::{self, FinishColumns},
};

/// A callback to record.
#[derive(Debug)]
pub struct NewCallback<'a> {
    pub generation_id: GenerationId,
    pub fal_request_id: &'a str,
    pub source: &'a str,
    pub fal_status: &'a str,
    /// JSON text.
    pub body: &'a str,
    pub announced: bool,
    pub received_at: DateTime<Utc>,
}

/// Callbacks as parameter arrays for `record_sql`.
pub struct CallbackColumns {
    generation: Vec<GenerationId>,
    request_id: Vec<String>,
    source: Vec<String>,
    fal_status: Vec<String>,
    body: Vec<String>,
    announced: Vec<bool>,
    received_at: Vec<DateTime<Utc>>,
}

impl CallbackColumns {
    pub fn of(callbacks: &[NewCallback<'_>]) -> Self {
        CallbackColumns {
            generation: callbacks.iter().map(|c| c.generation_id).collect(),
            request_id: callbacks
                .iter()
                .map(|c| c.fal_request_id.to_owned())
                .collect(),
            source: callbacks.iter().map(|c| c.source.to_owned()).collect(),
            fal_status: callbacks.iter().map(|c| c.fal_status.to_owned()).collect(),
            body: callbacks.iter().map(|c| c.body.to_owned()).collect(),
            announced: callbacks.iter().map(|c| c.announced).collect(),
            received_at: callbacks.iter().map(|c| c.received_at).collect(),
        }
    }

    /// Binds the arrays as `$first…$first+6`, in `record_sql`'s order.
    pub fn bind<'q, O>(
        self,
        q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        q.bind(self.generation)
            .bind(self.request_id)
            .bind(self.source)
            .bind(self.fal_status)
            .bind(self.body)
            .bind(self.announced)
            .bind(self.received_at)
    }
}

/// The INSERT of `CallbackColumns` bound from `$first`, keeping those for which `keep` holds of
/// `c`; request ids recorded already are skipped.
pub fn record_sql(first: usize, keep: &str) -> String {
    let p: Vec<String> = (first..first + 7).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO fal_callbacks (generation_id, fal_request_id, source, fal_status, body, announced, received_at)
         SELECT c.generation_id, c.fal_request_id, c.source, c.fal_status, c.body::json, c.announced, c.received_at
         FROM unnest({}::uuid[], {}::text[], {}::text[], {}::text[], {}::text[], {}::bool[], {}::timestamptz[])
             AS c(generation_id, fal_request_id, source, fal_status, body, announced, received_at)
         WHERE {keep}
         ON CONFLICT (fal_request_id) DO NOTHING
         RETURNING fal_request_id",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    )
}

/// Records a batch of callbacks in one statement; request ids recorded already are skipped.
pub async fn record_many(
    db: impl PgExecutor<'_>,
    callbacks: &[NewCallback<'_>],
) -> Result<(), sqlx::Error> {
    let sql = record_sql(1, "true");
    let _: Vec<(String,)> = CallbackColumns::of(callbacks)
        .bind(sqlx::query_as(&sql))
        .fetch_all(db)
        .await?;
    Ok(())
}

/// Writes a batch of callbacks WITHOUT a transaction of its own, in one statement (one round
/// trip, one commit): the generations they finish, if each is still the version that was read
/// (`FinishColumns`), the callbacks (announced ones only with their generation), and the events
/// of the generations it updated with their fan-out. A generation that moved on meanwhile is
/// left alone, with its callback and events: its id is missing from the events returned, and
/// the caller applies its callback again under a lock.
pub async fn write_unlocked(
    db: impl PgExecutor<'_>,
    finished: FinishColumns,
    callbacks: &[NewCallback<'_>],
    events: &[NewEvent],
    lease: Option<f64>,
) -> Result<AppendedBatch, sqlx::Error> {
    let callbacks = CallbackColumns::of(callbacks);
    let guard = Guard {
        ctes: format!(
            "{}, cb AS ({}),",
            generations::finish_guarded_sql(13),
            record_sql(
                24,
                "NOT c.announced OR c.generation_id IN (SELECT id FROM g)"
            )
        ),
        // Two uncorrelated (hashed) subplans, not one evaluated per event.
        keep: "(t.type <> 'generation.queued' AND t.generation_id IN (SELECT id FROM g))
               OR t.generation_id IN (SELECT id FROM g WHERE g.queued)",
        bind: Box::new(move |q| callbacks.bind(finished.bind(q))),
    };
    events::append_guarded(db, events, lease, Some(guard)).await
}
