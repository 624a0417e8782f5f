//! systemd's notify protocol (`sd_notify(3)`), the few messages the daemon needs, without a
//! crate: one datagram per message on the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! - `READY=1` once the HTTP API listens and the first health round is done (`Type=notify`
//!   units are "started" only then, so `systemctl start syncguard` returns a working daemon);
//! - `WATCHDOG=1` from the health loop, at [`watchdog_interval`] — half of `WatchdogSec=` — so
//!   that a wedged daemon (the loop no longer turns) is killed and restarted by systemd;
//! - `STATUS=…`, the one line `systemctl status` shows (role, health);
//! - `STOPPING=1` when a shutdown begins.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op returning `Ok(false)`. A failed
//! send is an error for the caller to log; nothing here panics. The pure parts take their
//! inputs as arguments ([`Notifier::new`], [`watchdog_interval_from`]), so tests never touch
//! the process environment; [`Notifier::from_env`] and [`watchdog_interval`] are thin wrappers.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Set with `WatchdogSec=`: the watchdog period in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// When set, the pid the watchdog period is meant for (a child must not act on it).
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("${NOTIFY_SOCKET} is set but empty")]
    EmptySocket,
    #[error("${NOTIFY_SOCKET} `{0}` is neither an absolute path nor an abstract `@name`")]
    BadSocket(String),
    #[error("cannot create a socket to notify systemd: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot send `{message}` to systemd at {socket}: {source}")]
    Send {
        message: String,
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("${WATCHDOG_USEC} `{0}` is not a positive number of microseconds")]
    BadWatchdogUsec(String),
}

/// Where systemd listens: a file-system socket or a Linux abstract one (`@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketTarget {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl SocketTarget {
    /// Parses `$NOTIFY_SOCKET`'s value.
    pub fn parse(value: &str) -> Result<SocketTarget, NotifyError> {
        if value.is_empty() {
            return Err(NotifyError::EmptySocket);
        }
        if let Some(name) = value.strip_prefix('@') {
            if name.is_empty() {
                return Err(NotifyError::BadSocket(value.to_string()));
            }
            return Ok(SocketTarget::Abstract(name.as_bytes().to_vec()));
        }
        if value.starts_with('/') {
            return Ok(SocketTarget::Path(PathBuf::from(value)));
        }
        Err(NotifyError::BadSocket(value.to_string()))
    }

    fn display(&self) -> String {
        match self {
            SocketTarget::Path(p) => p.display().to_string(),
            SocketTarget::Abstract(name) => format!("@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Sends notify messages to systemd, or does nothing when not started by it.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<SocketTarget>,
}

impl Notifier {
    /// A notifier that never sends (not under systemd).
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// A notifier for `socket`, written as `$NOTIFY_SOCKET` would be (`/path` or `@name`).
    pub fn new(socket: &str) -> Result<Notifier, NotifyError> {
        Ok(Notifier {
            target: Some(SocketTarget::parse(socket)?),
        })
    }

    /// From `$NOTIFY_SOCKET`: disabled when it is unset. Read it once, at start.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET) {
            None => Ok(Notifier::disabled()),
            Some(v) => Notifier::new(&v.to_string_lossy()),
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: start-up finished.
    pub fn ready(&self) -> Result<bool, NotifyError> {
        self.send("READY=1")
    }

    /// `WATCHDOG=1`: the daemon is alive. Send only from a loop that proves it.
    pub fn watchdog(&self) -> Result<bool, NotifyError> {
        self.send("WATCHDOG=1")
    }

    /// `STOPPING=1`: a shutdown has begun.
    pub fn stopping(&self) -> Result<bool, NotifyError> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<text>`, shown by `systemctl status`. Newlines would start a new assignment
    /// in the protocol, so they become spaces.
    pub fn status(&self, text: &str) -> Result<bool, NotifyError> {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"))
    }

    /// Sends one message (one or more `KEY=value` lines). `Ok(false)` when disabled.
    pub fn send(&self, message: &str) -> Result<bool, NotifyError> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        let sent = match target {
            SocketTarget::Path(path) => socket.send_to(message.as_bytes(), path),
            SocketTarget::Abstract(name) => send_abstract(&socket, name, message.as_bytes()),
        };
        match sent {
            Ok(_) => Ok(true),
            Err(source) => Err(NotifyError::Send {
                message: message.to_string(),
                socket: target.display(),
                source,
            }),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], bytes: &[u8]) -> std::io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(bytes, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract Unix sockets exist only on Linux",
    ))
}

/// How often to send `WATCHDOG=1`: half of the watchdog period, as `sd_watchdog_enabled(3)`
/// advises, so one late round does not get the daemon killed. `None` when no watchdog is
/// asked for (`usec` unset) or it is meant for another process (`pid` set and not `own_pid`).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        // A malformed pid cannot be ours either: better no keep-alives than a wrong target.
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n) / 2)),
        _ => Err(NotifyError::BadWatchdogUsec(usec.to_string())),
    }
}

/// [`watchdog_interval_from`] over `$WATCHDOG_USEC`, `$WATCHDOG_PID` and this process's pid.
pub fn watchdog_interval() -> Result<Option<Duration>, NotifyError> {
    let usec = std::env::var(WATCHDOG_USEC).ok();
    let pid = std::env::var(WATCHDOG_PID).ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let text = path.to_str().expect("utf-8 temp path").to_string();
        (dir, sock, text)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sd_notify_messages_arrive_as_datagrams_on_a_path_socket() {
        let (_dir, sock, path) = listener();
        let n = Notifier::new(&path).expect("notifier");
        assert!(n.enabled());
        assert!(n.ready().expect("ready"));
        assert_eq!(recv(&sock), "READY=1");
        assert!(n.watchdog().expect("watchdog"));
        assert_eq!(recv(&sock), "WATCHDOG=1");
        assert!(n.status("active\nepoch 3").expect("status"));
        assert_eq!(recv(&sock), "STATUS=active epoch 3");
        assert!(n.stopping().expect("stopping"));
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sd_notify_abstract_socket_names_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "syncguard-test-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        );
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::new(&format!("@{name}")).expect("notifier");
        assert!(n.ready().expect("ready"));
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn sd_notify_disabled_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.enabled());
        assert!(!n.ready().expect("no-op"));
        assert!(!n.watchdog().expect("no-op"));
        assert!(!n.status("x").expect("no-op"));
        assert!(!n.stopping().expect("no-op"));
    }

    #[test]
    fn sd_notify_a_missing_listener_is_an_error_naming_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gone.sock");
        let n = Notifier::new(path.to_str().expect("utf-8")).expect("notifier");
        let err = n.ready().expect_err("nobody listens");
        let text = err.to_string();
        assert!(text.contains("READY=1"), "{text}");
        assert!(text.contains("gone.sock"), "{text}");
    }

    #[test]
    fn sd_notify_socket_values_are_checked() {
        assert!(matches!(
            SocketTarget::parse(""),
            Err(NotifyError::EmptySocket)
        ));
        assert!(matches!(
            SocketTarget::parse("@"),
            Err(NotifyError::BadSocket(_))
        ));
        assert!(matches!(
            SocketTarget::parse("run/notify"),
            Err(NotifyError::BadSocket(_))
        ));
        assert_eq!(
            SocketTarget::parse("/run/systemd/notify").expect("path"),
            SocketTarget::Path(PathBuf::from("/run/systemd/notify"))
        );
        assert_eq!(
            SocketTarget::parse("@sd").expect("abstract"),
            SocketTarget::Abstract(b"sd".to_vec())
        );
    }

    #[test]
    fn sd_notify_watchdog_interval_is_half_the_period_for_this_pid_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval_from(None, None, 7).expect("ok"), None);
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, 7).expect("ok"),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("7"), 7).expect("ok"),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("8"), 7).expect("ok"),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), 7).expect("ok"),
            None
        );
        for bad in ["0", "-5", "soon", ""] {
            assert!(
                matches!(
                    watchdog_interval_from(Some(bad), None, 7),
                    Err(NotifyError::BadWatchdogUsec(_))
                ),
                "{bad}"
            );
        }
    }
}
