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
