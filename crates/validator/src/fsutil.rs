//! Crash-safe file replacement: the one implementation every SyncGuard crate
//! uses for the state file, its backup and key files (and the devnet for its
//! simulated node's files).
//!
//! The sequence — temp file in the same directory, mode 0600 from the first
//! byte, write, fsync, rename over the target, fsync the directory — means a
//! crash at any instant leaves either the old file or the new one, never a torn
//! mix (S2). No temp file is left behind when a write returns an error. Temp
//! files are named `.<file name>.syncguard-tmp.<pid>.<n>`, so a later run
//! holding the state lock can remove leftovers of a process that was killed
//! mid-write with [`remove_stale_temps`].
//!
//! - [`write_atomic`]: write a file; [`Mode`] says which permission mode it
//!   gets, [`Install`] whether an existing file may be replaced.
//! - [`write_atomic_tagged`]: the same with another temp-name tag, for writers
//!   that stand for another program and whose temp files SyncGuard's clean-up
//!   must never touch.
//! - [`sync_dir`], [`parent_dir`]: the building blocks, for callers that
//!   remove or rename files themselves.
//!
//! Safety of the target: a symbolic link at the target path is refused (a rename would
//! silently replace the link, and a program reading through the link would keep the old
//! file), and a replaced file keeps its owner and group as well as its mode (running as
//! root, the new file is chowned back, so `story` running as another user can still read it).
//!
//! Unix only (permission modes, ownership, directory fsync).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

/// The tag in SyncGuard's temp file names (`.<file name>.syncguard-tmp.…`),
/// the one [`remove_stale_temps`] removes.
const TEMP_TAG: &str = "syncguard-tmp";

/// A failed filesystem operation: what we were doing and on which path.
#[derive(Debug, Error)]
#[error("cannot {action} {}: {source}", .path.display())]
pub struct FsError {
    /// What we were doing, e.g. `"rename temp file over"`.
    pub action: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Prefix of temp files for `path`: `.<file name>.<tag>.`
fn temp_prefix(path: &Path, tag: &str) -> Option<OsString> {
    let name = path.file_name()?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    prefix.push(tag);
    prefix.push(".");
    Some(prefix)
}

/// Removes the temp file on drop unless the rename succeeded.
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            // Best effort: the original error is what the caller needs to see.
            let _ = fs::remove_file(p);
        }
    }
}

/// How the final file should be installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Replace any existing file.
    Replace,
    /// Fail with `AlreadyExists` if the target exists (never clobber a key).
    CreateNew,
}

/// The permission mode of the written file. Either way the temp file is
/// created 0600, so the content is never readable by others before the final
/// mode is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A replaced file keeps its mode; a new file gets `new` (0600 is left to
    /// the creation mode, any other mode is set explicitly).
    KeepExisting {
        /// The mode of a file that did not exist.
        new: u32,
    },
    /// Exactly this mode, set explicitly (not filtered by the umask), whatever
    /// mode a replaced file had. For key files, which must be 0600.
    Exactly(u32),
}

/// Atomically put `contents` at `path`, with the mode `mode` says. No temp
/// file is left behind when this returns an error; with
/// [`Install::CreateNew`] an existing file is never touched.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    install: Install,
) -> Result<(), FsError> {
    write_atomic_tagged(path, contents, mode, install, TEMP_TAG)
}

/// [`write_atomic`] with temp files named `.<file name>.<temp_tag>.<pid>.<n>`
/// instead of SyncGuard's own tag, so [`remove_stale_temps`] never removes
/// them: for writers that stand for another program (the devnet's simulated
/// node writing the state file SyncGuard also manages). `temp_tag` must be a
/// non-empty name without `/`.
pub fn write_atomic_tagged(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    install: Install,
    temp_tag: &str,
) -> Result<(), FsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let invalid = |why: &str| FsError {
        action: "write",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, why),
    };
    if temp_tag.is_empty() || temp_tag.contains('/') {
        return Err(invalid("invalid temp file tag"));
    }
    let dir = parent_dir(path);
    let prefix = temp_prefix(path, temp_tag).ok_or_else(|| invalid("path has no file name"))?;
    // lstat: the target itself, never what a link points to.
    let existing = match fs::symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("inspect", path)(e)),
    };
    if let Some(meta) = &existing {
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return Err(invalid(&format!(
                "is a symbolic link (to {target}); SyncGuard does not write through links: \
                 point the configuration at the real file"
            )));
        }
    }
    let (mode, explicit) = match mode {
        Mode::Exactly(m) => (m, true),
        Mode::KeepExisting { new } => {
            let m = existing
                .as_ref()
                .map_or(new, |meta| meta.permissions().mode() & 0o7777);
            (m, m != 0o600)
        }
    };

    let mut name = prefix;
    name.push(format!(
        "{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(name);

    // 0600 from the first byte: the content may be a private key.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err("create temp file", &tmp))?;
    let mut guard = TempGuard {
        path: Some(tmp.clone()),
    };
    if let (Some(old), Install::Replace) = (&existing, install) {
        keep_owner(&file, &tmp, old)?;
    }
    if explicit {
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(err("set permissions on", &tmp))?;
    }
    file.write_all(contents).map_err(err("write", &tmp))?;
    file.sync_all().map_err(err("fsync", &tmp))?;
    drop(file);

    match install {
        Install::Replace => {
            fs::rename(&tmp, path).map_err(err("rename temp file over", path))?;
            guard.path = None;
        }
        Install::CreateNew => {
            // hard_link fails if the target exists, so this never clobbers.
            fs::hard_link(&tmp, path).map_err(err("create", path))?;
            // The guard removes the temp name; the new link stays.
        }
    }
    drop(guard);
    sync_dir(dir)
}

/// Gives the temp file the replaced file's owner and group when they differ from ours (we
/// run as root, the file belongs to the user running `story`). Done before the mode is set,
/// as chown may clear set-id bits. Without the right to chown, the write is refused rather
/// than leaving a file its owner may no longer read.
fn keep_owner(file: &File, tmp: &Path, old: &fs::Metadata) -> Result<(), FsError> {
    let ours = file.metadata().map_err(err("inspect", tmp))?;
    if ours.uid() == old.uid() && ours.gid() == old.gid() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(|e| FsError {
        action: "give the replaced file's owner",
        path: tmp.to_path_buf(),
        source: io::Error::new(
            e.kind(),
            format!(
                "cannot keep owner {}:{} ({e}); run SyncGuard as root or as that user",
                old.uid(),
                old.gid()
            ),
        ),
    })
}

/// fsync a directory so a rename (or removal) in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync directory", dir))
}

/// Remove the temp files [`write_atomic`] (by a process killed mid-write) left
/// next to `path`; returns how many. Only safe while holding the lock that
/// excludes other SyncGuard writers. A missing directory is not an error.
pub fn remove_stale_temps(path: &Path) -> Result<usize, FsError> {
    let Some(prefix) = temp_prefix(path, TEMP_TAG) else {
        return Ok(0);
    };
    let prefix = prefix.as_encoded_bytes().to_vec();
    let dir = parent_dir(path);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(err("list directory", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(err("list directory", dir))?;
        if entry.file_name().as_encoded_bytes().starts_with(&prefix) {
            let p = entry.path();
            fs::remove_file(&p).map_err(err("remove stale temp file", &p))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("syncguard-tmp"))
            .collect()
    }

    #[test]
    fn replace_keeps_mode_and_new_file_gets_default() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(
            &p,
            b"a",
            Mode::KeepExisting { new: 0o600 },
            Install::Replace,
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write_atomic(
            &p,
            b"b",
            Mode::KeepExisting { new: 0o600 },
            Install::Replace,
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read(&p).unwrap(), b"b");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn create_new_never_clobbers_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        write_atomic(
            &p,
            b"first",
            Mode::KeepExisting { new: 0o600 },
            Install::CreateNew,
        )
        .unwrap();
        let e = write_atomic(
            &p,
            b"second",
            Mode::KeepExisting { new: 0o600 },
            Install::CreateNew,
        )
        .unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn failed_rename_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A directory at the target path makes rename fail.
        let p = dir.path().join("d");
        fs::create_dir(p.join("x").parent().unwrap()).unwrap();
        fs::write(p.join("x"), b"").unwrap();
        assert!(write_atomic(
            &p,
            b"a",
            Mode::KeepExisting { new: 0o600 },
            Install::Replace
        )
        .is_err());
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        fs::write(dir.path().join(".s.json.syncguard-tmp.1.2"), b"x").unwrap();
        fs::write(dir.path().join("other"), b"x").unwrap();
        remove_stale_temps(&p).unwrap();
        assert!(temps(dir.path()).is_empty());
        assert!(dir.path().join("other").exists());
    }

    #[test]
    fn exactly_mode_overrides_a_looser_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"new", Mode::Exactly(0o600), Install::Replace).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert!(temps(dir.path()).is_empty());
    }

    #[test]
    fn tagged_temps_are_not_syncguard_temps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let mode = Mode::Exactly(0o600);
        write_atomic_tagged(&p, b"a", mode, Install::Replace, "other-tmp").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"a");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        fs::write(dir.path().join(".s.json.other-tmp.1.2"), b"x").unwrap();
        assert_eq!(remove_stale_temps(&p).unwrap(), 0);
        assert!(dir.path().join(".s.json.other-tmp.1.2").exists());
        for bad in ["", "a/b"] {
            let e = write_atomic_tagged(&p, b"b", mode, Install::Replace, bad).unwrap_err();
            assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
        }
        assert_eq!(fs::read(&p).unwrap(), b"a");
    }
}
