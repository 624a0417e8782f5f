//! Putting a key file at the live path `story` reads, and only there (S5: keys never travel
//! further than from their path at rest to the live path on the same host).
//!
//! The install is crash-safe like the state file (S2), with the validator crate's
//! [`fsutil::write_atomic`]: temp file in the live key's directory created 0600, write, fsync,
//! rename over the live path, fsync the directory. A crash leaves the old key or the new one.
//! The installed file is then read back and must carry the expected address and mode 0600.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use syncguard_validator::fsutil::{self, FsError, Install, Mode};
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

impl From<FsError> for KeySwapError {
    fn from(e: FsError) -> Self {
        KeySwapError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
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

/// Atomically installs `key` at `live` (mode 0600) and checks the result: the file loads, has
/// `key`'s address and mode 0600. Returns the installed address.
pub fn install(key: &ValidatorKey, live: &Path) -> Result<String, KeySwapError> {
    // Exactly 0600, set explicitly (not filtered by the umask), also over an older live file
    // with another mode.
    fsutil::write_atomic(
        live,
        key.to_json().as_bytes(),
        Mode::Exactly(KEY_MODE),
        Install::Replace,
    )?;
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
    Ok(fsutil::sync_dir(fsutil::parent_dir(live))?)
}

/// The address of the key at `path`, if it loads.
pub fn address_at(path: &Path) -> Option<String> {
    ValidatorKey::load_public(path)
        .ok()
        .map(|k| k.address_hex())
}

/// Removes temp key files a killed SyncGuard left next to the live key (they may hold a
/// private key): the temp files of [`install`], named like every temp file SyncGuard writes
/// (see [`fsutil`]). Safe only while no other SyncGuard runs on the host (the state lock).
pub fn remove_stale_temps(live: &Path) -> Result<usize, KeySwapError> {
    Ok(fsutil::remove_stale_temps(live)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

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
