//! The throwaway local Postgres behind `fluxgate dev` and the test suite: finds (or installs) the
//! server programs, initialises a cluster, runs `postgres` as a child process that cannot outlive
//! us, and hands out connection URLs over a unix socket.
//!
//! A temporary cluster lives entirely in `/tmp/fluxgate-pg-xxxxxxxx` (`data/`, `postgres.log`,
//! the socket) and is removed on stop. A persistent one keeps its data where it is told (e.g.
//! `.fluxgate/pgdata`) with `pgdata.lock` and `pgdata.log` beside it, and only its socket in
//! `/tmp`, because socket paths must stay short.

mod binaries;
mod cluster;
mod error;
mod fsutil;
mod server;
mod template;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;

pub use binaries::{find_binaries, PgBinaries};
pub use error::DevDbError;
use fsutil::DbUser;
use server::Supervised;

/// The cluster's superuser; trust authentication, so no password.
pub const SUPERUSER: &str = "fluxgate";
/// The database that always exists and that [`DevDb::url`] points at.
const DEFAULT_DATABASE: &str = "postgres";
const STOP_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct DevDbOptions {
    /// `Some`: a persistent data directory, initialised on first use. `None`: a fresh
    /// temporary cluster, removed on stop.
    pub data_dir: Option<PathBuf>,
    /// `false` turns off fsync, synchronous commit and full-page writes: much faster, but a
    /// killed Postgres loses its last fraction of a second of commits and a crashed machine may
    /// corrupt the cluster. Fine for tests; `fluxgate dev` keeps its data durable.
    pub durable: bool,
    /// Install PostgreSQL with apt-get when it is missing and we are root on Debian/Ubuntu.
    pub install_if_missing: bool,
    /// Listen on this TCP port instead of a free one (a restart that clients reconnect to).
    pub port: Option<u16>,
}

impl DevDbOptions {
    /// What the test suite wants: a fast, throwaway cluster.
    pub fn temporary() -> Self {
        Self::default()
    }

    /// What `fluxgate dev` wants: data that survives restarts, installed if need be.
    pub fn persistent(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: Some(data_dir.into()),
            durable: true,
            install_if_missing: true,
            port: None,
        }
    }
}

/// A running local Postgres, stopped by [`DevDb::stop`] or (best effort) on drop.
pub struct DevDb {
    server: Option<Supervised>,
    port: u16,
    socket_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    version: String,
    /// Removed on stop: the whole cluster (temporary) or only the socket directory (persistent).
    scratch: Option<PathBuf>,
    /// Held for our lifetime so two `fluxgate dev` cannot share a persistent data directory.
    lock: Option<Flock<File>>,
    startup_time: Duration,
}

impl std::fmt::Debug for DevDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevDb")
            .field("port", &self.port)
            .field("socket_dir", &self.socket_dir)
            .field("data_dir", &self.data_dir)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl DevDb {
    /// Starts a cluster and waits until it accepts connections. Blocking: call it before the
    /// runtime starts, or use [`DevDb::start_async`].
    pub fn start(opts: DevDbOptions) -> Result<Self, DevDbError> {
        let began = Instant::now();
        fsutil::sweep_stale_temp_dirs();
        let user = DbUser::resolve()?;
        let data_dir = opts
            .data_dir
            .as_deref()
            .map(|dir| {
                std::path::absolute(dir).map_err(DevDbError::io(format!(
                    "resolve the data directory {}",
                    dir.display()
                )))
            })
            .transpose()?;
        let lock = data_dir.as_deref().map(lock_persistent).transpose()?;
        let binaries = binaries_for(data_dir.as_deref(), opts.install_if_missing)?;

        let scratch = fsutil::make_temp_dir(&user)?;
        let (data_dir, log_path) = match &data_dir {
            Some(dir) => (dir.clone(), fsutil::sibling(dir, "log")),
            None => (scratch.join("data"), scratch.join("postgres.log")),
        };
        let launched = cluster::launch(&binaries, &user, &data_dir, &scratch, &log_path, &opts);
        let (server, port) = match launched {
            Ok(launched) => launched,
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        let startup_time = began.elapsed();
        tracing::info!(
            port,
            data_dir = %data_dir.display(),
            startup_ms = startup_time.as_millis() as u64,
            "local Postgres {} is ready",
            binaries.version
        );
        Ok(Self {
            server: Some(server),
            port,
            socket_dir: scratch.clone(),
            data_dir,
            log_path,
            version: binaries.version,
            scratch: Some(scratch),
            lock,
            startup_time,
        })
    }

    /// [`DevDb::start`] on the blocking pool. Safe despite that pool's threads coming and going:
    /// Postgres is spawned from a thread of its own.
    pub async fn start_async(opts: DevDbOptions) -> Result<Self, DevDbError> {
        tokio::task::spawn_blocking(move || Self::start(opts))
            .await
            .map_err(|e| DevDbError::io("start Postgres")(std::io::Error::other(e)))?
    }

    /// The default database as the superuser, over the unix socket.
    pub fn url(&self) -> String {
        self.url_for(DEFAULT_DATABASE)
    }

    /// `database` as the superuser, over the unix socket (`?host=` names the socket directory;
    /// sqlx and libpq both understand it).
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{}/{}?host={}",
            self.port,
            encode(database),
            encode(&self.socket_dir.to_string_lossy()).replace("%2F", "/")
        )
    }

    /// `database` over TCP on 127.0.0.1, for tools that cannot use a unix socket.
    pub fn tcp_url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            encode(database)
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where Postgres writes its log (never our stdout).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's major version, e.g. "15".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .as_ref()
            .filter(|s| s.exit_status().is_none())
            .map(Supervised::pid)
    }

    /// How long [`DevDb::start`] took, from call to first accepted connection.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Fast shutdown (open sessions are rolled back), waits for it, and removes temporary files.
    pub fn stop(mut self) -> Result<(), DevDbError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), DevDbError> {
        let stopped = match self.server.take() {
            Some(mut server) => server.shutdown(STOP_PATIENCE),
            None => Ok(()),
        };
        let removed = match self.scratch.take() {
            Some(dir) => fs::remove_dir_all(&dir)
                .map_err(DevDbError::io(format!("remove {}", dir.display()))),
            None => Ok(()),
        };
        // Only now may another process take the data directory.
        self.lock = None;
        stopped.map_err(DevDbError::StopFailed)?;
        removed
    }
}

impl Drop for DevDb {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "could not stop the local Postgres cleanly");
        }
    }
}

fn lock_persistent(data_dir: &Path) -> Result<Flock<File>, DevDbError> {
    if let Some(parent) = data_dir.parent() {
        fs::create_dir_all(parent)
            .map_err(DevDbError::io(format!("create {}", parent.display())))?;
    }
    fsutil::lock_data_dir(data_dir)
}

/// Binaries that can open `data_dir`: an existing cluster needs its own major version.
fn binaries_for(data_dir: Option<&Path>, install: bool) -> Result<PgBinaries, DevDbError> {
    let existing = data_dir
        .and_then(|dir| fs::read_to_string(dir.join("PG_VERSION")).ok())
        .map(|v| v.trim().to_owned());
    let found = match binaries::find_binaries_preferring(existing.as_deref()) {
        Err(DevDbError::NotInstalled) if install => binaries::install_if_possible()?,
        other => other?,
    };
    match (data_dir, existing) {
        (Some(dir), Some(version)) if version != found.version => {
            Err(DevDbError::VersionMismatch {
                data_dir: dir.to_owned(),
                data_version: version,
                binaries: found.postgres,
                binaries_version: found.version,
            })
        }
        _ => Ok(found),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_odd_database_names_but_keep_the_socket_path_readable() {
        assert_eq!(encode("test_db-1"), "test_db-1");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn a_cluster_can_live_in_a_static_shared_by_every_test() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<DevDb>();
        shareable::<DevDbError>();
    }

    #[test]
    fn missing_binaries_are_explained_with_what_to_install() {
        let message = DevDbError::NotInstalled.to_string();
        for hint in ["apt-get install postgresql", "brew install", "DATABASE_URL"] {
            assert!(message.contains(hint), "{message}");
        }
    }
}
