//! The delivery queue: leases claimed in two lanes (first attempts never wait behind retries)
//! under each subscription's in-flight cap, and attempts settled in bulk. One statement settles
//! a batch of attempts and leases their successors, so a slot freed by an answer is refilled
//! in the same round trip and commit that frees it — the cap holds at every commit.
use crate::domain::event_type::EventType;
use crate::domain::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use crate::domain::states::DeliveryStatus;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};

/// A claimed delivery with what is needed to send it.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub subscription_id: Option<SubscriptionId>,
    /// The subscription's `updated_at`: what a cached copy of it must match.
    pub subscription_version: Option<DateTime<Utc>>,
    pub target_url: String,
    /// Including the one being made now.
    pub attempts: i32,
    pub event_type: EventType,
    /// The event payload as stored: these exact bytes are signed and sent.
    pub payload: String,
    pub event_created_at: DateTime<Utc>,
}

/// The outcome of one attempt, to be written with the rest of its batch.
#[derive(Debug, Clone)]
pub struct Settled {
    pub delivery_id: DeliveryId,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error_class: Option<&'static str>,
    pub excerpt: Option<String>,
    /// `pending` (retry at `next_attempt_at`), `succeeded`, `failed` (410), `exhausted`.
    pub new_status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What to lease alongside a settle.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Nothing.
    None,
    /// Up to `limit` due deliveries, each subscription in `subscriptions` taking back at most
    /// `slots[i]`: the in-flight slots that this very batch frees. A refill only ever hands
    /// on slots its own statement frees, so refills running side by side cannot overrun a cap.
    Refill {
        subscriptions: &'a [SubscriptionId],
        slots: &'a [i32],
        limit: i64,
    },
    /// Up to `limit` due deliveries of any subscription, each up to its free slots (after a
    /// NOTIFY, or on the timer). One worker runs one sweep at a time.
    Due { limit: i64 },
}

/// Settling: the attempt rows, the deliveries moved on, and `failing_since` cleared for the
/// subscriptions that just succeeded. `$1` (the settled ids) also keeps the claim off them.
const SETTLE: &str = "a AS (
        INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, response_excerpt)
        SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], $6::text[], $7::text[])
        ON CONFLICT (delivery_id, attempt) DO NOTHING
     ), settled AS (
        UPDATE deliveries d SET status = u.status, lease_until = NULL,
            next_attempt_at = COALESCE(u.next, d.next_attempt_at),
            last_status_code = u.code, last_error_class = u.class,
            finished_at = CASE WHEN u.status = 'pending' THEN NULL ELSE now() END
        FROM UNNEST($1::uuid[], $8::text[], $9::timestamptz[], $5::int[], $6::text[]) AS u(id, status, next, code, class)
        WHERE d.id = u.id
     ), healthy AS (
        UPDATE subscriptions SET failing_since = NULL WHERE id = ANY($10) AND failing_since IS NOT NULL
     )";

/// Leases held by this statement's snapshot, minus those it settles: what the cap counts (only
/// up to the cap: `LIMIT`). See `storage::connect` for why this must be a plain index scan.
const IN_FLIGHT: &str =
    "status = 'pending' AND lease_until IS NOT NULL AND lease_until > now() AND id <> ALL($1)";

/// Due and not leased, in one lane (`attempts = 0` first attempts, `attempts > 0` retries).
fn due(lane: &str) -> String {
    format!(
        "status = 'pending' AND {lane} AND next_attempt_at <= now() \
         AND (lease_until IS NULL OR lease_until < now()) AND id <> ALL($1)"
    )
}

/// The subscriptions that have work in a lane, each once: a skip scan of the lane's index by
/// subscription (one index descent per subscription with pending work, however deep its backlog).
fn subscriptions_in(name: &str, lane: &str) -> String {
    format!(
        "{name} AS (
            (SELECT subscription_id AS id FROM deliveries
              WHERE status = 'pending' AND {lane} AND subscription_id IS NOT NULL ORDER BY subscription_id LIMIT 1)
            UNION ALL
            SELECT (SELECT d.subscription_id FROM deliveries d
                     WHERE d.status = 'pending' AND d.{lane} AND d.subscription_id > k.id ORDER BY d.subscription_id LIMIT 1)
            FROM {name} k WHERE k.id IS NOT NULL
         )"
    )
}

/// Due deliveries of subscription `who` (an SQL expression) in both lanes, first attempts
/// before retries, at most `n` (an SQL expression).
fn lanes(who: &str, n: &str) -> String {
    let (first, retry) = (due("attempts = 0"), due("attempts > 0"));
    format!(
        "SELECT x.* FROM (
            (SELECT id, 0 AS lane, next_attempt_at FROM deliveries
              WHERE subscription_id {who} AND {first} ORDER BY next_attempt_at LIMIT {n})
            UNION ALL
            (SELECT id, 1, next_attempt_at FROM deliveries
              WHERE subscription_id {who} AND {retry} ORDER BY next_attempt_at LIMIT {n})
         ) x ORDER BY x.lane, x.next_attempt_at LIMIT {n}"
    )
}

/// `keys (id, slots)` names the subscriptions to claim for; each gets as many as its cap leaves
/// free (and at most `slots`, unless that is NULL), and
/// `pick` takes the oldest of those, first attempts first, at most `$11`. A sweep also takes
/// deliveries to per-request `webhook_url`s, which have no subscription and no cap.
fn pick(keys: &str, sweep: bool) -> String {
    let uncapped = if sweep {
        format!("UNION ALL SELECT * FROM ({}) n", lanes("IS NULL", "$11"))
    } else {
        String::new()
    };
    format!(
        "{keys}, want AS (
            SELECT s.id, LEAST(COALESCE(k.slots, s.max_in_flight),
                               s.max_in_flight - (SELECT count(*) FROM (
                                   SELECT 1 FROM deliveries i WHERE i.subscription_id = s.id AND i.{IN_FLIGHT}
                                   LIMIT s.max_in_flight) f)) AS free
            FROM keys k JOIN subscriptions s ON s.id = k.id
            WHERE s.status = 'active' AND s.deleted_at IS NULL
         ), pick AS (
            SELECT c.id FROM (
                SELECT l.* FROM want w CROSS JOIN LATERAL ({capped}) l
                {uncapped}
            ) c ORDER BY c.lane, c.next_attempt_at LIMIT $11
         )",
        capped = lanes("= w.id", "GREATEST(w.free, 0)"),
    )
}

/// [`Claim::Refill`]: the subscriptions in `$13`, each with its freed slots in `$14`.
fn pick_refill() -> String {
    pick(
        "keys AS (SELECT * FROM unnest($13::uuid[], $14::int[]) AS k(id, slots))",
        false,
    )
}

/// [`Claim::Due`]: every subscription with pending work (`$13` and `$14` are unused).
fn pick_due() -> String {
    let keys = format!(
        "{}, {}, keys AS (SELECT id, NULL::int AS slots FROM first_subs WHERE id IS NOT NULL
                   UNION SELECT id, NULL FROM retry_subs WHERE id IS NOT NULL)",
        subscriptions_in("first_subs", "attempts = 0"),
        subscriptions_in("retry_subs", "attempts > 0"),
    );
    pick(&keys, true)
}

/// Locks what `pick` chose (skipping rows another worker holds) and leases it for `$12` s.
const LEASE: &str = "locked AS (
        SELECT d.id FROM deliveries d
        WHERE d.id IN (SELECT id FROM pick) AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())
        FOR UPDATE SKIP LOCKED
     )
     UPDATE deliveries d SET lease_until = now() + make_interval(secs => $12), attempts = d.attempts + 1
     FROM events e
     WHERE d.id IN (SELECT id FROM locked) AND e.id = d.event_id
     RETURNING d.id, d.tenant_id, d.event_id, d.subscription_id,
               (SELECT s.updated_at FROM subscriptions s WHERE s.id = d.subscription_id) AS subscription_version,
               d.target_url, d.attempts, e.type AS event_type, e.payload::text AS payload,
               e.created_at AS event_created_at";

/// Records `batch` (clearing `failing_since` of the `healthy` subscriptions) and leases what
/// `claim` asks for, in one statement: one round trip, one commit.
pub async fn settle_and_claim(
    db: impl PgExecutor<'_>,
    batch: &[Settled],
    healthy: &[SubscriptionId],
    claim: Claim<'_>,
    lease_secs: f64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    static REFILL: LazyLock<String> =
        LazyLock::new(|| format!("WITH {SETTLE}, {}, {LEASE}", pick_refill()));
    static DUE: LazyLock<String> =
        LazyLock::new(|| format!("WITH RECURSIVE {SETTLE}, {}, {LEASE}", pick_due()));
    let (sql, limit, subs, slots) = match claim {
        Claim::None => (&REFILL, 0, &[][..], &[][..]),
        Claim::Refill {
            subscriptions,
            slots,
            limit,
        } => (&REFILL, limit, subscriptions, slots),
        Claim::Due { limit } => (&DUE, limit, &[][..], &[][..]),
    };
    sqlx::query_as(sql.as_str())
        .bind(batch.iter().map(|s| s.delivery_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|s| s.attempt).collect::<Vec<i32>>())
        .bind(batch.iter().map(|s| s.started_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|s| s.duration_ms).collect::<Vec<i32>>())
        .bind(batch.iter().map(|s| s.status_code).collect::<Vec<_>>())
        .bind(batch.iter().map(|s| s.error_class).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|s| s.excerpt.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|s| s.new_status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|s| s.next_attempt_at).collect::<Vec<_>>())
        .bind(healthy)
        .bind(limit)
        .bind(lease_secs)
        .bind(subs)
        .bind(slots)
        .fetch_all(db)
        .await
}

/// The next moment a delivery may become claimable: a scheduled attempt or a lease expiring,
/// in the future (due rows held back by an in-flight cap wait for a settle instead). Two index
/// lookups, not a scan of the pending rows: a delivery due in the future was scheduled later
/// than it was created, and only those are in `deliveries_scheduled`.
pub async fn next_due(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT LEAST(
            (SELECT next_attempt_at FROM deliveries
              WHERE status = 'pending' AND next_attempt_at > created_at AND next_attempt_at > now()
              ORDER BY next_attempt_at LIMIT 1),
            (SELECT min(lease_until) FROM deliveries WHERE status = 'pending' AND lease_until IS NOT NULL AND lease_until > now()))",
    )
    .fetch_one(db)
    .await
}

/// Puts claimed deliveries back untouched (shutdown, or a rate limit not yet allowing them).
pub async fn release(
    db: impl PgExecutor<'_>,
    ids: &[DeliveryId],
    delay_secs: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, attempts = GREATEST(attempts - 1, 0),
             next_attempt_at = now() + make_interval(secs => $2)
         WHERE id = ANY($1) AND status = 'pending'",
    )
    .bind(ids)
    .bind(delay_secs)
    .execute(db)
    .await?;
    Ok(())
}
