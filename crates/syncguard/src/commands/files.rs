//! `state show|verify` and `key show`: read-only looks at the validator's files.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use syncguard_validator::{verify_state, SignState, ValidatorKey};

use super::EXIT_INVALID;

pub fn state_show(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let state = match SignState::load(file) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let hrs = state.hrs();
    if json {
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "height": hrs.height,
            "round": hrs.round,
            "step": hrs.step.as_u8(),
            "step_name": hrs.step.name(),
            "signed": state.signature().is_some(),
            "signature": state.signature().map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
            "signbytes": state.sign_bytes().map(hex::encode_upper),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("encoding JSON")?
        );
    } else {
        println!("file:      {}", file.display());
        println!("height:    {}", hrs.height);
        println!("round:     {}", hrs.round);
        println!("step:      {} ({})", hrs.step.as_u8(), hrs.step.name());
        match state.sign_bytes() {
            Some(bytes) => println!("signed:    yes ({} sign bytes)", bytes.len()),
            None => println!("signed:    no signature recorded at this height/round/step"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn state_verify(file: &Path) -> anyhow::Result<ExitCode> {
    let state = match SignState::load(file) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("INVALID: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    match verify_state(&state) {
        Ok(Some(decoded)) => {
            println!(
                "OK: {} — {} — signed {:?} for chain {}",
                file.display(),
                state.hrs(),
                decoded.msg_type,
                decoded.chain_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            println!(
                "OK: {} — {} — nothing signed at this height/round/step",
                file.display(),
                state.hrs()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("INVALID: {}: {e}", file.display());
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

pub fn key_show(file: &Path) -> anyhow::Result<ExitCode> {
    match ValidatorKey::load(file) {
        Ok(key) => {
            println!("file:    {}", file.display());
            println!("type:    {}", key.key_type().pub_key_type());
            println!("address: {}", key.address_hex());
            println!("pub_key: {}", key.public_key().to_base64());
            println!("check:   address and public key match the private key");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
