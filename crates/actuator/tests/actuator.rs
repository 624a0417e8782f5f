//! The actuator against a fake Story node: real shell commands, real key and state files, a
//! real HTTP CometBFT RPC that closes its port while "stopped".

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{signed, unsigned, FakeNode, Role};
use syncguard_actuator::{
    ActivationPlan, Actuator, ActuatorError, NodeCondition, Refusal, SetupProblem, Step, StepError,
    StepOutcome,
};
use syncguard_validator::{SignState, StateStore, Step as HrsStep, ValidatorKey};

fn steps(e: &[syncguard_actuator::StepTiming]) -> Vec<(Step, StepOutcome)> {
    e.iter().map(|s| (s.step, s.outcome)).collect()
}

/// Each step, ok.
fn all_ok<const N: usize>(s: [Step; N]) -> Vec<(Step, StepOutcome)> {
    s.map(|s| (s, StepOutcome::Ok)).to_vec()
}

/// A stop confirmed only after the kill command, under the forward or the rollback names.
fn stop_after_kill(rollback: bool) -> Vec<(Step, StepOutcome)> {
    use Step::*;
    let [stop, confirm, kill, confirm_killed] = if rollback {
        [
            RollbackStop,
            RollbackConfirmStopped,
            RollbackKill,
            RollbackConfirmKilled,
        ]
    } else {
        [Stop, ConfirmStopped, Kill, ConfirmKilled]
    };
    vec![
        (stop, StepOutcome::Ok),
        (confirm, StepOutcome::Warning),
        (kill, StepOutcome::Ok),
        (confirm_killed, StepOutcome::Ok),
    ]
}

/// How long `action` took, and its result.
async fn timed<T>(action: impl std::future::Future<Output = T>) -> (T, Duration) {
    let begun = std::time::Instant::now();
    let result = action.await;
    (result, begun.elapsed())
}

fn activation_failure(e: ActuatorError) -> Box<syncguard_actuator::ActivationFailure> {
    match e {
        ActuatorError::ActivationFailed(f) => f,
        other => panic!("expected a rolled-back activation, got: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_activation_happy_path() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let config = node.config();
    let store = node.open_store();
    // The replica pulled from the old active is ahead of the local file.
    let replica = signed(20, 1, HrsStep::Prevote, 2);
    store.write_backup(&replica).unwrap();
    let actuator = node.actuator(&config, &store);

    let fence = unsigned(15, 0, HrsStep::None);
    let report = actuator
        .activate(ActivationPlan::unplanned(fence))
        .await
        .unwrap();
    println!("{}", report.format_steps());

    // S3: max(local 10, backup 20, fence 15) = the backup, its signed data intact.
    assert!(report.state_written.same_signed_data(&replica));
    assert!(node.state_on_disk().same_signed_data(&replica));
    // The key: the validator's, 0600, at the live path; story restarted with it.
    assert_eq!(report.validator_address, node.validator_address);
    assert_eq!(node.live_address(), node.validator_address);
    assert_eq!(node.live_mode(), 0o600);
    assert_eq!(
        node.with(|n| n.starts.clone()),
        vec![
            node.placeholder_address.clone(),
            node.validator_address.clone()
        ]
    );
    // Finished means verified: signed after the start, at or above the height written.
    assert!(
        report.signed_at_height > node.with(|n| n.start_height),
        "{}",
        report.verification
    );
    assert!(report.signed_at_height >= 20);
    assert_eq!(node.commands(), ["stop", "start"]);
    node.assert_no_violations();

    use Step::*;
    assert_eq!(
        steps(&report.steps),
        [
            CheckKeys,
            Stop,
            ConfirmStopped,
            WriteState,
            InstallValidatorKey,
            Start,
            VerifyAddress,
            VerifySigning
        ]
        .map(|s| (s, StepOutcome::Ok))
    );
    let table = report.format_steps();
    assert!(
        table.contains("confirm-stopped") && table.contains("total"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_fence_is_never_lowered() {
    // The local state file is above the fence: it stays.
    let local = signed(50, 2, HrsStep::Precommit, 7);
    let node = FakeNode::start(Role::Passive, &local).await;
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let report = actuator
        .activate(ActivationPlan::unplanned(unsigned(30, 0, HrsStep::None)))
        .await
        .unwrap();
    assert!(report.state_written.same_signed_data(&local));
    assert!(node.state_on_disk().same_signed_data(&local));
    assert!(store
        .read_backup()
        .unwrap()
        .unwrap()
        .same_signed_data(&local));
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_fence_raises_state_above_local_and_backup() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let config = node.config();
    let store = node.open_store();
    store
        .write_backup(&signed(12, 0, HrsStep::Prevote, 2))
        .unwrap();
    let actuator = node.actuator(&config, &store);

    let fence = unsigned(40, 0, HrsStep::None);
    let report = actuator
        .activate(ActivationPlan::unplanned(fence.clone()))
        .await
        .unwrap();
    assert_eq!(report.state_written.hrs(), fence.hrs());
    assert_eq!(node.state_on_disk().hrs(), fence.hrs());
    assert_eq!(node.state_on_disk().signature(), None);
    assert!(report.signed_at_height >= 40, "{}", report.verification);
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_handover_writes_handed_state() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let handed = signed(60, 0, HrsStep::Precommit, 9);
    let report = actuator
        .activate(ActivationPlan::handover(handed.clone()))
        .await
        .unwrap();
    assert!(node.state_on_disk().same_signed_data(&handed));
    assert!(report.state_written.same_signed_data(&handed));
    assert!(report.signed_at_height >= 60, "{}", report.verification);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_unconfirmed_stop_refuses_and_keeps_placeholder() {
    let before = signed(10, 0, HrsStep::Precommit, 1);
    let node = FakeNode::start(Role::Passive, &before).await;
    // The stop "succeeds" but story keeps running, and the kill does not help either.
    let actuator = node.actuator_with(|s| {
        s.stop_command = node.useless_stop();
        s.kill_command = node.useless_kill();
        s.stop_timeout = Some(0.5);
    });

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::ConfirmKilled);
    assert!(matches!(f.cause, StepError::StopNotConfirmed(_)));
    // The cause names both attempts.
    assert!(
        text.contains("of story.stop_command") && text.contains("of story.kill_command `echo kill"),
        "{text}"
    );
    assert_eq!(node.commands(), ["stop", "kill"]);
    assert_eq!(
        f.node_left,
        NodeCondition::StopUnconfirmed {
            placeholder_installed: true,
            may_be_signing: false
        }
    );
    assert!(text.contains("not confirmed stopped"), "{text}");
    assert!(text.contains("story.status_command exits 0"), "{text}");
    assert!(text.contains("still answers"), "{text}");

    // Nothing moved: the validator key never went live, the state was never written.
    assert_eq!(node.live_address(), node.placeholder_address);
    assert!(node.state_on_disk().same_signed_data(&before));
    assert_eq!(
        node.with(|n| n.starts.clone()),
        vec![node.placeholder_address.clone()]
    );
    assert!(!node.commands().contains(&"start".to_string()));
    let s = steps(&f.steps);
    assert!(!s.iter().any(|(step, _)| *step == Step::WriteState));
    assert!(!s.iter().any(|(step, _)| *step == Step::InstallValidatorKey));
    // Story may still run: nothing is started on top of it, and the futile stop and kill are
    // not tried a second time.
    assert!(!s
        .iter()
        .any(|(step, _)| matches!(step, Step::Start | Step::RollbackStart)));
    assert!(
        s.contains(&(Step::ConfirmStopped, StepOutcome::Warning)),
        "{s:?}"
    );
    assert!(s.contains(&(Step::Kill, StepOutcome::Ok)), "{s:?}");
    assert!(
        s.contains(&(Step::ConfirmKilled, StepOutcome::Failed)),
        "{s:?}"
    );
    assert!(
        s.contains(&(Step::RollbackStop, StepOutcome::Skipped)),
        "{s:?}"
    );
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_stop_needs_rpc_refusal_too() {
    let before = signed(10, 0, HrsStep::Precommit, 1);
    let node = FakeNode::start(Role::Passive, &before).await;
    // The unit looks inactive (flag gone) but the process still holds its port.
    node.with(|n| n.stuck = true);
    // A kill that reaches nothing: the lingering process stays.
    let actuator = node.actuator_with(|s| {
        s.stop_timeout = Some(0.5);
        s.kill_command = node.useless_kill();
    });

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    let text = e.to_string();
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::ConfirmKilled);
    assert!(text.contains("story.status_command exits 1"), "{text}");
    assert!(text.contains("still answers"), "{text}");
    assert_eq!(node.live_address(), node.placeholder_address);
    assert!(node.state_on_disk().same_signed_data(&before));
    assert_eq!(
        f.node_left,
        NodeCondition::StopUnconfirmed {
            placeholder_installed: true,
            may_be_signing: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_start_failure_rolls_back_to_placeholder() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let mut config = node.config();
    // The first start brings story up (with whatever key is live) but reports failure, like
    // a unit whose start job fails after its process began; later starts work.
    config.story.start_command = node.start_once_then(&format!(
        "touch '{}'; echo 'Job for story.service failed because the control process exited' \
         >&2; exit 1",
        node.flag.display()
    ));
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    assert!(!text.contains('\n'), "one summary line: {text}");
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::Start);
    assert!(text.contains("story.start_command"), "{text}");
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("Job for story.service failed"), "{text}");
    assert_eq!(f.node_left, NodeCondition::FullNode);
    assert!(f.node_left.is_safe());

    // Rolled back: placeholder live (0600), story running with it.
    node.assert_full_node_with_placeholder().await;
    assert_eq!(node.commands(), ["stop", "start", "stop", "start"]);
    use Step::*;
    assert_eq!(
        steps(&f.steps),
        [
            (CheckKeys, StepOutcome::Ok),
            (Stop, StepOutcome::Ok),
            (ConfirmStopped, StepOutcome::Ok),
            (WriteState, StepOutcome::Ok),
            (InstallValidatorKey, StepOutcome::Ok),
            (Start, StepOutcome::Failed),
            (RollbackStop, StepOutcome::Ok),
            (RollbackConfirmStopped, StepOutcome::Ok),
            (RollbackInstallPlaceholder, StepOutcome::Ok),
            (RollbackStart, StepOutcome::Ok),
        ]
    );
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_conflicting_state_rolls_back() {
    let local = signed(30, 0, HrsStep::Precommit, 1);
    let node = FakeNode::start(Role::Passive, &local).await;
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    // Same HRS, different signed bytes: nobody can know which one the network saw.
    let e = actuator
        .activate(ActivationPlan::handover(signed(
            30,
            0,
            HrsStep::Precommit,
            2,
        )))
        .await
        .unwrap_err();
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::WriteState);
    assert!(
        f.to_string().contains("different data already signed"),
        "{f}"
    );
    assert_eq!(f.node_left, NodeCondition::FullNode);
    assert!(node.state_on_disk().same_signed_data(&local));
    assert_eq!(node.live_address(), node.placeholder_address);
    node.wait_for(|n| n.running.is_some()).await;
    assert_eq!(
        node.with(|n| n.starts.clone()),
        vec![
            node.placeholder_address.clone(),
            node.placeholder_address.clone()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_encrypted_key_store_refused_untouched() {
    let before = signed(10, 0, HrsStep::Precommit, 1);
    let node = FakeNode::start(Role::Passive, &before).await;
    let enc = node.dir.path().join("keys/priv_validator_key.enc");
    std::fs::write(&enc, b"\x00encrypted").unwrap();
    let mut config = node.config();
    config.story.validator_key_store = enc.clone();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(&e, ActuatorError::Refused(Refusal::EncryptedKey { path }) if *path == enc),
        "{text}"
    );
    assert!(
        text.contains("before anything was touched") && text.contains("password"),
        "{text}"
    );
    assert_eq!(e.node_condition(), Some(NodeCondition::Untouched));
    assert!(node.commands().is_empty());
    assert_eq!(node.live_address(), node.placeholder_address);
    assert!(node.state_on_disk().same_signed_data(&before));
    assert_eq!(node.with(|n| n.starts.len()), 1);
    assert!(node.with(|n| n.running.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_encrypted_live_key_refused_untouched() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    // story would find this next to its key file.
    let enc = node.dir.path().join("config/priv_validator_key.enc");
    std::fs::write(&enc, b"\x00encrypted").unwrap();
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ActuatorError::Refused(Refusal::EncryptedKey { path }) if *path == enc),
        "{e}"
    );
    assert!(node.commands().is_empty());
    assert_eq!(node.live_address(), node.placeholder_address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_placeholder_equal_to_validator_refused() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let mut config = node.config();
    // A "placeholder" that is the validator key would make every passive a signer.
    config.story.placeholder_key_path = node.key_store.clone();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);
    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ActuatorError::Refused(Refusal::PlaceholderIsValidatorKey { .. })
        ),
        "{e}"
    );
    assert!(node.commands().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_unverifiable_key_store_refused_untouched() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    // The key store's address does not belong to its key.
    let mut text = std::fs::read_to_string(&node.key_store).unwrap();
    text = text.replace(
        &node.validator_address,
        "0000000000000000000000000000000000000000",
    );
    let bad = node.dir.path().join("keys/bad_key.json");
    std::fs::write(&bad, text).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut config = node.config();
    config.story.validator_key_store = bad;
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);
    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ActuatorError::Refused(Refusal::KeyStore(_))),
        "{e}"
    );
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(node.commands().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_deactivation_returns_final_state_and_leaves_placeholder() {
    let last = signed(77, 0, HrsStep::Precommit, 5);
    let node = FakeNode::start(Role::Active, &last).await;
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let report = actuator.deactivate().await.unwrap();
    println!("{}", report.format_steps());
    assert!(report.final_state.same_signed_data(&last));
    assert_eq!(report.placeholder_address, node.placeholder_address);
    assert!(report.full_node_started);
    assert_eq!(report.start_problem, None);
    assert_eq!(node.live_address(), node.placeholder_address);
    assert_eq!(node.live_mode(), 0o600);
    node.wait_for(|n| n.running.is_some()).await;
    assert_eq!(
        node.with(|n| n.starts.clone()),
        vec![
            node.validator_address.clone(),
            node.placeholder_address.clone()
        ]
    );
    assert_eq!(node.commands(), ["stop", "start"]);
    use Step::*;
    assert_eq!(
        steps(&report.steps),
        [
            CheckKeys,
            Stop,
            ConfirmStopped,
            InstallPlaceholder,
            ReadFinalState,
            Start
        ]
        .map(|s| (s, StepOutcome::Ok))
    );
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_deactivation_unconfirmed_stop_still_installs_placeholder() {
    let node = FakeNode::start(Role::Active, &signed(77, 0, HrsStep::Precommit, 5)).await;
    let mut config = node.config();
    config.story.stop_command = format!(
        "echo stop >> '{}'; echo 'Failed to stop story.service: timeout' >&2; exit 1",
        node.log.display()
    );
    config.story.kill_command = node.useless_kill();
    config.story.stop_timeout = Some(0.5);
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator.deactivate().await.unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    let f = match e {
        ActuatorError::DeactivationFailed(f) => f,
        other => panic!("{other}"),
    };
    assert_eq!(f.failed_step, Step::ConfirmKilled);
    assert!(text.contains("story.kill_command"), "{text}");
    assert_eq!(
        f.node_left,
        NodeCondition::StopUnconfirmed {
            placeholder_installed: true,
            may_be_signing: true
        }
    );
    assert!(!f.node_left.is_safe());
    assert!(text.contains("may be SIGNING"), "{text}");
    assert!(text.contains("no final state"), "{text}");
    assert!(text.contains("Failed to stop story.service"), "{text}");
    // The running process still has the validator key; its next start cannot.
    assert_eq!(
        node.with(|n| n.running.clone()).unwrap(),
        node.validator_address
    );
    assert_eq!(node.live_address(), node.placeholder_address);
    assert_eq!(node.live_mode(), 0o600);
    assert_eq!(node.commands(), ["stop", "kill"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_deactivation_without_placeholder_removes_live_key() {
    let node = FakeNode::start(Role::Active, &signed(77, 0, HrsStep::Precommit, 5)).await;
    let mut config = node.config();
    config.story.placeholder_key_path = node.dir.path().join("keys/missing_placeholder.json");
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator.deactivate().await.unwrap_err();
    let f = match e {
        ActuatorError::DeactivationFailed(f) => f,
        other => panic!("{other}"),
    };
    // Fenced anyway: stopped, and the validator key (a verified copy is at rest) is not live.
    assert_eq!(f.failed_step, Step::InstallPlaceholder);
    assert_eq!(f.node_left, NodeCondition::StoppedKeyRemoved);
    assert!(f.node_left.is_safe());
    assert!(!node.live_key.exists());
    assert!(node.key_store.exists());
    assert_eq!(node.with(|n| n.running.clone()), None);
    assert_eq!(node.commands(), ["stop"]);
    let s = steps(&f.steps);
    assert!(
        s.contains(&(Step::RemoveLiveKey, StepOutcome::Warning)),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_actuator_activation_with_another_address_rolls_back() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    // A node that ignores the live key file.
    let stranger = ValidatorKey::generate_secp256k1().address_hex();
    node.with(|n| n.report_address = Some(stranger.clone()));
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    let text = e.to_string();
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::VerifyAddress);
    assert!(matches!(f.cause, StepError::NotVerified { .. }), "{text}");
    assert!(
        text.contains("not verified") && text.contains(&stranger) && text.contains("instead of"),
        "{text}"
    );
    let s = steps(&f.steps);
    assert!(s.contains(&(Step::VerifyAddress, StepOutcome::Failed)));
    assert!(s.contains(&(Step::VerifySigning, StepOutcome::Skipped)));
    // Not verified is not finished: rolled back, the placeholder live and running again.
    assert_eq!(f.node_left, NodeCondition::FullNode);
    assert_eq!(node.live_address(), node.placeholder_address);
    node.wait_for(|n| n.running.is_some()).await;
    assert_eq!(
        node.with(|n| n.starts.clone()),
        vec![
            node.placeholder_address.clone(),
            node.validator_address.clone(),
            node.placeholder_address.clone()
        ]
    );
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_actuator_activation_without_signature_rolls_back_within_the_deadline() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    node.with(|n| n.not_signing = true);
    // The stop does nothing: the activation's stop and the rollback's both need the kill.
    let actuator = node.actuator_with(|s| {
        s.stop_command = node.useless_stop();
        s.stop_timeout = Some(0.5);
    });
    let bound = actuator.options().max_activation();

    let (result, took) =
        timed(actuator.activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))).await;
    let e = result.unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    assert!(took <= bound, "{took:?} > max_activation {bound:?}");
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::VerifySigning);
    let expected = format!("not verified: no signature of {}", node.validator_address);
    assert!(text.contains(&expected), "{text}");
    assert_eq!(f.node_left, NodeCondition::FullNode);
    node.assert_full_node_with_placeholder().await;
    assert_eq!(
        node.commands(),
        ["stop", "kill", "start", "stop", "kill", "start"]
    );
    use Step::*;
    let mut expected_steps = all_ok([CheckKeys]);
    expected_steps.extend(stop_after_kill(false));
    expected_steps.extend(all_ok([
        WriteState,
        InstallValidatorKey,
        Start,
        VerifyAddress,
    ]));
    expected_steps.push((VerifySigning, StepOutcome::Failed));
    expected_steps.extend(stop_after_kill(true));
    expected_steps.extend(all_ok([RollbackInstallPlaceholder, RollbackStart]));
    assert_eq!(steps(&f.steps), expected_steps);
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_actuator_activation_of_a_node_that_never_answers_rolls_back_at_the_deadline() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    // The first start "succeeds" but story dies at once (killed during the activation, as in
    // the field); later starts work.
    let actuator = node.actuator_with(|s| s.start_command = node.start_once_then("exit 0"));
    let verify_timeout = actuator.options().verify_timeout;
    let bound = actuator.options().max_activation();

    let (result, took) =
        timed(actuator.activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))).await;
    let e = result.unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    assert!(
        took >= verify_timeout && took <= bound,
        "{took:?} outside {verify_timeout:?}..={bound:?}"
    );
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::VerifyAddress);
    assert!(
        text.contains(&format!("within {verify_timeout:?} after story started")),
        "{text}"
    );
    let verify_step = f
        .steps
        .iter()
        .find(|s| s.step == Step::VerifyAddress)
        .unwrap();
    assert!(verify_step.duration >= verify_timeout);
    assert!(verify_step.duration < verify_timeout + Duration::from_secs(1));
    assert_eq!(f.node_left, NodeCondition::FullNode);
    node.assert_full_node_with_placeholder().await;
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_stop_escalates_to_kill_and_is_confirmed() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    // The stop does nothing; story runs until the kill command.
    let actuator = node.actuator_with(|s| {
        s.stop_command = node.useless_stop();
        s.stop_timeout = Some(0.5);
    });

    let report = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap();
    let table = report.format_steps();
    println!("{table}");
    assert_eq!(node.commands(), ["stop", "kill", "start"]);
    use Step::*;
    let mut expected = all_ok([CheckKeys]);
    expected.extend(stop_after_kill(false));
    expected.extend(all_ok([
        WriteState,
        InstallValidatorKey,
        Start,
        VerifyAddress,
        VerifySigning,
    ]));
    assert_eq!(steps(&report.steps), expected);
    // The report shows the kill and how long the stop was given before it: one deadline
    // covers the stop command and its confirmation, so the two steps together last the
    // stop timeout (less the instants between steps, well under 10 ms).
    let confirm = &report.steps[2];
    let given = report.steps[1].duration + confirm.duration;
    assert!(given >= Duration::from_millis(490), "{given:?}\n{table}");
    assert!(
        confirm.detail.contains("escalating to story.kill_command"),
        "{table}"
    );
    assert!(
        table.contains("kill ") && table.contains("confirm-killed"),
        "{table}"
    );
    assert_eq!(node.live_address(), node.validator_address);
    // Nothing was written while the old process could still run.
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_deactivation_kills_a_wedged_story() {
    let last = signed(77, 0, HrsStep::Precommit, 5);
    let node = FakeNode::start(Role::Active, &last).await;
    // The unit looks stopped but the process lingers, holding its port, until SIGKILL.
    node.with(|n| n.stuck = true);
    let actuator = node.actuator_with(|s| s.stop_timeout = Some(0.5));
    let bound = actuator.options().max_deactivation();

    let report = actuator.deactivate().await.unwrap();
    println!("{}", report.format_steps());
    assert!(report.total <= bound, "{:?} > {bound:?}", report.total);
    assert!(report.final_state.same_signed_data(&last));
    assert_eq!(node.commands(), ["stop", "kill", "start"]);
    use Step::*;
    let mut expected = all_ok([CheckKeys]);
    expected.extend(stop_after_kill(false));
    expected.extend(all_ok([InstallPlaceholder, ReadFinalState, Start]));
    assert_eq!(steps(&report.steps), expected);
    assert!(
        report.steps[2].detail.contains("still answers"),
        "{}",
        report.steps[2].detail
    );
    node.assert_full_node_with_placeholder().await;
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_actuator_activation_waits_for_start_after_height() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let actuator = node.actuator_with(|_| {});

    let target = node.chain_height() + 8;
    let report = actuator
        .activate(
            ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None))
                .after_height(target, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let table = report.format_steps();
    println!("{table}");
    use Step::*;
    assert_eq!(
        steps(&report.steps)[..3],
        [
            (CheckKeys, StepOutcome::Ok),
            (WaitForHeight, StepOutcome::Ok),
            (Stop, StepOutcome::Ok)
        ]
    );
    assert!(
        report.steps[1].detail.contains(&format!(
            "waited for height {target} (double_sign_check_height)"
        )),
        "{table}"
    );
    // Story was stopped only once the chain had reached the height.
    let started_at = node.with(|n| n.start_height);
    assert!(started_at >= target, "{started_at} < {target}");
    assert_eq!(node.live_address(), node.validator_address);
    node.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_actuator_start_after_height_not_reached_touches_nothing() {
    let before = signed(10, 0, HrsStep::Precommit, 1);
    let node = FakeNode::start(Role::Passive, &before).await;
    let actuator = node.actuator_with(|_| {});

    let target = node.chain_height() + 1_000_000;
    let (result, took) = timed(
        actuator.activate(
            ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None))
                .after_height(target, Duration::from_millis(300)),
        ),
    )
    .await;
    let e = result.unwrap_err();
    let text = e.to_string();
    println!("{text}\n{}", e.format_steps().unwrap());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(e.node_condition(), Some(NodeCondition::Untouched));
    let f = activation_failure(e);
    assert_eq!(f.failed_step, Step::WaitForHeight);
    assert!(matches!(f.cause, StepError::HeightNotReached { height, .. } if height == target));
    assert!(
        text.contains(&format!("did not reach height {target}"))
            && text.contains("nothing was touched")
            && !text.contains("Rolled back"),
        "{text}"
    );
    assert_eq!(
        steps(&f.steps),
        [
            (Step::CheckKeys, StepOutcome::Ok),
            (Step::WaitForHeight, StepOutcome::Failed)
        ]
    );
    // Untouched: never stopped, nothing written, the placeholder still live and running.
    assert!(node.commands().is_empty());
    assert_eq!(node.live_address(), node.placeholder_address);
    assert!(node.state_on_disk().same_signed_data(&before));
    assert_eq!(node.with(|n| n.starts.len()), 1);
    assert!(node.with(|n| n.running.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_cancelled_activation_runs_to_completion() {
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);

    // The caller gives up at once; the activation must not stop half-way.
    let cut = tokio::time::timeout(
        Duration::from_millis(1),
        actuator.activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None))),
    )
    .await;
    assert!(cut.is_err());
    let validator = node.validator_address.clone();
    node.wait_for(|n| n.running.as_deref() == Some(validator.as_str()))
        .await;
    // Serialised: the next action waits for the first to finish, then runs.
    let report = actuator.deactivate().await.unwrap();
    assert_eq!(
        report.final_state.hrs(),
        unsigned(40, 0, HrsStep::None).hrs()
    );
    assert_eq!(node.live_address(), node.placeholder_address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_setup_rejects_a_store_of_another_file() {
    let node = FakeNode::start(Role::Passive, &SignState::initial()).await;
    let config = node.config();
    let other = node.dir.path().join("data/other_state.json");
    let store = Arc::new(StateStore::open(&other, None).unwrap());
    let e = Actuator::new(&config, store).unwrap_err();
    assert!(
        matches!(
            e,
            ActuatorError::Setup(SetupProblem::StatePathMismatch { .. })
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_key_store_readable_by_others_refused_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let node = FakeNode::start(Role::Passive, &signed(10, 0, HrsStep::Precommit, 1)).await;
    std::fs::set_permissions(&node.key_store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = node.config();
    let store = node.open_store();
    let actuator = node.actuator(&config, &store);
    let e = actuator
        .activate(ActivationPlan::unplanned(unsigned(40, 0, HrsStep::None)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ActuatorError::Refused(Refusal::KeyStore(_))),
        "{e}"
    );
    assert!(e.to_string().contains("chmod 600"), "{e}");
    assert!(node.commands().is_empty());
}
