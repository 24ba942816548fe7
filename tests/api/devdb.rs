//! The throwaway local Postgres: a real cluster per test, reached over loopback only.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fluxgate::tools::devdb::{DevDb, DevDbError, DevDbOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::{Connection, PgConnection, Row};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("could not connect to {url}: {e}"))
}

/// A temp dir with the given mode: it decides whether the Postgres user can reach a data
/// directory inside it when we are root.
fn tempdir_with_mode(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

fn persistent(dir: &Path) -> DevDbOptions {
    DevDbOptions {
        data_dir: Some(dir.join("pgdata")),
        durable: false,
        install_if_missing: false,
        port: None,
    }
}

#[tokio::test]
async fn a_temporary_cluster_serves_per_test_databases_and_vanishes_on_stop() {
    let db = DevDb::start_async(DevDbOptions::temporary()).await.unwrap();
    eprintln!("temporary cluster started in {:?}", db.startup_time());
    assert!(db.url().contains("?host=/tmp/fluxgate-pg-"), "{}", db.url());

    let mut admin = connect(&db.url()).await;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(user, "fluxgate");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        fsync, "off",
        "temporary clusters trade durability for speed"
    );
    sqlx::query("CREATE DATABASE test_one")
        .execute(&mut admin)
        .await
        .unwrap();

    let mut conn = connect(&db.url_for("test_one")).await;
    let row = sqlx::query("SELECT current_database()::text AS name, 1 + 1 AS two")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "test_one");
    assert_eq!(row.get::<i32, _>("two"), 2);
    let mut tcp = connect(&db.tcp_url_for("test_one")).await;
    sqlx::query("SELECT 1").execute(&mut tcp).await.unwrap();

    let (socket_dir, data_dir, pid) = (
        db.socket_dir().to_owned(),
        db.data_dir().to_owned(),
        db.pid().unwrap(),
    );
    for c in [admin, conn, tcp] {
        c.close().await.unwrap();
    }
    db.stop().unwrap();

    assert!(
        !socket_dir.exists() && !data_dir.exists(),
        "temp files remain"
    );
    assert_eq!(
        kill(Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    let url = format!(
        "postgres://fluxgate@localhost:5432/postgres?host={}",
        socket_dir.display()
    );
    assert!(PgConnection::connect(&url).await.is_err());
}

#[tokio::test]
async fn a_second_start_on_a_data_dir_in_use_is_refused_with_the_holders_pid() {
    let dir = tempdir_with_mode(0o755);
    let first = DevDb::start_async(persistent(dir.path())).await.unwrap();
    eprintln!(
        "persistent cluster initialised and started in {:?}",
        first.startup_time()
    );

    let err = DevDb::start_async(persistent(dir.path()))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, DevDbError::InUse { pid: Some(pid), .. } if pid == std::process::id()),
        "{err:?}"
    );
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains("pgdata"), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );

    // Stopping releases the directory.
    first.stop().unwrap();
    let again = DevDb::start_async(persistent(dir.path())).await.unwrap();
    eprintln!("persistent cluster restarted in {:?}", again.startup_time());
    again.stop().unwrap();
    assert!(dir.path().join("pgdata").join("PG_VERSION").exists());
}

#[tokio::test]
async fn a_cluster_whose_postgres_was_killed_restarts_with_its_data() {
    let dir = tempdir_with_mode(0o755);
    // Durable, as `fluxgate dev` runs: without synchronous commit the last commits before a
    // crash are lost by design.
    let durable = DevDbOptions {
        durable: true,
        ..persistent(dir.path())
    };
    let db = DevDb::start_async(durable.clone()).await.unwrap();
    eprintln!(
        "durable cluster initialised and started in {:?}",
        db.startup_time()
    );
    let mut conn = connect(&db.url()).await;
    sqlx::raw_sql("CREATE TABLE survivor (note text); INSERT INTO survivor VALUES ('still here')")
        .execute(&mut conn)
        .await
        .unwrap();
    // Simulate a crash: no shutdown checkpoint, a stale postmaster.pid, backends still exiting.
    kill(Pid::from_raw(db.pid().unwrap() as i32), Signal::SIGKILL).unwrap();
    drop(conn);
    drop(db);

    let db = DevDb::start_async(durable).await.unwrap();
    eprintln!("restart after a crash took {:?}", db.startup_time());
    let mut conn = connect(&db.url()).await;
    let note: String = sqlx::query_scalar("SELECT note FROM survivor")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(note, "still here");
    conn.close().await.unwrap();
    db.stop().unwrap();
}

#[tokio::test]
async fn two_temporary_clusters_run_side_by_side() {
    let (a, b) = tokio::join!(
        DevDb::start_async(DevDbOptions::temporary()),
        DevDb::start_async(DevDbOptions::temporary())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.socket_dir(), b.socket_dir());
    for db in [&a, &b] {
        let mut conn = connect(&db.url()).await;
        let port: String = sqlx::query_scalar("SHOW port")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(port, db.port().to_string());
        conn.close().await.unwrap();
    }
    a.stop().unwrap();
    b.stop().unwrap();
}

#[tokio::test]
async fn a_data_dir_postgres_cannot_reach_is_explained_not_attempted() {
    if !nix::unistd::geteuid().is_root() {
        return; // only root switches users, so only then can the path be out of reach
    }
    let dir = tempdir_with_mode(0o700); // owned by root
    let err = DevDb::start_async(persistent(dir.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, DevDbError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("not searchable"), "{err}");
}

#[tokio::test]
async fn a_cluster_that_cannot_start_is_reported_with_its_log_and_releases_the_data_dir() {
    let dir = tempdir_with_mode(0o755);
    let opts = persistent(dir.path());
    DevDb::start_async(opts.clone())
        .await
        .unwrap()
        .stop()
        .unwrap();
    let conf = dir.path().join("pgdata/postgresql.conf");
    let original = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{original}\nshared_buffers = banana\n")).unwrap();

    let err = DevDb::start_async(opts.clone()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DevDbError::StartFailed { .. }), "{err:?}");
    assert!(message.contains("exited during start-up"), "{message}");
    assert!(
        message.contains("banana"),
        "the log tail explains why: {message}"
    );

    // The failed start let go of the lock, and a repaired directory starts again.
    std::fs::write(&conf, original).unwrap();
    DevDb::start_async(opts).await.unwrap().stop().unwrap();
}

#[tokio::test]
async fn a_data_dir_from_another_major_version_is_refused_before_starting() {
    let dir = tempdir_with_mode(0o755);
    let opts = persistent(dir.path());
    DevDb::start_async(opts.clone())
        .await
        .unwrap()
        .stop()
        .unwrap();
    std::fs::write(dir.path().join("pgdata/PG_VERSION"), "9.6\n").unwrap();

    let err = DevDb::start_async(opts).await.unwrap_err();
    assert!(matches!(err, DevDbError::VersionMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("PostgreSQL 9.6"), "{err}");
}

const HELPER: &str = "FLUXGATE_DEVDB_KILL_HELPER";

/// Not a test of its own: the process that `postgres_dies_with_the_process_that_started_it`
/// starts and then SIGKILLs.
#[test]
fn helper_starts_a_cluster_and_waits_to_be_killed() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let db = DevDb::start(DevDbOptions::temporary()).unwrap();
    println!("READY {} {}", db.pid().unwrap(), db.socket_dir().display());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn postgres_dies_with_the_process_that_started_it_and_its_files_are_swept_later() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "devdb::helper_starts_a_cluster_and_waits_to_be_killed",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(HELPER, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // libtest prints the test's name on the same line, before our output.
    let ready = BufReader::new(helper.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split_once("READY ").map(|(_, rest)| rest.to_owned()));
    helper.kill().unwrap(); // SIGKILL: no destructor, no clean-up code of ours runs
    helper.wait().unwrap();
    let ready = ready.expect("the helper never reported a running cluster");
    let (pid, socket_dir) = ready.split_once(' ').unwrap();
    let (pid, socket_dir): (i32, PathBuf) = (pid.parse().unwrap(), socket_dir.into());

    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(
            Instant::now() < deadline,
            "postgres {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The next start (this one, or a concurrent test's) sweeps away what the killed process
    // could not remove.
    DevDb::start(DevDbOptions::temporary())
        .unwrap()
        .stop()
        .unwrap();
    assert!(
        !socket_dir.exists(),
        "{} was not swept",
        socket_dir.display()
    );
}

/// Alive and not a zombie waiting for whoever adopted it to reap it.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
