//! Logging from the `logging:` section: level, verbose (targets), text or JSON, to stderr.
//! `RUST_LOG`, when set, overrides the level (handy when debugging one module).

use syncguard_config::{LogFormat, LoggingConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Returns false when one was already installed (tests).
pub fn init(config: &LoggingConfig) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{},hyper=warn,reqwest=warn", config.level.as_str()))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(config.verbose);
    match config.format {
        LogFormat::Json => builder.json().try_init().is_ok(),
        LogFormat::Text => builder.try_init().is_ok(),
    }
}
