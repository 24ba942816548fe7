//! Every way starting or stopping the local Postgres can fail, each as one sentence a newcomer
//! can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DevDbError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin — install them: `sudo apt-get install postgresql` \
         (Debian/Ubuntu), `sudo dnf install postgresql-server` (Fedora/RHEL), \
         `brew install postgresql@16` (macOS, then add its bin directory to PATH), \
         `apk add postgresql` (Alpine) — or set DATABASE_URL to an existing server"
    )]
    NotInstalled,

    #[error("installing PostgreSQL with apt-get failed ({0}); install it yourself (`sudo apt-get install postgresql`) or set DATABASE_URL to an existing server")]
    InstallFailed(String),

    #[error(
        "another `fluxgate dev` is already running with the data directory {} ({}); stop it \
         first, or set DATABASE_URL to use a server of your own",
        data_dir.display(),
        pid.map_or_else(|| "its pid is unknown".to_owned(), |p| format!("pid {p}"))
    )]
    InUse { data_dir: PathBuf, pid: Option<u32> },

    #[error("Postgres refuses to run as root and neither a `postgres` nor a `nobody` user exists to run it as; create one (`useradd --system postgres`) or set DATABASE_URL")]
    NoUnprivilegedUser,

    #[error(
        "the data directory {} cannot be reached by user `{user}`, who must run Postgres: \
         {} is not searchable by it; choose a data directory elsewhere, allow access \
         (`chmod o+x {}`), or set DATABASE_URL",
        data_dir.display(),
        blocked.display(),
        blocked.display()
    )]
    Unreachable {
        data_dir: PathBuf,
        blocked: PathBuf,
        user: String,
    },

    #[error(
        "the data directory {} belongs to uid {owner} but Postgres must run as `{user}` (uid {uid}); \
         it was probably created by another user — remove it to start afresh (dev data only) or \
         run fluxgate as that user",
        data_dir.display()
    )]
    WrongOwner {
        data_dir: PathBuf,
        owner: u32,
        user: String,
        uid: u32,
    },

    #[error(
        "the data directory {} was created by PostgreSQL {data_version}, but the binaries found \
         ({}) are PostgreSQL {binaries_version}; install PostgreSQL {data_version}, or remove the \
         directory to start afresh (dev data only)",
        data_dir.display(),
        binaries.display()
    )]
    VersionMismatch {
        data_dir: PathBuf,
        data_version: String,
        binaries: PathBuf,
        binaries_version: String,
    },

    #[error("initdb failed for {}:\n{output}", data_dir.display())]
    InitDb { data_dir: PathBuf, output: String },

    #[error("Postgres did not start ({reason}); the last lines of {}:\n{log_tail}", log.display())]
    StartFailed {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("Postgres did not stop cleanly: {0}")]
    StopFailed(String),

    #[error("could not {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DevDbError {
    /// Wraps an I/O error with what we were doing, so the message reads as a sentence.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
