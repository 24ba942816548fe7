//! Making a cluster run: initdb for a persistent data directory, then `postgres` on a free port
//! until it accepts connections — or an error that quotes the Postgres log.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::fsutil::{self, DbUser};
use super::server::{self, Supervised};
use super::template;
use super::{DevDbError, PgBinaries, DEFAULT_DATABASE, SUPERUSER};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep retrying start-ups that fail for reasons that pass: a port taken between
/// our probe and Postgres's bind, or a killed predecessor whose processes are still exiting.
const RETRY_BUDGET: Duration = Duration::from_secs(15);
const LOG_TAIL_LINES: usize = 30;

/// Makes `data_dir` a cluster (a copy of the template when it is throwaway) and runs it, with
/// its socket in `socket_dir` and its log in `log_path`.
pub(crate) fn launch(
    binaries: &PgBinaries,
    user: &DbUser,
    data_dir: &Path,
    socket_dir: &Path,
    log_path: &Path,
    opts: &super::DevDbOptions,
) -> Result<(Supervised, u16), DevDbError> {
    let (persistent, durable, port) = (opts.data_dir.is_some(), opts.durable, opts.port);
    let began = Instant::now();
    if persistent {
        prepare_data_dir(data_dir, user, binaries, durable)?;
    } else {
        template::create_cluster(binaries, user, data_dir)?;
    }
    tracing::debug!(
        elapsed_ms = began.elapsed().as_millis() as u64,
        "local Postgres cluster prepared"
    );
    run_postgres(
        binaries, user, data_dir, socket_dir, log_path, durable, port,
    )
}

/// Makes `data_dir` an initialised cluster that `user` owns and can reach.
fn prepare_data_dir(
    data_dir: &Path,
    user: &DbUser,
    binaries: &PgBinaries,
    durable: bool,
) -> Result<(), DevDbError> {
    user.check_reachable(data_dir)?;
    if data_dir.join("PG_VERSION").exists() {
        let owner = fs::metadata(data_dir)
            .map_err(DevDbError::io(format!("inspect {}", data_dir.display())))?
            .uid();
        if owner != user.uid.as_raw() {
            return Err(DevDbError::WrongOwner {
                data_dir: data_dir.to_owned(),
                owner,
                user: user.name.clone(),
                uid: user.uid.as_raw(),
            });
        }
        return Ok(());
    }
    // An empty directory made by hand may be replaced; anything else might be someone's data.
    if data_dir.exists() {
        fs::remove_dir(data_dir).map_err(DevDbError::io(format!(
            "use {} as a data directory (it is neither empty nor a Postgres data directory)",
            data_dir.display()
        )))?;
    }
    // initdb into a staging directory and rename, so an interrupted initdb never leaves a
    // half-made cluster where the next run would try to start it.
    let staging = fsutil::sibling(data_dir, "initdb");
    let _ = fs::remove_dir_all(&staging);
    let no_sync: &[&str] = if durable { &[] } else { &["--no-sync"] };
    initdb(binaries, user, &staging, no_sync)?;
    fs::rename(&staging, data_dir).map_err(DevDbError::io(format!(
        "move the new cluster into {}",
        data_dir.display()
    )))
}

pub(crate) fn initdb(
    binaries: &PgBinaries,
    user: &DbUser,
    data_dir: &Path,
    extra_args: &[&str],
) -> Result<(), DevDbError> {
    // Created by us, then handed over: its parent (e.g. `.fluxgate/`) may not be writable by
    // the user Postgres runs as.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(data_dir)
        .map_err(DevDbError::io(format!("create {}", data_dir.display())))?;
    user.give(data_dir)?;
    let mut cmd = user.command(&binaries.initdb);
    cmd.arg("--pgdata")
        .arg(data_dir)
        .args(["--auth=trust", "--username", SUPERUSER])
        .args(["--encoding=UTF8", "--locale=C"])
        .args(extra_args)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(DevDbError::io(format!("run {}", binaries.initdb.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    Err(DevDbError::InitDb {
        data_dir: data_dir.to_owned(),
        output: tail(&text, LOG_TAIL_LINES),
    })
}

/// Starts `postgres` and waits until it accepts connections, retrying failures that pass.
fn run_postgres(
    binaries: &PgBinaries,
    user: &DbUser,
    data_dir: &Path,
    socket_dir: &Path,
    log_path: &Path,
    durable: bool,
    fixed_port: Option<u16>,
) -> Result<(Supervised, u16), DevDbError> {
    let log_error = DevDbError::io(format!("open {}", log_path.display()));
    File::create(log_path).map_err(log_error)?;
    let log = OpenOptions::new()
        .append(true)
        .open(log_path)
        .map_err(DevDbError::io(format!("open {}", log_path.display())))?;
    let give_up = Instant::now() + RETRY_BUDGET;
    loop {
        let port = match fixed_port {
            Some(p) => p,
            None => free_port()?,
        };
        let attempt_offset = log.metadata().map_or(0, |m| m.len());
        let mut cmd = user.command(&binaries.postgres);
        cmd.arg("-D").arg(data_dir).arg("-k").arg(socket_dir).args([
            "-p",
            &port.to_string(),
            "-h",
            "127.0.0.1",
        ]);
        for setting in settings(binaries, durable) {
            cmd.args(["-c", setting]);
        }
        let clone_log = || {
            log.try_clone()
                .map_err(DevDbError::io("share the log file"))
        };
        cmd.stdin(Stdio::null())
            .stdout(clone_log()?)
            .stderr(clone_log()?);
        let server = Supervised::spawn(cmd).map_err(DevDbError::io(format!(
            "run {}",
            binaries.postgres.display()
        )))?;
        let socket = socket_dir.join(format!(".s.PGSQL.{port}"));
        let ready = server::wait_ready(
            &server,
            data_dir,
            &socket,
            SUPERUSER,
            DEFAULT_DATABASE,
            READY_TIMEOUT,
        );
        let Err(reason) = ready else {
            return Ok((server, port));
        };
        let exited = server.exit_status().is_some();
        drop(server); // stops it, if it is still running
        if exited && Instant::now() < give_up && is_transient(&read_from(log_path, attempt_offset))
        {
            tracing::debug!(%reason, "local Postgres start-up failed transiently; retrying");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        return Err(DevDbError::StartFailed {
            reason,
            log: log_path.to_owned(),
            log_tail: tail(&read_from(log_path, 0), LOG_TAIL_LINES),
        });
    }
}

/// Server settings passed on the command line, so they follow the code rather than a
/// `postgresql.conf` written once by an older fluxgate.
fn settings(binaries: &PgBinaries, durable: bool) -> Vec<&'static str> {
    let mut settings = vec![
        "max_connections=300",
        // Postgres's own defaults, stated because initdb scales them with the WAL segment
        // size: the template's 1 MB segments (template.rs) made them 64 MB and 2 MB, and a
        // checkpoint started after every ~33 MB of WAL — every few seconds under load, once
        // a second during a retention sweep. Each checkpoint makes the next change to every
        // page write the whole page to the WAL again. A 1 M-row `bench pipeline --preload`
        // met five of them during its runs with the old sizes, none with these.
        "max_wal_size=1GB",
        "min_wal_size=80MB",
    ];
    if !durable {
        settings.extend([
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ]);
    } else if cfg!(target_os = "linux") && binaries.version.parse::<u32>().is_ok_and(|v| v >= 14) {
        // Crash recovery otherwise fsyncs every file of the cluster one by one (seconds, after
        // every killed `fluxgate dev`); one syncfs() of the file system is as safe here.
        settings.push("recovery_init_sync_method=syncfs");
    }
    settings
}

/// Failures another attempt may not meet: someone took the port we picked, or the processes of
/// a killed predecessor still hold the data directory's lock file or shared memory.
fn is_transient(log: &str) -> bool {
    [
        "Address already in use",
        "Is another postmaster",
        "pre-existing shared memory block",
    ]
    .iter()
    .any(|marker| log.contains(marker))
}

/// A port free right now. Another process may take it before Postgres binds it; start-up
/// notices that ("Address already in use") and tries another.
fn free_port() -> Result<u16, DevDbError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(DevDbError::io("find a free TCP port on 127.0.0.1"))
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    let _ = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut text)
    });
    String::from_utf8_lossy(&text).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.trim().is_empty() {
        "(nothing was logged)".to_owned()
    } else {
        tail
    }
}

/// Percent-encodes everything but unreserved characters, for a URL path segment or query value.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_and_says_when_there_are_none() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "(nothing was logged)");
    }

    #[test]
    fn a_taken_port_is_transient_but_a_bad_setting_is_not() {
        assert!(is_transient(
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        ));
        assert!(!is_transient(
            "FATAL:  invalid value for parameter \"max_connections\""
        ));
    }
}
