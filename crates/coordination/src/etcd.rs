//! [`EtcdBackend`]: the lock on a real etcd v3 cluster (feature `etcd`).
//!
//! Keys under `coordination.etcd.prefix` (default `/syncguard`):
//! - `<prefix>/leader`: `{"node_id":..,"priority":..}`, attached to the holder's lease. The
//!   epoch is its create revision.
//! - `<prefix>/watermark`: `{"hrs":{"height":..,"round":..,"step":..},"epoch":..}`.
//! - `<prefix>/handover`: `{"from":..,"to":..,"from_epoch":..,"final_state":{..}|null}`, under
//!   its own short lease: a planned handover waiting for its target.
//! - `<prefix>/request`: `{"from":..,"kind":"switchover"|"fallback","at_unix_ms":..}`, under
//!   its own short lease: a node asking the holder for the role.
//! - `<prefix>/paused`: `{"by":..,"at_unix_ms":..}`, no lease: the cluster-wide pause.
//! - `<prefix>/members/<node_id>`: the node's status (a JSON object, at most
//!   [`crate::MAX_MEMBER_STATUS_BYTES`]), under the lease its backend instance keeps for its
//!   member keys: a node that stops publishing disappears by itself.
//!
//! Every change of the leader key is one transaction with compares on the keys it depends
//! on; a transaction whose answer was lost may be sent again to the next member, so each
//! failure branch reads back enough to tell "an earlier try of mine committed" (the key
//! carries my new lease) from "somebody else changed it".
//!
//! One client per endpoint, tried in turn starting with the last one that answered, each try
//! bounded by [`EtcdOptions::op_timeout`]: the holder knows which member it talks to, and a
//! dead or cut-off member costs one timeout at most. Requests carry etcd's "require leader"
//! flag, so a member cut off from its quorum refuses at once instead of answering stale.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use syncguard_config::EtcdConfig;
use syncguard_validator::Hrs;
use zeroize::Zeroizing;

use crate::backend::{
    unix_ms_now, AcquireOutcome, BoxFuture, ClusterView, Handover, Holder, Lease, LockBackend,
    Member, Paused, Renewed, Request, RequestKind, Watermark,
};
use crate::error::CoordError;
use crate::etcd_tls::{Preflight, Verdict};
use crate::record::{
    check_node_id, decode, decode_leader, decode_member, decode_watermark, encode, encode_member,
    node_id_fault, LeaderValue,
};

/// How often a transaction is tried again when a key it compares moved in between (the
/// watermark under a holder, a handover replaced): rare, so a few tries are plenty.
const TXN_TRIES: usize = 5;

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

struct Endpoint {
    url: String,
    client: Client,
}

/// The lease this instance's member keys go under ([`LockBackend::put_member`]).
#[derive(Debug, Clone, Copy)]
struct MemberLease {
    id: i64,
    /// The ttl it was asked with (whole seconds): another ttl gets a new lease.
    ttl_secs: i64,
}

/// The etcd backend. See the module docs.
pub struct EtcdBackend {
    members: Vec<Endpoint>,
    current: AtomicUsize,
    /// `<prefix>/`: the range [`LockBackend::view`] reads.
    dir: String,
    leader_key: String,
    watermark_key: String,
    handover_key: String,
    request_key: String,
    paused_key: String,
    /// `<prefix>/members/`: each node's status under it.
    members_dir: String,
    /// Held across a whole put (or remove), so that concurrent puts share one lease.
    member_lease: tokio::sync::Mutex<Option<MemberLease>>,
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
        Attempt::Next(error_chain(&e))
    }
}

/// An error with its causes (`transport error: …: invalid peer certificate: UnknownIssuer`):
/// tonic's own message alone ("transport error") says nothing about a TLS refusal.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let words = c.to_string();
        if !out.contains(&words) {
            out.push_str(": ");
            out.push_str(&words);
        }
        cause = c.source();
    }
    out
}

/// A lease id etcd does not know (expired or revoked already).
fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("lease not found"))
}

/// What a conditional transaction answered: committed at a revision, or the keys its
/// failure branch read (in the order asked).
enum TxnAnswer {
    Committed(u64),
    Failed(Vec<Option<KeyValue>>),
}

impl From<TxnResponse> for TxnAnswer {
    fn from(r: TxnResponse) -> Self {
        if r.succeeded() {
            return TxnAnswer::Committed(revision(r.header().map(|h| h.revision()).unwrap_or(0)));
        }
        TxnAnswer::Failed(
            r.op_responses()
                .into_iter()
                .map(|o| match o {
                    TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// Everything under the prefix at one revision, undecoded.
#[derive(Default)]
struct Snapshot {
    revision: u64,
    leader: Option<KeyValue>,
    watermark: Option<KeyValue>,
    handover: Option<KeyValue>,
    request: Option<KeyValue>,
    paused: Option<KeyValue>,
    /// Under `<prefix>/members/`, in key order.
    members: Vec<KeyValue>,
}

/// A lease ttl in whole seconds, rounded up, at least 1 (etcd's unit).
fn whole_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

impl From<CoordError> for Attempt {
    fn from(e: CoordError) -> Self {
        Attempt::Stop(e)
    }
}

/// One TLS handshake per member (in parallel): refuses the config when members answered and
/// every one of them refused this node's certificates (or its CA did not vouch for theirs);
/// a member that refuses while another accepts is logged. Unreachable members say nothing.
async fn check_tls(
    preflight: &Arc<Preflight>,
    endpoints: &[String],
    timeout: Duration,
) -> Result<(), CoordError> {
    let mut checks = tokio::task::JoinSet::new();
    for url in endpoints {
        let (p, url) = (preflight.clone(), url.clone());
        checks.spawn(async move {
            let verdict = p.check(&url, timeout).await;
            (url, verdict)
        });
    }
    let (mut accepted, mut refused) = (false, Vec::new());
    while let Some(done) = checks.join_next().await {
        match done {
            Ok((_, Verdict::Accepted)) => accepted = true,
            Ok((url, Verdict::Unknown(why))) => {
                tracing::debug!(%url, %why, "etcd TLS check: no verdict")
            }
            Ok((url, Verdict::Refused(e))) => refused.push((url, e)),
            Err(e) => tracing::debug!(error = %e, "etcd TLS check did not finish"),
        }
    }
    refused.sort_by(|a, b| a.0.cmp(&b.0));
    if accepted {
        for (url, e) in &refused {
            tracing::error!(%url, "etcd member refuses this node's TLS settings: {e}");
        }
        return Ok(());
    }
    match refused.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
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
        let mut preflight = None;
        if let Some(tls) = &cfg.tls {
            let ca = read_pem("coordination.etcd.tls.ca_cert", &tls.ca_cert)?;
            let cert = read_pem("coordination.etcd.tls.cert", &tls.cert)?;
            let key = Zeroizing::new(read_pem("coordination.etcd.tls.key", &tls.key)?);
            preflight = Some(Arc::new(Preflight::new(tls, &ca, &cert, &key)?));
            connect = connect.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, &*key)),
            );
            if let Some(plain) = cfg.endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(CoordError::Config {
                    key: "coordination.etcd.endpoints",
                    reason: format!("{plain}: coordination.etcd.tls is set, use https://"),
                });
            }
        } else if let Some(tls) = cfg.endpoints.iter().find(|e| e.starts_with("https://")) {
            // Without the CA to trust and a client certificate, no TLS etcd would let us in.
            return Err(CoordError::Config {
                key: "coordination.etcd.tls",
                reason: format!(
                    "{tls} is https://: set coordination.etcd.tls (ca_cert: the CA that signed \
                     the etcd members' certificates, cert and key: this node's client \
                     certificate)"
                ),
            });
        }
        let mut members = Vec::with_capacity(cfg.endpoints.len());
        for url in &cfg.endpoints {
            let client = Client::connect([url.as_str()], Some(connect.clone()))
                .await
                .map_err(|e| CoordError::Config {
                    key: "coordination.etcd.endpoints",
                    reason: format!("{url}: {e}"),
                })?;
            members.push(Endpoint {
                url: url.clone(),
                client,
            });
        }
        if let Some(preflight) = preflight {
            check_tls(&preflight, &cfg.endpoints, options.op_timeout).await?;
        }
        let prefix = cfg.prefix.trim_end_matches('/');
        Ok(EtcdBackend {
            members,
            current: AtomicUsize::new(0),
            dir: format!("{prefix}/"),
            leader_key: format!("{prefix}/leader"),
            watermark_key: format!("{prefix}/watermark"),
            handover_key: format!("{prefix}/handover"),
            request_key: format!("{prefix}/request"),
            paused_key: format!("{prefix}/paused"),
            members_dir: format!("{prefix}/members/"),
            member_lease: tokio::sync::Mutex::new(None),
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

    fn handover_of(&self, kv: &KeyValue) -> Result<Handover, CoordError> {
        decode(&self.handover_key, kv.value())
    }

    /// One range read of the prefix.
    async fn snapshot(&self, op: &'static str) -> Result<Snapshot, CoordError> {
        let dir = self.dir.clone();
        let mut r = self
            .call(op, |mut c| {
                let dir = dir.clone();
                async move { Ok(c.get(dir, Some(GetOptions::new().with_prefix())).await?) }
            })
            .await?;
        let mut snap = Snapshot {
            revision: revision(r.header().map(|h| h.revision()).unwrap_or(0)),
            ..Snapshot::default()
        };
        for kv in r.take_kvs() {
            if kv.key().starts_with(self.members_dir.as_bytes()) {
                snap.members.push(kv);
                continue;
            }
            let slot = match kv.key() {
                k if k == self.leader_key.as_bytes() => &mut snap.leader,
                k if k == self.watermark_key.as_bytes() => &mut snap.watermark,
                k if k == self.handover_key.as_bytes() => &mut snap.handover,
                k if k == self.request_key.as_bytes() => &mut snap.request,
                k if k == self.paused_key.as_bytes() => &mut snap.paused,
                _ => continue, // not ours to read
            };
            *slot = Some(kv);
        }
        Ok(snap)
    }

    async fn view_impl(&self) -> Result<ClusterView, CoordError> {
        let snap = self.snapshot("view").await?;
        Ok(ClusterView {
            revision: snap.revision,
            holder: snap.leader.map(|kv| self.holder_of(&kv)).transpose()?,
            handover: snap.handover.map(|kv| self.handover_of(&kv)).transpose()?,
            request: snap
                .request
                .map(|kv| decode(&self.request_key, kv.value()))
                .transpose()?,
            paused: snap
                .paused
                .map(|kv| decode(&self.paused_key, kv.value()))
                .transpose()?,
            watermark: snap
                .watermark
                .map(|kv| decode_watermark(&self.watermark_key, kv.value()))
                .transpose()?,
            members: self.members_of(snap.members),
        })
    }

    /// The member statuses that can be read, sorted by node id; the others are logged (with
    /// their key) and left out: one bad entry does not hide the other nodes.
    fn members_of(&self, kvs: Vec<KeyValue>) -> Vec<Member> {
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let corrupt = |reason: String| CoordError::Corrupt {
                key: key.clone(),
                reason,
            };
            let node_id = kv
                .key()
                .strip_prefix(self.members_dir.as_bytes())
                .ok_or_else(|| corrupt("not under the members' prefix".into()))
                .and_then(|rest| {
                    std::str::from_utf8(rest)
                        .map_err(|_| corrupt("the node id is not UTF-8".into()))
                })
                .and_then(|id| match node_id_fault(id) {
                    Some(reason) => Err(corrupt(reason)),
                    None => Ok(id.to_string()),
                });
            let member = node_id.and_then(|node_id| {
                Ok(Member {
                    status: decode_member(&key, kv.value())?,
                    node_id,
                })
            });
            match member {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!(%key, error = %e, "member status left out of the view"),
            }
        }
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }

    /// One keep-alive of lease `id`: `Ok(false)` when etcd no longer knows it.
    async fn keep_alive(&self, op: &'static str, id: i64) -> Result<bool, CoordError> {
        self.call(op, |mut c| async move {
            match c.lease_keep_alive(id).await {
                // `keep_alive` waits for the first answer and fails when its TTL is 0.
                Ok(_) => Ok(true),
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// A new lease of `ttl_secs`: (id, granted ttl in seconds).
    async fn grant(&self, op: &'static str, ttl_secs: i64) -> Result<(i64, i64), CoordError> {
        self.call(op, |mut c| async move {
            let r = c.lease_grant(ttl_secs, None).await?;
            if !r.error().is_empty() {
                return Err(Attempt::Next(r.error().to_string()));
            }
            Ok((r.id(), r.ttl()))
        })
        .await
    }

    /// Revokes a lease; one etcd no longer knows is what was wanted.
    async fn revoke(&self, op: &'static str, id: i64) -> Result<(), CoordError> {
        self.call(op, |mut c| async move {
            match c.lease_revoke(id).await {
                Ok(_) => Ok(()),
                Err(e) if lease_not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Revokes a lease that carries nothing any more (it would expire by itself anyway):
    /// a failure is only logged.
    async fn revoke_unused(&self, op: &'static str, id: i64) {
        if let Err(e) = self.revoke(op, id).await {
            tracing::debug!(op, lease_id = id, error = %e, "unused lease not revoked (it expires)");
        }
    }

    /// Sends one transaction (see [`TxnAnswer`]).
    async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnAnswer, CoordError> {
        self.call(op, |mut c| {
            let txn = txn.clone();
            async move { Ok(TxnAnswer::from(c.txn(txn).await?)) }
        })
        .await
    }

    async fn acquire_impl(
        &self,
        node_id: &str,
        priority: u32,
    ) -> Result<AcquireOutcome, CoordError> {
        // A look first, so that a standing-by node does not grant itself a lease per try.
        let snap = self.snapshot("acquire").await?;
        if let Some(kv) = &snap.leader {
            return Ok(AcquireOutcome::Held(self.holder_of(kv)?));
        }
        // The handover this node would consume, with the mod revision the transaction
        // compares (0: there must be none).
        let mut pending = match &snap.handover {
            Some(kv) => {
                let h = self.handover_of(kv)?;
                if h.to != node_id {
                    return Ok(AcquireOutcome::HandoverPending(h));
                }
                Some((h, kv.mod_revision()))
            }
            None => None,
        };
        let (lease_id, granted) = self.grant("acquire", self.ttl_secs).await?;
        let value = encode(&LeaderValue {
            node_id: node_id.to_string(),
            priority,
        });
        let ttl = Duration::from_secs(u64::try_from(granted).unwrap_or(0));
        let lease = |epoch, handover| Lease {
            node_id: node_id.to_string(),
            priority,
            epoch,
            lease_id,
            ttl,
            handover,
        };
        let (lk, hk) = (self.leader_key.as_str(), self.handover_key.as_str());
        for _ in 0..TXN_TRIES {
            let mut then = vec![TxnOp::put(
                lk,
                value.clone(),
                Some(PutOptions::new().with_lease(lease_id)),
            )];
            if pending.is_some() {
                then.push(TxnOp::delete(hk, None));
            }
            let expected = pending.as_ref().map_or(0, |p| p.1);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(lk, CompareOp::Equal, 0),
                    Compare::mod_revision(hk, CompareOp::Equal, expected),
                ])
                .and_then(then)
                .or_else([TxnOp::get(lk, None), TxnOp::get(hk, None)]);
            let (leader, handover) = match self.txn("acquire", txn).await? {
                TxnAnswer::Committed(0) => {
                    return Err(CoordError::Corrupt {
                        key: self.leader_key.clone(),
                        reason: "the transaction that created it carried no revision".into(),
                    })
                }
                TxnAnswer::Committed(epoch) => {
                    return Ok(AcquireOutcome::Acquired(lease(epoch, pending.map(|p| p.0))))
                }
                TxnAnswer::Failed(mut kvs) => (
                    kvs.get_mut(0).and_then(Option::take),
                    kvs.get_mut(1).and_then(Option::take),
                ),
            };
            match (leader, handover) {
                // An earlier try that timed out committed: the key is ours (and the handover
                // it compared is consumed).
                (Some(kv), _) if kv.lease() == lease_id => {
                    let epoch = revision(kv.create_revision());
                    return Ok(AcquireOutcome::Acquired(lease(epoch, pending.map(|p| p.0))));
                }
                (Some(kv), _) => {
                    // Lost the race: give the unused lease back (it would expire anyway).
                    self.revoke_unused("acquire", lease_id).await;
                    return Ok(AcquireOutcome::Held(self.holder_of(&kv)?));
                }
                (None, Some(kv)) => {
                    let h = self.handover_of(&kv)?;
                    if h.to != node_id {
                        self.revoke_unused("acquire", lease_id).await;
                        return Ok(AcquireOutcome::HandoverPending(h));
                    }
                    pending = Some((h, kv.mod_revision()));
                }
                (None, None) => pending = None,
            }
        }
        self.revoke_unused("acquire", lease_id).await;
        Err(CoordError::Unavailable {
            op: "acquire",
            detail: format!(
                "{} and {} kept changing during the transaction ({TXN_TRIES} tries); try again",
                self.leader_key, self.handover_key
            ),
        })
    }

    async fn renew_impl(&self, lease: &Lease) -> Result<Renewed, CoordError> {
        if self.keep_alive("renew", lease.lease_id).await? {
            Ok(Renewed { ttl: lease.ttl })
        } else {
            Err(CoordError::LeaseLost {
                epoch: lease.epoch,
                lease_id: lease.lease_id,
            })
        }
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
                    Err(e) if lease_not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await
    }

    /// The watermark as stored (with its mod revision, 0 when absent) and what it should be
    /// after raising it to `hrs` for `epoch` (`None`: no raise needed).
    async fn watermark_plan(
        &self,
        op: &'static str,
        epoch: u64,
        hrs: Option<Hrs>,
    ) -> Result<(Option<Watermark>, i64, Option<Watermark>), CoordError> {
        let current = self.key_kv(op, &self.watermark_key).await?;
        let (stored, mod_rev) = match &current {
            Some(kv) => (
                Some(decode_watermark(&self.watermark_key, kv.value())?),
                kv.mod_revision(),
            ),
            None => (None, 0),
        };
        let raise = match (stored, hrs) {
            (_, None) => None,
            (Some(w), Some(h)) if w.hrs >= h => None,
            (_, Some(hrs)) => Some(Watermark { hrs, epoch }),
        };
        Ok((stored, mod_rev, raise))
    }

    /// The compares that say "`lease` still holds the leader key and the watermark is as
    /// read" (an etcd compare on a missing key sees revision 0 and lease 0).
    fn holding(&self, lease: &Lease, watermark_rev: i64) -> [Compare; 3] {
        let lk = self.leader_key.as_str();
        [
            Compare::create_revision(lk, CompareOp::Equal, lease.epoch as i64),
            Compare::lease(lk, CompareOp::Equal, lease.lease_id),
            Compare::mod_revision(self.watermark_key.as_str(), CompareOp::Equal, watermark_rev),
        ]
    }

    /// Whether the leader key read back is still `lease`'s.
    fn still_holds(lease: &Lease, kv: &Option<KeyValue>) -> bool {
        kv.as_ref().is_some_and(|kv| {
            revision(kv.create_revision()) == lease.epoch && kv.lease() == lease.lease_id
        })
    }

    async fn put_watermark_impl(&self, lease: &Lease, hrs: Hrs) -> Result<Watermark, CoordError> {
        // Read, then write the max under compares: the leader key is still this lease's, and
        // the watermark did not move meanwhile. Only a holder writes, so a retry is rare.
        for _ in 0..TXN_TRIES {
            let (stored, mod_rev, raise) = self
                .watermark_plan("put_watermark", lease.epoch, Some(hrs))
                .await?;
            let writes: Vec<TxnOp> = raise
                .iter()
                .map(|w| TxnOp::put(self.watermark_key.as_str(), encode(w), None))
                .collect();
            let txn = Txn::new()
                .when(self.holding(lease, mod_rev))
                .and_then(writes)
                .or_else([TxnOp::get(self.leader_key.as_str(), None)]);
            match self.txn("put_watermark", txn).await? {
                TxnAnswer::Committed(_) => {
                    // `raise` is None only when the stored one is at least `hrs`.
                    return raise.or(stored).ok_or_else(|| CoordError::Corrupt {
                        key: self.watermark_key.clone(),
                        reason: "neither stored nor written".into(),
                    });
                }
                TxnAnswer::Failed(kvs) => {
                    let kv = kvs.into_iter().next().flatten();
                    if Self::still_holds(lease, &kv) {
                        continue; // the watermark moved: read it again
                    }
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
            detail: format!(
                "{} kept changing under this holder ({TXN_TRIES} tries)",
                self.watermark_key
            ),
        })
    }

    async fn hand_over_impl(
        &self,
        lease: &Lease,
        to: &str,
        final_state: Option<Hrs>,
        ttl: Duration,
    ) -> Result<bool, CoordError> {
        let (handover_lease, _) = self.grant("hand_over", whole_secs(ttl)).await?;
        let value = encode(&Handover {
            from: lease.node_id.clone(),
            to: to.to_string(),
            from_epoch: lease.epoch,
            final_state,
        });
        let (lk, hk) = (self.leader_key.as_str(), self.handover_key.as_str());
        let mut handed = false;
        for _ in 0..TXN_TRIES {
            let (_, mod_rev, raise) = self
                .watermark_plan("hand_over", lease.epoch, final_state)
                .await?;
            let mut then: Vec<TxnOp> = raise
                .iter()
                .map(|w| TxnOp::put(self.watermark_key.as_str(), encode(w), None))
                .collect();
            then.push(TxnOp::put(
                hk,
                value.clone(),
                Some(PutOptions::new().with_lease(handover_lease)),
            ));
            then.push(TxnOp::delete(lk, None));
            let txn = Txn::new()
                .when(self.holding(lease, mod_rev))
                .and_then(then)
                .or_else([TxnOp::get(lk, None), TxnOp::get(hk, None)]);
            match self.txn("hand_over", txn).await? {
                TxnAnswer::Committed(_) => {
                    handed = true;
                    break;
                }
                TxnAnswer::Failed(kvs) => {
                    let mut kvs = kvs.into_iter();
                    let (leader, handover) = (kvs.next().flatten(), kvs.next().flatten());
                    // An earlier try whose answer was lost committed: the handover is ours.
                    if handover.is_some_and(|kv| kv.lease() == handover_lease) {
                        handed = true;
                        break;
                    }
                    if Self::still_holds(lease, &leader) {
                        continue; // the watermark moved: read it again
                    }
                    // Deposed: nothing changed.
                    self.revoke_unused("hand_over", handover_lease).await;
                    return Ok(false);
                }
            }
        }
        if !handed {
            self.revoke_unused("hand_over", handover_lease).await;
            return Err(CoordError::Unavailable {
                op: "hand_over",
                detail: format!(
                    "{} kept changing under this holder ({TXN_TRIES} tries)",
                    self.watermark_key
                ),
            });
        }
        // The old lease carries nothing any more; one that is not revoked expires by itself.
        if let Err(e) = self.revoke("hand_over", lease.lease_id).await {
            tracing::warn!(epoch = lease.epoch, error = %e, "handed over; the old lease was not revoked (it expires)");
        }
        Ok(true)
    }

    async fn put_request_impl(
        &self,
        from: &str,
        kind: RequestKind,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let (id, _) = self.grant("put_request", whole_secs(ttl)).await?;
        let value = encode(&Request {
            from: from.to_string(),
            kind,
            at_unix_ms: unix_ms_now(),
        });
        let key = self.request_key.clone();
        let previous = self
            .call("put_request", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let options = PutOptions::new().with_lease(id).with_prev_key();
                    let r = c.put(key, value, Some(options)).await?;
                    Ok(r.prev_key().map(KeyValue::lease))
                }
            })
            .await?;
        // The replaced request's lease carries nothing any more.
        if let Some(old) = previous.filter(|&old| old != 0 && old != id) {
            self.revoke_unused("put_request", old).await;
        }
        Ok(())
    }

    async fn clear_request_impl(&self, from: &str) -> Result<bool, CoordError> {
        let rk = self.request_key.as_str();
        for _ in 0..TXN_TRIES {
            let Some(kv) = self.key_kv("clear_request", rk).await? else {
                return Ok(false);
            };
            let request: Request = decode(rk, kv.value())?;
            if request.from != from {
                return Ok(false);
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    rk,
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(rk, None)]);
            if let TxnAnswer::Committed(_) = self.txn("clear_request", txn).await? {
                self.revoke_unused("clear_request", kv.lease()).await;
                return Ok(true);
            }
            // Replaced in between: look again.
        }
        Err(CoordError::Unavailable {
            op: "clear_request",
            detail: format!("{rk} kept changing ({TXN_TRIES} tries)"),
        })
    }

    async fn set_paused_impl(&self, by: &str, paused: bool) -> Result<(), CoordError> {
        let key = self.paused_key.clone();
        let value = paused.then(|| {
            encode(&Paused {
                by: by.to_string(),
                at_unix_ms: unix_ms_now(),
            })
        });
        self.call("set_paused", |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                match value {
                    Some(v) => c.put(key, v, None).await.map(|_| ())?,
                    None => c.delete(key, None).await.map(|_| ())?,
                }
                Ok(())
            }
        })
        .await
    }

    async fn force_release_impl(&self, holder_epoch: u64) -> Result<bool, CoordError> {
        let lk = self.leader_key.as_str();
        let Some(kv) = self.key_kv("force_release", lk).await? else {
            return Ok(false);
        };
        if revision(kv.create_revision()) != holder_epoch {
            return Ok(false);
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                lk,
                CompareOp::Equal,
                kv.create_revision(),
            )])
            .and_then([TxnOp::delete(lk, None)]);
        match self.txn("force_release", txn).await? {
            TxnAnswer::Committed(_) => {
                // The old holder's lease: revoked, so that it learns at its next renewal (one
                // that is not revoked carries nothing any more and expires by itself).
                if kv.lease() != 0 {
                    if let Err(e) = self.revoke("force_release", kv.lease()).await {
                        tracing::warn!(epoch = holder_epoch, error = %e, "released; the old lease was not revoked (it expires)");
                    }
                }
                Ok(true)
            }
            TxnAnswer::Failed(_) => Ok(false),
        }
    }

    async fn put_member_impl(
        &self,
        node_id: &str,
        status: &serde_json::Value,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let value = encode_member("put_member", node_id, status)?;
        let key = format!("{}{node_id}", self.members_dir);
        let ttl_secs = whole_secs(ttl);
        let mut cached = self.member_lease.lock().await;
        // The second try is for a lease that vanished between its keep-alive (or grant) and
        // the put (revoked by somebody else): a new one then.
        for _ in 0..2 {
            let reused = match *cached {
                Some(l) if l.ttl_secs == ttl_secs => {
                    self.keep_alive("put_member", l.id).await?.then_some(l.id)
                }
                // A lease of another ttl is left to expire (it may still carry a key this
                // instance put).
                _ => None,
            };
            let id = match reused {
                Some(id) => id,
                None => {
                    *cached = None;
                    let (id, _) = self.grant("put_member", ttl_secs).await?;
                    *cached = Some(MemberLease { id, ttl_secs });
                    id
                }
            };
            if self.put_leased("put_member", &key, &value, id).await? {
                return Ok(());
            }
            *cached = None;
        }
        Err(CoordError::Unavailable {
            op: "put_member",
            detail: format!("the lease for {key} was gone at the put, twice in a row"),
        })
    }

    /// Puts `key` under lease `id`: `Ok(false)` when etcd no longer knows the lease.
    async fn put_leased(
        &self,
        op: &'static str,
        key: &str,
        value: &[u8],
        id: i64,
    ) -> Result<bool, CoordError> {
        self.call(op, |mut c| {
            let (key, value) = (key.to_string(), value.to_vec());
            async move {
                match c
                    .put(key, value, Some(PutOptions::new().with_lease(id)))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if lease_not_found(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .await
    }

    async fn remove_member_impl(&self, node_id: &str) -> Result<(), CoordError> {
        check_node_id("remove_member", node_id)?;
        let key = format!("{}{node_id}", self.members_dir);
        let mut cached = self.member_lease.lock().await;
        self.call("remove_member", |mut c| {
            let key = key.clone();
            async move { Ok(c.delete(key, None).await.map(|_| ())?) }
        })
        .await?;
        if let Some(l) = cached.take() {
            if let Err(e) = self.revoke("remove_member", l.id).await {
                tracing::warn!(%key, lease_id = l.id, error = %e, "member removed; its lease was not revoked (it expires)");
            }
        }
        Ok(())
    }

    async fn key_kv(&self, op: &'static str, key: &str) -> Result<Option<KeyValue>, CoordError> {
        let key = key.to_string();
        self.call(op, |mut c| {
            let key = key.clone();
            async move { Ok(c.get(key, None).await?.kvs().first().cloned()) }
        })
        .await
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
            match self.key_kv("get_watermark", &self.watermark_key).await? {
                Some(kv) => Ok(Some(decode_watermark(&self.watermark_key, kv.value())?)),
                None => Ok(None),
            }
        })
    }

    fn current_holder(&self) -> BoxFuture<'_, Result<Option<Holder>, CoordError>> {
        Box::pin(async move {
            match self.key_kv("current_holder", &self.leader_key).await? {
                Some(kv) => Ok(Some(self.holder_of(&kv)?)),
                None => Ok(None),
            }
        })
    }

    fn view(&self) -> BoxFuture<'_, Result<ClusterView, CoordError>> {
        Box::pin(self.view_impl())
    }

    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        to: &'a str,
        final_state: Option<Hrs>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CoordError>> {
        Box::pin(self.hand_over_impl(lease, to, final_state, ttl))
    }

    fn put_request<'a>(
        &'a self,
        from: &'a str,
        kind: RequestKind,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(self.put_request_impl(from, kind, ttl))
    }

    fn clear_request<'a>(&'a self, from: &'a str) -> BoxFuture<'a, Result<bool, CoordError>> {
        Box::pin(self.clear_request_impl(from))
    }

    fn set_paused<'a>(
        &'a self,
        by: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(self.set_paused_impl(by, paused))
    }

    fn force_release(&self, holder_epoch: u64) -> BoxFuture<'_, Result<bool, CoordError>> {
        Box::pin(self.force_release_impl(holder_epoch))
    }

    fn put_member<'a>(
        &'a self,
        node_id: &'a str,
        status: &'a serde_json::Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(self.put_member_impl(node_id, status, ttl))
    }

    fn remove_member<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(self.remove_member_impl(node_id))
    }
}
