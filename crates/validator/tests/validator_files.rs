//! `cargo test validator`: the FilePV files — state parsing and writing, the
//! CheckHRS rules restated from CometBFT's own privval tests, sign bytes, the
//! state store's lock and write rules, and the validator key.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{fixture, signed_state, vote_sign_bytes};
use syncguard_validator::{
    check_hrs, verify_state, Hrs, HrsError, KeyErrorKind, KeyType, SignBytesError, SignDecision,
    SignState, SignedMsgType, StateErrorKind, StateStore, Step, StoreError, ValidatorKey,
    WriteOutcome,
};

const H36: &str = "privval_state_h36_precommit_cometbft_docs.json";
const INITIAL: &str = "privval_state_initial_cometbft_docs.json";
const KEY_SECP: &str = "privval_key_secp256k1_cometbft_docs.json";
const KEY_ED: &str = "privval_key_ed25519_cometbft_docs.json";

fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

// ---------------------------------------------------------------- state file

#[test]
fn validator_state_fixtures_round_trip() {
    let dir = fixture("");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("privval_state_") && name.ends_with(".json")) {
            continue;
        }
        seen += 1;
        let parsed = SignState::load(&path).unwrap();
        let written = parsed.to_json();
        assert_eq!(
            SignState::from_json(written.as_bytes()).unwrap(),
            parsed,
            "{name}"
        );
        // CometBFT's own output: our re-encoding is byte-for-byte identical.
        assert_eq!(written, read_text(&path).trim_end_matches('\n'), "{name}");
    }
    assert!(seen >= 2, "state fixtures not found in {}", dir.display());
}

#[test]
fn validator_state_h36_fixture_fields() {
    let s = SignState::load(&fixture(H36)).unwrap();
    assert_eq!(s.hrs(), Hrs::new(36, 0, Step::Precommit));
    assert_eq!(s.signature().unwrap().len(), 64);
    let initial = SignState::load(&fixture(INITIAL)).unwrap();
    assert_eq!(initial, SignState::initial());
}

#[test]
fn validator_state_cometbft_unmarshal_case_reencodes_identically() {
    // privval/file_test.go TestUnmarshalValidatorState.
    let text = "{\n  \"height\": \"1\",\n  \"round\": 1,\n  \"step\": 1\n}";
    let s = SignState::from_json(text.as_bytes()).unwrap();
    assert_eq!(s.hrs(), Hrs::new(1, 1, Step::Propose));
    assert_eq!(s.to_json(), text);
    let compact = SignState::from_json(br#"{"height":"1","round":1,"step":1}"#).unwrap();
    assert_eq!(compact.to_json(), text);
}

#[test]
fn validator_state_writes_height_as_string_and_never_empty_strings() {
    let s = SignState::unsigned(Hrs::new(13, 0, Step::None)).unwrap();
    let text = s.to_json();
    assert!(text.contains("\"height\": \"13\""));
    assert!(!text.contains("signature") && !text.contains("signbytes"));
    assert!(!text.contains("\"\""));
    let signed = signed_state(Hrs::new(5, 2, Step::Prevote), &[7; 32]);
    let text = signed.to_json();
    let hex_part = text.split("\"signbytes\": \"").nth(1).unwrap();
    assert!(hex_part
        .chars()
        .take_while(|c| *c != '"')
        .all(|c| !c.is_ascii_lowercase()));
}

#[test]
fn validator_state_serde_uses_the_file_rules() {
    let s = signed_state(Hrs::new(5, 2, Step::Prevote), &[7; 32]);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["height"], "5");
    let back: SignState = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
    let bad = serde_json::from_str::<SignState>(r#"{"height":"-1","round":0,"step":0}"#);
    assert!(bad.unwrap_err().to_string().contains("height"));
}

/// Load `text` from a file and return the error, checking that its message
/// names the file and (when given) the field.
fn reject(text: &[u8], field: Option<&str>) -> StateErrorKind {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("priv_validator_state.json");
    fs::write(&path, text).unwrap();
    let err = SignState::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    if let Some(f) = field {
        assert!(msg.contains(f), "{msg} does not name {f}");
    }
    err.kind
}

#[test]
fn validator_state_rejects_empty_file() {
    assert!(matches!(reject(b"", None), StateErrorKind::Empty));
    assert!(matches!(reject(b"  \n", None), StateErrorKind::Empty));
}

#[test]
fn validator_state_rejects_truncated_file() {
    let full = read_text(&fixture(H36));
    for cut in [1, 10, 40, full.len() / 2, full.len() - 1] {
        let kind = reject(&full.as_bytes()[..cut], None);
        assert!(
            matches!(kind, StateErrorKind::Truncated { .. }),
            "cut {cut}: {kind}"
        );
    }
}

#[test]
fn validator_state_rejects_not_json() {
    assert!(matches!(
        reject(b"height=36", None),
        StateErrorKind::NotJson(_)
    ));
    assert!(matches!(
        reject(b"{\"height\":\"1\"} x", None),
        StateErrorKind::NotJson(_)
    ));
    assert!(matches!(
        reject(b"[1,2]", None),
        StateErrorKind::NotAnObject
    ));
}

#[test]
fn validator_state_rejects_missing_fields() {
    let kind = reject(br#"{"round":0,"step":0}"#, Some("height"));
    assert!(matches!(
        kind,
        StateErrorKind::MissingField { field: "height" }
    ));
    let kind = reject(br#"{"height":"1","step":0}"#, Some("round"));
    assert!(matches!(
        kind,
        StateErrorKind::MissingField { field: "round" }
    ));
    let kind = reject(br#"{"height":"1","round":0}"#, Some("step"));
    assert!(matches!(
        kind,
        StateErrorKind::MissingField { field: "step" }
    ));
}

#[test]
fn validator_state_rejects_negative_height_and_round() {
    for text in [
        &br#"{"height":"-1","round":0,"step":0}"#[..],
        br#"{"height":-1,"round":0,"step":0}"#,
        br#"{"height":"-99999999999999999999","round":0,"step":0}"#,
    ] {
        let kind = reject(text, Some("height"));
        assert!(
            matches!(
                kind,
                StateErrorKind::Negative {
                    field: "height",
                    ..
                }
            ),
            "{kind}"
        );
    }
    let kind = reject(br#"{"height":"1","round":-1,"step":0}"#, Some("round"));
    assert!(
        matches!(kind, StateErrorKind::Negative { field: "round", .. }),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_step_out_of_range() {
    for step in ["4", "-1", "255", "256", "1.5", "99999999999999999999"] {
        let text = format!(r#"{{"height":"1","round":0,"step":{step}}}"#);
        let kind = reject(text.as_bytes(), Some("step"));
        assert!(
            matches!(
                kind,
                StateErrorKind::InvalidStep { .. }
                    | StateErrorKind::NotAnInteger { field: "step", .. }
            ),
            "{step}: {kind}"
        );
    }
    let kind = reject(br#"{"height":"1","round":0,"step":"3"}"#, Some("step"));
    assert!(
        matches!(kind, StateErrorKind::WrongType { field: "step", .. }),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_height_overflowing_i64() {
    for h in [
        "\"9223372036854775808\"",
        "9223372036854775808",
        "99999999999999999999999",
        "1e30",
    ] {
        let text = format!(r#"{{"height":{h},"round":0,"step":0}}"#);
        let kind = reject(text.as_bytes(), Some("height"));
        assert!(
            matches!(
                kind,
                StateErrorKind::Overflow {
                    field: "height",
                    ty: "int64",
                    ..
                }
            ),
            "{h}: {kind}"
        );
    }
    // The largest value is fine.
    let max =
        SignState::from_json(br#"{"height":"9223372036854775807","round":0,"step":0}"#).unwrap();
    assert_eq!(max.hrs().height, i64::MAX);
}

#[test]
fn validator_state_rejects_round_overflowing_i32() {
    for r in ["2147483648", "9223372036854775808"] {
        let text = format!(r#"{{"height":"1","round":{r},"step":0}}"#);
        let kind = reject(text.as_bytes(), Some("round"));
        assert!(
            matches!(
                kind,
                StateErrorKind::Overflow {
                    field: "round",
                    ty: "int32",
                    ..
                }
            ),
            "{r}: {kind}"
        );
    }
}

#[test]
fn validator_state_rejects_non_integer_and_wrong_types() {
    let kind = reject(br#"{"height":"abc","round":0,"step":0}"#, Some("height"));
    assert!(
        matches!(
            kind,
            StateErrorKind::NotAnInteger {
                field: "height",
                ..
            }
        ),
        "{kind}"
    );
    let kind = reject(br#"{"height":1.5,"round":0,"step":0}"#, Some("height"));
    assert!(
        matches!(
            kind,
            StateErrorKind::NotAnInteger {
                field: "height",
                ..
            }
        ),
        "{kind}"
    );
    let kind = reject(br#"{"height":true,"round":0,"step":0}"#, Some("height"));
    assert!(
        matches!(
            kind,
            StateErrorKind::WrongType {
                field: "height",
                ..
            }
        ),
        "{kind}"
    );
    let kind = reject(br#"{"height":"1","round":"0","step":0}"#, Some("round"));
    assert!(
        matches!(kind, StateErrorKind::WrongType { field: "round", .. }),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_bad_base64_signature() {
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signature":"not base64!","signbytes":"AB"}"#,
        Some("signature"),
    );
    assert!(
        matches!(
            kind,
            StateErrorKind::InvalidBase64 {
                field: "signature",
                ..
            }
        ),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_bad_hex_signbytes() {
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signature":"AAAA","signbytes":"XYZ0"}"#,
        Some("signbytes"),
    );
    assert!(
        matches!(
            kind,
            StateErrorKind::InvalidHex {
                field: "signbytes",
                ..
            }
        ),
        "{kind}"
    );
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signature":"AAAA","signbytes":"ABC"}"#,
        Some("signbytes"),
    );
    assert!(matches!(kind, StateErrorKind::InvalidHex { .. }), "{kind}");
}

#[test]
fn validator_state_rejects_signature_without_signbytes() {
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signature":"AAAA"}"#,
        Some("signbytes"),
    );
    assert!(
        matches!(
            kind,
            StateErrorKind::Unpaired {
                present: "signature",
                missing: "signbytes"
            }
        ),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_signbytes_without_signature() {
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signbytes":"AB"}"#,
        Some("signature"),
    );
    assert!(
        matches!(
            kind,
            StateErrorKind::Unpaired {
                present: "signbytes",
                missing: "signature"
            }
        ),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_empty_string_signature_fields() {
    let kind = reject(
        br#"{"height":"1","round":0,"step":2,"signature":"","signbytes":""}"#,
        Some("signature"),
    );
    assert!(
        matches!(kind, StateErrorKind::EmptyBytes { field: "signature" }),
        "{kind}"
    );
}

#[test]
fn validator_state_rejects_garbage_without_panicking() {
    // Every prefix and a byte-flipped copy of the fixture: errors or values, never a panic.
    let full = fs::read(fixture(H36)).unwrap();
    for n in 0..full.len() {
        let _ = SignState::from_json(&full[..n]);
        let mut flipped = full.clone();
        flipped[n] ^= 0x5a;
        let _ = SignState::from_json(&flipped);
    }
}

// ------------------------------------------------------- CheckHRS (CometBFT)

fn prevote_10_1() -> (SignState, Vec<u8>, Vec<u8>) {
    let hrs = Hrs::new(10, 1, Step::Prevote);
    let bytes = common::sign_bytes_for(hrs, &[1; 32]);
    let sig = common::fake_signature(&bytes);
    (
        SignState::signed(hrs, sig.clone(), bytes.clone()).unwrap(),
        bytes,
        sig,
    )
}

#[test]
fn validator_check_hrs_cometbft_regressions() {
    // privval/file_test.go TestSignVote: after a prevote at height 10 round 1.
    let (last, _, _) = prevote_10_1();
    let at = |h, r| {
        let hrs = Hrs::new(h, r, Step::Prevote);
        check_hrs(&last, hrs, &common::sign_bytes_for(hrs, &[1; 32]))
    };
    assert_eq!(
        at(10, 0),
        Err(HrsError::RoundRegression {
            height: 10,
            got: 0,
            last: 1
        })
    );
    assert_eq!(
        at(9, 1),
        Err(HrsError::HeightRegression { got: 9, last: 10 })
    );
    assert_eq!(
        at(8, 5),
        Err(HrsError::HeightRegression { got: 8, last: 10 })
    );
    assert_eq!(
        at(9, 1).unwrap_err().to_string(),
        "height regression: got 9, last height 10"
    );
    let hrs = Hrs::new(10, 1, Step::Propose);
    let err = check_hrs(&last, hrs, b"x").unwrap_err();
    assert!(matches!(err, HrsError::StepRegression { .. }), "{err}");
    assert_eq!(at(10, 2), Ok(SignDecision::Sign));
    assert_eq!(at(11, 0), Ok(SignDecision::Sign));
    let hrs = Hrs::new(10, 1, Step::Precommit);
    assert_eq!(
        check_hrs(&last, hrs, &common::sign_bytes_for(hrs, &[1; 32])),
        Ok(SignDecision::Sign)
    );
}

#[test]
fn validator_check_hrs_same_hrs_different_block_is_conflict() {
    let (last, _, _) = prevote_10_1();
    let hrs = last.hrs();
    let other = common::sign_bytes_for(hrs, &[2; 32]);
    let err = check_hrs(&last, hrs, &other).unwrap_err();
    assert_eq!(err, HrsError::Conflict { hrs });
    assert!(err
        .to_string()
        .starts_with("conflicting data at height 10 round 1 step 2"));
}

#[test]
fn validator_check_hrs_same_hrs_identical_reuses_signature() {
    let (last, bytes, sig) = prevote_10_1();
    assert_eq!(
        check_hrs(&last, last.hrs(), &bytes),
        Ok(SignDecision::Reuse { signature: sig })
    );
}

#[test]
fn validator_check_hrs_same_hrs_without_signbytes() {
    let last = SignState::unsigned(Hrs::new(10, 1, Step::Prevote)).unwrap();
    let err = check_hrs(&last, last.hrs(), b"anything").unwrap_err();
    assert!(matches!(err, HrsError::NoSignBytes { .. }));
    assert!(err.to_string().contains("no SignBytes found"), "{err}");
}

// ----------------------------------------------------------------- signbytes

#[test]
fn validator_signbytes_match_h36_fixture() {
    let s = SignState::load(&fixture(H36)).unwrap();
    let d = verify_state(&s).unwrap().unwrap();
    assert_eq!(d.msg_type, SignedMsgType::Precommit);
    assert_eq!((d.height, d.round), (36, 0));
    assert_eq!(d.chain_id, "test-chain-HfdKnD");
    assert_eq!(verify_state(&SignState::initial()), Ok(None));
}

#[test]
fn validator_signbytes_disagreeing_with_state_are_rejected() {
    let s = SignState::load(&fixture(H36)).unwrap();
    let (sig, bytes) = s
        .signed_data()
        .map(|(a, b)| (a.to_vec(), b.to_vec()))
        .unwrap();
    let with =
        |h, r, step| SignState::signed(Hrs::new(h, r, step), sig.clone(), bytes.clone()).unwrap();
    assert!(matches!(
        verify_state(&with(37, 0, Step::Precommit)),
        Err(SignBytesError::HeightMismatch {
            in_bytes: 36,
            in_state: 37
        })
    ));
    assert!(matches!(
        verify_state(&with(36, 1, Step::Precommit)),
        Err(SignBytesError::RoundMismatch {
            in_bytes: 0,
            in_state: 1
        })
    ));
    for step in [Step::None, Step::Propose, Step::Prevote] {
        assert!(matches!(
            verify_state(&with(36, 0, step)),
            Err(SignBytesError::TypeStepMismatch { .. })
        ));
    }
    let prevote = vote_sign_bytes(1, 36, 0, &[3; 32], "c");
    let st = SignState::signed(Hrs::new(36, 0, Step::Prevote), sig.clone(), prevote).unwrap();
    assert!(verify_state(&st).is_ok());
}

#[test]
fn validator_key_ed25519_fixture_reproduces_h36_signature() {
    // The two docs fixtures belong together: the ed25519 key signed the h36
    // precommit, over the full length-prefixed sign bytes. Ed25519 is
    // deterministic, so signing again must give the very same bytes.
    let s = SignState::load(&fixture(H36)).unwrap();
    let key = ValidatorKey::load(&fixture(KEY_ED)).unwrap();
    let (sig, bytes) = s.signed_data().unwrap();
    assert!(key.verify(bytes, sig));
    assert_eq!(key.sign(bytes).unwrap(), sig);
    assert!(!key.verify(&bytes[1..], sig));
    assert!(!ValidatorKey::load(&fixture(KEY_SECP))
        .unwrap()
        .verify(bytes, sig));
}

// --------------------------------------------------------------------- store

fn store_in(dir: &Path) -> StateStore {
    StateStore::open(
        dir.join("priv_validator_state.json"),
        Some(dir.join("priv_validator_state.backup.json")),
    )
    .unwrap()
}

#[test]
fn validator_store_second_open_fails_with_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("priv_validator_state.json");
    let first = StateStore::open(&path, None).unwrap();
    let err = StateStore::open(&path, None).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    let msg = err.to_string();
    assert!(msg.contains("state is already locked"), "{msg}");
    assert!(msg.contains("priv_validator_state.json.lock"), "{msg}");
    assert!(
        msg.contains("is another syncguard running on this host?"),
        "{msg}"
    );
    drop(first);
    StateStore::open(&path, None).unwrap();
}

const LOCK_PROBE_ENV: &str = "SYNCGUARD_TEST_LOCK_PROBE";

#[test]
fn validator_store_lock_excludes_other_processes() {
    if let Ok(path) = std::env::var(LOCK_PROBE_ENV) {
        // Child: report what opening the store does.
        match StateStore::open(PathBuf::from(path), None) {
            Ok(_) => println!("probe: opened"),
            Err(e) => println!("probe: {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("priv_validator_state.json");
    let probe = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "validator_store_lock_excludes_other_processes",
                "--nocapture",
            ])
            .env(LOCK_PROBE_ENV, &path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("probe: ").map(str::to_owned))
            .unwrap_or_default()
    };
    let held = StateStore::open(&path, None).unwrap();
    let answer = probe();
    assert!(answer.contains("state is already locked"), "{answer}");
    drop(held);
    assert_eq!(probe(), "opened");
}

#[test]
fn validator_store_refuses_lower_hrs() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let high = signed_state(Hrs::new(10, 1, Step::Prevote), &[1; 32]);
    assert_eq!(store.write(&high).unwrap(), WriteOutcome::Written);
    for lower in [
        Hrs::new(9, 5, Step::Precommit),
        Hrs::new(10, 0, Step::Precommit),
        Hrs::new(10, 1, Step::None),
    ] {
        let err = store
            .write(&SignState::unsigned(lower).unwrap())
            .unwrap_err();
        assert!(matches!(err, StoreError::Regression { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("already signed at height 10 round 1 step 2 (prevote)"),
            "{msg}"
        );
    }
    assert_eq!(store.read().unwrap(), high);
    assert_eq!(store.read_backup().unwrap().unwrap(), high);
}

#[test]
fn validator_store_equal_hrs_identical_is_noop_different_is_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let hrs = Hrs::new(4, 0, Step::Precommit);
    let a = signed_state(hrs, &[1; 32]);
    store.write(&a).unwrap();
    let before = fs::metadata(store.path()).unwrap().modified().unwrap();
    assert_eq!(store.write(&a).unwrap(), WriteOutcome::Unchanged);
    assert_eq!(
        fs::metadata(store.path()).unwrap().modified().unwrap(),
        before
    );
    let b = signed_state(hrs, &[2; 32]);
    let err = store.write(&b).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.read().unwrap(), a);
}

#[test]
fn validator_store_keeps_mode_and_creates_0600() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    store.write(&SignState::initial()).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(store.backup_path().unwrap()), 0o600);
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
    store
        .write(&SignState::unsigned(Hrs::new(1, 0, Step::None)).unwrap())
        .unwrap();
    assert_eq!(mode(store.path()), 0o644);
}

#[test]
fn validator_store_writes_cometbft_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let h36 = SignState::load(&fixture(H36)).unwrap();
    store.write(&h36).unwrap();
    assert_eq!(
        read_text(store.path()),
        read_text(&fixture(H36)).trim_end_matches('\n')
    );
}

#[test]
fn validator_store_never_overwrites_a_corrupt_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    fs::write(store.path(), b"{\"height\": \"12").unwrap();
    let err = store
        .write(&SignState::unsigned(Hrs::new(99, 0, Step::None)).unwrap())
        .unwrap_err();
    assert!(matches!(err, StoreError::State(_)), "{err}");
    assert_eq!(fs::read(store.path()).unwrap(), b"{\"height\": \"12");
}

#[test]
fn validator_store_keeps_unknown_fields_of_the_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    fs::write(
        store.path(),
        br#"{"height":"5","round":0,"step":0,"x_note":"kept"}"#,
    )
    .unwrap();
    let merged = store
        .write_merged(&[SignState::unsigned(Hrs::new(5, 0, Step::None)).unwrap()])
        .unwrap();
    assert_eq!(merged.hrs(), Hrs::new(5, 0, Step::None));
    assert!(read_text(store.path()).contains("x_note"));
}

#[test]
fn validator_store_backup_is_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let replica = signed_state(Hrs::new(20, 0, Step::Precommit), &[1; 32]);
    assert_eq!(store.write_backup(&replica).unwrap(), WriteOutcome::Written);
    assert_eq!(
        store.write_backup(&replica).unwrap(),
        WriteOutcome::Unchanged
    );
    let older = signed_state(Hrs::new(19, 3, Step::Precommit), &[1; 32]);
    assert!(matches!(
        store.write_backup(&older),
        Err(StoreError::Regression { .. })
    ));
    assert_eq!(store.read_backup().unwrap().unwrap(), replica);
    // The state file itself was never touched by backup writes.
    assert!(store.read_if_exists().unwrap().is_none());
    // Without a backup configured there is nothing to do.
    let other = tempfile::tempdir().unwrap();
    let plain = StateStore::open(other.path().join("s.json"), None).unwrap();
    assert_eq!(
        plain.write_backup(&replica).unwrap(),
        WriteOutcome::Unchanged
    );
    assert_eq!(plain.read_backup().unwrap(), None);
}

#[test]
fn validator_store_backup_io_failure_is_reported_after_the_state_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(
        dir.path().join("priv_validator_state.json"),
        Some(dir.path().join("missing-dir/backup.json")),
    )
    .unwrap();
    let state = SignState::unsigned(Hrs::new(3, 0, Step::None)).unwrap();
    let err = store.write(&state).unwrap_err();
    assert!(matches!(err, StoreError::BackupFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("state file is up to date"),
        "{err}"
    );
    assert_eq!(store.read().unwrap(), state);
}

#[test]
fn validator_store_cleans_temp_files_left_by_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir
        .path()
        .join(".priv_validator_state.json.syncguard-tmp.123.0");
    fs::write(&stale, b"{").unwrap();
    let _store = store_in(dir.path());
    assert!(!stale.exists());
}

// ----------------------------------------------------------------------- key

#[test]
fn validator_key_fixtures_load_and_verify() {
    let secp = ValidatorKey::load(&fixture(KEY_SECP)).unwrap();
    assert_eq!(secp.key_type(), KeyType::Secp256k1);
    assert_eq!(
        secp.address_hex(),
        "E5B4F106D46A46820308C49B5F92DC22D9F9ACFA"
    );
    assert_eq!(secp.public_key().as_bytes().len(), 33);
    let ed = ValidatorKey::load(&fixture(KEY_ED)).unwrap();
    assert_eq!(ed.key_type(), KeyType::Ed25519);
    assert_eq!(ed.address_hex(), "E74FBE24164CFC4F88E311C3AC92E63D0DC310D8");
    let public = ValidatorKey::load_public(&fixture(KEY_SECP)).unwrap();
    assert_eq!(
        public.key_type().pub_key_type(),
        "tendermint/PubKeySecp256k1"
    );
    assert_eq!(public.address_hex(), secp.address_hex());
}

#[test]
fn validator_key_to_json_matches_fixture_bytes() {
    for name in [KEY_SECP, KEY_ED] {
        let key = ValidatorKey::load(&fixture(name)).unwrap();
        assert_eq!(
            *key.to_json(),
            read_text(&fixture(name)).trim_end_matches('\n'),
            "{name}"
        );
    }
}

fn with_json_edit(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_str(&read_text(&fixture(name))).unwrap();
    edit(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn validator_key_rejects_tampered_address() {
    let text = with_json_edit(KEY_SECP, |v| {
        v["address"] = "E5B4F106D46A46820308C49B5F92DC22D9F9ACFB".into();
    });
    let err = ValidatorKey::from_json(&text).unwrap_err();
    assert!(matches!(err, KeyErrorKind::AddressMismatch { .. }), "{err}");
    assert!(err.to_string().contains("address"), "{err}");
}

#[test]
fn validator_key_rejects_tampered_pubkey() {
    // Another valid point: the public key of a freshly generated key.
    let other = ValidatorKey::generate_secp256k1().public_key().to_base64();
    let text = with_json_edit(KEY_SECP, |v| v["pub_key"]["value"] = other.into());
    let err = ValidatorKey::from_json(&text).unwrap_err();
    assert!(matches!(err, KeyErrorKind::PubKeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("pub_key"), "{err}");

    let text = with_json_edit(KEY_ED, |v| {
        let mut raw = BASE64
            .decode(v["priv_key"]["value"].as_str().unwrap())
            .unwrap();
        raw[63] ^= 1;
        v["priv_key"]["value"] = BASE64.encode(raw).into();
    });
    let err = ValidatorKey::from_json(&text).unwrap_err();
    assert!(matches!(err, KeyErrorKind::EmbeddedPubKeyMismatch), "{err}");
}

#[test]
fn validator_key_rejects_mixed_types_and_bad_lengths() {
    let text = with_json_edit(KEY_SECP, |v| {
        v["pub_key"]["type"] = "tendermint/PubKeyEd25519".into()
    });
    assert!(matches!(
        ValidatorKey::from_json(&text),
        Err(KeyErrorKind::TypeMismatch { .. })
    ));
    let text = with_json_edit(KEY_SECP, |v| {
        v["priv_key"]["type"] = "tendermint/PrivKeyBls".into()
    });
    assert!(matches!(
        ValidatorKey::from_json(&text),
        Err(KeyErrorKind::UnsupportedType { .. })
    ));
    let text = with_json_edit(KEY_SECP, |v| {
        v["priv_key"]["value"] = BASE64.encode([1u8; 31]).into()
    });
    assert!(matches!(
        ValidatorKey::from_json(&text),
        Err(KeyErrorKind::Length {
            expected: 32,
            found: 31,
            ..
        })
    ));
    let text = with_json_edit(KEY_SECP, |v| {
        v["priv_key"]["value"] = BASE64.encode([0u8; 32]).into()
    });
    assert!(matches!(
        ValidatorKey::from_json(&text),
        Err(KeyErrorKind::Invalid { .. })
    ));
}

#[test]
fn validator_key_encrypted_form_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("priv_validator_key.enc");
    fs::write(&enc, b"\x00\x01encrypted").unwrap();
    let err = ValidatorKey::load(&enc).unwrap_err();
    assert!(matches!(err.kind, KeyErrorKind::Encrypted));
    assert!(
        err.to_string().contains("automatic failover cannot use it"),
        "{err}"
    );
    // The plain name missing while the encrypted one exists: same answer.
    let err = ValidatorKey::load(&dir.path().join("priv_validator_key.json")).unwrap_err();
    assert!(matches!(err.kind, KeyErrorKind::Encrypted), "{err}");
    assert_eq!(err.path, enc);
}

#[test]
fn validator_key_sign_verify_round_trip() {
    let msg = common::sign_bytes_for(Hrs::new(3, 0, Step::Precommit), &[9; 32]);
    for name in [KEY_SECP, KEY_ED] {
        let key = ValidatorKey::load(&fixture(name)).unwrap();
        let sig = key.sign(&msg).unwrap();
        assert_eq!(sig.len(), 64);
        assert!(key.verify(&msg, &sig), "{name}");
        assert!(key.public_key().verify(&msg, &sig));
        assert!(!key.verify(b"other", &sig));
        let mut bad = sig.clone();
        bad[3] ^= 1;
        assert!(!key.verify(&msg, &bad));
        // Deterministic (RFC 6979 / ed25519), as CometBFT's signatures are.
        assert_eq!(key.sign(&msg).unwrap(), sig);
    }
    let fresh = ValidatorKey::generate_secp256k1();
    let sig = fresh.sign(&msg).unwrap();
    assert!(fresh.verify(&msg, &sig));
    let other = ValidatorKey::load(&fixture(KEY_SECP)).unwrap();
    assert!(!other.verify(&msg, &sig));
}

#[test]
fn validator_key_save_new_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("placeholder_key.json");
    let key = ValidatorKey::generate_secp256k1();
    key.save_new(&path).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(ValidatorKey::load(&path).unwrap().address(), key.address());
    let err = ValidatorKey::generate_secp256k1()
        .save_new(&path)
        .unwrap_err();
    assert!(matches!(err.kind, KeyErrorKind::Io { .. }), "{err}");
    assert_eq!(ValidatorKey::load(&path).unwrap().address(), key.address());
}

/// Every rendering of a private key we could leak: base64 as in the file, hex
/// either case, and Rust's `[a, b, c, ...]` array Debug.
fn secret_forms(name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&read_text(&fixture(name))).unwrap();
    let b64 = v["priv_key"]["value"].as_str().unwrap().to_owned();
    let raw = BASE64.decode(&b64).unwrap();
    let secret = &raw[..32];
    let dec: Vec<String> = secret.iter().take(4).map(u8::to_string).collect();
    vec![
        b64[..16].to_owned(),
        BASE64.encode(secret)[..16].to_owned(),
        hex::encode(secret)[..16].to_owned(),
        hex::encode_upper(secret)[..16].to_owned(),
        dec.join(", "),
    ]
}

#[test]
fn validator_key_secrets_never_in_debug_or_errors() {
    for name in [KEY_SECP, KEY_ED] {
        let forms = secret_forms(name);
        let check = |what: &str, text: &str| {
            for f in &forms {
                assert!(
                    !text.contains(f.as_str()),
                    "{name}: {what} leaks {f}: {text}"
                );
            }
        };
        let key = ValidatorKey::load(&fixture(name)).unwrap();
        let debug = format!("{key:?} {key:#?}");
        assert!(debug.contains("[redacted]"));
        check("Debug", &debug);
        check("public key Debug", &format!("{:?}", key.public_key()));

        let priv_b64 = {
            let v: serde_json::Value = serde_json::from_str(&read_text(&fixture(name))).unwrap();
            v["priv_key"]["value"].as_str().unwrap().to_owned()
        };
        // Inputs that fail at every stage, each still carrying the secret.
        let mut inputs: Vec<Vec<u8>> = vec![
            with_json_edit(name, |v| v["address"] = "00".into()),
            with_json_edit(name, |v| v["address"] = "zz".into()),
            with_json_edit(name, |v| v["pub_key"]["value"] = "AAAA".into()),
            with_json_edit(name, |v| v["pub_key"]["value"] = "%%%".into()),
            with_json_edit(name, |v| v["pub_key"]["type"] = "x".into()),
            with_json_edit(name, |v| v["priv_key"]["type"] = "y".into()),
            with_json_edit(name, |v| {
                v["priv_key"]["value"] = format!("{priv_b64}!").into();
            }),
            with_json_edit(name, |v| {
                v["priv_key"]["value"] = format!("-{}", &priv_b64[1..]).into();
            }),
            with_json_edit(name, |v| {
                v["priv_key"]["value"] = priv_b64[..priv_b64.len() - 4].to_owned().into();
            }),
            with_json_edit(name, |v| {
                v["priv_key"]["value"] = serde_json::Value::from(7)
            }),
            with_json_edit(name, |v| {
                v.as_object_mut().unwrap().remove("address");
            }),
            // Fields swapped by mistake: the secret sits where public values go.
            with_json_edit(name, |v| v["pub_key"]["value"] = priv_b64.clone().into()),
            with_json_edit(name, |v| {
                let raw = BASE64.decode(&priv_b64).unwrap();
                v["pub_key"]["value"] = BASE64.encode(&raw[..32]).into();
            }),
            with_json_edit(name, |v| {
                let raw = BASE64.decode(&priv_b64).unwrap();
                v["address"] = hex::encode_upper(&raw[..32]).into();
            }),
            with_json_edit(name, |v| v["pub_key"]["type"] = priv_b64.clone().into()),
            with_json_edit(name, |v| v["priv_key"]["type"] = priv_b64.clone().into()),
        ];
        let text = read_text(&fixture(name));
        let at = text.find(&priv_b64).unwrap();
        inputs.push(text.as_bytes()[..at + 10].to_vec()); // truncated inside the secret
        let mut broken = text.clone().into_bytes();
        broken[at + 5] = b'"'; // a syntax error right after part of the secret
        inputs.push(broken);
        let mut errors = 0;
        for input in inputs {
            let Err(kind) = ValidatorKey::from_json(&input) else {
                panic!("{name}: tampered input accepted");
            };
            errors += 1;
            check("error Display", &kind.to_string());
            check("error Debug", &format!("{kind:?}"));
            // The same through a file, with the path-carrying error.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("priv_validator_key.json");
            fs::write(&path, &input).unwrap();
            let err = ValidatorKey::load(&path).unwrap_err();
            check("file error Display", &err.to_string());
            check("file error Debug", &format!("{err:?}"));
        }
        assert!(errors >= 18);
    }
}
