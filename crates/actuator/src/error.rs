//! Errors, written for an operator woken at 3 a.m.: which step, which command or file, what
//! happened, and what state the node was left in.

use std::path::PathBuf;
use std::time::Duration;

use syncguard_health::SetupError;
use syncguard_validator::{KeyError, StoreError};
use thiserror::Error;

use crate::command::CommandError;
use crate::keyswap::KeySwapError;
use crate::report::{format_steps, NodeCondition, Step, StepOutcome, StepTiming};

/// Everything the actuator can fail with.
#[derive(Debug, Error)]
pub enum ActuatorError {
    /// The actuator cannot be built from this configuration.
    #[error("cannot set up the actuator: {0}")]
    Setup(#[from] SetupProblem),
    /// Activation refused before anything was touched.
    #[error(
        "activation REFUSED before anything was touched (story not stopped, no file written): {0}"
    )]
    Refused(#[from] Refusal),
    /// Activation failed and was rolled back (or, while waiting for a height, touched
    /// nothing); see the node condition.
    #[error("{0}")]
    ActivationFailed(Box<ActivationFailure>),
    /// Deactivation could not complete; see the node condition.
    #[error("{0}")]
    DeactivationFailed(Box<DeactivationFailure>),
    /// The task performing the action ended abnormally (a bug). Nothing is known.
    #[error(
        "the {action} task ended abnormally ({detail}); the node's condition is UNKNOWN — check \
         whether story runs and which key is at the live path by hand"
    )]
    TaskLost {
        /// `activation` or `deactivation`.
        action: &'static str,
        /// The join error.
        detail: String,
    },
}

impl ActuatorError {
    /// The per-step timings recorded before the error (empty for setup errors and refusals).
    pub fn steps(&self) -> &[StepTiming] {
        match self {
            ActuatorError::ActivationFailed(f) => &f.steps,
            ActuatorError::DeactivationFailed(f) => &f.steps,
            _ => &[],
        }
    }

    /// The per-step table of a failed action, for printing after the message.
    pub fn format_steps(&self) -> Option<String> {
        match self {
            ActuatorError::ActivationFailed(f) => Some(f.format_steps()),
            ActuatorError::DeactivationFailed(f) => Some(f.format_steps()),
            _ => None,
        }
    }

    /// What the node was left in. `None` when nothing is known (a lost task).
    pub fn node_condition(&self) -> Option<NodeCondition> {
        match self {
            ActuatorError::Setup(_) | ActuatorError::Refused(_) => Some(NodeCondition::Untouched),
            ActuatorError::ActivationFailed(f) => Some(f.node_left),
            ActuatorError::DeactivationFailed(f) => Some(f.node_left),
            ActuatorError::TaskLost { .. } => None,
        }
    }
}

/// A configuration the actuator will not work with.
#[derive(Debug, Error)]
pub enum SetupProblem {
    /// `story.comet_rpc_url` does not make a client.
    #[error("story.comet_rpc_url: {0}")]
    Rpc(#[from] SetupError),
    /// The state store was opened on another file than the one story reads.
    #[error(
        "the state store writes {} but story.validator_state_path is {} — writing a state file \
         story does not read would defeat the double-sign protection",
        .store.display(), .config.display()
    )]
    StatePathMismatch {
        /// The store's file.
        store: PathBuf,
        /// The configured state path.
        config: PathBuf,
    },
    /// A command is empty.
    #[error("{key} is empty")]
    EmptyCommand {
        /// The config key.
        key: &'static str,
    },
    /// No kill command is set and none can be derived from the stop command.
    #[error(
        "story.kill_command is not set and cannot be derived from story.stop_command `{stop_command}` \
         (only `systemctl stop <unit>` gives a default): a stop that is not confirmed could \
         never be escalated"
    )]
    NoKillCommand {
        /// `story.stop_command`.
        stop_command: String,
    },
    /// Temp key files of an earlier run could not be removed.
    #[error("cleaning up after an earlier run: {0}")]
    StaleTemps(#[source] KeySwapError),
}

/// Why an activation was refused before touching anything.
#[derive(Debug, Error)]
pub enum Refusal {
    /// The key store or the live path is the encrypted `.enc` form.
    #[error(
        "{} is an encrypted (password-protected) validator key: story would ask for its password \
         at start, so automatic failover cannot use it — install the plain \
         priv_validator_key.json (mode 0600) instead and remove the .enc file",
        .path.display()
    )]
    EncryptedKey {
        /// The `.enc` file.
        path: PathBuf,
    },
    /// The validator key at rest does not load or verify.
    #[error("the validator key store (story.validator_key_store) is unusable: {0}")]
    KeyStore(#[source] KeyError),
    /// The placeholder key does not load or verify (the rollback would have nothing to install).
    #[error(
        "the placeholder key (story.placeholder_key_path) is unusable, so a failed activation \
         could not be rolled back: {0}"
    )]
    Placeholder(#[source] KeyError),
    /// The placeholder is the validator key: a "full node" would sign.
    #[error(
        "the placeholder key {} has the validator's own address {address}: a passive node would \
         sign as the validator — generate a fresh placeholder (syncguard init)",
        .path.display()
    )]
    PlaceholderIsValidatorKey {
        /// The placeholder file.
        path: PathBuf,
        /// The shared address.
        address: String,
    },
}

/// Why one step failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// A configured command failed or timed out.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Story still looks alive after `stop_timeout`, and again after the kill command and
    /// `kill_timeout`.
    #[error("{0}")]
    StopNotConfirmed(Box<UnconfirmedStop>),
    /// The local node did not reach the plan's `start_after_height` in time.
    #[error(
        "the local node did not reach height {height} within {timeout:?} (CometBFT's \
         double_sign_check_height would refuse to start consensus before it); nothing was \
         touched; last seen: {last_seen}"
    )]
    HeightNotReached {
        /// `start_after_height`.
        height: u64,
        /// `start_after_timeout`.
        timeout: Duration,
        /// The last `/status` answer or error.
        last_seen: String,
    },
    /// Story started with the validator key, but it was not seen signing in time.
    #[error("not verified: {reason}")]
    NotVerified {
        /// What was (not) seen, and within what.
        reason: String,
    },
    /// The state store refused or failed.
    #[error("state file: {0}")]
    State(#[from] StoreError),
    /// The state file read back is lower than what had to be written.
    #[error(
        "state file {} holds {found} after the write, below the required {required}",
        .path.display()
    )]
    StateBelowRequired {
        /// The state file.
        path: PathBuf,
        /// What it holds.
        found: String,
        /// What it must hold at least.
        required: String,
    },
    /// A key file could not be swapped.
    #[error(transparent)]
    KeySwap(#[from] KeySwapError),
    /// A key file does not load (placeholder in a deactivation).
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The placeholder is the validator key.
    #[error("{0}")]
    Refusal(#[from] Refusal),
    /// An encrypted key sits where story looks for its key.
    #[error(
        "{} exists: story may load this encrypted validator key instead of the placeholder, so \
         it is not started again",
        .path.display()
    )]
    EncryptedLiveKey {
        /// The `.enc` file.
        path: PathBuf,
    },
}

/// Both attempts at a confirmed stop — the stop command, then the kill command — and what
/// was last seen after each.
#[derive(Debug, Error)]
#[error(
    "story not confirmed stopped (needs story.status_command to exit non-zero AND the CometBFT \
     RPC at {rpc_url} to refuse connections): not within {stop_timeout:?} of story.stop_command \
     ({stop_result}; last seen: {stop_seen}), nor within {kill_timeout:?} of story.kill_command \
     `{kill_command}` ({kill_result}; last seen: {kill_seen})"
)]
pub struct UnconfirmedStop {
    /// The RPC probed.
    pub rpc_url: String,
    /// `stop_timeout`.
    pub stop_timeout: Duration,
    /// How the stop command ended.
    pub stop_result: String,
    /// The last observation of both checks after the stop.
    pub stop_seen: String,
    /// The kill command run.
    pub kill_command: String,
    /// `kill_timeout`.
    pub kill_timeout: Duration,
    /// How the kill command ended.
    pub kill_result: String,
    /// The last observation of both checks after the kill.
    pub kill_seen: String,
}

/// A failed, rolled-back activation.
#[derive(Debug)]
pub struct ActivationFailure {
    /// The step that failed.
    pub failed_step: Step,
    /// Why.
    pub cause: StepError,
    /// What the rollback achieved.
    pub node_left: NodeCondition,
    /// Steps of the activation and of the rollback, timed.
    pub steps: Vec<StepTiming>,
    /// Wall time including the rollback.
    pub total: Duration,
}

impl std::fmt::Display for ActivationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node_left == NodeCondition::Untouched {
            write!(
                f,
                "activation FAILED at step `{}`: {}. Node left {}.",
                self.failed_step, self.cause, self.node_left
            )?;
        } else {
            write!(
                f,
                "activation FAILED at step `{}`: {}. Rolled back; node left {}.",
                self.failed_step, self.cause, self.node_left
            )?;
        }
        write_other_failures(f, &self.steps, self.failed_step)?;
        Ok(())
    }
}

impl ActivationFailure {
    /// The per-step table (activation and rollback).
    pub fn format_steps(&self) -> String {
        format_steps(&self.steps, self.total)
    }
}

impl std::error::Error for ActivationFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// A deactivation that could not complete.
#[derive(Debug)]
pub struct DeactivationFailure {
    /// The step that failed.
    pub failed_step: Step,
    /// Why.
    pub cause: StepError,
    /// Where the node stands.
    pub node_left: NodeCondition,
    /// Steps, timed.
    pub steps: Vec<StepTiming>,
    /// Wall time.
    pub total: Duration,
}

impl std::fmt::Display for DeactivationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deactivation FAILED at step `{}`: {}. Node left {}. There is no final state to \
             hand over.",
            self.failed_step, self.cause, self.node_left,
        )?;
        write_other_failures(f, &self.steps, self.failed_step)
    }
}

/// Every other failed step (a failed stop command, rollback problems), on the same line.
fn write_other_failures(
    f: &mut std::fmt::Formatter<'_>,
    steps: &[StepTiming],
    failed_step: Step,
) -> std::fmt::Result {
    let others: Vec<String> = steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Failed && s.step != failed_step)
        .map(|s| format!("`{}`: {}", s.step, s.detail))
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        write!(f, " Also failed: {}.", others.join("; "))
    }
}

impl DeactivationFailure {
    /// The per-step table.
    pub fn format_steps(&self) -> String {
        format_steps(&self.steps, self.total)
    }
}

impl std::error::Error for DeactivationFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}
