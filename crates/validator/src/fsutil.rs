//! Crash-safe file replacement shared by the state store and key files.
//!
//! The sequence — temp file in the same directory, write, fsync, rename over
//! the target, fsync the directory — means a crash at any instant leaves either
//! the old file or the new one, never a torn mix (S2). Temp files carry a fixed
//! prefix so a later run holding the state lock can remove leftovers of a
//! process that was killed mid-write.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a failure happened, for error messages.
#[derive(Debug)]
pub(crate) struct FsError {
    pub(crate) action: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

fn err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Prefix of temp files for `path`: `.<file name>.syncguard-tmp.`
fn temp_prefix(path: &Path) -> Option<OsString> {
    let name = path.file_name()?;
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".syncguard-tmp.");
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
pub(crate) enum Install {
    /// Replace any existing file, keeping its permission mode.
    Replace,
    /// Fail with `AlreadyExists` if the target exists (never clobber a key).
    CreateNew,
}

/// Atomically put `contents` at `path`. New files get `new_mode`; a replaced
/// file keeps its mode. No temp file is left behind when this returns an error.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    new_mode: u32,
    install: Install,
) -> Result<(), FsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let dir = parent_dir(path);
    let prefix = temp_prefix(path).ok_or_else(|| FsError {
        action: "write",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => new_mode,
        Err(e) => return Err(err("inspect", path)(e)),
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
    if mode != 0o600 {
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

/// fsync a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("fsync directory", dir))
}

/// Remove temp files a killed writer left next to `path`. Only safe while
/// holding the lock that excludes other writers.
pub(crate) fn remove_stale_temps(path: &Path) -> Result<(), FsError> {
    let Some(prefix) = temp_prefix(path) else {
        return Ok(());
    };
    let prefix = prefix.as_encoded_bytes().to_vec();
    let dir = parent_dir(path);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("list directory", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err("list directory", dir))?;
        if entry.file_name().as_encoded_bytes().starts_with(&prefix) {
            let p = entry.path();
            fs::remove_file(&p).map_err(err("remove stale temp file", &p))?;
        }
    }
    Ok(())
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
        write_atomic(&p, b"a", 0o600, Install::Replace).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"b", 0o600, Install::Replace).unwrap();
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
        write_atomic(&p, b"first", 0o600, Install::CreateNew).unwrap();
        let e = write_atomic(&p, b"second", 0o600, Install::CreateNew).unwrap_err();
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
        assert!(write_atomic(&p, b"a", 0o600, Install::Replace).is_err());
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
}
