//! Files an attacker on the host could bend: a private key readable by others, a symbolic
//! link planted where SyncGuard writes, a replaced file losing its owner or mode.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use common::fixture;
use syncguard_validator::fsutil::{write_atomic, Install, Mode};
use syncguard_validator::{Hrs, KeyErrorKind, SignState, StateStore, Step, ValidatorKey};

fn key_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let path = dir.join("priv_validator_key.json");
    fs::copy(fixture("privval_key_secp256k1_cometbft_docs.json"), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn validator_key_readable_by_group_or_others_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o666] {
        let path = key_file(dir.path(), mode);
        let err = ValidatorKey::load_secret(&path).unwrap_err();
        assert!(
            matches!(err.kind, KeyErrorKind::LooseMode { mode: m } if m == mode),
            "{mode:o}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("chmod 600") && text.contains(&path.display().to_string()),
            "the message names the file and the fix: {text}"
        );
        fs::remove_file(&path).unwrap();
    }
    for mode in [0o600, 0o400] {
        let path = key_file(dir.path(), mode);
        ValidatorKey::load_secret(&path).unwrap();
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn validator_key_symlink_or_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = key_file(dir.path(), 0o600);
    let link = dir.path().join("live.json");
    symlink(&real, &link).unwrap();
    let err = ValidatorKey::load_secret(&link).unwrap_err();
    assert!(
        matches!(err.kind, KeyErrorKind::NotRegular { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("symbolic link"), "{err}");

    let sub = dir.path().join("dir.json");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    let err = ValidatorKey::load_secret(&sub).unwrap_err();
    assert!(
        matches!(err.kind, KeyErrorKind::NotRegular { .. }),
        "{err:?}"
    );

    // Missing: the plain loader's answer (with the `.enc` hint), not a panic.
    let err = ValidatorKey::load_secret(&dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(err.kind, KeyErrorKind::Io { .. }), "{err:?}");
    fs::write(dir.path().join("x.enc"), b"encrypted").unwrap();
    let err = ValidatorKey::load_secret(&dir.path().join("x.json")).unwrap_err();
    assert!(matches!(err.kind, KeyErrorKind::Encrypted), "{err:?}");
}

#[test]
fn validator_key_oversized_file_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    fs::write(&path, vec![b' '; 1024 * 1024]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = ValidatorKey::load_secret(&path).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn validator_write_refuses_a_symlink_target_and_leaves_both_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    fs::write(&elsewhere, b"precious").unwrap();
    let path = dir.path().join("priv_validator_state.json");
    symlink(&elsewhere, &path).unwrap();
    for mode in [Mode::KeepExisting { new: 0o600 }, Mode::Exactly(0o600)] {
        for install in [Install::Replace, Install::CreateNew] {
            let err = write_atomic(&path, b"new", mode, install).unwrap_err();
            assert!(
                err.to_string().contains("symbolic link")
                    || err.source.kind() == std::io::ErrorKind::AlreadyExists,
                "{err}"
            );
        }
    }
    assert_eq!(fs::read(&elsewhere).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    // No temp file left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The store refuses too (it writes through write_atomic).
    let real = dir.path().join("real_state.json");
    fs::write(&real, SignState::initial().to_json()).unwrap();
    let state_link = dir.path().join("state_link.json");
    symlink(&real, &state_link).unwrap();
    let store = StateStore::open(&state_link, None).unwrap();
    let next = SignState::unsigned(Hrs::new(10, 0, Step::Precommit)).unwrap();
    assert!(store.write(&next).is_err());
    assert_eq!(
        SignState::load(&real).unwrap().hrs(),
        SignState::initial().hrs()
    );
}

#[test]
fn validator_write_keeps_mode_and_owner_of_the_replaced_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("priv_validator_state.json");
    fs::write(&path, b"old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let root = fs::metadata(dir.path()).unwrap().uid() == 0 && is_root();
    if root {
        // The file belongs to the user running `story`; SyncGuard runs as root.
        std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
    }
    write_atomic(
        &path,
        b"new",
        Mode::KeepExisting { new: 0o600 },
        Install::Replace,
    )
    .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(mode_of(&path), 0o640);
    let meta = fs::metadata(&path).unwrap();
    if root {
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        // A key written with an exact mode keeps the owner as well.
        write_atomic(&path, b"key", Mode::Exactly(0o600), Install::Replace).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), mode_of(&path)),
            (4242, 4343, 0o600)
        );
    } else {
        eprintln!("not root: owner preservation across users not exercised");
    }
}

fn is_root() -> bool {
    // A file we create belongs to our effective uid.
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}
