//! One handler per subcommand. Each returns the process exit code; `anyhow` only here.

mod admin;
mod config_check;
mod files;
mod init;
mod man;
mod story;
mod switchover;
mod witness;

use std::process::ExitCode;

use crate::cli::{Command, ConfigCommand, KeyCommand, StateCommand};

/// Exit code for "the input is invalid" (a config, state or key file), as `config check`
/// promises: distinct from 1, which means the command itself failed.
pub const EXIT_INVALID: u8 = 2;

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => Ok(syncguard_devnet::demo::main_embedded(args, &["devnet"])?),
        Command::Devnet(cmd) => Ok(syncguard_devnet::cli::main_embedded(cmd, &["devnet"])),
        Command::Story(args) => story::run(&args.config, args.role),
        Command::State(StateCommand::Show { file, json }) => files::state_show(&file, json),
        Command::State(StateCommand::Verify { file }) => files::state_verify(&file),
        Command::Key(KeyCommand::Show { file }) => files::key_show(&file),
        Command::Config(ConfigCommand::Check { config, offline }) => {
            config_check::run(&config, offline)
        }
        Command::Witness(args) => witness::run(&args),
        Command::Status(args) => admin::status(&args),
        Command::Switchover(args) => switchover::run(&args),
        Command::Pause(args) => admin::pause_resume(&args, true),
        Command::Resume(args) => admin::pause_resume(&args, false),
        Command::Takeover(args) => admin::takeover(&args),
        Command::Unfence(args) => admin::unfence(&args),
        Command::Init(args) => init::run(&args),
        Command::Man(args) => man::run(&args.dir),
    }
}
