//! How a Story node starts and stops signing: the async shell that performs the failover
//! state machine's Activate and Deactivate actions. It makes no decision about *whether* to
//! activate (the pure state machine does); it makes sure that *how* it happens can never
//! leave two signers (S1), a lowered or torn state file (S2, S3), or a key anywhere but at
//! rest and at the live path (S5). DESIGN.md §3, §5, §7.
//!
//! Modules:
//! - `actuator.rs` — [`Actuator`], [`ActivationPlan`], [`ActuatorOptions`]: the activation
//!   (check keys → wait for a height → stop → confirm stopped → write state → install key →
//!   start → verify, rolled back to a full node unless verified) and the deactivation (stop →
//!   confirm → placeholder → read final state → start as a full node); a stop not confirmed
//!   in time is escalated to `kill_command`. Worst-case durations:
//!   [`ActuatorOptions::max_activation`], [`ActuatorOptions::max_deactivation`].
//! - `command.rs` — running `start_command` / `stop_command` / `kill_command` /
//!   `status_command` with `sh -c` under a timeout; exit status and a stderr excerpt for the
//!   errors.
//! - `keyswap.rs` — atomic install of a key at the live path (temp + fsync + rename + dir
//!   fsync, mode 0600, read back and address-checked), the `.enc` check, last-resort removal.
//! - `verify.rs` — after the start: `/status` shows the validator's address, then its
//!   signature in `/commit` within `verify_blocks` blocks, all within `verify_timeout`.
//! - `report.rs` — [`Step`], [`StepTiming`], [`ActivationReport`], [`DeactivationReport`],
//!   [`NodeCondition`]: every step timed, for the operator's table.
//! - `error.rs` — [`ActuatorError`] and the per-step causes: which step, which command or
//!   file, what happened, what state the node was left in.
//!
//! Once begun, an action runs to its end in a task of its own (dropping the future does not
//! stop it half-way), and actions on one [`Actuator`] are serialised. An error's `Display` is
//! one summary line naming the step, the cause and the [`NodeCondition`] left; its per-step
//! table comes from [`ActuatorError::format_steps`].
//!
//! Unix only (`sh`, permission modes, directory fsync).

mod actuator;
pub mod command;
mod error;
pub mod keyswap;
mod report;
mod verify;

pub use actuator::{ActivationPlan, Actuator, ActuatorOptions};
pub use command::{CommandError, CommandKind};
pub use error::{
    ActivationFailure, ActuatorError, DeactivationFailure, Refusal, SetupProblem, StepError,
    UnconfirmedStop,
};
pub use keyswap::KeySwapError;
pub use report::{
    format_steps, ActivationReport, DeactivationReport, NodeCondition, Step, StepOutcome,
    StepTiming,
};
