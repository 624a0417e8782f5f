//! `witness`: did the validator sign any of the last N commits, as the local node sees them?

use std::process::ExitCode;

use anyhow::Context;
use syncguard_health::{fetch_witness, CometClient, SignatureSeen};
use syncguard_validator::ValidatorKey;

use super::EXIT_INVALID;
use crate::cli::WitnessArgs;

pub fn run(args: &WitnessArgs) -> anyhow::Result<ExitCode> {
    let config = match syncguard_config::load(&args.config) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let address = match &args.address {
        Some(a) => a.to_ascii_uppercase(),
        None => ValidatorKey::load_public(&config.story.validator_key_store)
            .context(
                "reading the validator address from story.validator_key_store (or pass --address)",
            )?
            .address_hex(),
    };
    let blocks = args
        .blocks
        .unwrap_or(u64::from(config.story.witness_blocks));
    let client = CometClient::new(&config.story.comet_rpc_url, config.timing().rpc_timeout)
        .context("setting up the CometBFT client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(fetch_witness(&client, &address, blocks))
        .context("asking the local node for recent commits")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding JSON")?
        );
    } else {
        println!(
            "validator {address}, last {blocks} commits up to height {}:",
            report.latest_height
        );
        for h in &report.heights {
            let seen = match &h.seen {
                SignatureSeen::Signed => "signed".to_string(),
                SignatureSeen::Absent => "absent".to_string(),
                SignatureSeen::Unknown(why) => format!("unknown ({why})"),
            };
            println!("  {:>10}  {seen}", h.height);
        }
        let verdict = if report.signed_recently() {
            format!(
                "the validator IS signing (last at height {}): no node may be promoted",
                report.last_signed_height().unwrap_or_default()
            )
        } else if report.proves_absence() {
            "no signature in the window: the chain shows no active signer".to_string()
        } else {
            "inconclusive: some heights could not be read, which never counts as absence"
                .to_string()
        };
        println!("{verdict}");
    }
    Ok(ExitCode::SUCCESS)
}
