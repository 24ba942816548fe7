//! The files around a cluster: who owns them, the data-directory lock, and short-lived
//! directories under /tmp (including sweeping those a killed process left behind).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::{Gid, Pid, Uid, User};
use rand::Rng;

use super::DevDbError;

/// Short on purpose: a unix socket path must fit in ~107 bytes, so the socket lives directly in
/// `/tmp/fluxgate-pg-xxxxxxxx` rather than under a project path of unknown length.
const TEMP_PARENT: &str = "/tmp";
const TEMP_PREFIX: &str = "fluxgate-pg-";
/// Names the process that owns a temp directory, so a later run can sweep it once that is dead.
const OWNER_FILE: &str = "owner.pid";

/// The account Postgres runs as: ourselves, or when we are root (which Postgres refuses) an
/// unprivileged system user.
#[derive(Debug, Clone)]
pub(crate) struct DbUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// True when we are root and must switch to `uid`/`gid` for initdb and postgres.
    pub switch: bool,
}

impl DbUser {
    pub fn resolve() -> Result<Self, DevDbError> {
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            let name = User::from_uid(euid)
                .ok()
                .flatten()
                .map_or_else(|| euid.to_string(), |u| u.name);
            return Ok(Self {
                name,
                uid: euid,
                gid: nix::unistd::getegid(),
                switch: false,
            });
        }
        ["postgres", "nobody"]
            .into_iter()
            .filter_map(|name| User::from_name(name).ok().flatten())
            .find(|u| !u.uid.is_root())
            .map(|u| Self {
                name: u.name,
                uid: u.uid,
                gid: u.gid,
                switch: true,
            })
            .ok_or(DevDbError::NoUnprivilegedUser)
    }

    /// A command that runs as this user, from `/` (our own working directory may be unreadable
    /// to it, which makes initdb complain).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir("/");
        if self.switch {
            cmd.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
        cmd
    }

    pub fn give(&self, path: &Path) -> Result<(), DevDbError> {
        if self.switch {
            nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
                DevDbError::io(format!("give {} to user {}", path.display(), self.name))(e.into())
            })?;
        }
        Ok(())
    }

    /// Postgres needs search permission on every ancestor of its data directory; a project under
    /// `/root` is the usual trap when we switch users. Supplementary groups are not considered
    /// because std drops them when it switches uid.
    pub fn check_reachable(&self, data_dir: &Path) -> Result<(), DevDbError> {
        if !self.switch {
            return Ok(());
        }
        for dir in data_dir.ancestors().skip(1) {
            let Ok(meta) = fs::metadata(dir) else {
                continue;
            };
            let bit = if meta.uid() == self.uid.as_raw() {
                0o100
            } else if meta.gid() == self.gid.as_raw() {
                0o010
            } else {
                0o001
            };
            if meta.mode() & bit == 0 {
                return Err(DevDbError::Unreachable {
                    data_dir: data_dir.to_owned(),
                    blocked: dir.to_owned(),
                    user: self.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Holds the data directory for one process: taken before anything touches it and released when
/// the file closes, so a crashed `fluxgate dev` never leaves it locked.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<Flock<File>, DevDbError> {
    let path = sibling(data_dir, "lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(DevDbError::io(format!(
            "open the lock file {}",
            path.display()
        )))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let write_pid = lock
                .set_len(0)
                .and_then(|()| write!(lock, "{}", std::process::id()));
            write_pid.map_err(DevDbError::io(format!("write {}", path.display())))?;
            Ok(lock)
        }
        Err((_, Errno::EWOULDBLOCK)) => Err(DevDbError::InUse {
            data_dir: data_dir.to_owned(),
            pid: fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }),
        Err((_, errno)) => Err(DevDbError::io(format!("lock {}", path.display()))(
            errno.into(),
        )),
    }
}

/// `…/pgdata` → `…/pgdata.<ext>`: files that belong to a data directory but must not live in it.
pub(crate) fn sibling(data_dir: &Path, ext: &str) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(ext);
    data_dir.with_file_name(name)
}

/// Creates `/tmp/fluxgate-pg-xxxxxxxx` (mode 0700, given to `user`) and records our pid in it.
pub(crate) fn make_temp_dir(user: &DbUser) -> Result<PathBuf, DevDbError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    loop {
        let suffix: String = (0..8)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect();
        let dir = Path::new(TEMP_PARENT).join(format!("{TEMP_PREFIX}{suffix}"));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                let setup = fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
                    .map_err(DevDbError::io(format!("write into {}", dir.display())))
                    .and_then(|()| user.give(&dir));
                if let Err(e) = setup {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(DevDbError::io(format!(
                    "create a temporary directory in {TEMP_PARENT}"
                ))(e))
            }
        }
    }
}

/// Removes temp directories whose owning process is gone and whose Postgres has exited: a test
/// run killed by Ctrl-C, or a cluster kept in a `static` (never dropped), leaves one behind.
pub(crate) fn sweep_stale_temp_dirs() {
    let Ok(entries) = fs::read_dir(TEMP_PARENT) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if is_ours && is_stale(&dir) {
            tracing::debug!(dir = %dir.display(), "removing a stale local Postgres directory");
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

fn is_stale(dir: &Path) -> bool {
    let owner = fs::read_to_string(dir.join(OWNER_FILE));
    let owner_alive = match owner {
        Ok(pid) => pid.trim().parse().is_ok_and(pid_alive),
        // No owner file yet: another process may be creating it this very moment.
        Err(_) => fs::metadata(dir)
            .and_then(|m| m.modified())
            .map_or(true, |t| {
                SystemTime::now().duration_since(t).unwrap_or_default() < Duration::from_secs(60)
            }),
    };
    let postmaster = fs::read_to_string(dir.join("data").join("postmaster.pid"));
    let postgres_alive = postmaster.is_ok_and(|text| {
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .is_some_and(pid_alive)
    });
    !owner_alive && !postgres_alive
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // EPERM means it exists but belongs to someone else.
    let exists = pid > 0 && !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH));
    exists && !is_zombie(pid)
}

/// A dead process nobody has reaped yet (an orphan in a container whose init does not reap)
/// still answers kill(pid, 0).
fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}
