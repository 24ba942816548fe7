//! The event log: appended in the same transaction as the state change it announces, with a
//! `NOTIFY` that Postgres delivers only on commit.
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{types::Json, FromRow, PgExecutor};
use uuid::Uuid;

use crate::domain::ids;

/// Channel carrying the `seq` of each committed event.
pub const CHANNEL: &str = "fluxgate_events";

#[derive(Debug, Clone, FromRow)]
pub struct Event {
    pub id: Uuid,
    pub seq: i64,
    pub tenant_id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub generation_id: Option<Uuid>,
    pub payload: Json<Value>,
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn public_id(&self) -> String {
        ids::encode(ids::Kind::Event, self.id)
    }
}

/// Appends `{id, type, timestamp, data}` — the exact body subscribers receive — and notifies
/// listeners (Postgres delivers the NOTIFY on commit).
pub async fn append(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    kind: &str,
    generation_id: Option<Uuid>,
    data: Value,
) -> Result<Event, sqlx::Error> {
    let id = ids::new_uuid();
    let now = Utc::now();
    let payload = json!({
        "id": ids::encode(ids::Kind::Event, id),
        "type": kind,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    let event: Event = sqlx::query_as(
        "INSERT INTO events (id, tenant_id, type, generation_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, seq, tenant_id, type, generation_id, payload, created_at",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(kind)
    .bind(generation_id)
    .bind(Json(&payload))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    super::deliveries::fan_out(
        &mut *tx,
        tenant_id,
        event.id,
        kind,
        &event.payload.0["data"],
    )
    .await?;
    notify(&mut *tx, CHANNEL, &event.seq.to_string()).await?;
    Ok(event)
}

pub async fn notify(
    db: impl PgExecutor<'_>,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn for_generation(
    db: impl PgExecutor<'_>,
    generation_id: Uuid,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, seq, tenant_id, type, generation_id, payload, created_at FROM events
         WHERE generation_id = $1 ORDER BY seq",
    )
    .bind(generation_id)
    .fetch_all(db)
    .await
}

/// The tenant's events, newest first (Zapier's performList); `before_seq` pages.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    kind: Option<&str>,
    before_seq: Option<i64>,
    undelivered: bool,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, seq, tenant_id, type, generation_id, payload, created_at FROM events e
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR type = $2 OR $2 = '*' OR (right($2, 2) = '.*' AND starts_with(type, left($2, -1))))
           AND ($3::bigint IS NULL OR seq < $3)
           AND (NOT $4 OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                                  AND (d.status IN ('failed', 'exhausted') OR (d.status = 'pending' AND d.attempts > 0))))
         ORDER BY seq DESC LIMIT $5",
    )
    .bind(tenant_id)
    .bind(kind)
    .bind(before_seq)
    .bind(undelivered)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn seq_of(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM events WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}
