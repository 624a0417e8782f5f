//! What an activation or deactivation did, step by step, and what state it left the node in.
//!
//! Every step is timed: an operator's switchover prints the table ([`format_steps`]) at the
//! end, and a failure carries the same table up to the failed step and through the rollback.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use syncguard_validator::SignState;

/// One step of an activation, a deactivation or a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Key store, live path and placeholder checked (nothing touched yet).
    CheckKeys,
    /// The local node reached the plan's `start_after_height` (nothing touched yet): CometBFT's
    /// `double_sign_check_height` would not start consensus any earlier.
    WaitForHeight,
    /// `stop_command` run.
    Stop,
    /// `status_command` exits non-zero and the CometBFT RPC refuses connections.
    ConfirmStopped,
    /// The stop was not confirmed within `stop_timeout`: `kill_command` run.
    Kill,
    /// After the kill: the stop confirmed the same way, within `kill_timeout`.
    ConfirmKilled,
    /// State file written: `max(local, backup, fence, handed)`.
    WriteState,
    /// The validator key copied from the key store to the live path.
    InstallValidatorKey,
    /// The placeholder key copied to the live path.
    InstallPlaceholder,
    /// Last resort: the live key file removed (the placeholder could not be written).
    RemoveLiveKey,
    /// The final state file read (what a handover gives the peer).
    ReadFinalState,
    /// `start_command` run.
    Start,
    /// `/status` answers with the validator's address and is caught up.
    VerifyAddress,
    /// The validator's signature appears in `/commit` within `verify_blocks` blocks.
    VerifySigning,
    /// Rollback: `stop_command` run again.
    RollbackStop,
    /// Rollback: the stop confirmed again.
    RollbackConfirmStopped,
    /// Rollback: `kill_command` run (the stop was not confirmed in time).
    RollbackKill,
    /// Rollback: the stop confirmed after the kill.
    RollbackConfirmKilled,
    /// Rollback: the placeholder key put back at the live path.
    RollbackInstallPlaceholder,
    /// Rollback: the live key removed (placeholder could not be written).
    RollbackRemoveLiveKey,
    /// Rollback: `story` started again as a full node.
    RollbackStart,
}

impl Step {
    /// Stable kebab-case name, as printed and serialised.
    pub fn name(self) -> &'static str {
        match self {
            Step::CheckKeys => "check-keys",
            Step::WaitForHeight => "wait-for-height",
            Step::Stop => "stop",
            Step::ConfirmStopped => "confirm-stopped",
            Step::Kill => "kill",
            Step::ConfirmKilled => "confirm-killed",
            Step::WriteState => "write-state",
            Step::InstallValidatorKey => "install-validator-key",
            Step::InstallPlaceholder => "install-placeholder",
            Step::RemoveLiveKey => "remove-live-key",
            Step::ReadFinalState => "read-final-state",
            Step::Start => "start",
            Step::VerifyAddress => "verify-address",
            Step::VerifySigning => "verify-signing",
            Step::RollbackStop => "rollback-stop",
            Step::RollbackConfirmStopped => "rollback-confirm-stopped",
            Step::RollbackKill => "rollback-kill",
            Step::RollbackConfirmKilled => "rollback-confirm-killed",
            Step::RollbackInstallPlaceholder => "rollback-install-placeholder",
            Step::RollbackRemoveLiveKey => "rollback-remove-live-key",
            Step::RollbackStart => "rollback-start",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Done.
    Ok,
    /// Done, with something the operator should look at (the detail says what).
    Warning,
    /// Not done (the detail says why).
    Failed,
    /// Not attempted (the detail says why).
    Skipped,
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepOutcome::Ok => "ok",
            StepOutcome::Warning => "WARNING",
            StepOutcome::Failed => "FAILED",
            StepOutcome::Skipped => "skipped",
        })
    }
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    /// Which step.
    pub step: Step,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub outcome: StepOutcome,
    /// One line for a human: what was observed or done, or why it failed.
    pub detail: String,
}

impl fmt::Display for StepTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<28} {:>9.3}s  {:<7}  {}",
            self.step.name(),
            self.duration.as_secs_f64(),
            self.outcome.to_string(),
            self.detail
        )
    }
}

/// The per-step table, one line per step, then the total.
pub fn format_steps(steps: &[StepTiming], total: Duration) -> String {
    let mut out = String::new();
    for s in steps {
        out.push_str(&s.to_string());
        out.push('\n');
    }
    out.push_str(&format!("{:<28} {:>9.3}s", "total", total.as_secs_f64()));
    out
}

/// The node's condition after an action that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "condition")]
pub enum NodeCondition {
    /// Nothing was touched: story, state and keys are as they were.
    Untouched,
    /// Running as a full node with the placeholder key. Safe: cannot sign as the validator.
    FullNode,
    /// The key at the live path is not the validator's (normally the placeholder), but story
    /// is not (known to be) running: a start failed or was skipped. Safe, but this node is not
    /// following the chain.
    SafeNotRunning,
    /// Story stopped, and the live key file removed because the placeholder could not be
    /// written. Safe; story must not be started until the placeholder is back.
    StoppedKeyRemoved,
    /// Story stopped, but the live key file may still be the validator key. Safe only while
    /// story stays stopped: do NOT start it before installing the placeholder by hand.
    StoppedKeyMayBeLive,
    /// The stop could not be confirmed: story may still be running.
    StopUnconfirmed {
        /// The live path holds the placeholder (or no key): a restart cannot sign.
        placeholder_installed: bool,
        /// Story may be running with the validator key, i.e. signing right now.
        may_be_signing: bool,
    },
}

impl NodeCondition {
    /// True when this node cannot sign as the validator now, and will not on its next start.
    pub fn is_safe(self) -> bool {
        match self {
            NodeCondition::Untouched
            | NodeCondition::FullNode
            | NodeCondition::SafeNotRunning
            | NodeCondition::StoppedKeyRemoved => true,
            NodeCondition::StoppedKeyMayBeLive => false,
            NodeCondition::StopUnconfirmed {
                placeholder_installed,
                may_be_signing,
            } => placeholder_installed && !may_be_signing,
        }
    }
}

impl fmt::Display for NodeCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeCondition::Untouched => {
                f.write_str("untouched: story, the state file and the live key are as they were")
            }
            NodeCondition::FullNode => f.write_str(
                "SAFE: running as a full node with the placeholder key (cannot sign as the validator)",
            ),
            NodeCondition::SafeNotRunning => f.write_str(
                "SAFE but NOT RUNNING: the key at the live path is not the validator's \
                 (placeholder), and story did not start again — start it by hand (it will run \
                 as a full node)",
            ),
            NodeCondition::StoppedKeyRemoved => f.write_str(
                "SAFE, STOPPED: the live key file was removed because the placeholder could not \
                 be written — fix the placeholder, install it at the live path, then start story",
            ),
            NodeCondition::StoppedKeyMayBeLive => f.write_str(
                "STOPPED, VALIDATOR KEY MAY BE LIVE: do NOT start story until the placeholder \
                 key is installed at the live path by hand",
            ),
            NodeCondition::StopUnconfirmed {
                placeholder_installed,
                may_be_signing,
            } => {
                f.write_str("STOP NOT CONFIRMED: story may still be running")?;
                if *may_be_signing {
                    f.write_str(
                        " WITH THE VALIDATOR KEY and may be SIGNING — stop it by hand NOW \
                         (no other node may take over until it is confirmed stopped)",
                    )?;
                }
                if *placeholder_installed {
                    f.write_str("; the placeholder key is at the live path, so its next start cannot sign")
                } else {
                    f.write_str(
                        "; the live key file could NOT be replaced — install the placeholder by hand",
                    )
                }
            }
        }
    }
}

/// A completed activation: the validator key is live, story runs with it, and its signature
/// was seen on chain. An activation that could not be verified is rolled back and is an error,
/// never a report.
#[derive(Debug, Clone)]
pub struct ActivationReport {
    /// The validator address (from the key store).
    pub validator_address: String,
    /// The state written before the start: `max(local, backup, fence, handed)`.
    pub state_written: SignState,
    /// Where the validator key was installed.
    pub live_key_path: PathBuf,
    /// What verified it: `/status` showed the validator's address and its signature appeared
    /// in `/commit` within `verify_blocks` blocks.
    pub verification: String,
    /// The height whose commit carried the validator's signature.
    pub signed_at_height: u64,
    /// Every step, timed.
    pub steps: Vec<StepTiming>,
    /// Wall time of the whole activation.
    pub total: Duration,
}

impl ActivationReport {
    /// The per-step table.
    pub fn format_steps(&self) -> String {
        format_steps(&self.steps, self.total)
    }
}

/// A completed deactivation: the node is fenced (placeholder at the live path, story stopped
/// and confirmed stopped before the swap) and `final_state` is what to hand over.
#[derive(Debug, Clone)]
pub struct DeactivationReport {
    /// The state file after the confirmed stop: the old holder's final state.
    pub final_state: SignState,
    /// Address of the placeholder now at the live path.
    pub placeholder_address: String,
    /// Whether story was started again as a full node. When false, the node is safe but not
    /// following the chain; `start_problem` says why.
    pub full_node_started: bool,
    /// Why the full node was not started (alert on it).
    pub start_problem: Option<String>,
    /// Every step, timed.
    pub steps: Vec<StepTiming>,
    /// Wall time of the whole deactivation.
    pub total: Duration,
}

impl DeactivationReport {
    /// The per-step table.
    pub fn format_steps(&self) -> String {
        format_steps(&self.steps, self.total)
    }
}

/// Collects timed steps as an action goes.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) steps: Vec<StepTiming>,
}

impl Recorder {
    /// Records `step`, begun at `since`, and logs it.
    pub(crate) fn push(
        &mut self,
        step: Step,
        since: std::time::Instant,
        outcome: StepOutcome,
        detail: impl Into<String>,
    ) {
        let timing = StepTiming {
            step,
            duration: since.elapsed(),
            outcome,
            detail: detail.into(),
        };
        match outcome {
            StepOutcome::Ok | StepOutcome::Skipped => tracing::info!(
                step = step.name(), outcome = %outcome, secs = timing.duration.as_secs_f64(),
                "{}", timing.detail
            ),
            StepOutcome::Warning | StepOutcome::Failed => tracing::error!(
                step = step.name(), outcome = %outcome, secs = timing.duration.as_secs_f64(),
                "{}", timing.detail
            ),
        }
        self.steps.push(timing);
    }
}
