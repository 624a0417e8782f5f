//! The etcd backend's link: the lock and its lease, the watermark, handovers, requests, the
//! cluster-wide pause — performed on a [`LockBackend`] — and the two feeders of etcd mode:
//! a look at the lock every round (which first publishes this node's own status under
//! `members/`), and the local state file (for the watermark).
//!
//! The lease is kept from the moment an acquisition succeeds (before the machine even hears
//! of it, so the proof never lapses while it decides) until the machine releases or hands
//! the lock over; the keeper's end comes back as `Event::LeaseEnded`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use syncguard_coordination::{
    AcquireOutcome, ClusterView, FenceReason, Handover, Lease, LeaseKeeper, LeaseTiming,
    LockBackend, RequestKind as WireKind,
};
use syncguard_failover::{
    AcquireReport, Action, Event, LeaseEnd, LockHandover, LockHolder, LockRequest, LockState,
    LockView, NodeId, PeerStatus, RequestKind,
};
use syncguard_validator::StateStore;
use tokio::sync::{mpsc, watch};

use super::Coordination;
use crate::daemon::{next_tick, ticker};
use crate::view::{EtcdSeen, Shared};

/// The lease this node holds, with the task keeping it.
struct Held {
    lease: Lease,
    keeper: tokio::task::AbortHandle,
}

/// Performs etcd mode's actions on the backend.
pub struct LeaseLink {
    pub backend: Arc<dyn LockBackend>,
    pub timing: LeaseTiming,
    pub node_id: String,
    pub priority: u32,
    /// The machine's clock zero (the keeper counts from it).
    pub origin: Instant,
    /// How long a handover key or a request lives when nobody acts on it.
    pub handover_ttl: Duration,
    held: Arc<Mutex<Option<Held>>>,
}

fn held(m: &Mutex<Option<Held>>) -> MutexGuard<'_, Option<Held>> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl LeaseLink {
    pub fn new(
        backend: Arc<dyn LockBackend>,
        timing: LeaseTiming,
        node_id: String,
        priority: u32,
        origin: Instant,
        handover_ttl: Duration,
    ) -> LeaseLink {
        LeaseLink {
            backend,
            timing,
            node_id,
            priority,
            origin,
            handover_ttl,
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the lock (first removing a gone holder's, on the operator's takeover); on
    /// success starts keeping the lease at once.
    fn try_acquire(&self, force_release: Option<u64>, events: mpsc::Sender<Event>) {
        let backend = self.backend.clone();
        let (origin, timing, slot) = (self.origin, self.timing, self.held.clone());
        let (node_id, priority) = (self.node_id.clone(), self.priority);
        tokio::spawn(async move {
            if let Some(epoch) = force_release {
                match backend.force_release(epoch).await {
                    Ok(true) => tracing::warn!(epoch, "takeover: the gone holder's lock removed"),
                    Ok(false) => tracing::info!(epoch, "takeover: that lock is gone already"),
                    Err(e) => {
                        let reason = format!("removing the lock of epoch {epoch} failed: {e}");
                        let _ = events
                            .send(Event::Acquire(AcquireReport::Failed { reason }))
                            .await;
                        return;
                    }
                }
            }
            let sent_at = origin.elapsed();
            let report = match backend.acquire(&node_id, priority).await {
                Ok(AcquireOutcome::Acquired(lease)) => {
                    let go =
                        start_keeper(&backend, &lease, timing, sent_at, origin, &slot, &events);
                    let watermark = read_watermark(backend.as_ref()).await;
                    let _ = events
                        .send(Event::Acquire(AcquireReport::Acquired {
                            epoch: lease.epoch,
                            watermark,
                            handover: lease.handover.clone().map(handover),
                        }))
                        .await;
                    // The keeper's end must reach the machine after the acquisition does.
                    let _ = go.send(());
                    return;
                }
                Ok(AcquireOutcome::Held(h)) => AcquireReport::Held(LockHolder {
                    node_id: NodeId::new(h.node_id),
                    epoch: h.epoch,
                }),
                Ok(AcquireOutcome::HandoverPending(h)) => {
                    AcquireReport::HandoverPending(handover(h))
                }
                Err(e) => AcquireReport::Failed {
                    reason: e.to_string(),
                },
            };
            let _ = events.send(Event::Acquire(report)).await;
        });
    }

    fn take_held(&self) -> Option<Held> {
        let h = held(&self.held).take();
        if let Some(h) = &h {
            h.keeper.abort();
        }
        h
    }
}

/// Starts keeping a fresh lease (held back until the returned sender fires: its end must
/// reach the machine after the acquisition does; its proof counts from `sent_at` whatever
/// the delay) and stores it as the one held.
fn start_keeper(
    backend: &Arc<dyn LockBackend>,
    lease: &Lease,
    timing: LeaseTiming,
    sent_at: Duration,
    origin: Instant,
    slot: &Arc<Mutex<Option<Held>>>,
    events: &mpsc::Sender<Event>,
) -> tokio::sync::oneshot::Sender<()> {
    let mut keeper = LeaseKeeper::acquired(timing, sent_at, lease.ttl);
    let (b, l, ev) = (backend.clone(), lease.clone(), events.clone());
    let (go, wait_go) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = wait_go.await;
        let start = tokio::time::Instant::from_std(origin);
        let (why, at) =
            syncguard_coordination::keep_lease(b.as_ref(), &l, &mut keeper, start).await;
        tracing::warn!(
            epoch = l.epoch,
            ?why,
            at_ms = at.as_millis() as u64,
            "lease keeper stopped"
        );
        let why = match why {
            FenceReason::LeaseLost => LeaseEnd::Lost,
            _ => LeaseEnd::NotRenewed,
        };
        let _ = ev.send(Event::LeaseEnded { why }).await;
    });
    let fresh = Held {
        lease: lease.clone(),
        keeper: task.abort_handle(),
    };
    if let Some(old) = held(slot).replace(fresh) {
        old.keeper.abort();
    }
    go
}

/// The watermark stored with the lock; when it cannot be read, the fence (H + 2) and every
/// state seen still bound the new state (S3).
async fn read_watermark(backend: &dyn LockBackend) -> Option<syncguard_validator::Hrs> {
    match backend.get_watermark().await {
        Ok(w) => w.map(|w| w.hrs),
        Err(e) => {
            tracing::warn!("watermark not read: {e}");
            None
        }
    }
}

fn handover(h: Handover) -> LockHandover {
    LockHandover {
        from: NodeId::new(h.from),
        to: NodeId::new(h.to),
        from_epoch: h.from_epoch,
        final_state: h.final_state,
    }
}

fn wire(kind: RequestKind) -> Option<WireKind> {
    match kind {
        RequestKind::Switchover => Some(WireKind::Switchover),
        RequestKind::Fallback => Some(WireKind::Fallback),
        RequestKind::Claim => None,
    }
}

/// The backend's view as the machine's [`LockState`]. A member whose status cannot be read
/// is left out (one bad node must not blind the others).
pub fn lock_state(v: ClusterView) -> LockState {
    LockState {
        holder: v.holder.map(|h| LockHolder {
            node_id: NodeId::new(h.node_id),
            epoch: h.epoch,
        }),
        handover: v.handover.map(handover),
        request: v.request.map(|r| LockRequest {
            from: NodeId::new(r.from),
            kind: match r.kind {
                WireKind::Switchover => RequestKind::Switchover,
                WireKind::Fallback => RequestKind::Fallback,
            },
        }),
        paused_by: v.paused.map(|p| NodeId::new(p.by)),
        watermark: v.watermark.map(|w| w.hrs),
        members: v
            .members
            .into_iter()
            .filter_map(
                |m| match serde_json::from_value::<PeerStatus>(m.status.clone()) {
                    Ok(st) if st.node_id.as_str() == m.node_id => Some(st),
                    Ok(st) => {
                        tracing::warn!(key = %m.node_id, claims = %st.node_id, "member status names another node; ignored");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(key = %m.node_id, "member status unreadable; ignored: {e}");
                        None
                    }
                },
            )
            .collect(),
    }
}

impl Coordination for LeaseLink {
    fn perform(&self, action: Action, _epoch: u64, events: &mpsc::Sender<Event>) {
        let backend = self.backend.clone();
        match action {
            Action::TryAcquire { force_release } => self.try_acquire(force_release, events.clone()),
            Action::PutWatermark { hrs } => {
                let Some(lease) = held(&self.held).as_ref().map(|h| h.lease.clone()) else {
                    return;
                };
                tokio::spawn(async move {
                    if let Err(e) = backend.put_watermark(&lease, hrs).await {
                        tracing::warn!(epoch = lease.epoch, "watermark not written: {e}");
                    }
                });
            }
            Action::Release => {
                let Some(h) = self.take_held() else {
                    return;
                };
                tokio::spawn(async move {
                    match backend.release(&h.lease).await {
                        Ok(()) => tracing::info!(epoch = h.lease.epoch, "lock released"),
                        // It expires on its own; nobody signs under it any more.
                        Err(e) => tracing::warn!(
                            epoch = h.lease.epoch,
                            "release failed (the lease will expire): {e}"
                        ),
                    }
                });
            }
            Action::HandOver { to, final_state } => {
                let (events, ttl) = (events.clone(), self.handover_ttl);
                let Some(h) = self.take_held() else {
                    let result = Err("this node holds no lease any more".to_string());
                    let _ = events.try_send(Event::HandedOver { to, result });
                    return;
                };
                tokio::spawn(async move {
                    let result = backend
                        .hand_over(&h.lease, to.as_str(), final_state, ttl)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = events.send(Event::HandedOver { to, result }).await;
                });
            }
            Action::PutRequest { kind, for_node } => {
                let Some(kind) = wire(kind) else {
                    return;
                };
                let node_id = for_node.map_or_else(|| self.node_id.clone(), |n| n.to_string());
                let ttl = self.handover_ttl;
                tokio::spawn(async move {
                    if let Err(e) = backend.put_request(&node_id, kind, ttl).await {
                        tracing::error!("the request for the role was not stored in etcd: {e}");
                    }
                });
            }
            Action::ClearRequest { from } => {
                tokio::spawn(async move {
                    if let Err(e) = backend.clear_request(from.as_str()).await {
                        tracing::warn!(%from, "the request was not withdrawn (it expires): {e}");
                    }
                });
            }
            Action::SetPaused { paused } => {
                let node_id = self.node_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = backend.set_paused(&node_id, paused).await {
                        tracing::error!(
                            paused,
                            "the cluster-wide pause was not stored in etcd (only this node \
                             is {}): {e}",
                            if paused { "paused" } else { "resumed" }
                        );
                    }
                });
            }
            other => tracing::error!(?other, "not an action of the etcd backend; ignored"),
        }
    }

    fn shutdown(&self) {
        // Stop renewing: the lease then expires and another node may take the lock, so the
        // key must not stay live (the service manager's stop of story, or the next start's
        // boot deactivation, sees to that).
        self.take_held();
    }
}

/// The key of a member status that carries its advertised public API (`host:port`): the
/// daemon adds it to the machine's status, the CLI reads it (the machine ignores it).
pub const API_FIELD: &str = "api";

/// Who this node is in etcd: its id, and where its public API is reached (published with
/// its status).
pub struct Me {
    pub node_id: String,
    pub api: Option<String>,
}

/// One look at the lock per health round, after publishing this node's own status (what
/// the others' switchover checks and `syncguard status` read) with its API address.
pub async fn poll_lock(
    backend: Arc<dyn LockBackend>,
    Me { node_id, api }: Me,
    origin: Instant,
    interval: Duration,
    shared: Shared,
    tx: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut t = ticker(interval);
    // A member key outlives three missed rounds, no more.
    let member_ttl = (interval * 3).max(Duration::from_secs(2));
    while next_tick(&mut t, &mut stop).await {
        if let Some(own) = shared.read(|v| v.own_peer_status.clone()) {
            match serde_json::to_value(&own) {
                Ok(mut status) => {
                    if let (Some(api), Some(map)) = (&api, status.as_object_mut()) {
                        map.insert(API_FIELD.into(), serde_json::Value::from(api.clone()));
                    }
                    if let Err(e) = backend.put_member(&node_id, &status, member_ttl).await {
                        tracing::debug!("own status not published in etcd: {e}");
                    }
                }
                Err(e) => tracing::error!("own status cannot be encoded: {e}"),
            }
        }
        let asked_at = origin.elapsed();
        let view = match backend.view().await {
            Ok(v) => {
                shared.update(|s| s.etcd = Some(seen(&v)));
                LockView::Seen(lock_state(v))
            }
            Err(e) => {
                let reason = e.to_string();
                shared.update(|s| {
                    s.etcd.get_or_insert_with(EtcdSeen::default).error = Some(reason.clone())
                });
                LockView::Unreachable { reason }
            }
        };
        if tx.send(Event::Lock { asked_at, view }).await.is_err() {
            break;
        }
    }
    if let Err(e) = backend.remove_member(&node_id).await {
        tracing::debug!("own status not removed from etcd (it expires): {e}");
    }
}

/// What `/status` shows of a look at the lock.
fn seen(v: &ClusterView) -> EtcdSeen {
    EtcdSeen {
        at: Some(std::time::SystemTime::now()),
        error: None,
        holder: v.holder.as_ref().map(|h| (h.node_id.clone(), h.epoch)),
        handover: v.handover.as_ref().map(|h| (h.from.clone(), h.to.clone())),
        request: v.request.as_ref().map(|r| {
            let kind = match r.kind {
                WireKind::Switchover => "switchover",
                WireKind::Fallback => "fallback",
            };
            (r.from.clone(), kind.to_string())
        }),
        paused_by: v.paused.as_ref().map(|p| p.by.clone()),
        watermark: v.watermark.map(|w| w.hrs),
        apis: v
            .members
            .iter()
            .filter_map(|m| {
                let api = m.status.get(API_FIELD)?.as_str()?;
                Some((m.node_id.clone(), api.to_string()))
            })
            .collect(),
    }
}

/// The local state file: every change goes to the machine (the active writes it to etcd
/// as the watermark).
pub async fn watch_state(
    store: Arc<StateStore>,
    every: Duration,
    shared: Shared,
    tx: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut t = ticker(every);
    let mut last = None;
    while next_tick(&mut t, &mut stop).await {
        let Ok(Some(state)) = store.read_if_exists() else {
            continue;
        };
        let hrs = state.hrs();
        shared.update(|v| v.local_state = Some(hrs));
        if last != Some(hrs) {
            last = Some(hrs);
            if tx.send(Event::StateSeen { hrs }).await.is_err() {
                return;
            }
        }
    }
}
