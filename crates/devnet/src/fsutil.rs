//! The devnet's file writes, with the product's crash-safe helper
//! [`syncguard_validator::fsutil`] (temp file in the same directory, write, fsync, rename over
//! the target, fsync the directory): a crash at any instant leaves the old file or the new
//! one — what a real FilePV (and S2) requires of the state file.
//!
//! Only the devnet's policy lives here: like CometBFT's own writer, files are always 0600 and
//! temp files carry a name of their own (`.<name>.devnet-tmp.…`), so SyncGuard's clean-up of
//! its stale temp files next to the state file never takes a simulated node's in-flight one.

use std::io;
use std::path::Path;

use syncguard_validator::fsutil::{self, Install, Mode};

/// Atomically replace `path` with `contents` (mode 0600).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    fsutil::write_atomic_tagged(
        path,
        contents,
        Mode::Exactly(0o600),
        Install::Replace,
        "devnet-tmp",
    )
    .map_err(|e| e.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn devnet_write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/s.json"), b"x").is_err());
    }
}
