//! [`Actuator`]: performs the failover state machine's Activate and Deactivate actions on the
//! local node. It decides nothing; it does what it is told, safely, and says how it went.
//!
//! Activation (DESIGN §5): check keys → wait for the plan's `start_after_height` (optional;
//! nothing touched) → stop → confirm stopped → write state `max(local, backup, fence,
//! handed)` → install the validator key → start → verify. It is finished only when verified:
//! the validator's signature in a commit at or above the height written, within
//! `verify_timeout` of the start. Any failure from the stop on — an unverified start included —
//! rolls back to a full node with the placeholder key (stop → confirm → kill if needed →
//! placeholder → start) and is an error. A wait for a height that times out touches nothing.
//!
//! Deactivation: stop → confirm stopped → install the placeholder → read the final state →
//! start as a full node.
//!
//! A stop is never assumed: `status_command` must exit non-zero AND the RPC refuse
//! connections. When that is not seen within `stop_timeout`, `kill_command` runs and the same
//! confirmation gets `kill_timeout`; only then does the stop fail, and nothing that needs a
//! stopped story (state write, key install, final state) happens.
//!
//! Both run in a task of their own: once begun, they finish (or roll back) even if the
//! caller stops waiting, because half an activation is the one state never to leave behind.
//! They are serialised: a second call waits for the first.
//!
//! # Worst-case durations
//!
//! Every await is bounded: a command by its timeout (plus [`command::MAX_OVERRUN`] to reap
//! it), an RPC call by `rpc_timeout` and by the deadline of its loop, every loop by a
//! deadline. A stop phase — the stop command and its confirmation — ends by `stop_timeout`,
//! the kill phase by `kill_timeout`, each plus at most the timing model's
//! `ACTUATOR_OVERRUN` (the reap of a cut command and one last short probe). So
//!
//! - a **confirmed stop** takes at most `stop_timeout + kill_timeout + 2 × overrun`
//!   ([`ActuatorOptions::max_confirmed_stop`]: the model's `stop_bound`);
//! - a **deactivation** at most that plus the full node's start command
//!   ([`ActuatorOptions::max_deactivation`]);
//! - an **activation** at most two of those plus `verify_timeout` — its own stop, start and
//!   verification, then the rollback's stop and start ([`ActuatorOptions::max_activation`]) —
//!   plus the plan's `start_after_timeout` when it waits for a height
//!   ([`ActuatorOptions::max_activation_of`]).
//!
//! Not counted: the local file operations (state write, key swaps: fsyncs, milliseconds), and
//! the wait for an earlier action on the same actuator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncguard_config::Config;
use syncguard_health::{CometClient, ProbeErrorKind};
use syncguard_validator::{KeyErrorKind, SignState, StateStore, StoreError, ValidatorKey};
use tracing::{error, info, warn};

use crate::command::{self, CommandKind, CommandOutput};
use crate::error::{
    ActivationFailure, ActuatorError, DeactivationFailure, Refusal, SetupProblem, StepError,
    UnconfirmedStop,
};
use crate::keyswap;
use crate::report::{
    ActivationReport, DeactivationReport, NodeCondition, Recorder, Step, StepOutcome,
};
use crate::verify::{self, VerifyParams};

/// The last confirmation probe after a phase's deadline (within the timing model's
/// `ACTUATOR_OVERRUN` with the reap of a cut command).
const LAST_PROBE: Duration = Duration::from_millis(100);

/// What an activation must write besides the local state and the backup (S3), and what it
/// must wait for before touching anything.
#[derive(Debug, Clone, Default)]
pub struct ActivationPlan {
    /// Unplanned failover: the fence `(H + 2, 0, 0)` computed by the caller from its chain view.
    pub fence: Option<SignState>,
    /// Planned handover: the old holder's final state, handed over.
    pub handed_state: Option<SignState>,
    /// Wait, touching nothing, until the local node's `/status` shows at least this height.
    /// CometBFT's `double_sign_check_height = N` refuses to start consensus while the key
    /// signed in the last N stored commits — exactly the case of a switchover target seconds
    /// after the old holder stopped.
    pub start_after_height: Option<u64>,
    /// Bound of that wait; on timeout the activation fails with nothing touched.
    pub start_after_timeout: Duration,
}

impl ActivationPlan {
    /// An unplanned failover with this fence.
    pub fn unplanned(fence: SignState) -> Self {
        ActivationPlan {
            fence: Some(fence),
            ..ActivationPlan::default()
        }
    }

    /// A planned handover with the old holder's final state.
    pub fn handover(handed_state: SignState) -> Self {
        ActivationPlan {
            handed_state: Some(handed_state),
            ..ActivationPlan::default()
        }
    }

    /// The same plan, first waiting up to `timeout` for the local node to reach `height`.
    pub fn after_height(self, height: u64, timeout: Duration) -> Self {
        ActivationPlan {
            start_after_height: Some(height),
            start_after_timeout: timeout,
            ..self
        }
    }

    /// How long the wait for `start_after_height` may take (zero without one).
    pub fn max_wait(&self) -> Duration {
        match self.start_after_height {
            Some(_) => self.start_after_timeout,
            None => Duration::ZERO,
        }
    }

    fn candidates(&self) -> Vec<SignState> {
        self.fence
            .iter()
            .chain(self.handed_state.iter())
            .cloned()
            .collect()
    }
}

/// Timeouts and bounds. [`ActuatorOptions::from_config`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActuatorOptions {
    /// `story.stop_timeout`: bound of the stop command, and of the wait for the confirmed stop.
    pub stop_timeout: Duration,
    /// Bound of the kill command, and of the wait for the confirmed stop after it.
    pub kill_timeout: Duration,
    /// Bound of the start command.
    pub start_timeout: Duration,
    /// Bound of one `status_command` run.
    pub status_command_timeout: Duration,
    /// Pause between two polls (stop confirmation, height wait, verification).
    pub poll_interval: Duration,
    /// Per-call timeout of the CometBFT RPC.
    pub rpc_timeout: Duration,
    /// `story.verify_blocks`.
    pub verify_blocks: u32,
    /// From the start of story with the validator key: how long its signature may take to
    /// appear on chain (node up, caught up, signing). Past it, the activation is rolled back.
    pub verify_timeout: Duration,
}

impl ActuatorOptions {
    /// From the timing model (`docs/TIMING.md`): the stop, kill and start timeouts, the
    /// verification deadline (`start_timeout + (verify_blocks + 2) × 2 × block_interval`)
    /// and the RPC timeout. With the node's `double_sign_check_height` use
    /// [`ActuatorOptions::from_timing`].
    pub fn from_config(config: &Config) -> Self {
        Self::from_timing(&config.timing())
    }

    /// From a derived timing.
    pub fn from_timing(t: &syncguard_timing::Timing) -> Self {
        let start_timeout = t.start_timeout;
        ActuatorOptions {
            stop_timeout: t.stop_timeout,
            kill_timeout: t.kill_timeout,
            start_timeout,
            status_command_timeout: Duration::from_secs(5),
            // A few probes fit in the shortest stop window.
            poll_interval: (t.stop_timeout.min(t.kill_timeout) / 4)
                .clamp(Duration::from_millis(20), Duration::from_millis(250)),
            rpc_timeout: t.rpc_timeout,
            verify_blocks: t.verify_blocks,
            verify_timeout: t.verify_deadline,
        }
    }

    /// The longest a confirmed stop can take: the stop and its confirmation within
    /// `stop_timeout`, the kill and its confirmation within `kill_timeout`, each plus the reap
    /// of a command cut at its deadline (module docs).
    pub fn max_confirmed_stop(&self) -> Duration {
        self.stop_timeout + self.kill_timeout + syncguard_timing::ACTUATOR_OVERRUN * 2
    }

    /// The longest a deactivation can take: a confirmed stop (with the kill) and the start of
    /// the full node.
    pub fn max_deactivation(&self) -> Duration {
        self.max_confirmed_stop() + command_bound(self.start_timeout)
    }

    /// The longest an activation without a height wait can take: its confirmed stop, start
    /// and verification, then the rollback's confirmed stop and start.
    pub fn max_activation(&self) -> Duration {
        self.max_deactivation() * 2 + self.verify_timeout
    }

    /// The longest this plan's activation can take: [`Self::max_activation`] plus its wait
    /// for a height.
    pub fn max_activation_of(&self, plan: &ActivationPlan) -> Duration {
        self.max_activation() + plan.max_wait()
    }
}

/// The longest one command run with `timeout` can take.
fn command_bound(timeout: Duration) -> Duration {
    timeout + command::MAX_OVERRUN
}

/// Starts and stops signing on the local node. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Actuator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Actuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actuator")
            .field("live_key", &self.inner.live_key)
            .field("key_store", &self.inner.key_store)
            .field("placeholder", &self.inner.placeholder)
            .field("state", &self.inner.store.path())
            .field("rpc", &self.inner.rpc_url)
            .finish()
    }
}

struct Inner {
    live_key: PathBuf,
    key_store: PathBuf,
    placeholder: PathBuf,
    start_command: String,
    stop_command: String,
    kill_command: String,
    status_command: String,
    rpc_url: String,
    comet: CometClient,
    store: Arc<StateStore>,
    options: ActuatorOptions,
    /// One action at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Actuator {
    /// Builds the actuator with [`ActuatorOptions::from_config`]. `store` must be the store of
    /// the state file `story` reads (`story.validator_state_path`).
    pub fn new(config: &Config, store: Arc<StateStore>) -> Result<Self, ActuatorError> {
        Self::with_options(config, store, ActuatorOptions::from_config(config))
    }

    /// Builds the actuator with explicit options (tests, `syncguard switchover` flags).
    pub fn with_options(
        config: &Config,
        store: Arc<StateStore>,
        options: ActuatorOptions,
    ) -> Result<Self, ActuatorError> {
        let story = &config.story;
        let state_path = story.state_path();
        if !same_path(store.path(), &state_path) {
            return Err(SetupProblem::StatePathMismatch {
                store: store.path().to_path_buf(),
                config: state_path,
            }
            .into());
        }
        let kill_command = story
            .kill_command()
            .ok_or_else(|| SetupProblem::NoKillCommand {
                stop_command: story.stop_command.clone(),
            })?;
        for (key, cmd) in [
            ("story.start_command", &story.start_command),
            ("story.stop_command", &story.stop_command),
            ("story.kill_command", &kill_command),
            ("story.status_command", &story.status_command),
        ] {
            if cmd.trim().is_empty() {
                return Err(SetupProblem::EmptyCommand { key }.into());
            }
        }
        let comet = CometClient::new(&story.comet_rpc_url, options.rpc_timeout)
            .map_err(SetupProblem::Rpc)?;
        let live_key = story.key_path();
        // A temp file left by a killed run may hold the validator key; the state lock held
        // by `store` means no other SyncGuard is writing next to it.
        let removed = keyswap::remove_stale_temps(&live_key).map_err(SetupProblem::StaleTemps)?;
        if removed > 0 {
            warn!(
                count = removed,
                dir = %live_key.display(),
                "removed temp key files left by an interrupted key swap"
            );
        }
        Ok(Actuator {
            inner: Arc::new(Inner {
                live_key,
                key_store: story.validator_key_store.clone(),
                placeholder: story.placeholder_key_path.clone(),
                start_command: story.start_command.clone(),
                stop_command: story.stop_command.clone(),
                kill_command,
                status_command: story.status_command.clone(),
                rpc_url: comet.base_url().to_string(),
                comet,
                store,
                options,
                busy: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &ActuatorOptions {
        &self.inner.options
    }

    /// The live key path `story` reads.
    pub fn live_key_path(&self) -> &Path {
        &self.inner.live_key
    }

    /// Makes this node the signer: see the module docs for the steps.
    ///
    /// `Ok` means the validator key is live, story started and its signature was seen on
    /// chain. `Err(Refused)` means nothing was touched; `Err(ActivationFailed)` means it was
    /// rolled back (or, when the wait for a height ran out, nothing was touched) — its
    /// `node_left` says how far. Ends within [`ActuatorOptions::max_activation_of`] the plan.
    pub async fn activate(&self, plan: ActivationPlan) -> Result<ActivationReport, ActuatorError> {
        let inner = self.inner.clone();
        match tokio::spawn(async move { inner.activate(plan).await }).await {
            Ok(result) => result,
            Err(e) => Err(ActuatorError::TaskLost {
                action: "activation",
                detail: e.to_string(),
            }),
        }
    }

    /// Makes this node stop signing and returns its final state for the handover.
    ///
    /// `Ok` means story was confirmed stopped before the placeholder went in, so
    /// `final_state` is final. An unconfirmed stop (even after the kill command) is an error
    /// (the key may still be live), but the placeholder is installed anyway so that the next
    /// start cannot sign. Ends within [`ActuatorOptions::max_deactivation`].
    pub async fn deactivate(&self) -> Result<DeactivationReport, ActuatorError> {
        let inner = self.inner.clone();
        match tokio::spawn(async move { inner.deactivate().await }).await {
            Ok(result) => result,
            Err(e) => Err(ActuatorError::TaskLost {
                action: "deactivation",
                detail: e.to_string(),
            }),
        }
    }
}

/// Equal paths, or the same file name in the same (canonical) directory.
fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    let canon = |p: &Path| -> Option<PathBuf> {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty())?;
        Some(dir.canonicalize().ok()?.join(p.file_name()?))
    };
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

fn command_detail(out: &CommandOutput) -> String {
    if out.stderr.is_empty() {
        out.describe_status()
    } else {
        format!("{}; stderr: \"{}\"", out.describe_status(), out.stderr)
    }
}

fn describe_state(s: &Option<SignState>) -> String {
    match s {
        Some(s) => s.hrs().to_string(),
        None => "none".to_string(),
    }
}

/// A failed step of the forward path, with what it failed with.
type Failed = (Step, StepError);

/// What step 1 loaded and verified.
struct CheckedKeys {
    validator: ValidatorKey,
    placeholder: ValidatorKey,
    detail: String,
    /// The key store is readable by group or others.
    warning: bool,
}

impl Inner {
    /// Step 1: everything an activation needs, loaded and verified, before anything moves.
    fn check_keys(&self) -> Result<CheckedKeys, Refusal> {
        if let Some(path) = keyswap::encrypted_form(&self.live_key) {
            return Err(Refusal::EncryptedKey { path });
        }
        // The key that will sign: refused when group/others can read it, or it is a symlink.
        let validator = ValidatorKey::load_secret(&self.key_store).map_err(|e| match e.kind {
            KeyErrorKind::Encrypted => Refusal::EncryptedKey { path: e.path },
            _ => Refusal::KeyStore(e),
        })?;
        let placeholder = ValidatorKey::load(&self.placeholder).map_err(Refusal::Placeholder)?;
        if placeholder.address() == validator.address() {
            return Err(Refusal::PlaceholderIsValidatorKey {
                path: self.placeholder.clone(),
                address: validator.address_hex(),
            });
        }
        let mut detail = format!(
            "validator key {} at rest in {}, placeholder {}",
            validator.address_hex(),
            self.key_store.display(),
            placeholder.address_hex()
        );
        let loose = loose_mode(&self.key_store);
        if let Some(mode) = loose {
            detail.push_str(&format!(
                "; WARNING: {} has mode {mode:o}, should be 600",
                self.key_store.display()
            ));
        }
        Ok(CheckedKeys {
            validator,
            placeholder,
            detail,
            warning: loose.is_some(),
        })
    }

    async fn activate(&self, plan: ActivationPlan) -> Result<ActivationReport, ActuatorError> {
        let _one_at_a_time = self.busy.lock().await;
        let begun = Instant::now();
        let mut rec = Recorder::default();

        let t = Instant::now();
        let CheckedKeys {
            validator,
            placeholder,
            detail,
            warning,
        } = match self.check_keys() {
            Ok(keys) => keys,
            Err(refusal) => {
                error!("activation refused, nothing touched: {refusal}");
                return Err(refusal.into());
            }
        };
        let outcome = if warning {
            StepOutcome::Warning
        } else {
            StepOutcome::Ok
        };
        rec.push(Step::CheckKeys, t, outcome, detail);
        let address = validator.address_hex();

        // Before anything moves: stopping a full node whose consensus would refuse to start
        // (double_sign_check_height) would only cost a rollback.
        if let Some(height) = plan.start_after_height {
            if let Err(cause) = self
                .wait_for_height(height, plan.start_after_timeout, &mut rec)
                .await
            {
                return action_failed(
                    Action::Activation,
                    rec,
                    begun,
                    Step::WaitForHeight,
                    cause,
                    NodeCondition::Untouched,
                );
            }
        }

        // Steps 2–7. `key_exposed` turns true once the validator key may be at the live path.
        let mut key_exposed = false;
        let forward = self
            .activate_steps(&plan, &validator, &mut rec, &mut key_exposed)
            .await;
        match forward {
            Ok((written, verified)) => {
                info!(%address, "activation complete and verified: {}", verified.reason);
                Ok(ActivationReport {
                    validator_address: address,
                    state_written: written,
                    live_key_path: self.live_key.clone(),
                    verification: verified.reason,
                    signed_at_height: verified.signed_at,
                    steps: rec.steps,
                    total: begun.elapsed(),
                })
            }
            Err((failed_step, cause)) => {
                error!(step = %failed_step, "activation failed, rolling back: {cause}");
                // The stop and the kill have both been tried and not confirmed: trying them
                // again would only double the time the promotion takes.
                let stop_again = !matches!(cause, StepError::StopNotConfirmed(_));
                let node_left = self
                    .roll_back(&mut rec, &placeholder, &address, key_exposed, stop_again)
                    .await;
                action_failed(
                    Action::Activation,
                    rec,
                    begun,
                    failed_step,
                    cause,
                    node_left,
                )
            }
        }
    }

    /// Waits, touching nothing, until the local node's `/status` shows `height`; every call
    /// is cut off at the deadline, so this ends within `timeout`.
    async fn wait_for_height(
        &self,
        height: u64,
        timeout: Duration,
        rec: &mut Recorder,
    ) -> Result<(), StepError> {
        let t = Instant::now();
        let deadline = t + timeout;
        let mut last_seen = verify::NO_ANSWER.to_string();
        loop {
            match verify::before(deadline, self.comet.status()).await {
                None => break,
                Some(Ok(st)) if st.latest_block_height >= height => {
                    rec.push(
                        Step::WaitForHeight,
                        t,
                        StepOutcome::Ok,
                        format!(
                            "waited for height {height} (double_sign_check_height): {:.1} s; \
                             the local node is at height {}",
                            t.elapsed().as_secs_f64(),
                            st.latest_block_height
                        ),
                    );
                    return Ok(());
                }
                Some(Ok(st)) => {
                    last_seen = format!("the local node at height {}", st.latest_block_height)
                }
                Some(Err(e)) => last_seen = e,
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(self.options.poll_interval.min(deadline - now)).await;
        }
        let e = StepError::HeightNotReached {
            height,
            timeout,
            last_seen,
        };
        rec.push(Step::WaitForHeight, t, StepOutcome::Failed, e.to_string());
        Err(e)
    }

    /// Steps 2–7 of an activation. Returns the state written and what verified it.
    async fn activate_steps(
        &self,
        plan: &ActivationPlan,
        validator: &ValidatorKey,
        rec: &mut Recorder,
        key_exposed: &mut bool,
    ) -> Result<(SignState, verify::Verified), Failed> {
        // Never proceed on an unconfirmed stop: nothing below may happen while story could be
        // running.
        self.stop_confirmed(STOP_STEPS, rec).await?;

        let t = Instant::now();
        let written = match self.write_state(plan) {
            Ok((written, detail, warning)) => {
                let outcome = if warning {
                    StepOutcome::Warning
                } else {
                    StepOutcome::Ok
                };
                rec.push(Step::WriteState, t, outcome, detail);
                written
            }
            Err(e) => {
                rec.push(Step::WriteState, t, StepOutcome::Failed, e.to_string());
                return Err((Step::WriteState, e));
            }
        };

        let t = Instant::now();
        *key_exposed = true;
        match keyswap::install(validator, &self.live_key) {
            Ok(addr) => rec.push(
                Step::InstallValidatorKey,
                t,
                StepOutcome::Ok,
                format!(
                    "validator key {addr} installed at {} (mode 600)",
                    self.live_key.display()
                ),
            ),
            Err(e) => {
                rec.push(
                    Step::InstallValidatorKey,
                    t,
                    StepOutcome::Failed,
                    e.to_string(),
                );
                return Err((Step::InstallValidatorKey, e.into()));
            }
        }

        self.start(Step::Start, rec)
            .await
            .map_err(|e| (Step::Start, e))?;

        // Step 7: finished only when seen signing; otherwise the caller rolls back.
        let params = VerifyParams {
            timeout: self.options.verify_timeout,
            blocks: self.options.verify_blocks,
            poll: self.options.poll_interval,
        };
        let min_height = u64::try_from(written.hrs().height).unwrap_or(0);
        let verified = verify::verify(
            &self.comet,
            &validator.address_hex(),
            min_height,
            &params,
            rec,
        )
        .await
        .map_err(|(step, reason)| (step, StepError::NotVerified { reason }))?;
        Ok((written, verified))
    }

    /// S3 with S2: `max(local, backup, fence, handed)` written while story is stopped, then
    /// read back — story signs from what is on disk, so that is what must be high enough.
    /// Returns the state, a detail line, and whether there is a warning.
    fn write_state(&self, plan: &ActivationPlan) -> Result<(SignState, String, bool), StepError> {
        let candidates = plan.candidates();
        // For the detail line only; `write_merged` reads them again under its own rules.
        let local = self.store.read_if_exists().ok().flatten();
        let backup = self.store.read_backup().ok().flatten();
        let mut warning = None;
        let written = match self.store.write_merged(&candidates) {
            Ok(w) => w,
            Err(StoreError::BackupFailed { path, source }) => {
                // The state file itself is written; the backup is this host's memory only.
                warning = Some(format!(
                    "; WARNING: the backup {} could not be updated: {source}",
                    path.display()
                ));
                self.store.read()?
            }
            Err(e) => return Err(e.into()),
        };
        let on_disk = self.store.read()?;
        let required = candidates
            .iter()
            .map(SignState::hrs)
            .chain(std::iter::once(written.hrs()))
            .max()
            .unwrap_or(written.hrs());
        if on_disk.hrs() < required {
            return Err(StepError::StateBelowRequired {
                path: self.store.path().to_path_buf(),
                found: on_disk.hrs().to_string(),
                required: required.to_string(),
            });
        }
        let mut detail = format!(
            "{} holds {} = max(local {}, backup {}, fence {}, handed {})",
            self.store.path().display(),
            on_disk.hrs(),
            describe_state(&local),
            describe_state(&backup),
            describe_state(&plan.fence),
            describe_state(&plan.handed_state),
        );
        let warned = warning.is_some();
        if let Some(w) = warning {
            detail.push_str(&w);
        }
        Ok((on_disk, detail, warned))
    }

    async fn start(&self, step: Step, rec: &mut Recorder) -> Result<(), StepError> {
        self.run_step(
            step,
            rec,
            CommandKind::Start,
            &self.start_command,
            self.options.start_timeout,
        )
        .await
        .map(|_| ())
    }

    /// Runs one command as one timed step of the report; `Ok` carries how it ended.
    async fn run_step(
        &self,
        step: Step,
        rec: &mut Recorder,
        kind: CommandKind,
        command_line: &str,
        timeout: Duration,
    ) -> Result<String, StepError> {
        let t = Instant::now();
        match command::run_checked(kind, command_line, timeout).await {
            Ok(out) => {
                let detail = command_detail(&out);
                rec.push(step, t, StepOutcome::Ok, detail.clone());
                Ok(detail)
            }
            Err(e) => {
                rec.push(step, t, StepOutcome::Failed, e.to_string());
                Err(e.into())
            }
        }
    }

    /// Stop → confirm within `stop_timeout`; when not confirmed: kill → confirm within
    /// `kill_timeout`. A failed stop or kill command ends nothing: only the confirmation
    /// decides. `Err` is `StopNotConfirmed` at `steps.confirm_killed`.
    async fn stop_confirmed(&self, steps: StopSteps, rec: &mut Recorder) -> Result<(), Failed> {
        // One deadline for the command and its confirmation: the timing model counts
        // `stop_timeout` (then `kill_timeout`) for both together.
        let deadline = Instant::now() + self.options.stop_timeout;
        let stop_result = self
            .run_step(
                steps.stop,
                rec,
                CommandKind::Stop,
                &self.stop_command,
                self.options.stop_timeout,
            )
            .await;
        let t = Instant::now();
        let stop_seen = match self.confirm_stopped(deadline).await {
            Ok(seen) => {
                rec.push(steps.confirm, t, StepOutcome::Ok, seen);
                if let Err(e) = &stop_result {
                    warn!("the stop command failed ({e}) but the stop was confirmed");
                }
                return Ok(());
            }
            Err(seen) => seen,
        };
        rec.push(
            steps.confirm,
            t,
            StepOutcome::Warning,
            format!(
                "not confirmed within {:?} (last seen: {stop_seen}): escalating to \
                 story.kill_command",
                self.options.stop_timeout
            ),
        );
        let deadline = Instant::now() + self.options.kill_timeout;
        let kill_result = self
            .run_step(
                steps.kill,
                rec,
                CommandKind::Kill,
                &self.kill_command,
                self.options.kill_timeout,
            )
            .await;
        let t = Instant::now();
        match self.confirm_stopped(deadline).await {
            Ok(seen) => {
                rec.push(steps.confirm_killed, t, StepOutcome::Ok, seen);
                warn!("story did not stop within the stop timeout and was killed; stop confirmed");
                Ok(())
            }
            Err(kill_seen) => {
                let ended = |r: Result<String, StepError>| match r {
                    Ok(detail) => detail,
                    Err(e) => e.to_string(),
                };
                let e = StepError::StopNotConfirmed(Box::new(UnconfirmedStop {
                    rpc_url: self.rpc_url.clone(),
                    stop_timeout: self.options.stop_timeout,
                    stop_result: ended(stop_result),
                    stop_seen,
                    kill_command: self.kill_command.clone(),
                    kill_timeout: self.options.kill_timeout,
                    kill_result: ended(kill_result),
                    kill_seen,
                }));
                rec.push(steps.confirm_killed, t, StepOutcome::Failed, e.to_string());
                Err((steps.confirm_killed, e))
            }
        }
    }

    /// Polls until `status_command` exits non-zero AND the RPC refuses connections, until
    /// `deadline` (one probe at least, itself bounded by a poll interval when the deadline
    /// has passed). Either alone is not enough: a unit can look inactive while its process
    /// lingers, and a port can close while the process still holds the key. `Ok` and `Err`
    /// carry the last observation of both.
    async fn confirm_stopped(&self, deadline: Instant) -> Result<String, String> {
        loop {
            // Past the deadline one last, short probe (the timing model's overrun).
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(self.options.poll_interval.min(LAST_PROBE));
            let (status_stopped, status_seen) = self.status_says_stopped(remaining).await;
            let (rpc_stopped, rpc_seen) =
                match tokio::time::timeout(remaining, self.rpc_refuses()).await {
                    Ok(seen) => seen,
                    Err(_) => (false, "RPC did not answer in time".to_string()),
                };
            let seen = format!("{status_seen}; {rpc_seen}");
            if status_stopped && rpc_stopped {
                return Ok(seen);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(seen);
            }
            tokio::time::sleep(self.options.poll_interval.min(deadline - now)).await;
        }
    }

    async fn status_says_stopped(&self, remaining: Duration) -> (bool, String) {
        let limit = self.options.status_command_timeout.min(remaining);
        match command::run(CommandKind::Status, &self.status_command, limit).await {
            Ok(out) => match out.code() {
                Some(0) => (false, "story.status_command exits 0 (story running)".into()),
                // The shell's own "cannot execute" / "not found": a broken status command
                // must never read as "stopped".
                Some(code @ (126 | 127)) => (
                    false,
                    format!(
                        "story.status_command cannot run its program (exit {code}: {}) — \
                         not taken as 'stopped'",
                        out.stderr
                    ),
                ),
                Some(code) => (true, format!("story.status_command exits {code}")),
                None => (
                    false,
                    format!("story.status_command was {}", out.describe_status()),
                ),
            },
            Err(e) => (false, e.to_string()),
        }
    }

    async fn rpc_refuses(&self) -> (bool, String) {
        match self.comet.status().await {
            Err(e) if e.kind() == ProbeErrorKind::ConnectionRefused => {
                (true, format!("RPC {} refuses connections", self.rpc_url))
            }
            Err(e) => (false, format!("RPC not refusing yet: {e}")),
            Ok(st) => (
                false,
                format!(
                    "RPC {} still answers (address {}, height {})",
                    self.rpc_url, st.validator_address, st.latest_block_height
                ),
            ),
        }
    }

    /// Back to a safe full node after a failed activation: stop, confirm (kill, confirm),
    /// placeholder, start. `key_exposed`: the validator key may be at the live path or
    /// running. `stop_again`: false when the activation's own stop and kill were not
    /// confirmed — story is then left as it is, only the placeholder is put back.
    async fn roll_back(
        &self,
        rec: &mut Recorder,
        placeholder: &ValidatorKey,
        validator_address: &str,
        key_exposed: bool,
        stop_again: bool,
    ) -> NodeCondition {
        let stopped = if stop_again {
            self.stop_confirmed(ROLLBACK_STOP_STEPS, rec).await.is_ok()
        } else {
            rec.push(
                Step::RollbackStop,
                Instant::now(),
                StepOutcome::Skipped,
                "not confirmed stopped even after story.kill_command: not tried again",
            );
            false
        };
        // Always, even when the stop is unconfirmed: story reads its key only at start, so
        // this cannot hurt a running process and makes its next start harmless.
        let (key, _) = self.fence_live_key(
            Step::RollbackInstallPlaceholder,
            Step::RollbackRemoveLiveKey,
            placeholder,
            Some(validator_address),
            rec,
        );
        if !stopped {
            return NodeCondition::StopUnconfirmed {
                placeholder_installed: key != LiveKey::MayBeValidator,
                may_be_signing: key_exposed,
            };
        }
        match key {
            LiveKey::MayBeValidator => {
                rec.push(
                    Step::RollbackStart,
                    Instant::now(),
                    StepOutcome::Skipped,
                    "the live key may still be the validator's: story stays stopped",
                );
                NodeCondition::StoppedKeyMayBeLive
            }
            LiveKey::Removed => {
                rec.push(
                    Step::RollbackStart,
                    Instant::now(),
                    StepOutcome::Skipped,
                    "no key at the live path: story stays stopped",
                );
                NodeCondition::StoppedKeyRemoved
            }
            LiveKey::Placeholder | LiveKey::OtherNonValidator => {
                match self.start(Step::RollbackStart, rec).await {
                    Ok(()) => NodeCondition::FullNode,
                    Err(_) => NodeCondition::SafeNotRunning,
                }
            }
        }
    }

    /// Puts the placeholder at the live path; if that fails and the live file may be the
    /// validator key, removes it — but only when a verified copy of the validator key is at
    /// rest (`validator_address` is known), so nothing is lost.
    fn fence_live_key(
        &self,
        install_step: Step,
        remove_step: Step,
        placeholder: &ValidatorKey,
        validator_address: Option<&str>,
        rec: &mut Recorder,
    ) -> (LiveKey, Option<keyswap::KeySwapError>) {
        let t = Instant::now();
        let error = match keyswap::install(placeholder, &self.live_key) {
            Ok(addr) => {
                rec.push(
                    install_step,
                    t,
                    StepOutcome::Ok,
                    format!(
                        "placeholder {addr} installed at {} (mode 600)",
                        self.live_key.display()
                    ),
                );
                return (LiveKey::Placeholder, None);
            }
            Err(e) => e,
        };
        rec.push(install_step, t, StepOutcome::Failed, error.to_string());
        let live = self.fence_without_placeholder(remove_step, validator_address, rec);
        (live, Some(error))
    }

    /// The placeholder could not be written: leave a non-validator key alone, remove the
    /// validator's (when a verified copy is at rest).
    fn fence_without_placeholder(
        &self,
        remove_step: Step,
        validator_address: Option<&str>,
        rec: &mut Recorder,
    ) -> LiveKey {
        let Some(validator) = validator_address else {
            return LiveKey::MayBeValidator;
        };
        let t = Instant::now();
        match keyswap::address_at(&self.live_key) {
            Some(addr) if !addr.eq_ignore_ascii_case(validator) => {
                rec.push(
                    remove_step,
                    t,
                    StepOutcome::Skipped,
                    format!("the live key is {addr}, not the validator's: left in place"),
                );
                LiveKey::OtherNonValidator
            }
            _ => match keyswap::remove(&self.live_key) {
                Ok(()) => {
                    rec.push(
                        remove_step,
                        t,
                        StepOutcome::Warning,
                        format!(
                            "removed {} (the validator key stays at rest in {})",
                            self.live_key.display(),
                            self.key_store.display()
                        ),
                    );
                    LiveKey::Removed
                }
                Err(e) => {
                    rec.push(remove_step, t, StepOutcome::Failed, e.to_string());
                    LiveKey::MayBeValidator
                }
            },
        }
    }

    async fn deactivate(&self) -> Result<DeactivationReport, ActuatorError> {
        let _one_at_a_time = self.busy.lock().await;
        let begun = Instant::now();
        let mut rec = Recorder::default();

        // Known before the stop, acted on after it: fencing by stopping comes first, whatever
        // is wrong with the keys.
        let t = Instant::now();
        let validator_address = keyswap::address_at(&self.key_store);
        let live_before = keyswap::address_at(&self.live_key);
        let placeholder = match ValidatorKey::load(&self.placeholder) {
            Ok(p) if validator_address.as_deref() == Some(p.address_hex().as_str()) => {
                Err(StepError::from(Refusal::PlaceholderIsValidatorKey {
                    path: self.placeholder.clone(),
                    address: p.address_hex(),
                }))
            }
            Ok(p) => Ok(p),
            Err(e) => Err(StepError::from(e)),
        };
        match &placeholder {
            Ok(p) => rec.push(
                Step::CheckKeys,
                t,
                StepOutcome::Ok,
                format!(
                    "placeholder {}; live key {}; validator key at rest {}",
                    p.address_hex(),
                    live_before.as_deref().unwrap_or("unreadable"),
                    validator_address.as_deref().unwrap_or("unreadable"),
                ),
            ),
            Err(e) => rec.push(Step::CheckKeys, t, StepOutcome::Failed, e.to_string()),
        }
        // Conservative: unless the running key is known not to be the validator's, assume it is.
        let may_be_signing = match (&live_before, &validator_address) {
            (Some(live), Some(v)) => live.eq_ignore_ascii_case(v),
            _ => true,
        };

        // A failed stop command does not end the deactivation: the confirmation decides.
        let confirmed = self.stop_confirmed(STOP_STEPS, &mut rec).await;

        let key = match &placeholder {
            Ok(p) => self.fence_live_key(
                Step::InstallPlaceholder,
                Step::RemoveLiveKey,
                p,
                validator_address.as_deref(),
                &mut rec,
            ),
            Err(_) => {
                rec.push(
                    Step::InstallPlaceholder,
                    Instant::now(),
                    StepOutcome::Skipped,
                    "no usable placeholder key",
                );
                let live = self.fence_without_placeholder(
                    Step::RemoveLiveKey,
                    validator_address.as_deref(),
                    &mut rec,
                );
                (live, None)
            }
        };

        if let Err((failed_step, cause)) = confirmed {
            let node_left = NodeCondition::StopUnconfirmed {
                placeholder_installed: key.0 != LiveKey::MayBeValidator,
                may_be_signing,
            };
            return action_failed(
                Action::Deactivation,
                rec,
                begun,
                failed_step,
                cause,
                node_left,
            );
        }
        let placeholder_address = match (placeholder, key) {
            (Ok(p), (LiveKey::Placeholder, _)) => p.address_hex(),
            (placeholder, (live, install_error)) => {
                let cause = match (placeholder, install_error) {
                    (Err(e), _) => e,
                    (Ok(_), Some(e)) => e.into(),
                    // Unreachable in practice: a placeholder that did not go in has an error.
                    (Ok(_), None) => StepError::KeySwap(keyswap::KeySwapError::Io {
                        action: "install the placeholder at",
                        path: self.live_key.clone(),
                        source: std::io::Error::other("not installed"),
                    }),
                };
                let node_left = match live {
                    LiveKey::Removed => NodeCondition::StoppedKeyRemoved,
                    LiveKey::MayBeValidator => NodeCondition::StoppedKeyMayBeLive,
                    LiveKey::Placeholder | LiveKey::OtherNonValidator => {
                        NodeCondition::SafeNotRunning
                    }
                };
                return action_failed(
                    Action::Deactivation,
                    rec,
                    begun,
                    Step::InstallPlaceholder,
                    cause,
                    node_left,
                );
            }
        };

        // Story was confirmed stopped before this read: the state is final.
        let t = Instant::now();
        let final_state = match self.store.read() {
            Ok(s) => {
                rec.push(
                    Step::ReadFinalState,
                    t,
                    StepOutcome::Ok,
                    format!("{} holds {}", self.store.path().display(), s.hrs()),
                );
                Ok(s)
            }
            Err(e) => {
                rec.push(Step::ReadFinalState, t, StepOutcome::Failed, e.to_string());
                Err(StepError::from(e))
            }
        };

        // The placeholder is live: starting again can only make a full node.
        let start_problem = if let Some(enc) = keyswap::encrypted_form(&self.live_key) {
            let e = StepError::EncryptedLiveKey { path: enc };
            rec.push(
                Step::Start,
                Instant::now(),
                StepOutcome::Skipped,
                e.to_string(),
            );
            Some(e.to_string())
        } else {
            self.start(Step::Start, &mut rec)
                .await
                .err()
                .map(|e| e.to_string())
        };
        let full_node_started = start_problem.is_none();

        let final_state = match final_state {
            Ok(s) => s,
            Err(cause) => {
                let node_left = if full_node_started {
                    NodeCondition::FullNode
                } else {
                    NodeCondition::SafeNotRunning
                };
                return action_failed(
                    Action::Deactivation,
                    rec,
                    begun,
                    Step::ReadFinalState,
                    cause,
                    node_left,
                );
            }
        };
        match &start_problem {
            None => info!(
                state = %final_state.hrs(),
                "deactivation complete: placeholder {placeholder_address} live, full node started"
            ),
            Some(p) => error!(
                state = %final_state.hrs(),
                "deactivation complete (placeholder {placeholder_address} live) but the full \
                 node did NOT start: {p}"
            ),
        }
        Ok(DeactivationReport {
            final_state,
            placeholder_address,
            full_node_started,
            start_problem,
            steps: rec.steps,
            total: begun.elapsed(),
        })
    }
}

/// Which action failed.
#[derive(Debug, Clone, Copy)]
enum Action {
    Activation,
    Deactivation,
}

/// A failed action as its error, logged: the failed step, why, where the node was left, and
/// every step so far.
fn action_failed<T>(
    action: Action,
    rec: Recorder,
    begun: Instant,
    failed_step: Step,
    cause: StepError,
    node_left: NodeCondition,
) -> Result<T, ActuatorError> {
    let (steps, total) = (rec.steps, begun.elapsed());
    let e = match action {
        Action::Activation => ActuatorError::ActivationFailed(Box::new(ActivationFailure {
            failed_step,
            cause,
            node_left,
            steps,
            total,
        })),
        Action::Deactivation => ActuatorError::DeactivationFailed(Box::new(DeactivationFailure {
            failed_step,
            cause,
            node_left,
            steps,
            total,
        })),
    };
    error!("{e}");
    Err(e)
}

/// The steps one confirmed stop is recorded under.
#[derive(Debug, Clone, Copy)]
struct StopSteps {
    stop: Step,
    confirm: Step,
    kill: Step,
    confirm_killed: Step,
}

const STOP_STEPS: StopSteps = StopSteps {
    stop: Step::Stop,
    confirm: Step::ConfirmStopped,
    kill: Step::Kill,
    confirm_killed: Step::ConfirmKilled,
};

const ROLLBACK_STOP_STEPS: StopSteps = StopSteps {
    stop: Step::RollbackStop,
    confirm: Step::RollbackConfirmStopped,
    kill: Step::RollbackKill,
    confirm_killed: Step::RollbackConfirmKilled,
};

/// What the live path holds after [`Inner::fence_live_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveKey {
    Placeholder,
    /// The placeholder could not be written, but the live key is not the validator's.
    OtherNonValidator,
    Removed,
    MayBeValidator,
}

/// The mode of `path` when it is readable by group or others.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ActuatorOptions {
        ActuatorOptions {
            stop_timeout: Duration::from_secs(5),
            kill_timeout: Duration::from_secs(3),
            start_timeout: Duration::from_secs(10),
            status_command_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            rpc_timeout: Duration::from_secs(2),
            verify_blocks: 5,
            verify_timeout: Duration::from_secs(40),
        }
    }

    #[test]
    fn story_actuator_worst_cases_are_sums_of_options() {
        let o = options();
        let overrun = syncguard_timing::ACTUATOR_OVERRUN;
        // Stop phase 5 s, kill phase 3 s, each with its overrun: the model's stop_bound.
        let stop = Duration::from_secs(8) + overrun * 2;
        assert_eq!(o.max_confirmed_stop(), stop);
        let deactivation = stop + Duration::from_secs(10) + command::MAX_OVERRUN;
        assert_eq!(o.max_deactivation(), deactivation);
        assert_eq!(
            o.max_activation(),
            deactivation * 2 + Duration::from_secs(40)
        );

        // The wait for a height adds its own bound, and only when there is one.
        let plan = ActivationPlan::default();
        assert_eq!(o.max_activation_of(&plan), o.max_activation());
        let plan = plan.after_height(1234, Duration::from_secs(7));
        assert_eq!(plan.max_wait(), Duration::from_secs(7));
        assert_eq!(
            o.max_activation_of(&plan),
            o.max_activation() + Duration::from_secs(7)
        );

        // Every bound grows with the option it counts.
        let mut longer = o.clone();
        longer.kill_timeout += Duration::from_secs(1);
        assert_eq!(
            longer.max_deactivation(),
            o.max_deactivation() + Duration::from_secs(1)
        );
        assert_eq!(
            longer.max_activation(),
            o.max_activation() + Duration::from_secs(2)
        );
        let mut longer = o.clone();
        longer.verify_timeout += Duration::from_secs(1);
        assert_eq!(longer.max_deactivation(), o.max_deactivation());
        assert_eq!(
            longer.max_activation(),
            o.max_activation() + Duration::from_secs(1)
        );
    }

    #[test]
    fn story_actuator_options_from_config_follow_the_timing_model() {
        let mut config = Config::default();
        config.story.stop_timeout = Some(5.0);
        config.story.verify_blocks = 5;
        config.story.block_interval = 2400;
        let o = ActuatorOptions::from_config(&config);
        let t = config.timing();
        assert_eq!(o.stop_timeout, Duration::from_secs(5));
        assert_eq!(o.kill_timeout, t.kill_timeout);
        assert_eq!(o.start_timeout, t.start_timeout);
        // start + (5 + 2) blocks × 2.4 s × 2 = 30 + 33.6 s
        assert_eq!(o.verify_timeout, Duration::from_millis(63_600));
        assert_eq!(o.rpc_timeout, Duration::from_secs(2));
        // The actuator's confirmed stop is the model's stop bound.
        assert_eq!(o.max_confirmed_stop(), t.stop_bound);
    }
}
