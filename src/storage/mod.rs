//! All SQL lives here, one file per table family. Functions take an executor so callers can
//! compose them into one transaction.
pub mod alert_state;
pub mod batches;
pub mod browser_tokens;
pub mod budget_usage;
pub mod callbacks;
pub mod deliveries;
pub mod delivery_queue;
pub mod events;
pub mod gauges;
pub mod generations;
pub mod held;
pub mod idempotency_keys;
pub mod image_copies;
pub mod keys;
pub mod rate_windows;
pub mod retention;
pub mod server_secrets;
pub mod subscriptions;
pub mod tenants;
pub mod usage;

use sqlx::{postgres::PgPoolOptions, PgPool};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

/// A secret as a row stores it: sealed with FLUXGATE_ENCRYPTION_KEY, or plaintext when
/// encryption is off. Its `Debug` never shows it, whichever it is.
#[derive(Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Stored(pub String);

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stored(<redacted>)")
    }
}

impl Stored {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// When the database was last seen to drop connections (ms after `clock()`'s start; 0 = never).
static LOST_AT_MS: AtomicU64 = AtomicU64::new(0);

fn clock() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The LISTEN connection saw the database drop it (e.g. a Postgres restart): every pooled
/// connection opened before now is presumed dead and is replaced on its next acquire, instead
/// of failing one request each.
pub fn connections_lost() {
    LOST_AT_MS.store(clock().as_millis() as u64 + 1, Ordering::Relaxed);
}

/// A statement failed because its connection broke (not because of what it asked): seen by a
/// loop that holds a connection, which calls `connections_lost` before it retries, so that the
/// retry does not draw another connection the same event broke.
pub fn is_connection_loss(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
}

fn opened_before_loss(age: Duration) -> bool {
    let lost = LOST_AT_MS.load(Ordering::Relaxed);
    lost != 0 && (clock().saturating_sub(age).as_millis() as u64) < lost
}

/// Set on every pooled connection (with `SET`, which session poolers pass on): `enable_seqscan`
/// and `enable_bitmapscan` off. Every query here has an index made for it, and two planner
/// habits hurt a queue whose tables grow and churn:
/// - Postgres plans a prepared statement once per connection and keeps the plan; one made while
///   a table was small (a new deployment, a fresh database) scans the whole table on every
///   execution as it grows, until autovacuum happens to analyze it. `fluxgate bench pipeline`
///   saw 4,168 full scans of `deliveries` (14.7 M rows) in 10 s; callback → subscriber p50
///   went 5.9 → 3.5 ms without them.
/// - A bitmap scan never marks the dead index entries each lease and settle leave behind, so
///   counting a subscription's in-flight deliveries visited ~200 heap pages after 100k
///   deliveries; a plain index scan marks them and skips them after. `bench deliver
///   --deliveries 100000`: 5,600 → 9,480 deliveries/s.
///
/// A query with no index to use still scans; such a scan is only never chosen over an index.
const SESSION_SETTINGS: &str = "SET enable_seqscan = off; SET enable_bitmapscan = off";

/// Pool options shared by every pool: bounded waits, so an unreachable database turns into a
/// clear error instead of a hang. No test-before-acquire ping (it doubles round trips on the hot
/// path); connections older than a detected loss are dropped instead, without a round trip.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|_, meta| Box::pin(async move { Ok(!opened_before_loss(meta.age)) }))
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute(SESSION_SETTINGS).await?;
                Ok(())
            })
        })
}

/// The handlers' pool (see `pool_options`).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    // One direct connection first: a wrong URL or a down server fails at once with its real
    // cause, instead of a pool timing out on retries.
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await?.close().await?;
    pool_options(max_connections)
        .min_connections(1)
        .connect(url)
        .await
}

/// A failure to connect to DATABASE_URL, said the way an operator can act on it.
pub fn connect_error(e: sqlx::Error) -> anyhow::Error {
    match e {
        sqlx::Error::Configuration(c) => {
            anyhow::anyhow!("DATABASE_URL is not a usable Postgres URL: {c}")
        }
        sqlx::Error::Io(io) => {
            anyhow::anyhow!("cannot reach the database given by DATABASE_URL: {io}")
        }
        sqlx::Error::PoolTimedOut => {
            anyhow::anyhow!("timed out connecting to the database given by DATABASE_URL")
        }
        sqlx::Error::Database(d) => {
            anyhow::anyhow!("the database refused the connection: {}", d.message())
        }
        other => anyhow::anyhow!("database error: {other}"),
    }
}

/// Whether every migration this binary knows has been applied (for `/readyz`).
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
