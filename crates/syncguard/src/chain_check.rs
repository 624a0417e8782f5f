//! The chain's answer both drivers (peer mode and etcd mode) act on: the witness before an
//! unplanned promotion, served from the daemon's commit log (only the commits not read yet
//! are fetched).

use std::time::{SystemTime, UNIX_EPOCH};

use syncguard_failover::WitnessReport;
use syncguard_health::{ChainReader, SignatureSeen};

/// Answers a witness request. A failed `/status` gives a report with nothing read, which the
/// machine never takes as evidence of absence.
pub(crate) async fn witness(chain: &ChainReader, id: u64, blocks: u32) -> WitnessReport {
    match chain.witness(u64::from(blocks)).await {
        Ok(report) => {
            let mut out = WitnessReport {
                id,
                latest_height: report.latest_height,
                checked: Vec::new(),
                signed: Vec::new(),
                unknown: Vec::new(),
                block_times_ms: Vec::new(),
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
                if let Some(ms) = h.time.and_then(unix_ms) {
                    out.block_times_ms.push((h.height, ms));
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
                block_times_ms: Vec::new(),
            }
        }
    }
}

fn unix_ms(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}
