//! [`StateStore`]: the only way SyncGuard writes `priv_validator_state.json`.
//!
//! Guarantees (S2): a write never leaves a lower HRS on disk than the one
//! there before — not in the state file and not in the backup, which holds the
//! highest state known on this host (`story.validator_state_backup`) — and a
//! crash at any instant leaves the old file or the new one. An exclusive lock
//! on `<state file name>.lock` keeps two SyncGuard instances on one host from
//! interleaving their read-compare-write cycles.
//!
//! Not enforced here: that `story` is stopped while we write. The caller
//! (the failover driver) must guarantee that.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::fsutil::{self, FsError, Install, Mode};
use crate::hrs::Hrs;
use crate::state::{SignState, StateError, StateErrorKind};

/// Errors of the state store. Each names the file it concerns.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another `StateStore` (in this or another process) holds the lock.
    #[error(
        "state is already locked: {} (is another syncguard running on this host?)",
        .lock_path.display()
    )]
    Locked {
        /// The lock file.
        lock_path: PathBuf,
    },
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
    /// A state file (or backup) exists but cannot be read with certainty; it
    /// is never overwritten, because it may hold a higher state than ours.
    #[error(transparent)]
    State(#[from] StateError),
    /// The write would move a file backwards.
    #[error(
        "refusing to write {}: already signed at height {} round {} step {} (requested {})",
        .path.display(), .on_disk.height, .on_disk.round, .on_disk.step, .requested
    )]
    Regression {
        /// The file that is ahead (state file or backup).
        path: PathBuf,
        /// What that file holds.
        on_disk: Hrs,
        /// What was asked for.
        requested: Hrs,
    },
    /// Same HRS, different signed data: two messages at one HRS.
    #[error(
        "refusing to write {}: different data already signed at {}",
        .path.display(), .hrs
    )]
    Conflict {
        /// The file holding the other data (or `candidate` for merge inputs).
        path: PathBuf,
        /// The HRS in question.
        hrs: Hrs,
    },
    /// The state file is up to date, but raising the backup failed on I/O.
    /// The caller may carry on (the state file is what `story` reads) but
    /// should alert: the backup is this host's memory of the highest state.
    #[error(
        "the state file is up to date, but updating the backup {} failed: {source}",
        .path.display()
    )]
    BackupFailed {
        /// The backup file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: Box<StoreError>,
    },
    /// `write_merged` found no state anywhere (no file, no backup, no candidate).
    #[error("no state to write: {} does not exist and no other state was given", .path.display())]
    NothingToMerge {
        /// The state file.
        path: PathBuf,
    },
}

impl From<FsError> for StoreError {
    fn from(e: FsError) -> Self {
        StoreError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

/// What a write did to the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The file now holds the new state.
    Written,
    /// The file already held this exact state; nothing was rewritten.
    Unchanged,
}

/// Owner of a `priv_validator_state.json` (and its optional backup) for as
/// long as it lives.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    backup: Option<PathBuf>,
    lock_path: PathBuf,
    /// Held open for the store's lifetime: the kernel drops the lock with it,
    /// also when the process dies.
    _lock: File,
}

/// Mode for files we create: the state is not secret, but CometBFT uses 0600.
const NEW_FILE_MODE: u32 = 0o600;

impl StateStore {
    /// Take the exclusive lock on `<dir>/<state file name>.lock` and return
    /// the store. Fails with [`StoreError::Locked`] while another store (in
    /// any process) has it. Also removes temp files left by a writer that was
    /// killed mid-write, which is safe only now that we hold the lock.
    pub fn open(path: impl Into<PathBuf>, backup: Option<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let Some(name) = path.file_name() else {
            return Err(StoreError::Io {
                action: "use",
                path,
                source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            });
        };
        let mut lock_name = name.to_os_string();
        lock_name.push(".lock");
        let lock_path = fsutil::parent_dir(&path).join(lock_name);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(NEW_FILE_MODE)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                action: "open lock file",
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { lock_path }),
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    action: "lock",
                    path: lock_path,
                    source,
                })
            }
        }
        fsutil::remove_stale_temps(&path)?;
        if let Some(b) = &backup {
            fsutil::remove_stale_temps(b)?;
        }
        Ok(StateStore {
            path,
            backup,
            lock_path,
            _lock: lock,
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backup file, if configured.
    pub fn backup_path(&self) -> Option<&Path> {
        self.backup.as_deref()
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Read the state file. A missing file is an error (`story run` needs one).
    pub fn read(&self) -> Result<SignState, StoreError> {
        Ok(SignState::load(&self.path)?)
    }

    /// Read the state file, `None` if it does not exist.
    pub fn read_if_exists(&self) -> Result<Option<SignState>, StoreError> {
        read_optional(&self.path)
    }

    /// Read the backup, `None` when none is configured or it does not exist yet.
    pub fn read_backup(&self) -> Result<Option<SignState>, StoreError> {
        match &self.backup {
            Some(b) => read_optional(b),
            None => Ok(None),
        }
    }

    /// Write `state` to the state file, then to the backup.
    ///
    /// Refused with [`StoreError::Regression`] when the state file or the
    /// backup is already higher, and with [`StoreError::Conflict`] when either
    /// holds different data at the same HRS; an identical state is a no-op.
    /// Both files are checked before either is touched; an I/O failure on the
    /// backup after the state file was written is [`StoreError::BackupFailed`].
    pub fn write(&self, state: &SignState) -> Result<WriteOutcome, StoreError> {
        let current = self.read_if_exists()?;
        let backup = self.read_backup()?;
        let primary = admit(&self.path, current.as_ref(), state)?;
        if let (Some(b), Some(path)) = (&backup, &self.backup) {
            admit(path, Some(b), state)?;
        }
        if primary == WriteOutcome::Written {
            write_state(&self.path, state)?;
        }
        self.raise_backup(backup.as_ref(), state)?;
        Ok(primary)
    }

    /// Record a state learned elsewhere (the active's state pulled by state
    /// sync) in the backup only. Same monotonic rules as [`StateStore::write`],
    /// applied to the backup file. Without a configured backup this does nothing.
    pub fn write_backup(&self, state: &SignState) -> Result<WriteOutcome, StoreError> {
        let Some(path) = &self.backup else {
            return Ok(WriteOutcome::Unchanged);
        };
        let backup = read_optional(path)?;
        let outcome = admit(path, backup.as_ref(), state)?;
        if outcome == WriteOutcome::Written {
            write_state(path, state)?;
        }
        Ok(outcome)
    }

    /// Write the highest of: the state file, the backup, and `candidates`
    /// (S3 at promotion: `max(local, replica, fence)`), and return it.
    ///
    /// If two of them share the highest HRS with different signed data, that
    /// is a [`StoreError::Conflict`] and nothing is written: we cannot know
    /// which message the network saw.
    pub fn write_merged(&self, candidates: &[SignState]) -> Result<SignState, StoreError> {
        let current = self.read_if_exists()?;
        let backup = self.read_backup()?;
        let backup_path = self.backup.clone().unwrap_or_default();
        let candidate_label = PathBuf::from("<candidate state>");

        let mut sources: Vec<(&Path, &SignState)> = Vec::new();
        if let Some(c) = &current {
            sources.push((&self.path, c));
        }
        if let Some(b) = &backup {
            sources.push((&backup_path, b));
        }
        for c in candidates {
            sources.push((&candidate_label, c));
        }
        let Some(&(_, top)) = sources.iter().max_by_key(|(_, s)| s.hrs()) else {
            return Err(StoreError::NothingToMerge {
                path: self.path.clone(),
            });
        };
        for (path, s) in &sources {
            if s.hrs() == top.hrs() && !s.same_signed_data(top) {
                return Err(StoreError::Conflict {
                    path: path.to_path_buf(),
                    hrs: top.hrs(),
                });
            }
        }
        // Prefer an on-disk copy of the winner so its unknown fields survive.
        let winner = sources
            .iter()
            .map(|(_, s)| *s)
            .find(|s| s.same_signed_data(top))
            .unwrap_or(top)
            .clone();
        self.write(&winner)?;
        Ok(winner)
    }

    /// Bring the backup up to `state` if it is lower (or absent).
    fn raise_backup(
        &self,
        backup: Option<&SignState>,
        state: &SignState,
    ) -> Result<(), StoreError> {
        let Some(path) = &self.backup else {
            return Ok(());
        };
        if admit(path, backup, state)? == WriteOutcome::Written {
            write_state(path, state).map_err(|e| StoreError::BackupFailed {
                path: path.clone(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }
}

/// May `new` replace `on_disk` at `path`? `Written` means "yes, it is higher
/// (or the file is absent)", `Unchanged` means "it is already there".
fn admit(
    path: &Path,
    on_disk: Option<&SignState>,
    new: &SignState,
) -> Result<WriteOutcome, StoreError> {
    let Some(old) = on_disk else {
        return Ok(WriteOutcome::Written);
    };
    match new.hrs().cmp(&old.hrs()) {
        std::cmp::Ordering::Greater => Ok(WriteOutcome::Written),
        std::cmp::Ordering::Less => Err(StoreError::Regression {
            path: path.to_path_buf(),
            on_disk: old.hrs(),
            requested: new.hrs(),
        }),
        std::cmp::Ordering::Equal if old.same_signed_data(new) => Ok(WriteOutcome::Unchanged),
        std::cmp::Ordering::Equal => Err(StoreError::Conflict {
            path: path.to_path_buf(),
            hrs: new.hrs(),
        }),
    }
}

fn read_optional(path: &Path) -> Result<Option<SignState>, StoreError> {
    match SignState::load(path) {
        Ok(s) => Ok(Some(s)),
        Err(StateError {
            kind: StateErrorKind::Io(e),
            ..
        }) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_state(path: &Path, state: &SignState) -> Result<(), StoreError> {
    fsutil::write_atomic(
        path,
        state.to_json().as_bytes(),
        Mode::KeepExisting { new: NEW_FILE_MODE },
        Install::Replace,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hrs::Step;

    fn st(h: i64, r: i32, s: Step) -> SignState {
        SignState::unsigned(Hrs::new(h, r, s)).unwrap()
    }

    #[test]
    fn merged_prefers_highest_and_checks_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            StateStore::open(dir.path().join("s.json"), Some(dir.path().join("b.json"))).unwrap();
        store.write(&st(5, 0, Step::Precommit)).unwrap();
        let top = store
            .write_merged(&[st(3, 0, Step::None), st(7, 0, Step::None)])
            .unwrap();
        assert_eq!(top.hrs(), Hrs::new(7, 0, Step::None));
        assert_eq!(store.read().unwrap().hrs(), top.hrs());
        assert_eq!(store.read_backup().unwrap().unwrap().hrs(), top.hrs());

        let signed = SignState::signed(Hrs::new(7, 0, Step::None), vec![1], vec![2]).unwrap();
        assert!(matches!(
            store.write_merged(&[signed]),
            Err(StoreError::Conflict { .. })
        ));
    }

    #[test]
    fn merged_with_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("s.json"), None).unwrap();
        assert!(matches!(
            store.write_merged(&[]),
            Err(StoreError::NothingToMerge { .. })
        ));
    }

    #[test]
    fn backup_above_state_blocks_lower_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            StateStore::open(dir.path().join("s.json"), Some(dir.path().join("b.json"))).unwrap();
        store.write(&st(1, 0, Step::None)).unwrap();
        store.write_backup(&st(9, 0, Step::None)).unwrap();
        let e = store.write(&st(5, 0, Step::None)).unwrap_err();
        assert!(e.to_string().contains("already signed at height 9"), "{e}");
        assert_eq!(store.read().unwrap().hrs().height, 1);
    }
}
