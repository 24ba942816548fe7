//! Finding the PostgreSQL server programs (and installing them with apt-get when allowed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::DevDbError;

/// The server programs of one PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    /// Major version as Postgres writes it into `PG_VERSION` (e.g. "15").
    pub version: String,
}

/// Versioned installation layouts, as (parent, directory-name prefix, path below it): Debian and
/// Ubuntu (`/usr/lib/postgresql/15/bin`), the PGDG RPMs (`/usr/pgsql-15/bin`), and Homebrew.
const VERSIONED_ROOTS: &[(&str, &str, &str)] = &[
    ("/usr/lib/postgresql", "", "bin"),
    ("/usr", "pgsql-", "bin"),
    ("/opt/homebrew/opt", "postgresql@", "bin"),
    ("/usr/local/opt", "postgresql@", "bin"),
];

/// Finds `initdb` and `postgres`: PATH first, then the versioned installation directories,
/// highest version first.
pub fn find_binaries() -> Result<PgBinaries, DevDbError> {
    find_binaries_preferring(None)
}

/// Like [`find_binaries`], but when `major` is given an installation of that version wins
/// wherever it is, because an existing data directory can only be opened by its own major version.
pub fn find_binaries_preferring(major: Option<&str>) -> Result<PgBinaries, DevDbError> {
    let mut first = None;
    for dir in candidate_dirs() {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        if !is_executable(&initdb) || !is_executable(&postgres) {
            continue;
        }
        let Some(version) = server_version(&postgres) else {
            continue;
        };
        let found = PgBinaries {
            initdb,
            postgres,
            version,
        };
        if major.is_none_or(|m| m == found.version) {
            return Ok(found);
        }
        first.get_or_insert(found);
    }
    first.ok_or(DevDbError::NotInstalled)
}

/// Installs PostgreSQL with apt-get when that can work unattended (root on Debian/Ubuntu), then
/// searches again; otherwise says what to install.
pub fn install_if_possible() -> Result<PgBinaries, DevDbError> {
    let Some(apt) = on_path("apt-get") else {
        return Err(DevDbError::NotInstalled);
    };
    if !nix::unistd::geteuid().is_root() || !Path::new("/etc/debian_version").exists() {
        return Err(DevDbError::NotInstalled);
    }
    eprintln!(
        "fluxgate: PostgreSQL was not found; installing it with `apt-get install postgresql` \
         (this takes a minute) …"
    );
    run_apt(&apt, &["update"])?;
    run_apt(
        &apt,
        &["install", "-y", "--no-install-recommends", "postgresql"],
    )?;
    find_binaries()
}

fn run_apt(apt: &Path, args: &[&str]) -> Result<(), DevDbError> {
    // apt's chatter goes to our stderr: stdout belongs to `fluxgate dev`'s own instructions.
    let stderr = std::io::stderr();
    let to_stderr = std::os::fd::AsFd::as_fd(&stderr)
        .try_clone_to_owned()
        .map_err(|e| DevDbError::InstallFailed(e.to_string()))?;
    let status = Command::new(apt)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::from(to_stderr))
        .status()
        .map_err(|e| DevDbError::InstallFailed(format!("could not run apt-get: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(DevDbError::InstallFailed(format!(
            "`apt-get {}` exited with {status}",
            args.join(" ")
        )))
    }
}

fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for (parent, prefix, below) in VERSIONED_ROOTS {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        let mut versioned: Vec<(Vec<u32>, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let version = parse_version(name.strip_prefix(prefix)?)?;
                Some((version, e.path().join(below)))
            })
            .collect();
        versioned.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    }
    dirs
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version directory.
fn parse_version(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version from `postgres --version` ("postgres (PostgreSQL) 15.8 (Debian 15.8-1)").
fn server_version(postgres: &Path) -> Option<String> {
    let out = Command::new(postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    // Since PostgreSQL 10 the major version is the first number; before, the first two.
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let first = parts.next()?.to_owned();
    match first.parse::<u32>().ok()? {
        0..=9 => Some(format!("{first}.{}", parts.next()?)),
        _ => Some(first),
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_directories_parse_and_others_do_not() {
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("common"), None);
    }

    #[test]
    fn the_installed_server_reports_its_major_version() {
        // Only meaningful where Postgres is installed; elsewhere there is nothing to check.
        if let Ok(found) = find_binaries() {
            assert!(found.version.parse::<f32>().is_ok(), "{found:?}");
        }
    }
}
