//! Putting a key file at the live path `story` reads, and only there (S5: keys never travel
//! further than from their path at rest to the live path on the same host).
//!
//! The install is crash-safe like the state file (S2): temp file in the live key's directory
//! created 0600, write, fsync, rename over the live path, fsync the directory. A crash leaves
//! the old key or the new one. The installed file is then read back and must carry the
//! expected address and mode 0600.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use syncguard_validator::{KeyError, ValidatorKey};
use thiserror::Error;

/// The mode of every key file we write.
pub const KEY_MODE: u32 = 0o600;

/// A key swap that did not complete. None of these carries key bytes.
#[derive(Debug, Error)]
pub enum KeySwapError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file at the live path does not load after the install.
    #[error("the key installed at {} does not load back: {source}", .path.display())]
    ReadBack {
        /// The live path.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The file at the live path has another address than the key we meant to install.
    #[error(
        "the key at {} has address {found} after the install, expected {expected}",
        .path.display()
    )]
    AddressMismatch {
        /// The live path.
        path: PathBuf,
        /// The address we installed.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The installed file is not mode 0600.
    #[error("the key at {} has mode {mode:o} after the install, expected 600", .path.display())]
    Mode {
        /// The live path.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> KeySwapError + 'a {
    move |source| KeySwapError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The encrypted key `story` would use at (or instead of) `path`: `path` itself when it ends
/// in `.enc`, or `<path without extension>.enc` next to it.
pub fn encrypted_form(path: &Path) -> Option<PathBuf> {
    if path.extension().is_some_and(|e| e == "enc") {
        return Some(path.to_path_buf());
    }
    let sibling = path.with_extension("enc");
    sibling.exists().then_some(sibling)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.<file name>.syncguard-tmp.`: the prefix the validator crate uses for its temp files, so
/// one clean-up rule covers every file SyncGuard writes.
fn temp_prefix(live: &Path) -> String {
    let name = live
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.syncguard-tmp.")
}

/// Removes the temp file on drop unless it was renamed into place.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: the error that got us here is the one to report.
            let _ = fs::remove_file(p);
        }
    }
}

/// Atomically installs `key` at `live` (mode 0600) and checks the result: the file loads, has
/// `key`'s address and mode 0600. Returns the installed address.
pub fn install(key: &ValidatorKey, live: &Path) -> Result<String, KeySwapError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(live);
    let tmp = dir.join(format!(
        "{}{}.{}",
        temp_prefix(live),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_MODE)
        .open(&tmp)
        .map_err(io_err("create temp key file", &tmp))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    // Explicit: the creation mode is filtered by the umask, and a key must be exactly 0600.
    file.set_permissions(Permissions::from_mode(KEY_MODE))
        .map_err(io_err("set mode 0600 on", &tmp))?;
    file.write_all(key.to_json().as_bytes())
        .map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, live).map_err(io_err("rename the temp key file over", live))?;
    guard.0 = None;
    sync_dir(dir)?;
    check_installed(live, &key.address_hex())?;
    Ok(key.address_hex())
}

/// The live file loads, has `expected` address and mode 0600.
pub fn check_installed(live: &Path, expected: &str) -> Result<(), KeySwapError> {
    let found = ValidatorKey::load_public(live)
        .map_err(|source| KeySwapError::ReadBack {
            path: live.to_path_buf(),
            source,
        })?
        .address_hex();
    if !found.eq_ignore_ascii_case(expected) {
        return Err(KeySwapError::AddressMismatch {
            path: live.to_path_buf(),
            expected: expected.to_string(),
            found,
        });
    }
    let mode = fs::metadata(live)
        .map_err(io_err("inspect", live))?
        .permissions()
        .mode()
        & 0o7777;
    if mode != KEY_MODE {
        return Err(KeySwapError::Mode {
            path: live.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Removes the live key file (last resort when the placeholder cannot be written: a missing
/// key cannot sign as the validator). Durable: the directory is fsynced.
pub fn remove(live: &Path) -> Result<(), KeySwapError> {
    match fs::remove_file(live) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("remove", live)(e)),
    }
    sync_dir(parent_dir(live))
}

/// The address of the key at `path`, if it loads.
pub fn address_at(path: &Path) -> Option<String> {
    ValidatorKey::load_public(path)
        .ok()
        .map(|k| k.address_hex())
}

/// Removes temp key files a killed SyncGuard left next to the live key (they may hold a
/// private key). Safe only while no other SyncGuard runs on the host (the state lock).
pub fn remove_stale_temps(live: &Path) -> Result<usize, KeySwapError> {
    let prefix = temp_prefix(live);
    let dir = parent_dir(live);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list directory", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err("remove stale temp key file", &p))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn sync_dir(dir: &Path) -> Result<(), KeySwapError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
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
    fn actuator_keyswap_installs_0600_over_a_looser_file() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("priv_validator_key.json");
        let old = ValidatorKey::generate_secp256k1();
        old.save_new(&live).unwrap();
        fs::set_permissions(&live, Permissions::from_mode(0o644)).unwrap();

        let new = ValidatorKey::generate_secp256k1();
        let addr = install(&new, &live).unwrap();
        assert_eq!(addr, new.address_hex());
        assert_eq!(address_at(&live).unwrap(), new.address_hex());
        assert_eq!(
            fs::metadata(&live).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(temps(dir.path()).is_empty());
        assert!(matches!(
            check_installed(&live, &old.address_hex()),
            Err(KeySwapError::AddressMismatch { .. })
        ));
    }

    #[test]
    fn actuator_keyswap_failure_leaves_no_temp_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory at the live path makes the rename fail.
        let live = dir.path().join("live");
        fs::create_dir(&live).unwrap();
        fs::write(live.join("x"), b"").unwrap();
        let key = ValidatorKey::generate_secp256k1();
        let e = install(&key, &live).unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        assert!(temps(dir.path()).is_empty());

        let file = dir.path().join("k.json");
        key.save_new(&file).unwrap();
        remove(&file).unwrap();
        assert!(!file.exists());
        remove(&file).unwrap();
    }

    #[test]
    fn actuator_keyswap_encrypted_forms_and_stale_temps() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("priv_validator_key.json");
        assert_eq!(encrypted_form(&live), None);
        let enc = dir.path().join("priv_validator_key.enc");
        assert_eq!(encrypted_form(&enc), Some(enc.clone()));
        fs::write(&enc, b"x").unwrap();
        assert_eq!(encrypted_form(&live), Some(enc));

        fs::write(
            dir.path()
                .join(".priv_validator_key.json.syncguard-tmp.1.2"),
            b"x",
        )
        .unwrap();
        assert_eq!(remove_stale_temps(&live).unwrap(), 1);
        assert!(temps(dir.path()).is_empty());
    }
}
