//! After the start (activation step 7): is the node really signing as the validator?
//!
//! First `/status` must answer with the validator's address and not be catching up (a node
//! that was down a few blocks syncs first; commits it missed meanwhile say nothing). Then one
//! of the next `verify_blocks` commits — from the first height the new state allows it to
//! sign — must carry the validator's signature. The outcome is a report, not an error: the
//! key is live by now, and the caller alerts.

use std::time::{Duration, Instant};

use syncguard_health::CometClient;

use crate::report::{Recorder, Step, StepOutcome};

/// Bounds of the verification.
#[derive(Debug, Clone)]
pub(crate) struct VerifyParams {
    pub(crate) status_timeout: Duration,
    pub(crate) signing_timeout: Duration,
    pub(crate) blocks: u32,
    pub(crate) poll: Duration,
}

/// The verdict.
#[derive(Debug, Clone)]
pub(crate) struct Verification {
    pub(crate) verified: bool,
    pub(crate) reason: String,
    pub(crate) signed_at: Option<u64>,
}

fn not_verified(reason: String) -> Verification {
    Verification {
        verified: false,
        reason,
        signed_at: None,
    }
}

/// Runs both verification steps, recording them. `min_height` is the first height the
/// written state lets the validator sign at.
pub(crate) async fn verify(
    comet: &CometClient,
    address: &str,
    min_height: u64,
    params: &VerifyParams,
    rec: &mut Recorder,
) -> Verification {
    let t = Instant::now();
    let head = match wait_for_address(comet, address, params).await {
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
            return not_verified(reason);
        }
    };

    let t = Instant::now();
    let first = (head + 1).max(min_height);
    let last = first + u64::from(params.blocks.max(1)) - 1;
    let verdict = wait_for_signature(comet, address, first, last, params).await;
    rec.push(
        Step::VerifySigning,
        t,
        if verdict.verified {
            StepOutcome::Ok
        } else {
            StepOutcome::Failed
        },
        verdict.reason.clone(),
    );
    verdict
}

/// Polls `/status` until it answers caught up with `address`. Returns the latest height.
/// A node answering with another address has already loaded its key: no point waiting.
async fn wait_for_address(
    comet: &CometClient,
    address: &str,
    params: &VerifyParams,
) -> Result<(u64, String), String> {
    let deadline = Instant::now() + params.status_timeout;
    loop {
        let last_seen = match comet.status().await {
            Ok(st) if !st.validator_address.eq_ignore_ascii_case(address) => {
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
            Ok(st) if !st.catching_up => {
                return Ok((
                    st.latest_block_height,
                    format!(
                        "/status shows validator address {address}, caught up at height {}",
                        st.latest_block_height
                    ),
                ));
            }
            Ok(st) => format!(
                "validator address {address} but still catching up at height {}",
                st.latest_block_height
            ),
            Err(e) => e.to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "no caught-up /status with the validator's address within {:?}; last seen: \
                 {last_seen}",
                params.status_timeout
            ));
        }
        tokio::time::sleep(params.poll.min(deadline - now)).await;
    }
}

/// Polls the chain until a commit in `first..=last` carries `address`'s signature, the window
/// is passed, or the time is up.
async fn wait_for_signature(
    comet: &CometClient,
    address: &str,
    first: u64,
    last: u64,
    params: &VerifyParams,
) -> Verification {
    let deadline = Instant::now() + params.signing_timeout;
    let mut next = first;
    let mut latest = 0;
    let mut last_error: Option<String> = None;
    loop {
        match comet.status().await {
            Ok(st) => latest = latest.max(st.latest_block_height),
            Err(e) => last_error = Some(e.to_string()),
        }
        while next <= last.min(latest) {
            match comet.commit(next).await {
                Ok(c) if c.signed_by(address) => {
                    return Verification {
                        verified: true,
                        reason: format!("signature of {address} in the commit of height {next}"),
                        signed_at: Some(next),
                    };
                }
                Ok(_) => next += 1,
                Err(e) => {
                    last_error = Some(e.to_string());
                    break;
                }
            }
        }
        if next > last {
            return not_verified(format!(
                "no signature of {address} in the commits of heights {first}..={last} \
                 (verify_blocks = {}): the node runs with the key but is not signing",
                params.blocks
            ));
        }
        let now = Instant::now();
        if now >= deadline {
            let mut reason = format!(
                "no signature of {address} within {:?}: checked heights {first}..{next} of \
                 {first}..={last}, chain head seen at {latest}",
                params.signing_timeout
            );
            if let Some(e) = last_error {
                reason.push_str(&format!("; last error: {e}"));
            }
            return not_verified(reason);
        }
        tokio::time::sleep(params.poll.min(deadline - now)).await;
    }
}
