//! The epoch (fencing token) and standby right, kept across restarts.
//!
//! A restarted node must never act under an epoch it already used, so the machine asks for
//! every new epoch to be written durably (`Action::PersistEpoch`) before anything else in the
//! same batch happens. The file lives beside `story.validator_state_backup` — SyncGuard's own
//! directory, not Story's — and is written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use syncguard_validator::fsutil::{self, Install, Mode};

#[derive(Debug, thiserror::Error)]
pub enum EpochFileError {
    #[error("cannot read the epoch file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the epoch file {} is not valid ({reason}); it must hold {{\"epoch\": N, \"standby_right\": true|false}} — restore it from the peer's epoch, never lower", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] fsutil::FsError),
}

/// What is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub epoch: u64,
    pub standby_right: bool,
}

#[derive(Debug, Clone)]
pub struct EpochFile {
    path: PathBuf,
}

impl EpochFile {
    /// `syncguard-epoch.json` in the directory of the state backup.
    pub fn beside(backup: &Path) -> EpochFile {
        EpochFile {
            path: fsutil::parent_dir(backup).join("syncguard-epoch.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` on a fresh host (no file yet).
    pub fn load(&self) -> Result<Option<Persisted>, EpochFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(EpochFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EpochFileError::Invalid {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Durably replaces the file (temp, fsync, rename, fsync dir).
    pub fn store(&self, value: Persisted) -> Result<(), EpochFileError> {
        let mut text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        text.push(b'\n');
        fsutil::write_atomic(
            &self.path,
            &text,
            Mode::KeepExisting { new: 0o600 },
            Install::Replace,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_epoch_file_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = EpochFile::beside(&dir.path().join("backup.json"));
        assert_eq!(f.load().expect("load"), None);
        let v = Persisted {
            epoch: 7,
            standby_right: true,
        };
        f.store(v).expect("store");
        assert_eq!(f.load().expect("load"), Some(v));
        std::fs::write(f.path(), "{\"epoch\": -1}").expect("write");
        let err = f.load().expect_err("negative epoch");
        assert!(err.to_string().contains("never lower"), "{err}");
    }
}
