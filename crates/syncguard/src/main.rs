//! `syncguard`: the command-line edge. Parses arguments, runs a command, maps errors to exit
//! codes (1 for failures, 2 for an invalid configuration or file). Logic lives in the library.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
