//! [`Actuator`]: performs the failover state machine's Activate and Deactivate actions on the
//! local node. It decides nothing; it does what it is told, safely, and says how it went.
//!
//! Activation (DESIGN §5): check keys → stop → confirm stopped → write state
//! `max(local, backup, fence, handed)` → install the validator key → start → verify.
//! A failure from the stop to the start rolls back to a full node with the placeholder key.
//!
//! Deactivation: stop → confirm stopped → install the placeholder → read the final state →
//! start as a full node.
//!
//! Both run in a task of their own: once begun, they finish (or roll back) even if the
//! caller stops waiting, because half an activation is the one state never to leave behind.
//! They are serialised: a second call waits for the first.

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
};
use crate::keyswap;
use crate::report::{
    ActivationReport, DeactivationReport, NodeCondition, Recorder, Step, StepOutcome,
};
use crate::verify::{self, VerifyParams};

/// A start command gets at least this long (`systemctl start` of a unit that replays its
/// WAL may take a while before it returns).
const MIN_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `/status` may take to answer after a start, caught up.
const DEFAULT_VERIFY_STATUS_TIMEOUT: Duration = Duration::from_secs(120);
/// Floor for one `status_command` run, even when the stop deadline is nearly spent.
const MIN_STATUS_RUN: Duration = Duration::from_millis(500);

/// What an activation must write besides the local state and the backup (S3).
#[derive(Debug, Clone, Default)]
pub struct ActivationPlan {
    /// Unplanned failover: the fence `(H + 2, 0, 0)` computed by the caller from its chain view.
    pub fence: Option<SignState>,
    /// Planned handover: the old holder's final state, handed over.
    pub handed_state: Option<SignState>,
}

impl ActivationPlan {
    /// An unplanned failover with this fence.
    pub fn unplanned(fence: SignState) -> Self {
        ActivationPlan {
            fence: Some(fence),
            handed_state: None,
        }
    }

    /// A planned handover with the old holder's final state.
    pub fn handover(handed_state: SignState) -> Self {
        ActivationPlan {
            fence: None,
            handed_state: Some(handed_state),
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
    /// Bound of the start command.
    pub start_timeout: Duration,
    /// Bound of one `status_command` run.
    pub status_command_timeout: Duration,
    /// Pause between two polls (stop confirmation, verification).
    pub poll_interval: Duration,
    /// Per-call timeout of the CometBFT RPC.
    pub rpc_timeout: Duration,
    /// `story.verify_blocks`.
    pub verify_blocks: u32,
    /// How long after the start `/status` may take to answer, caught up.
    pub verify_status_timeout: Duration,
    /// How long the validator's signature may take to appear once the node is caught up.
    pub verify_signing_timeout: Duration,
}

impl ActuatorOptions {
    /// From the configuration: `story.stop_timeout`, `story.verify_blocks`,
    /// `story.block_interval` (signing bound: twice `verify_blocks + 2` blocks, plus 10 s) and
    /// `health.rpc_timeout`.
    pub fn from_config(config: &Config) -> Self {
        let story = &config.story;
        let t = config.timing();
        let blocks = story.verify_blocks.max(1);
        ActuatorOptions {
            stop_timeout: t.stop_timeout,
            start_timeout: t.start_timeout,
            status_command_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            rpc_timeout: t.rpc_timeout,
            verify_blocks: blocks,
            verify_status_timeout: DEFAULT_VERIFY_STATUS_TIMEOUT,
            verify_signing_timeout: story.block_interval() * (blocks + 2) * 2
                + Duration::from_secs(10),
        }
    }
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
        for (key, cmd) in [
            ("story.start_command", &story.start_command),
            ("story.stop_command", &story.stop_command),
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
    /// `Ok` means the validator key is live and story started; `verified` says whether it was
    /// seen signing (alert when not). `Err(Refused)` means nothing was touched;
    /// `Err(ActivationFailed)` means it was rolled back — its `node_left` says how far.
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
    /// `final_state` is final. An unconfirmed stop is an error (the key may still be live),
    /// but the placeholder is installed anyway so that the next start cannot sign.
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

        // Steps 2–6. `key_exposed` turns true once the validator key may be at the live path.
        let mut key_exposed = false;
        let forward = self
            .activate_steps(&plan, &validator, &mut rec, &mut key_exposed)
            .await;
        let written = match forward {
            Ok(written) => written,
            Err((failed_step, cause)) => {
                error!(step = %failed_step, "activation failed, rolling back: {cause}");
                let node_left = self
                    .roll_back(&mut rec, &placeholder, &address, key_exposed)
                    .await;
                let failure = ActivationFailure {
                    failed_step,
                    cause,
                    node_left,
                    steps: rec.steps,
                    total: begun.elapsed(),
                };
                error!("{failure}");
                return Err(ActuatorError::ActivationFailed(Box::new(failure)));
            }
        };

        // Step 7: the key is live; verification is reported, never rolled back.
        let params = VerifyParams {
            status_timeout: self.options.verify_status_timeout,
            signing_timeout: self.options.verify_signing_timeout,
            blocks: self.options.verify_blocks,
            poll: self.options.poll_interval,
        };
        let min_height = u64::try_from(written.hrs().height).unwrap_or(0);
        let verdict = verify::verify(&self.comet, &address, min_height, &params, &mut rec).await;
        if verdict.verified {
            info!(%address, "activation complete and verified: {}", verdict.reason);
        } else {
            error!(%address, "activation complete but NOT VERIFIED: {}", verdict.reason);
        }
        Ok(ActivationReport {
            validator_address: address,
            state_written: written,
            live_key_path: self.live_key.clone(),
            verified: verdict.verified,
            verification: verdict.reason,
            signed_at_height: verdict.signed_at,
            steps: rec.steps,
            total: begun.elapsed(),
        })
    }

    /// Steps 2–6 of an activation. Returns the state written.
    async fn activate_steps(
        &self,
        plan: &ActivationPlan,
        validator: &ValidatorKey,
        rec: &mut Recorder,
        key_exposed: &mut bool,
    ) -> Result<SignState, Failed> {
        self.stop(Step::Stop, rec)
            .await
            .map_err(|e| (Step::Stop, e))?;
        // Never proceed on a timeout: nothing below may happen while story could be running.
        self.confirm_stopped(Step::ConfirmStopped, rec)
            .await
            .map_err(|e| (Step::ConfirmStopped, e))?;

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
        Ok(written)
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

    async fn stop(&self, step: Step, rec: &mut Recorder) -> Result<(), StepError> {
        self.run_step(
            step,
            rec,
            CommandKind::Stop,
            &self.stop_command,
            self.options.stop_timeout,
        )
        .await
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
    }

    /// Runs one command as one timed step of the report.
    async fn run_step(
        &self,
        step: Step,
        rec: &mut Recorder,
        kind: CommandKind,
        command_line: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let t = Instant::now();
        match command::run_checked(kind, command_line, timeout).await {
            Ok(out) => {
                rec.push(step, t, StepOutcome::Ok, command_detail(&out));
                Ok(())
            }
            Err(e) => {
                rec.push(step, t, StepOutcome::Failed, e.to_string());
                Err(e.into())
            }
        }
    }

    /// Polls until `status_command` exits non-zero AND the RPC refuses connections, within
    /// `stop_timeout`. Either alone is not enough: a unit can look inactive while its process
    /// lingers, and a port can close while the process still holds the key.
    async fn confirm_stopped(&self, step: Step, rec: &mut Recorder) -> Result<(), StepError> {
        let t = Instant::now();
        let timeout = self.options.stop_timeout;
        let deadline = t + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (status_stopped, status_seen) = self.status_says_stopped(remaining).await;
            let (rpc_stopped, rpc_seen) = self.rpc_refuses().await;
            if status_stopped && rpc_stopped {
                rec.push(
                    step,
                    t,
                    StepOutcome::Ok,
                    format!("{status_seen}; {rpc_seen}"),
                );
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                let e = StepError::StopNotConfirmed {
                    timeout,
                    rpc_url: self.rpc_url.clone(),
                    last_seen: format!("{status_seen}; {rpc_seen}"),
                };
                rec.push(step, t, StepOutcome::Failed, e.to_string());
                return Err(e);
            }
            tokio::time::sleep(self.options.poll_interval.min(deadline - now)).await;
        }
    }

    async fn status_says_stopped(&self, remaining: Duration) -> (bool, String) {
        let limit = self
            .options
            .status_command_timeout
            .min(remaining)
            .max(MIN_STATUS_RUN);
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

    /// Back to a safe full node after a failed activation: stop, confirm, placeholder, start.
    /// `key_exposed`: the validator key may be at the live path or running.
    async fn roll_back(
        &self,
        rec: &mut Recorder,
        placeholder: &ValidatorKey,
        validator_address: &str,
        key_exposed: bool,
    ) -> NodeCondition {
        // A failed stop command is no reason to skip the confirmation: it decides.
        let _ = self.stop(Step::RollbackStop, rec).await;
        let stopped = self
            .confirm_stopped(Step::RollbackConfirmStopped, rec)
            .await
            .is_ok();
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
        let stop_failed = self.stop(Step::Stop, &mut rec).await.err();
        let confirmed = self.confirm_stopped(Step::ConfirmStopped, &mut rec).await;

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

        if let Err(cause) = confirmed {
            let node_left = NodeCondition::StopUnconfirmed {
                placeholder_installed: key.0 != LiveKey::MayBeValidator,
                may_be_signing,
            };
            return deactivation_failed(rec, begun, Step::ConfirmStopped, cause, node_left);
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
                return deactivation_failed(rec, begun, Step::InstallPlaceholder, cause, node_left);
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
                return deactivation_failed(rec, begun, Step::ReadFinalState, cause, node_left);
            }
        };
        if let Some(e) = &stop_failed {
            warn!("deactivation: the stop command failed ({e}) but the stop was confirmed");
        }
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

fn deactivation_failed(
    rec: Recorder,
    begun: Instant,
    failed_step: Step,
    cause: StepError,
    node_left: NodeCondition,
) -> Result<DeactivationReport, ActuatorError> {
    let failure = DeactivationFailure {
        failed_step,
        cause,
        node_left,
        steps: rec.steps,
        total: begun.elapsed(),
    };
    error!("{failure}");
    Err(ActuatorError::DeactivationFailed(Box::new(failure)))
}

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
