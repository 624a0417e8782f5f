//! [`EtcdBackend`]: the lock on a real etcd v3 cluster (feature `etcd`).
//!
//! Keys under `coordination.etcd.prefix` (default `/syncguard`):
//! - `<prefix>/leader`: `{"node_id":..,"priority":..}`, attached to the holder's lease. The
//!   epoch is its create revision.
//! - `<prefix>/watermark`: `{"hrs":{"height":..,"round":..,"step":..},"epoch":..}`.
//!
//! One client per endpoint, tried in turn starting with the last one that answered, each try
//! bounded by [`EtcdOptions::op_timeout`]: the holder knows which member it talks to, and a
//! dead or cut-off member costs one timeout at most. Requests carry etcd's "require leader"
//! flag, so a member cut off from its quorum refuses at once instead of answering stale.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, KeyValue, PutOptions,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use syncguard_config::EtcdConfig;
use syncguard_validator::Hrs;

use crate::backend::{AcquireOutcome, BoxFuture, Holder, Lease, LockBackend, Renewed, Watermark};
use crate::error::CoordError;
use crate::record::{decode_leader, decode_watermark, encode, LeaderValue};

/// Client-side settings that are not in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdOptions {
    /// One try against one endpoint (connect included).
    pub op_timeout: Duration,
}

impl EtcdOptions {
    /// A tenth of the lease, between 200 ms and 2 s: three members tried in turn still fit
    /// well inside the time between the renewal at ttl/3 and the fence.
    pub fn for_ttl(ttl: Duration) -> Self {
        EtcdOptions {
            op_timeout: (ttl / 10).clamp(Duration::from_millis(200), Duration::from_secs(2)),
        }
    }
}

struct Member {
    url: String,
    client: Client,
}

/// The etcd backend. See the module docs.
pub struct EtcdBackend {
    members: Vec<Member>,
    current: AtomicUsize,
    leader_key: String,
    watermark_key: String,
    ttl_secs: i64,
    options: EtcdOptions,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.endpoints())
            .field("leader_key", &self.leader_key)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// One try's failure: try the next endpoint, or stop with this answer.
enum Attempt {
    Next(String),
    Stop(CoordError),
}

impl From<etcd_client::Error> for Attempt {
    fn from(e: etcd_client::Error) -> Self {
        Attempt::Next(e.to_string())
    }
}

impl From<CoordError> for Attempt {
    fn from(e: CoordError) -> Self {
        Attempt::Stop(e)
    }
}

fn read_pem(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, CoordError> {
    std::fs::read(path).map_err(|e| CoordError::Config {
        key,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

impl EtcdBackend {
    /// Builds one client per `coordination.etcd.endpoints` entry. Connections are made on
    /// first use, so an unreachable member is no error here.
    pub async fn connect(cfg: &EtcdConfig, options: EtcdOptions) -> Result<Self, CoordError> {
        if cfg.endpoints.is_empty() {
            return Err(CoordError::Config {
                key: "coordination.etcd.endpoints",
                reason: "no endpoint".into(),
            });
        }
        if !(cfg.lease_ttl.is_finite() && cfg.lease_ttl >= 1.0 && cfg.lease_ttl <= 1e9) {
            return Err(CoordError::Config {
                key: "coordination.etcd.lease_ttl",
                reason: format!(
                    "{} s: etcd leases are whole seconds, at least 1",
                    cfg.lease_ttl
                ),
            });
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.op_timeout)
            .with_timeout(options.op_timeout)
            .with_require_leader(true);
        if let Some(tls) = &cfg.tls {
            let ca = read_pem("coordination.etcd.tls.ca_cert", &tls.ca_cert)?;
            let cert = read_pem("coordination.etcd.tls.cert", &tls.cert)?;
            let key = read_pem("coordination.etcd.tls.key", &tls.key)?;
            connect = connect.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key)),
            );
            if let Some(plain) = cfg.endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(CoordError::Config {
                    key: "coordination.etcd.endpoints",
                    reason: format!("{plain}: coordination.etcd.tls is set, use https://"),
                });
            }
        }
        let mut members = Vec::with_capacity(cfg.endpoints.len());
        for url in &cfg.endpoints {
            let client = Client::connect([url.as_str()], Some(connect.clone()))
                .await
                .map_err(|e| CoordError::Config {
                    key: "coordination.etcd.endpoints",
                    reason: format!("{url}: {e}"),
                })?;
            members.push(Member {
                url: url.clone(),
                client,
            });
        }
        let prefix = cfg.prefix.trim_end_matches('/');
        Ok(EtcdBackend {
            members,
            current: AtomicUsize::new(0),
            leader_key: format!("{prefix}/leader"),
            watermark_key: format!("{prefix}/watermark"),
            // Whole seconds, rounded up: the holder's proof uses min(config, granted) anyway.
            ttl_secs: cfg.lease_ttl.ceil() as i64,
            options,
        })
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.url.as_str()).collect()
    }

    /// The endpoint the next call tries first (the last one that answered).
    pub fn current_endpoint(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.members.len();
        &self.members[i].url
    }

    /// Runs `f` against the members in turn until one answers.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, CoordError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let n = self.members.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let m = &self.members[idx];
            match tokio::time::timeout(self.options.op_timeout, f(m.client.clone())).await {
                Ok(Ok(v)) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(Attempt::Stop(e))) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Err(e);
                }
                Ok(Err(Attempt::Next(why))) => failures.push(format!("{}: {why}", m.url)),
                Err(_) => failures.push(format!(
                    "{}: no answer within {:?}",
                    m.url, self.options.op_timeout
                )),
            }
        }
        tracing::debug!(op, ?failures, "no etcd member answered");
        Err(CoordError::Unavailable {
            op,
            detail: failures.join("; "),
        })
    }

    fn holder_of(&self, kv: &KeyValue) -> Result<Holder, CoordError> {
        let v = decode_leader(&self.leader_key, kv.value())?;
        Ok(Holder {
            node_id: v.node_id,
            priority: v.priority,
            epoch: revision(kv.create_revision()),
        })
    }

    async fn holder_kv(&self, op: &'static str) -> Result<Option<KeyValue>, CoordError> {
        let key = self.leader_key.clone();
        self.call(op, |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key, None).await?.kvs().first().cloned()) }
        })
        .await
    }

    async fn acquire_impl(
        &self,
        node_id: &str,
        priority: u32,
    ) -> Result<AcquireOutcome, CoordError> {
        // A look first, so that a standing-by node does not grant itself a lease per try.
        if let Some(kv) = self.holder_kv("acquire").await? {
            return Ok(AcquireOutcome::Held(self.holder_of(&kv)?));
        }
        let ttl = self.ttl_secs;
        let (lease_id, granted) = self
            .call("acquire", |mut c| async move {
                let r = c.lease_grant(ttl, None).await?;
                if !r.error().is_empty() {
                    return Err(Attempt::Next(r.error().to_string()));
                }
                Ok((r.id(), r.ttl()))
            })
            .await?;
        let value = encode(&LeaderValue {
            node_id: node_id.to_string(),
            priority,
        });
        let key = self.leader_key.clone();
        let outcome = self
            .call("acquire", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key.clone(),
                            value,
                            Some(PutOptions::new().with_lease(lease_id)),
                        )])
                        .or_else([TxnOp::get(key, None)]);
                    let r = c.txn(txn).await?;
                    if r.succeeded() {
                        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
                        return Ok(Ok(revision(rev)));
                    }
                    let kv = r.op_responses().into_iter().find_map(|o| match o {
                        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                        _ => None,
                    });
                    Ok(Err(kv))
                }
            })
            .await?;
        let ttl = Duration::from_secs(u64::try_from(granted).unwrap_or(0));
        let lease = |epoch| Lease {
            node_id: node_id.to_string(),
            priority,
            epoch,
            lease_id,
            ttl,
        };
        match outcome {
            Ok(epoch) if epoch > 0 => Ok(AcquireOutcome::Acquired(lease(epoch))),
            Ok(_) => Err(CoordError::Corrupt {
                key: self.leader_key.clone(),
                reason: "the transaction that created it carried no revision".into(),
            }),
            // An earlier try that timed out may have committed: the key is then ours.
            Err(Some(kv)) if kv.lease() == lease_id => Ok(AcquireOutcome::Acquired(lease(
                revision(kv.create_revision()),
            ))),
            Err(found) => {
                // Lost the race: give the unused lease back (it would expire anyway).
                let _ = self
                    .call("acquire", |mut c| async move {
                        c.lease_revoke(lease_id)
                            .await
                            .map(|_| ())
                            .map_err(Attempt::from)
                    })
                    .await;
                match found {
                    Some(kv) => Ok(AcquireOutcome::Held(self.holder_of(&kv)?)),
                    // Created and gone again between the compare and the get: nobody now.
                    None => Err(CoordError::Unavailable {
                        op: "acquire",
                        detail: "the leader key changed during the transaction; try again".into(),
                    }),
                }
            }
        }
    }

    async fn renew_impl(&self, lease: &Lease) -> Result<Renewed, CoordError> {
        let (id, epoch, ttl) = (lease.lease_id, lease.epoch, lease.ttl);
        self.call("renew", |mut c| async move {
            match c.lease_keep_alive(id).await {
                // `keep_alive` waits for the first answer and fails when its TTL is 0.
                Ok(_) => Ok(Renewed { ttl }),
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    Err(Attempt::Stop(CoordError::LeaseLost {
                        epoch,
                        lease_id: id,
                    }))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn release_impl(&self, lease: &Lease) -> Result<(), CoordError> {
        let (key, epoch, id) = (self.leader_key.clone(), lease.epoch as i64, lease.lease_id);
        self.call("release", |mut c| {
            let key = key.clone();
            async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        epoch,
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                c.txn(txn).await?;
                match c.lease_revoke(id).await {
                    Ok(_) => Ok(()),
                    // Already expired or revoked: what release wanted.
                    Err(etcd_client::Error::GRpcStatus(s))
                        if s.message().contains("lease not found") =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await
    }

    async fn watermark_kv(&self, op: &'static str) -> Result<Option<KeyValue>, CoordError> {
        let key = self.watermark_key.clone();
        self.call(op, |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key, None).await?.kvs().first().cloned()) }
        })
        .await
    }

    async fn put_watermark_impl(&self, lease: &Lease, hrs: Hrs) -> Result<Watermark, CoordError> {
        // Read, then write the max under two compares: the leader key is still this epoch's,
        // and the watermark did not move meanwhile. Only a holder writes, so a retry is rare.
        for _ in 0..5 {
            let current = self.watermark_kv("put_watermark").await?;
            let (stored, mod_rev) = match &current {
                Some(kv) => (
                    Some(decode_watermark(&self.watermark_key, kv.value())?),
                    kv.mod_revision(),
                ),
                None => (None, 0),
            };
            let target = match stored {
                Some(w) if w.hrs >= hrs => w,
                _ => Watermark {
                    hrs,
                    epoch: lease.epoch,
                },
            };
            let raise = Some(target) != stored;
            let (lk, wk) = (self.leader_key.clone(), self.watermark_key.clone());
            let value = encode(&target);
            let epoch = lease.epoch as i64;
            let answer = self
                .call("put_watermark", |mut c| {
                    let (lk, wk, value) = (lk.clone(), wk.clone(), value.clone());
                    async move {
                        let writes = if raise {
                            vec![TxnOp::put(wk.clone(), value, None)]
                        } else {
                            vec![]
                        };
                        let txn = Txn::new()
                            .when([
                                Compare::create_revision(lk.clone(), CompareOp::Equal, epoch),
                                Compare::mod_revision(wk, CompareOp::Equal, mod_rev),
                            ])
                            .and_then(writes)
                            .or_else([TxnOp::get(lk, None)]);
                        let r = c.txn(txn).await?;
                        if r.succeeded() {
                            return Ok(None);
                        }
                        let kv = r.op_responses().into_iter().find_map(|o| match o {
                            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                            _ => None,
                        });
                        Ok(Some(kv))
                    }
                })
                .await?;
            match answer {
                None => return Ok(target),
                Some(Some(kv)) if revision(kv.create_revision()) == lease.epoch => continue,
                Some(kv) => {
                    let holder = kv.map(|kv| self.holder_of(&kv)).transpose()?;
                    return Err(CoordError::NotHolder {
                        epoch: lease.epoch,
                        holder,
                    });
                }
            }
        }
        Err(CoordError::Unavailable {
            op: "put_watermark",
            detail: "the watermark kept changing under this holder (5 tries)".into(),
        })
    }
}

fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

impl LockBackend for EtcdBackend {
    fn acquire<'a>(
        &'a self,
        node_id: &'a str,
        priority: u32,
    ) -> BoxFuture<'a, Result<AcquireOutcome, CoordError>> {
        Box::pin(self.acquire_impl(node_id, priority))
    }

    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Renewed, CoordError>> {
        Box::pin(self.renew_impl(lease))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(self.release_impl(lease))
    }

    fn put_watermark<'a>(
        &'a self,
        lease: &'a Lease,
        hrs: Hrs,
    ) -> BoxFuture<'a, Result<Watermark, CoordError>> {
        Box::pin(self.put_watermark_impl(lease, hrs))
    }

    fn get_watermark(&self) -> BoxFuture<'_, Result<Option<Watermark>, CoordError>> {
        Box::pin(async move {
            match self.watermark_kv("get_watermark").await? {
                Some(kv) => Ok(Some(decode_watermark(&self.watermark_key, kv.value())?)),
                None => Ok(None),
            }
        })
    }

    fn current_holder(&self) -> BoxFuture<'_, Result<Option<Holder>, CoordError>> {
        Box::pin(async move {
            match self.holder_kv("current_holder").await? {
                Some(kv) => Ok(Some(self.holder_of(&kv)?)),
                None => Ok(None),
            }
        })
    }
}
