//! `cargo test double`: the properties that keep a failover from double
//! signing — the HRS order agrees with CheckHRS, the store never leaves a
//! lower state on disk, promotion writes the maximum, and a writer killed at
//! any instant leaves a whole, never-lower state file.

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{sign_bytes_for, signed_state};
use proptest::prelude::*;
use rand::Rng as _;
use syncguard_validator::{
    check_hrs, verify_state, Hrs, HrsError, SignDecision, SignState, StateStore, Step, StoreError,
    WriteOutcome,
};

fn step_strategy() -> impl Strategy<Value = Step> {
    prop::sample::select(Step::ALL.to_vec())
}

/// Small ranges so equal heights and rounds (the interesting cases) are common.
fn hrs_strategy() -> impl Strategy<Value = Hrs> {
    (0i64..4, 0i32..3, step_strategy()).prop_map(|(h, r, s)| Hrs::new(h, r, s))
}

/// A state at `hrs`: signed (with block `tag`) when the step is a vote step
/// and `signed` is set, unsigned otherwise.
fn state_at(hrs: Hrs, signed: bool, tag: u8) -> SignState {
    if signed && matches!(hrs.step, Step::Prevote | Step::Precommit) {
        signed_state(hrs, &[tag; 32])
    } else {
        SignState::unsigned(hrs).unwrap()
    }
}

fn request_bytes(hrs: Hrs, tag: u8) -> Vec<u8> {
    match hrs.step {
        Step::Prevote | Step::Precommit => sign_bytes_for(hrs, &[tag; 32]),
        _ => vec![tag],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// For any a, b: with `a` as the last signed state, check(b) says Sign iff
    /// b > a, a regression iff b < a, and at b == a never Sign.
    #[test]
    fn double_sign_hrs_order_matches_check_hrs(
        a in hrs_strategy(), b in hrs_strategy(), signed in any::<bool>(),
        tag_a in 0u8..2, tag_b in 0u8..2,
    ) {
        // Ord is the lexicographic order on (height, round, step number).
        let key = |x: Hrs| (x.height, x.round, x.step.as_u8());
        prop_assert_eq!(a.cmp(&b), key(a).cmp(&key(b)));

        let last = state_at(a, signed, tag_a);
        let bytes = request_bytes(b, tag_b);
        let result = check_hrs(&last, b, &bytes);
        let regression = matches!(
            result,
            Err(HrsError::HeightRegression { .. }
                | HrsError::RoundRegression { .. }
                | HrsError::StepRegression { .. })
        );
        prop_assert_eq!(result == Ok(SignDecision::Sign), b > a);
        prop_assert_eq!(regression, b < a);
        if b == a {
            match (&result, last.signed_data()) {
                (Ok(SignDecision::Reuse { signature }), Some((sig, stored))) => {
                    prop_assert_eq!(stored, bytes.as_slice());
                    prop_assert_eq!(signature.as_slice(), sig);
                }
                (Err(HrsError::Conflict { .. }), Some((_, stored))) => {
                    prop_assert_ne!(stored, bytes.as_slice());
                }
                (Err(HrsError::NoSignBytes { .. }), None) => {}
                other => prop_assert!(false, "unexpected at equal HRS: {:?}", other),
            }
        }
    }
}

fn open_store(dir: &Path) -> StateStore {
    StateStore::open(
        dir.join("priv_validator_state.json"),
        Some(dir.join("state_backup.json")),
    )
    .unwrap()
}

/// Opens the store again right after a previous one was dropped. Another test of this binary
/// spawns writer processes: a child forked while the old store was alive holds its lock
/// file descriptor until it execs (O_CLOEXEC closes it only then), so the lock can outlive
/// the drop by a moment. Wait that out; any other error fails at once.
fn reopen_store(dir: &Path) -> StateStore {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match StateStore::open(
            dir.join("priv_validator_state.json"),
            Some(dir.join("state_backup.json")),
        ) {
            Ok(store) => return store,
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random write sequences: after every write (accepted or refused) the
    /// state file and the backup hold exactly the highest state accepted so
    /// far, and a write is accepted iff it is not lower than that.
    #[test]
    fn double_sign_store_never_leaves_a_lower_state(
        writes in prop::collection::vec((hrs_strategy(), any::<bool>(), 0u8..2), 1..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let mut top: Option<SignState> = None;
        for (hrs, signed, tag) in writes {
            let state = state_at(hrs, signed, tag);
            let result = store.write(&state);
            match &top {
                None => prop_assert_eq!(result.as_ref().ok(), Some(&WriteOutcome::Written)),
                Some(t) if state.hrs() > t.hrs() => {
                    prop_assert_eq!(result.as_ref().ok(), Some(&WriteOutcome::Written))
                }
                Some(t) if state.hrs() < t.hrs() => {
                    prop_assert!(matches!(result, Err(StoreError::Regression { .. })), "{:?}", result)
                }
                Some(t) if t.same_signed_data(&state) => {
                    prop_assert_eq!(result.as_ref().ok(), Some(&WriteOutcome::Unchanged))
                }
                Some(_) => prop_assert!(matches!(result, Err(StoreError::Conflict { .. })), "{:?}", result),
            }
            if result.is_ok() {
                top = Some(state);
            }
            let on_disk = store.read().unwrap();
            let backup = store.read_backup().unwrap().unwrap();
            prop_assert_eq!(Some(&on_disk), top.as_ref());
            prop_assert_eq!(Some(&backup), top.as_ref());
        }
    }
}

#[test]
fn double_sign_store_refusal_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let high = signed_state(Hrs::new(100, 2, Step::Precommit), &[1; 32]);
    open_store(dir.path()).write(&high).unwrap();
    let store = reopen_store(dir.path());
    let err = store
        .write(&signed_state(Hrs::new(100, 2, Step::Prevote), &[1; 32]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already signed at height 100 round 2 step 3"),
        "{err}"
    );
    assert_eq!(store.read().unwrap(), high);
}

#[test]
fn double_sign_promotion_writes_max_of_local_replica_and_fence() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Local state on the passive: old, from when it was last active.
    store
        .write(&signed_state(Hrs::new(50, 0, Step::Precommit), &[1; 32]))
        .unwrap();
    // Replica pulled from the active.
    let replica = signed_state(Hrs::new(120, 1, Step::Prevote), &[2; 32]);
    store.write_backup(&replica).unwrap();
    // Unplanned failover: chain at H = 121, fence skips the height in flight.
    let fence = SignState::unsigned(Hrs::new(121 + 2, 0, Step::None)).unwrap();
    let written = store.write_merged(std::slice::from_ref(&fence)).unwrap();
    assert_eq!(written, fence);
    assert_eq!(store.read().unwrap(), fence);
    assert_eq!(store.read_backup().unwrap().unwrap(), fence);

    // Planned handover whose handed state is the highest.
    let handed = signed_state(Hrs::new(130, 0, Step::Precommit), &[3; 32]);
    assert_eq!(
        store.write_merged(std::slice::from_ref(&handed)).unwrap(),
        handed
    );
    // A stale candidate never lowers anything.
    assert_eq!(store.write_merged(&[replica]).unwrap(), handed);
    assert_eq!(store.read().unwrap(), handed);
}

#[test]
fn double_sign_promotion_refuses_two_messages_at_the_top_hrs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let hrs = Hrs::new(70, 0, Step::Prevote);
    store.write(&signed_state(hrs, &[1; 32])).unwrap();
    let err = store
        .write_merged(&[signed_state(hrs, &[2; 32])])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.read().unwrap(), signed_state(hrs, &[1; 32]));
}

// ------------------------------------------------------- crash consistency

const WRITER_ENV: &str = "SYNCGUARD_TEST_CRASH_WRITER_DIR";
const CRASH_TEST: &str = "double_sign_crash_consistency_under_sigkill";

/// The state the writer stores at height `h` (always precommit round 0):
/// its signature is derived from its sign bytes, so a reader can tell a
/// whole state from a torn one.
fn crash_state(h: i64) -> SignState {
    signed_state(Hrs::new(h, 0, Step::Precommit), &[(h % 251) as u8; 32])
}

/// Child side: write ever-higher states until killed, reporting each one
/// after `write` returned (i.e. after it is durable).
fn run_writer(dir: &Path) {
    let store = open_store(dir);
    let mut h = store.read().map(|s| s.hrs().height + 1).unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        store.write(&crash_state(h)).unwrap();
        println!("durable {h}");
        h += 1;
    }
}

/// Re-execs this test binary as a writer, SIGKILLs it after a random 0–20 ms,
/// and checks the files after each kill: they parse, are states the writer
/// wrote (signature matches sign bytes), are never lower than what the writer
/// reported durable nor than what was seen before; the backup likewise never
/// goes back and never passes the state file.
#[test]
fn double_sign_crash_consistency_under_sigkill() {
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        run_writer(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("priv_validator_state.json");
    let backup_path: PathBuf = dir.path().join("state_backup.json");
    {
        // Start from CometBFT's initial state; the store lock is released at drop.
        open_store(dir.path()).write(&SignState::initial()).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let (mut last_seen, mut last_backup, mut kills_with_progress, mut iterations) =
        (0i64, 0i64, 0u32, 0u32);
    while iterations < 150 && started.elapsed() < Duration::from_secs(15) {
        iterations += 1;
        let mut child = Command::new(&exe)
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(WRITER_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=20)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let durable = out
            .lines()
            .filter_map(|l| l.strip_prefix("durable "))
            .filter_map(|n| n.trim().parse::<i64>().ok())
            .max();

        let state = SignState::load(&state_path)
            .unwrap_or_else(|e| panic!("iteration {iterations}: state unreadable after kill: {e}"));
        let h = state.hrs().height;
        if h > 0 {
            assert_eq!(
                state,
                crash_state(h),
                "iteration {iterations}: not a state the writer wrote"
            );
            assert!(verify_state(&state).unwrap().is_some());
        }
        assert!(
            h >= last_seen,
            "iteration {iterations}: went back from {last_seen} to {h}"
        );
        if let Some(d) = durable {
            assert!(
                h >= d,
                "iteration {iterations}: reported {d} durable, file has {h}"
            );
        }
        let backup = SignState::load(&backup_path)
            .unwrap_or_else(|e| panic!("iteration {iterations}: backup unreadable: {e}"));
        let bh = backup.hrs().height;
        // A kill between the two writes leaves the backup behind the state
        // file (possibly over several kills), never ahead, never going back.
        assert!(
            bh <= h,
            "iteration {iterations}: backup {bh} above state {h}"
        );
        assert!(
            bh >= last_backup,
            "iteration {iterations}: backup went back from {last_backup} to {bh}"
        );
        last_backup = bh;
        if bh > 0 {
            assert_eq!(backup, crash_state(bh));
        }
        if let Some(d) = durable {
            assert!(
                bh >= d,
                "iteration {iterations}: backup {bh} below durable {d}"
            );
        }
        if h > last_seen {
            kills_with_progress += 1;
        }
        last_seen = h;
    }
    // Reopening cleans any temp file a kill left behind.
    let store = open_store(dir.path());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("syncguard-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(store.read().unwrap().hrs().height, last_seen);
    eprintln!(
        "crash test: {iterations} kills, {kills_with_progress} with progress, final height {last_seen}, {:?}",
        started.elapsed()
    );
    assert!(
        kills_with_progress > 0,
        "the writer never got to write before being killed"
    );
}
