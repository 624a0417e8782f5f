//! The chain's answers both drivers (peer mode and etcd mode) act on: the witness before an
//! unplanned promotion and the verification after an activation, read from the local node.

use std::time::{Duration, Instant};

use syncguard_failover::{VerifyReport, WitnessReport};
use syncguard_health::{fetch_witness, CometClient, SignatureSeen};

/// Answers a witness request. A failed `/status` gives a report with nothing read, which the
/// machine never takes as evidence of absence.
pub(crate) async fn witness(
    comet: &CometClient,
    address: &str,
    id: u64,
    blocks: u32,
) -> WitnessReport {
    match fetch_witness(comet, address, u64::from(blocks)).await {
        Ok(report) => {
            let mut out = WitnessReport {
                id,
                latest_height: report.latest_height,
                checked: Vec::new(),
                signed: Vec::new(),
                unknown: Vec::new(),
            };
            for h in report.heights {
                match h.seen {
                    SignatureSeen::Signed => {
                        out.checked.push(h.height);
                        out.signed.push(h.height);
                    }
                    SignatureSeen::Absent => out.checked.push(h.height),
                    SignatureSeen::Unknown(_) => out.unknown.push(h.height),
                }
            }
            out
        }
        Err(e) => {
            tracing::warn!("witness: the local node did not answer: {e}");
            WitnessReport {
                id,
                latest_height: 0,
                checked: Vec::new(),
                signed: Vec::new(),
                unknown: vec![0],
            }
        }
    }
}

/// Waits up to `blocks` (+2) block intervals for the validator's signature to show in the
/// commits the local node sees.
pub(crate) async fn verify(
    comet: &CometClient,
    address: &str,
    epoch: u64,
    blocks: u32,
    block_interval: Duration,
) -> VerifyReport {
    let deadline = Instant::now() + block_interval * (blocks + 2) + Duration::from_secs(5);
    let mut last = String::from("no commit read yet");
    while Instant::now() < deadline {
        match fetch_witness(comet, address, u64::from(blocks)).await {
            Ok(report) if report.signed_recently() => {
                return VerifyReport {
                    epoch,
                    signed: true,
                    detail: format!(
                        "signature of {address} seen at height {}",
                        report.last_signed_height().unwrap_or_default()
                    ),
                }
            }
            Ok(report) => {
                last = format!(
                    "no signature of {address} in the last {blocks} commits up to height {}",
                    report.latest_height
                )
            }
            Err(e) => last = format!("the local node did not answer: {e}"),
        }
        tokio::time::sleep(block_interval.max(Duration::from_millis(100))).await;
    }
    VerifyReport {
        epoch,
        signed: false,
        detail: last,
    }
}
