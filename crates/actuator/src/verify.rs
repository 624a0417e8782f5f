//! After the start (activation step 7): is the node really signing as the validator?
//!
//! First `/status` must answer with the validator's address and not be catching up (a node
//! that was down a few blocks syncs first; commits it missed meanwhile say nothing). Then one
//! of the next `verify_blocks` commits — from the first height the new state allows it to
//! sign — must carry the validator's signature. Both share one deadline, `verify_timeout`
//! from the moment story was started, and every RPC call is cut off at it: the verification
//! never outlasts it. Not verified is an error: the caller rolls the activation back.

use std::future::Future;
use std::time::{Duration, Instant};

use syncguard_health::{CometClient, ProbeError};

use crate::report::{Recorder, Step, StepOutcome};

/// Bounds of the verification.
#[derive(Debug, Clone)]
pub(crate) struct VerifyParams {
    /// From the start of the verification (story just started) to its end, whatever happens.
    pub(crate) timeout: Duration,
    pub(crate) blocks: u32,
    pub(crate) poll: Duration,
}

/// The signature that verified the activation.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) signed_at: u64,
    pub(crate) reason: String,
}

/// Why the activation is not verified, and at which step.
pub(crate) type NotVerified = (Step, String);

/// One RPC call, cut off at `deadline` (each call also has the client's own timeout).
/// `None` when cut off: the deadline has come, and the caller reports what it saw before.
pub(crate) async fn before<T>(
    deadline: Instant,
    call: impl Future<Output = Result<T, ProbeError>>,
) -> Option<Result<T, String>> {
    tokio::time::timeout_at(deadline.into(), call)
        .await
        .ok()
        .map(|result| result.map_err(|e| e.to_string()))
}

/// What a wait reports when the deadline came before any answer.
pub(crate) const NO_ANSWER: &str = "no answer before the deadline";

/// Runs both verification steps, recording them. `min_height` is the first height the
/// written state lets the validator sign at.
pub(crate) async fn verify(
    comet: &CometClient,
    address: &str,
    min_height: u64,
    params: &VerifyParams,
    rec: &mut Recorder,
) -> Result<Verified, NotVerified> {
    let t = Instant::now();
    let deadline = t + params.timeout;
    let head = match wait_for_address(comet, address, deadline, params).await {
        Ok((height, detail)) => {
            rec.push(Step::VerifyAddress, t, StepOutcome::Ok, detail);
            height
        }
        Err(reason) => {
            rec.push(Step::VerifyAddress, t, StepOutcome::Failed, reason.clone());
            rec.push(
                Step::VerifySigning,
                Instant::now(),
                StepOutcome::Skipped,
                "the node does not run with the validator's address",
            );
            return Err((Step::VerifyAddress, reason));
        }
    };

    let t = Instant::now();
    let first = (head + 1).max(min_height);
    let last = first + u64::from(params.blocks.max(1)) - 1;
    match wait_for_signature(comet, address, first, last, deadline, params).await {
        Ok(verified) => {
            rec.push(
                Step::VerifySigning,
                t,
                StepOutcome::Ok,
                verified.reason.clone(),
            );
            Ok(verified)
        }
        Err(reason) => {
            rec.push(Step::VerifySigning, t, StepOutcome::Failed, reason.clone());
            Err((Step::VerifySigning, reason))
        }
    }
}

/// Polls `/status` until it answers caught up with `address`. Returns the latest height.
/// A node answering with another address has already loaded its key: no point waiting.
async fn wait_for_address(
    comet: &CometClient,
    address: &str,
    deadline: Instant,
    params: &VerifyParams,
) -> Result<(u64, String), String> {
    let mut last_seen = NO_ANSWER.to_string();
    loop {
        match before(deadline, comet.status()).await {
            None => break,
            Some(Ok(st)) if !st.validator_address.eq_ignore_ascii_case(address) => {
                return Err(format!(
                    "story runs with validator address {} instead of the validator's {address}: \
                     it did not load the validator key from the live path",
                    if st.validator_address.is_empty() {
                        "(none)"
                    } else {
                        &st.validator_address
                    }
                ));
            }
            Some(Ok(st)) if !st.catching_up => {
                return Ok((
                    st.latest_block_height,
                    format!(
                        "/status shows validator address {address}, caught up at height {}",
                        st.latest_block_height
                    ),
                ));
            }
            Some(Ok(st)) => {
                last_seen = format!(
                    "validator address {address} but still catching up at height {}",
                    st.latest_block_height
                )
            }
            Some(Err(e)) => last_seen = e,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(params.poll.min(deadline - now)).await;
    }
    Err(format!(
        "no caught-up /status with the validator's address {address} within {:?} after story \
         started (last seen: {last_seen})",
        params.timeout
    ))
}

/// Polls the chain until a commit in `first..=last` carries `address`'s signature, the window
/// is passed, or the deadline.
async fn wait_for_signature(
    comet: &CometClient,
    address: &str,
    first: u64,
    last: u64,
    deadline: Instant,
    params: &VerifyParams,
) -> Result<Verified, String> {
    let mut next = first;
    let mut latest = 0;
    let mut last_error: Option<String> = None;
    'polls: loop {
        match before(deadline, comet.status()).await {
            None => break,
            Some(Ok(st)) => latest = latest.max(st.latest_block_height),
            Some(Err(e)) => last_error = Some(e),
        }
        while next <= last.min(latest) {
            match before(deadline, comet.commit(next)).await {
                None => break 'polls,
                Some(Ok(c)) if c.signed_by(address) => {
                    return Ok(Verified {
                        signed_at: next,
                        reason: format!("signature of {address} in the commit of height {next}"),
                    });
                }
                Some(Ok(_)) => next += 1,
                Some(Err(e)) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if next > last {
            return Err(format!(
                "no signature of {address} in the commits of heights {first}..={last} \
                 (verify_blocks = {}): the node runs with the key but is not signing",
                params.blocks
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(params.poll.min(deadline - now)).await;
    }
    let mut seen =
        format!("checked heights {first}..{next} of {first}..={last}, chain head seen at {latest}");
    if let Some(e) = last_error {
        seen.push_str(&format!("; last error: {e}"));
    }
    Err(format!(
        "no signature of {address} within {:?} after story started ({seen})",
        params.timeout
    ))
}
