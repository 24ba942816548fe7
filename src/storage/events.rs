//! The event log: appended in the same transaction as the state change it announces, with a
//! `NOTIFY` that Postgres delivers only on commit.
use crate::domain::event_type::EventType;
use crate::domain::ids::{DeliveryId, SubscriptionId};
use crate::domain::ids::{EventId, GenerationId, TenantId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow, PgExecutor};

use super::delivery_queue::Claimed;

/// Channel carrying the highest `seq` of each committed batch of events, followed by
/// `NO_CLAIMS` when the batch left no delivery for the delivery workers to claim (its deliveries
/// were all leased to the instance that wrote it, or it had none).
pub const CHANNEL: &str = "fluxgate_events";
pub const NO_CLAIMS: &str = " no-claims";

#[derive(Debug, Clone, FromRow)]
pub struct Event {
    pub id: EventId,
    pub seq: i64,
    pub tenant_id: TenantId,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub generation_id: Option<GenerationId>,
    pub payload: Json<Value>,
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn public_id(&self) -> String {
        self.id.to_string()
    }
}

/// An event to append: `data` becomes the `data` of the body subscribers receive.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub kind: EventType,
    pub generation_id: Option<GenerationId>,
    pub data: Value,
}

/// An appended event: its ids (the body is what was given; it is not read back).
#[derive(Debug, Clone, FromRow)]
pub struct Appended {
    pub id: EventId,
    pub seq: i64,
    pub generation_id: Option<GenerationId>,
}

impl Appended {
    pub fn public_id(&self) -> String {
        self.id.to_string()
    }
}

/// Appends one event; see `append_many`.
pub async fn append(
    tx: &mut sqlx::PgConnection,
    tenant_id: TenantId,
    kind: EventType,
    generation_id: Option<GenerationId>,
    data: Value,
) -> Result<Appended, sqlx::Error> {
    let event = NewEvent {
        tenant_id,
        kind,
        generation_id,
        data,
    };
    let mut batch = append_many(&mut *tx, std::slice::from_ref(&event), None).await?;
    batch.events.pop().ok_or(sqlx::Error::RowNotFound)
}

/// Appends events as `{id, type, timestamp, data}` — the exact bodies subscribers receive — and,
/// in the same statement (one round trip however many), their deliveries (the fan-out, see
/// `deliveries::FAN_OUT`) and one NOTIFY that Postgres delivers to listeners on commit.
///
/// With `lease` (seconds), the deliveries are created already claimed by the caller, as far as
/// each subscription's in-flight cap allows, and returned ready to send once the transaction
/// commits — no second round trip to claim them. Should the caller die first, their leases
/// expire and any instance's delivery worker takes them over.
pub async fn append_many(
    db: impl PgExecutor<'_>,
    events: &[NewEvent],
    lease: Option<f64>,
) -> Result<AppendedBatch, sqlx::Error> {
    append_guarded(db, events, lease, None).await
}

/// `append_many`'s statement with more written before it: `ctes` (each followed by a comma,
/// binding parameters from $13 with `bind`), and only the events for which `keep` holds of `t`
/// (the event) are appended — e.g. those whose generation an earlier CTE updated.
pub struct Guard {
    pub ctes: String,
    pub keep: &'static str,
    pub bind: Box<dyn for<'q> FnOnce(PgQueryAs<'q>) -> PgQueryAs<'q> + Send>,
}

pub type PgQueryAs<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, AppendedRow, sqlx::postgres::PgArguments>;

/// `append_many` behind a `Guard`: the events it dropped are missing from the result.
pub async fn append_guarded(
    db: impl PgExecutor<'_>,
    events: &[NewEvent],
    lease: Option<f64>,
    guard: Option<Guard>,
) -> Result<AppendedBatch, sqlx::Error> {
    let now = Utc::now();
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut cols = Columns::default();
    for e in events {
        let id = EventId::new();
        let fan = super::deliveries::FanOut::of(e.kind, &e.data);
        cols.payload.push(
            serde_json::to_string(&Body {
                id: &id.to_string(),
                kind: e.kind,
                timestamp: &stamp,
                data: &e.data,
            })
            .map_err(|e| sqlx::Error::Encode(e.into()))?,
        );
        cols.id.push(id);
        cols.tenant.push(e.tenant_id);
        cols.kind.push(e.kind.as_str());
        cols.generation.push(e.generation_id);
        cols.fan.push(fan.enabled);
        cols.is_generation.push(fan.is_generation);
        cols.metadata.push(fan.metadata.map(Json));
        cols.end_user.push(fan.end_user);
        cols.webhook_url.push(fan.webhook_url);
    }
    let guarded = guard.is_some();
    let (ctes, keep, bind) = match guard {
        Some(g) => (g.ctes, g.keep, Some(g.bind)),
        None => (String::new(), "true", None),
    };
    let sql = format!(
        "WITH {ctes} ev AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                                 $7::bool[], $8::bool[], $9::jsonb[], $10::text[], $11::text[])
                AS t(id, tenant_id, type, generation_id, payload, fan, is_generation, metadata, end_user, webhook_url)
            WHERE {keep}
         ), e AS (
            INSERT INTO events (id, tenant_id, type, generation_id, payload, created_at)
            SELECT id, tenant_id, type, generation_id, payload::json, $6 FROM ev
            RETURNING id, seq, generation_id, payload
         ), {fan_out}, n AS (
            SELECT pg_notify('{CHANNEL}', max(seq)::text
                || CASE WHEN EXISTS (SELECT 1 FROM d WHERE NOT d.leased) THEN '' ELSE '{NO_CLAIMS}' END)
            FROM e HAVING count(*) > 0)
         SELECT e.id, e.seq, e.generation_id, (SELECT count(*) FROM n) AS notified,
                (SELECT count(*) FROM d WHERE NOT d.leased) AS unleased,
                CASE WHEN l.event_id IS NOT NULL THEN e.payload::text END AS payload,
                l.ids, l.tenants, l.subscriptions, l.targets, l.versions
         FROM e LEFT JOIN (
            SELECT d.event_id, array_agg(d.id) AS ids, array_agg(d.tenant_id) AS tenants,
                   array_agg(d.subscription_id) AS subscriptions, array_agg(d.target_url) AS targets,
                   array_agg(s.updated_at) AS versions
            FROM d LEFT JOIN subscriptions s ON s.id = d.subscription_id
            WHERE d.leased GROUP BY d.event_id
         ) l ON l.event_id = e.id",
        fan_out = super::deliveries::FAN_OUT
    );
    let query = sqlx::query_as(&sql)
        .bind(&cols.id)
        .bind(&cols.tenant)
        .bind(&cols.kind)
        .bind(&cols.generation)
        .bind(&cols.payload)
        .bind(now)
        .bind(&cols.fan)
        .bind(&cols.is_generation)
        .bind(&cols.metadata)
        .bind(&cols.end_user)
        .bind(&cols.webhook_url)
        .bind(lease);
    let query = match bind {
        Some(bind) => bind(query),
        None => query,
    };
    let rows: Vec<AppendedRow> = query.fetch_all(db).await?;
    let mut by_id: std::collections::HashMap<EventId, AppendedRow> =
        rows.into_iter().map(|r| (r.id, r)).collect();
    let mut appended = Vec::with_capacity(events.len());
    let mut claimed = Vec::new();
    let unleased = by_id.values().next().map_or(0, |r| r.unleased);
    for (i, id) in cols.id.iter().enumerate() {
        let Some(row) = by_id.remove(id) else {
            if !guarded {
                return Err(sqlx::Error::RowNotFound);
            }
            continue; // dropped by the guard
        };
        appended.push(Appended {
            id: row.id,
            seq: row.seq,
            generation_id: row.generation_id,
        });
        let (Some(payload), Some(ids)) = (row.payload, row.ids) else {
            continue;
        };
        let (tenants, subs, targets, versions) =
            (row.tenants, row.subscriptions, row.targets, row.versions);
        for (j, delivery) in ids.into_iter().enumerate() {
            claimed.push(Claimed {
                id: delivery,
                tenant_id: tenants.as_ref().map_or(cols.tenant[i], |t| t[j]),
                event_id: row.id,
                subscription_id: subs.as_ref().and_then(|s| s[j]),
                subscription_version: versions.as_ref().and_then(|v| v[j]),
                target_url: targets.as_ref().map(|t| t[j].clone()).unwrap_or_default(),
                attempts: 1,
                event_type: events[i].kind,
                payload: payload.clone(),
                event_created_at: now,
            });
        }
    }
    Ok(AppendedBatch {
        events: appended,
        leased: claimed,
        unleased,
    })
}

/// What `append_many` wrote.
#[derive(Debug)]
pub struct AppendedBatch {
    /// In the order given.
    pub events: Vec<Appended>,
    /// Deliveries created leased to the caller: to send once the transaction commits.
    pub leased: Vec<Claimed>,
    /// Deliveries created for the delivery workers to claim.
    pub unleased: i64,
}

/// One appended event, with the deliveries created leased to the caller (if any).
#[derive(FromRow)]
pub struct AppendedRow {
    id: EventId,
    seq: i64,
    generation_id: Option<GenerationId>,
    unleased: i64,
    /// The stored body's text — the bytes leased deliveries sign and send.
    payload: Option<String>,
    ids: Option<Vec<DeliveryId>>,
    tenants: Option<Vec<TenantId>>,
    subscriptions: Option<Vec<Option<SubscriptionId>>>,
    targets: Option<Vec<String>>,
    versions: Option<Vec<Option<DateTime<Utc>>>>,
}

/// An event's body as subscribers receive it, serialized straight from borrowed parts — and
/// stored as these very bytes (`events.payload` is `json`, kept as written).
#[derive(serde::Serialize)]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: EventType,
    timestamp: &'a str,
    data: &'a Value,
}

/// `append_many`'s parameters, one array per column.
#[derive(Default)]
struct Columns {
    id: Vec<EventId>,
    tenant: Vec<TenantId>,
    kind: Vec<&'static str>,
    generation: Vec<Option<GenerationId>>,
    /// JSON text (`Body`).
    payload: Vec<String>,
    fan: Vec<bool>,
    is_generation: Vec<bool>,
    metadata: Vec<Option<Json<Value>>>,
    end_user: Vec<Option<String>>,
    webhook_url: Vec<Option<String>>,
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

/// An event as SSE streams send it: the payload stays JSON text, stored as written (`json`):
/// one line, as `Body` is serialized compactly and JSON escapes every control character in
/// strings — so it is framed once and never re-parsed.
#[derive(Debug, Clone, FromRow)]
pub struct StreamEvent {
    pub seq: i64,
    pub id: EventId,
    pub tenant_id: TenantId,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub generation_id: Option<GenerationId>,
    pub payload: String,
}

/// A committed event with the bounds of the snapshot it was read in (`pg_snapshot_xmin` and
/// `_xmax`, as numbers): what the live hub needs to tell a hole in `seq` that a transaction
/// still in flight will fill from one that a rollback left for good.
#[derive(Debug, Clone, FromRow)]
pub struct Observed {
    #[sqlx(flatten)]
    pub event: StreamEvent,
    pub snap_xmin: i64,
    pub snap_xmax: i64,
}

const STREAM_COLUMNS: &str = "seq, id, tenant_id, type, generation_id, payload::text AS payload";

/// Every tenant's events after `after`, in `seq` order, read in one snapshot; with empty
/// payloads unless `payloads`.
pub async fn observe_after(
    db: impl PgExecutor<'_>,
    after: i64,
    limit: i64,
    payloads: bool,
) -> Result<Vec<Observed>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, id, tenant_id, type, generation_id,
                CASE WHEN $3 THEN payload::text ELSE '' END AS payload,
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS snap_xmin,
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS snap_xmax
         FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .bind(payloads)
    .fetch_all(db)
    .await
}

/// The last `seq` handed out (committed or not), 0 before the first.
pub async fn last_allocated_seq(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass), 0)",
    )
    .fetch_one(db)
    .await
}

/// `(xmin, xmax)` of a fresh snapshot: every transaction below xmin has ended; every one that
/// was running when it was taken is below xmax.
pub async fn snapshot_bounds(db: impl PgExecutor<'_>) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint
         FROM pg_current_snapshot() AS s",
    )
    .fetch_one(db)
    .await
}

/// The tenant's events, newest first (Zapier's performList); `before_seq` pages.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
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

/// The `seq` of one of the tenant's events (resuming a stream after it).
pub async fn seq_of(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: EventId,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM events WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}

/// Which event types a tenant stream wants: everything, or exact types and `prefix.` prefixes.
#[derive(Debug, Clone, Copy)]
pub struct TypeMatch<'a> {
    pub all: bool,
    pub exact: &'a [String],
    pub prefixes: &'a [String],
}

/// The tenant's events with `after < seq <= upto` that match `types` (and, for a browser
/// token's stream, are about `end_user`'s generations), in `seq` order.
pub async fn tenant_page(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    types: TypeMatch<'_>,
    end_user: Option<&str>,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<StreamEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {STREAM_COLUMNS} FROM events
         WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
           AND ($4 OR type = ANY($5)
                OR EXISTS (SELECT 1 FROM unnest($6::text[]) AS p(prefix) WHERE starts_with(type, p.prefix)))
           AND ($8::text IS NULL OR payload -> 'data' ->> 'end_user' = $8)
         ORDER BY seq LIMIT $7"
    ))
    .bind(tenant_id)
    .bind(after)
    .bind(upto)
    .bind(types.all)
    .bind(types.exact)
    .bind(types.prefixes)
    .bind(limit)
    .bind(end_user)
    .fetch_all(db)
    .await
}

/// One generation's events with `after < seq <= upto`, in `seq` order.
pub async fn generation_page(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    generation_id: GenerationId,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<StreamEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {STREAM_COLUMNS} FROM events
         WHERE generation_id = $1 AND tenant_id = $2 AND seq > $3 AND seq <= $4
         ORDER BY seq LIMIT $5"
    ))
    .bind(generation_id)
    .bind(tenant_id)
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(db)
    .await
}
