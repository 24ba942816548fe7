//! Deliveries: fanned out in the event's own transaction, and read back for the API. Claiming
//! and settling them is the queue's business (`delivery_queue`).
use crate::domain::event_type::EventType;
use crate::domain::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use crate::domain::states::DeliveryStatus;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// What decides an event's fan-out.
pub struct FanOut {
    pub enabled: bool,
    pub is_generation: bool,
    pub metadata: Option<Value>,
    pub end_user: Option<String>,
    pub webhook_url: Option<String>,
}

impl FanOut {
    /// Filters apply to generation events (they carry `metadata`/`end_user`); `test.ping` goes
    /// only to the subscription it tests; generation and batch events go to their own
    /// `webhook_url` too.
    pub fn of(kind: EventType, data: &Value) -> FanOut {
        let is_generation = kind.is_generation();
        let field = |name: &str, of: bool| {
            if of {
                data.get(name).filter(|v| !v.is_null()).cloned()
            } else {
                None
            }
        };
        FanOut {
            enabled: kind.fans_out(),
            is_generation,
            metadata: field("metadata", is_generation).filter(Value::is_object),
            end_user: field("end_user", is_generation).and_then(|v| v.as_str().map(str::to_owned)),
            // A batch's own webhook_url gets its batch.completed, as a generation's gets its events.
            webhook_url: field("webhook_url", is_generation || kind.is_batch())
                .and_then(|v| v.as_str().map(str::to_owned)),
        }
    }
}

/// The fan-out as CTEs over the events being appended, `ev` (one row per event with its
/// `FanOut`): one delivery per matching active subscription, plus a generation's own
/// `webhook_url` — written in the events' own statement, so they commit or vanish together.
/// With a lease ($12, seconds), each is created claimed (`leased`) if its subscription's
/// in-flight cap has room for it.
pub const FAN_OUT: &str = "subs AS (
        SELECT ev.id AS event_id, ev.tenant_id, s.id AS subscription_id, s.target_url,
               CASE WHEN $12::float8 IS NULL THEN false
                    ELSE row_number() OVER (PARTITION BY s.id ORDER BY ev.id)
                         + (SELECT count(*) FROM (
                              SELECT 1 FROM deliveries x
                              WHERE x.subscription_id = s.id AND x.status = 'pending' AND x.lease_until IS NOT NULL
                                AND x.lease_until > now() LIMIT s.max_in_flight) f)
                         <= s.max_in_flight END AS lease
        FROM ev JOIN subscriptions s ON s.tenant_id = ev.tenant_id
        WHERE ev.fan AND s.status = 'active' AND s.deleted_at IS NULL
          AND EXISTS (SELECT 1 FROM unnest(s.event_types) p
                      WHERE p = ev.type OR p = '*' OR (right(p, 2) = '.*' AND starts_with(ev.type, left(p, -1))))
          AND (NOT ev.is_generation OR s.filter IS NULL OR (
                (s.filter->'metadata' IS NULL OR COALESCE(ev.metadata, '{}'::jsonb) @> (s.filter->'metadata'))
            AND (s.filter->>'end_user' IS NULL OR s.filter->>'end_user' = ev.end_user)))
        UNION ALL
        SELECT ev.id, ev.tenant_id, NULL, ev.webhook_url, $12::float8 IS NOT NULL
        FROM ev WHERE ev.fan AND ev.webhook_url IS NOT NULL
     ), d AS (
        INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, target_url, attempts, lease_until)
        SELECT fluxgate_uuid_v7(), subs.tenant_id, subs.event_id, subs.subscription_id, subs.target_url,
               CASE WHEN subs.lease THEN 1 ELSE 0 END,
               CASE WHEN subs.lease THEN now() + make_interval(secs => $12) END
        FROM subs
        RETURNING id, tenant_id, event_id, subscription_id, target_url, lease_until IS NOT NULL AS leased
     )";

/// One delivery to one subscription (e.g. `test.ping`).
pub async fn insert_one(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    event_id: EventId,
    subscription_id: SubscriptionId,
    target_url: &str,
) -> Result<DeliveryId, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO deliveries (id, tenant_id, event_id, subscription_id, target_url) VALUES (fluxgate_uuid_v7(), $1, $2, $3, $4) RETURNING id",
    )
    .bind(tenant_id)
    .bind(event_id)
    .bind(subscription_id)
    .bind(target_url)
    .fetch_one(db)
    .await
}

#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub subscription_id: Option<SubscriptionId>,
    pub target_url: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error_class: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub event_type: EventType,
}

const DELIVERY_COLUMNS: &str = "d.id, d.tenant_id, d.event_id, d.subscription_id, d.target_url, d.status, d.attempts, \
    d.next_attempt_at, d.last_status_code, d.last_error_class, d.created_at, d.finished_at, e.type AS event_type";

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: DeliveryId,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1 AND d.tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await
}

/// A subscription's deliveries, newest first; `before` pages by (created_at, id).
pub async fn for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: SubscriptionId,
    status: Option<DeliveryStatus>,
    before: Option<(DateTime<Utc>, DeliveryId)>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.status = $2)
           AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4))
         ORDER BY d.created_at DESC, d.id DESC LIMIT $5"
    ))
    .bind(subscription_id)
    .bind(status)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(limit)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct Attempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_class: Option<String>,
    pub response_excerpt: Option<String>,
}

pub async fn attempts(
    db: impl PgExecutor<'_>,
    delivery_id: DeliveryId,
) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT attempt, started_at, duration_ms, status_code, error_class, response_excerpt FROM delivery_attempts
         WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(delivery_id)
    .fetch_all(db)
    .await
}

/// Re-queues one delivery now, whatever state it ended in.
pub async fn retry_now(
    db: impl PgExecutor<'_>,
    tenant_id: TenantId,
    id: DeliveryId,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), lease_until = NULL, finished_at = NULL
         WHERE id = $1 AND tenant_id = $2 AND (status <> 'pending' OR lease_until IS NULL)",
    )
    .bind(id)
    .bind(tenant_id)
    .execute(db)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Re-queues every failed delivery of a subscription whose event falls in the window.
pub async fn recover(
    db: impl PgExecutor<'_>,
    subscription_id: SubscriptionId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries d SET status = 'pending', next_attempt_at = now(), lease_until = NULL, finished_at = NULL
         FROM events e
         WHERE e.id = d.event_id AND d.subscription_id = $1 AND d.status IN ('failed', 'exhausted')
           AND e.created_at >= $2 AND e.created_at < $3",
    )
    .bind(subscription_id)
    .bind(since)
    .bind(until)
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}
