//! A pooled connection that a busy loop keeps between its statements.
//!
//! sqlx follows every release of a pooled connection with a round trip (a `Sync`, answered by
//! `ReadyForQuery`: its "test on release"), which wakes a Postgres backend for nothing. A loop
//! that takes a connection for each statement pays that per statement. `Held` keeps the
//! connection while the loop is busy and gives it back after an error (sqlx tests it then, and
//! closes it if it is broken) or once the loop has been idle for `IDLE`.
//!
//! Only a pool with room to spare lends connections out like this: with fewer than
//! `MIN_POOL` connections, `Held` gives its connection back after every use, as plain pool use
//! would, so held connections never starve the request handlers.
use std::time::Duration;

use sqlx::{pool::PoolConnection, PgConnection, PgPool, Postgres};

/// A loop idle this long gives its connection back.
pub const IDLE: Duration = Duration::from_secs(1);
/// The smallest pool that lends connections to loops for longer than a statement.
const MIN_POOL: u32 = 8;

pub struct Held {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
    keep: bool,
}

impl Held {
    pub fn new(pool: PgPool) -> Held {
        let keep = pool.options().get_max_connections() >= MIN_POOL;
        Held {
            pool,
            conn: None,
            keep,
        }
    }

    /// The held connection, acquired from the pool if none is held.
    pub async fn conn(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// One use is over: `ok` = it did not fail. A failed connection goes back to the pool to be
    /// tested; so does every connection of a pool too small to lend them out.
    pub fn done(&mut self, ok: bool) {
        if !ok || !self.keep {
            self.conn = None;
        }
    }

    /// The loop is idle: give the connection back.
    pub fn release(&mut self) {
        self.conn = None;
    }
}
