//! Logging from the `logging:` section: to stderr and, when `logging.file` is set (default
//! `story-failover.log`), appended to that file too; `text` or `json` on both; `level`;
//! `verbose` adds targets, source locations and (in JSON) the span list. `RUST_LOG`, when
//! set, overrides the level (handy when debugging one module). Colours only on a terminal,
//! never in the file.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use syncguard_config::{LogFormat, LoggingConfig};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Why logging could not start. The daemon reports it on stderr and exits.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging.file is empty: leave the key out for the default (story-failover.log) or give a path")]
    EmptyPath,
    #[error("logging.file: cannot create the directory {} for the log file: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("logging.file: cannot open {} for appending: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Installs the global subscriber. `Ok(false)` when one was already installed (tests);
/// `Err` when `logging.file` cannot be opened (nothing is installed then).
///
/// A relative `logging.file` is relative to the daemon's working directory (under systemd
/// that is `/` unless `WorkingDirectory=` is set): give an absolute path in production.
pub fn init(config: &LoggingConfig) -> Result<bool, LoggingError> {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let ansi = std::io::stderr().is_terminal();
    let subscriber = build(config, env.as_deref(), std::io::stderr, ansi)?;
    Ok(subscriber.try_init().is_ok())
}

/// The subscriber `init` installs, with the stderr writer and `RUST_LOG` passed in (tests
/// capture both).
fn build<W>(
    config: &LoggingConfig,
    env_filter: Option<&str>,
    stderr: W,
    ansi: bool,
) -> Result<impl Subscriber + Send + Sync, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let file = match &config.file {
        Some(path) => Some(open_log_file(path)?),
        None => None,
    };
    let filter = env_filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(format!(
                "{},hyper=warn,reqwest=warn,h2=warn,rustls=warn",
                config.level.as_str()
            ))
        });
    let mut layers = vec![fmt_layer(config, stderr, ansi)];
    if let Some(file) = file {
        // `&File` writes are unbuffered and the file is in append mode: each event is one
        // write at the end, even with several writers.
        layers.push(fmt_layer(config, Arc::new(file), false));
    }
    Ok(tracing_subscriber::registry().with(filter).with(layers))
}

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

fn fmt_layer<S, W>(config: &LoggingConfig, writer: W, ansi: bool) -> BoxedLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let verbose = config.verbose;
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(verbose)
        .with_file(verbose)
        .with_line_number(verbose);
    match config.format {
        LogFormat::Json => layer
            .json()
            .with_current_span(verbose)
            .with_span_list(verbose)
            .boxed(),
        LogFormat::Text => layer.boxed(),
    }
}

/// Opens (creating it and its directory if needed) the log file for appending.
fn open_log_file(path: &Path) -> Result<File, LoggingError> {
    if path.as_os_str().is_empty() {
        return Err(LoggingError::EmptyPath);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LoggingError::Open {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use syncguard_config::LogLevel;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into()
        }
    }

    fn config(file: Option<PathBuf>, format: LogFormat, verbose: bool) -> LoggingConfig {
        LoggingConfig {
            level: LogLevel::Info,
            verbose,
            enable_alerts: false,
            file,
            format,
        }
    }

    /// Logs a role change (inside a span) and a debug line under `config`.
    fn emit(config: &LoggingConfig, stderr: &Buf) -> Result<(), LoggingError> {
        let writer = {
            let b = stderr.clone();
            move || b.clone()
        };
        let subscriber = build(config, None, writer, false)?;
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("driver", node = "node-b");
            let _in = span.enter();
            tracing::info!(
                epoch = 8,
                heights = "1200,1202",
                reason = "peer_unreachable",
                "role: passive -> active"
            );
            tracing::debug!("not shown at info");
        });
        Ok(())
    }

    #[test]
    fn logging_text_goes_to_stderr_and_appends_to_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/sub/story-failover.log");
        std::fs::create_dir_all(dir.path().join("logs")).expect("mkdir");
        let c = config(Some(path.clone()), LogFormat::Text, false);
        let err = Buf::default();
        emit(&c, &err).expect("logging starts");
        emit(&c, &err).expect("logging starts again");
        let file = std::fs::read_to_string(&path).expect("log file written");
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 2, "appended, one line per event: {file}");
        for line in &lines {
            assert!(line.contains("role: passive -> active"), "{line}");
            assert!(line.contains("epoch=8") && line.contains("reason=\"peer_unreachable\""));
            assert!(!line.contains('\u{1b}'), "no colours in the file: {line}");
            assert!(
                !line.contains("syncguard::logging"),
                "no target unless verbose"
            );
        }
        assert_eq!(err.text().lines().count(), 2);
        assert!(!file.contains("not shown at info"));
    }

    #[test]
    fn logging_json_verbose_has_target_and_spans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sg.log");
        let err = Buf::default();
        emit(&config(Some(path.clone()), LogFormat::Json, true), &err).expect("logging starts");
        let file = std::fs::read_to_string(&path).expect("log file written");
        for text in [file.as_str(), err.text().as_str()] {
            let v: serde_json::Value =
                serde_json::from_str(text.trim()).expect("one JSON object per line");
            assert_eq!(v["fields"]["message"], "role: passive -> active");
            assert_eq!(v["fields"]["epoch"], 8);
            assert_eq!(v["target"], "syncguard::logging::tests");
            assert_eq!(v["span"]["name"], "driver");
            assert_eq!(v["spans"][0]["node"], "node-b");
            assert!(v["line_number"].is_u64());
        }
        let quiet = Buf::default();
        emit(&config(None, LogFormat::Json, false), &quiet).expect("logging starts");
        let v: serde_json::Value = serde_json::from_str(quiet.text().trim()).expect("JSON");
        assert!(v.get("target").is_none() && v.get("spans").is_none(), "{v}");
    }

    #[test]
    fn logging_a_file_that_cannot_be_opened_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be.
        let c = config(Some(dir.path().to_path_buf()), LogFormat::Text, false);
        let e = emit(&c, &Buf::default()).expect_err("a directory is not a log file");
        assert!(matches!(e, LoggingError::Open { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        // A parent that is a file.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"x").expect("write");
        let c = config(Some(blocker.join("sg.log")), LogFormat::Text, false);
        let e = emit(&c, &Buf::default()).expect_err("parent is a file");
        assert!(matches!(e, LoggingError::CreateDir { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("logging.file: cannot create the directory"),
            "{e}"
        );
        let c = config(Some(PathBuf::new()), LogFormat::Text, false);
        assert!(matches!(
            emit(&c, &Buf::default()),
            Err(LoggingError::EmptyPath)
        ));
    }

    #[test]
    fn logging_rust_log_overrides_the_level() {
        let err = Buf::default();
        let writer = {
            let b = err.clone();
            move || b.clone()
        };
        let c = config(None, LogFormat::Text, false);
        let subscriber = build(&c, Some("debug"), writer, false).expect("logging starts");
        tracing::subscriber::with_default(subscriber, || tracing::debug!("shown at debug"));
        assert!(err.text().contains("shown at debug"));
    }
}
