//! A pristine cluster kept in /tmp and copied for each temporary cluster: copying ~40 MB is
//! several times faster than initdb, and the test suite starts a cluster in every run.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cluster::initdb;
use super::fsutil::{self, DbUser};
use super::{DevDbError, PgBinaries};

/// Not `fluxgate-pg-`: the sweep of abandoned clusters must leave templates alone.
const PREFIX: &str = "fluxgate-pgtemplate-";
/// Bump when the initdb arguments change, so older templates are not reused.
const FORMAT: u32 = 2;
/// Nothing of a throwaway cluster needs to reach the disk, and 1 MB WAL segments instead of
/// 16 MB make the template (and each copy) 40% smaller.
const INITDB_ARGS: &[&str] = &["--no-sync", "--wal-segsize=1"];

/// Fills `data_dir` (which must not exist) with a fresh, never-started cluster.
pub(crate) fn create_cluster(
    binaries: &PgBinaries,
    user: &DbUser,
    data_dir: &Path,
) -> Result<(), DevDbError> {
    let template = Path::new("/tmp").join(format!(
        "{PREFIX}v{FORMAT}-pg{}-u{}",
        binaries.version,
        user.uid.as_raw()
    ));
    if !is_trustworthy(&template, user) {
        build(binaries, user, &template)?;
    }
    copy_tree(&template.join("data"), data_dir, user).map_err(DevDbError::io(format!(
        "copy the cluster template {} to {}",
        template.display(),
        data_dir.display()
    )))
}

/// A template is used only if we or the Postgres user made it and nobody else can write to it:
/// its `postgresql.conf` decides what Postgres runs.
fn is_trustworthy(template: &Path, user: &DbUser) -> bool {
    let Ok(meta) = fs::symlink_metadata(template) else {
        return false;
    };
    let owner_ok = meta.uid() == nix::unistd::geteuid().as_raw() || meta.uid() == user.uid.as_raw();
    meta.is_dir()
        && owner_ok
        && meta.mode() & 0o077 == 0
        && template.join("data/PG_VERSION").exists()
}

/// initdb in a staging directory, then a rename: concurrent test processes either win the race
/// or find a complete template, never a half-written one.
fn build(binaries: &PgBinaries, user: &DbUser, template: &Path) -> Result<(), DevDbError> {
    let staging = fsutil::make_temp_dir(user)?;
    let built = initdb(binaries, user, &staging.join("data"), INITDB_ARGS).and_then(|()| {
        // An untrustworthy leftover of ours (say, a half-deleted one) would block the rename.
        if fs::symlink_metadata(template).is_ok() && !is_trustworthy(template, user) {
            remove_leftover(template)?;
        }
        match fs::rename(&staging, template) {
            Ok(()) => Ok(()),
            // Another process finished first; its template is as good as ours.
            Err(_) if is_trustworthy(template, user) => Ok(()),
            Err(e) => Err(DevDbError::io(format!("create {}", template.display()))(e)),
        }
    });
    let _ = fs::remove_dir_all(&staging);
    remove_outdated_templates(user);
    built
}

/// Templates of an older format are never used again; each holds ~30 MB of /tmp.
fn remove_outdated_templates(user: &DbUser) {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    let current = format!("{PREFIX}v{FORMAT}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && !name.starts_with(&current) {
            let path = entry.path();
            if is_trustworthy(&path, user) {
                let _ = fs::remove_dir_all(path);
            }
        }
    }
}

fn remove_leftover(template: &Path) -> Result<(), DevDbError> {
    let ours =
        fs::symlink_metadata(template).is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw());
    if ours {
        fs::remove_dir_all(template)
            .map_err(DevDbError::io(format!("remove {}", template.display())))
    } else {
        Err(DevDbError::io(format!("use {}", template.display()))(
            io::Error::other(
                "it exists, belongs to another user, and may have been planted; remove it",
            ),
        ))
    }
}

/// Copies files, directories and their modes, handing every copy to `user`.
fn copy_tree(from: &Path, to: &Path, user: &DbUser) -> io::Result<()> {
    let mode = fs::metadata(from)?.permissions().mode();
    fs::DirBuilder::new().mode(mode & 0o777).create(to)?;
    give(user, to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, user)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)?; // copies the mode too
            give(user, &target)?;
        }
    }
    Ok(())
}

fn give(user: &DbUser, path: &Path) -> io::Result<()> {
    user.give(path).map_err(io::Error::other)
}
