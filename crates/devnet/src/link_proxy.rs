//! A TCP proxy on the SyncGuard-to-SyncGuard link, so a test can cut only that link (the
//! nodes, the chain and the operator's API stay reachable). TLS runs end to end through it:
//! the proxy only copies bytes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// One direction of the link: listens on [`LinkProxy::addr`], forwards to `target`.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on a free loopback port. Needs a tokio runtime.
    pub async fn start(target: SocketAddr) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, target, cut.clone(), conns.clone()));
        Ok(LinkProxy {
            addr,
            cut,
            conns,
            accept,
        })
    }

    /// Where the peer should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cut: open connections are dropped at once, new ones are closed on arrival (the
    /// caller sees a reset or an empty answer, as with a dead link). Heal: forward again.
    pub fn set_cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
        if on {
            let mut conns = match self.conns.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            for c in conns.drain(..) {
                c.abort();
            }
        }
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_cut(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let task = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        let mut list = match conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.retain(|h| !h.is_finished());
        list.push(task.abort_handle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn devnet_link_proxy_forwards_and_cuts() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = LinkProxy::start(target).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        proxy.set_cut(true);
        // The open connection is gone: reads end (EOF or reset), never an echo.
        let mut rest = [0u8; 4];
        let _ = c.write_all(b"pong").await;
        let got = c.read(&mut rest).await.unwrap_or(0);
        assert_eq!(got, 0, "a cut link carries nothing");
        // New connections are closed on arrival.
        let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = d.write_all(b"x").await;
        assert_eq!(d.read(&mut rest).await.unwrap_or(0), 0);
        proxy.set_cut(false);
        let mut e = TcpStream::connect(proxy.addr()).await.unwrap();
        e.write_all(b"back").await.unwrap();
        e.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
    }
}
