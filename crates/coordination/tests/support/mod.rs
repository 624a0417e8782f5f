//! Test support for the real-etcd tests: a three-member etcd cluster on loopback, or one
//! member serving clients over TLS with client-certificate authentication (killed on drop),
//! and a TCP proxy the test can cut.

#![allow(dead_code)] // each test binary uses part of it

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The etcd binary, installing it with `scripts/etcd.sh install` when missing. `None` (after
/// printing why) when it cannot be had; under `CI` that is a failure instead.
pub fn etcd_binary() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = locate() {
                return Some(p);
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/etcd.sh");
            let out = Command::new("bash").arg(&script).arg("install").output();
            let why = match &out {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => Some(e.to_string()),
            };
            let found = locate();
            if found.is_none() {
                let msg = format!(
                    "etcd is not installed and `{} install` could not install it ({}): \
                     the real-etcd coordination tests need Debian etcd-server",
                    script.display(),
                    why.unwrap_or_else(|| "no etcd binary afterwards".into())
                );
                if std::env::var_os("CI").is_some() {
                    panic!("{msg} (CI is set: this is a failure, not a skip)");
                }
                eprintln!("SKIPPED: {msg}");
            }
            found
        })
        .clone()
}

fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SYNCGUARD_ETCD") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Skips the test (returns) when etcd cannot be had.
#[macro_export]
macro_rules! etcd_or_skip {
    () => {
        match support::etcd_binary() {
            Some(p) => p,
            None => return,
        }
    };
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Member {
    name: String,
    client: u16,
    /// The port `/health` answers on over plain HTTP (the client port, or the metrics port
    /// of a TLS member).
    health: u16,
    child: Option<Child>,
}

/// The files of a member serving clients over TLS: its certificate and key (for
/// 127.0.0.1/localhost), and the CA whose client certificates it accepts (and only those).
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// etcd members on loopback, each in its own data dir; killed when dropped.
pub struct Cluster {
    members: Vec<Member>,
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts three members and waits until each answers `/health` true.
    pub async fn start(bin: &Path) -> Cluster {
        Self::start_members(bin, 3, None).await
    }

    /// Starts one member whose clients must come over TLS with a certificate from
    /// `tls.ca` (`--client-cert-auth`), and waits until it answers `/health` true (on a plain
    /// HTTP metrics port).
    pub async fn start_tls(bin: &Path, tls: &ServerTls) -> Cluster {
        Self::start_members(bin, 1, Some(tls)).await
    }

    async fn start_members(bin: &Path, n: usize, tls: Option<&ServerTls>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
            let client_url = format!("{scheme}://127.0.0.1:{client}");
            let mut cmd = Command::new(bin);
            cmd.args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("sg-{}", ports[0].0)]);
            let mut health = *client;
            if let Some(tls) = tls {
                health = free_port();
                cmd.arg("--cert-file")
                    .arg(&tls.cert)
                    .arg("--key-file")
                    .arg(&tls.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth")
                    .args([
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{health}"),
                    ]);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn etcd");
            members.push(Member {
                name,
                client: *client,
                health,
                child: Some(child),
            });
        }
        let cluster = Cluster {
            members,
            scheme,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for m in &cluster.members {
            while !healthy(m.health).await {
                if tokio::time::Instant::now() >= deadline {
                    panic!(
                        "etcd member {} not healthy within 30 s; its log ends:\n{}",
                        m.name,
                        cluster.log_tail(&m.name, 15)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        cluster
    }

    /// The last `n` lines of member `name`'s log.
    fn log_tail(&self, name: &str, n: usize) -> String {
        let log = std::fs::read_to_string(self._dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(n).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The last `n` lines of the first member's log (what it said about a refused client).
    pub fn first_log_tail(&self, n: usize) -> String {
        self.log_tail(&self.members[0].name, n)
    }

    /// The client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| self.url_of(m)).collect()
    }

    fn url_of(&self, m: &Member) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, m.client)
    }

    /// The client address of member `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client))
    }

    /// SIGKILLs the member whose client URL is `url`.
    pub fn kill(&mut self, url: &str) {
        let i = (0..self.members.len())
            .find(|&i| self.url_of(&self.members[i]) == url)
            .unwrap_or_else(|| panic!("no member at {url}"));
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn healthy(port: u16) -> bool {
    let get = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body.contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), get).await,
        Ok(Some(true))
    )
}

/// The gRPC requests the members received so far, by method (`Put`, `LeaseKeepAlive`, ...),
/// summed over the members: etcd's `grpc_server_msg_received_total` (a keep-alive on a
/// stream counts once per message, like a unary call).
pub async fn grpc_requests(cluster: &Cluster) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for m in &cluster.members {
        let body = http_get(m.health, "/metrics")
            .await
            .unwrap_or_else(|| panic!("no /metrics from etcd member {}", m.name));
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("grpc_server_msg_received_total{") else {
                continue;
            };
            let method = rest
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("no grpc_method in {line:?}"));
            let count: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"));
            *out.entry(method.to_string()).or_insert(0) += count as u64;
        }
    }
    out
}

/// What grew from `before` to `after` (methods that did not are left out).
pub fn requests_between(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(m, n)| {
            let d = n - before.get(m).copied().unwrap_or(0);
            (d > 0).then(|| (m.clone(), d))
        })
        .collect()
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let get = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .ok()
        .flatten()
}

/// A TCP proxy in front of one etcd member. `cut()` turns it into a black hole: open
/// connections stop moving bytes and new ones are accepted and never answered, so the client
/// sees timeouts, the worst case for a holder.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (cut2, conns2) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((inbound, _)) = listener.accept().await {
                if cut2.load(Ordering::SeqCst) {
                    held.push(inbound); // accepted, never answered
                    continue;
                }
                let cut3 = cut2.clone();
                let task = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(pump(ir, ow, cut3.clone()), pump(or, iw, cut3));
                });
                conns2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            cut,
            conns,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops every byte from now on (the sockets stay open: a black hole, not a reset).
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

/// Copies `r` to `w` until EOF; once cut, holds both ends open and moves nothing.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.abort();
        }
    }
}
