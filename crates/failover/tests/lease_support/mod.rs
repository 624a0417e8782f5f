//! The vocabulary of the old etcd-mode machine (`syncguard_coordination::EtcdMachine`, now
//! gone), mapped onto the one core over the lease arbiter, so that its tests run unchanged
//! against the core. Only translation lives here: every decision is the core's.

#![allow(dead_code)]

use std::time::Duration;

pub use syncguard_failover::LeaseEnd;
use syncguard_failover::{
    AcquireReport as CoreAcquire, Action, ActuatorResult, ChainReport, Event, LeaseParams,
    LocalHealth, LockHolder, LockState, LockView as CoreLock, NodeId, OperatorCommand, Params,
    PromotionOrder, Role, VerifyReport, Wish, WitnessReport,
};
use syncguard_validator::Hrs;

/// The old machine's parameters.
#[derive(Debug, Clone)]
pub struct EtcdParams {
    pub node_id: String,
    pub priority: u32,
    pub rank: usize,
    pub health_check_interval: Duration,
    pub witness_blocks: u32,
    pub verify_blocks: u32,
    pub order: PromotionOrder,
}

/// The holder of the lock, as the old machine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub node_id: String,
    pub priority: u32,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockView {
    Free,
    Held(Holder),
    Unreachable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireReport {
    Acquired { epoch: u64, watermark: Option<Hrs> },
    Held(Holder),
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdEvent {
    Start {
        epoch_on_disk: u64,
    },
    Tick,
    LocalHealth(LocalHealth),
    /// New with the core: what the commits show (the late-start wait ends on it).
    Chain(ChainReport),
    Lock {
        asked_at: Duration,
        view: LockView,
    },
    Witness(WitnessReport),
    Acquire(AcquireReport),
    LeaseEnded {
        why: LeaseEnd,
    },
    Actuator(ActuatorResult),
    StateSeen {
        hrs: Hrs,
    },
    Verify(VerifyReport),
    EpochPersistFailed {
        epoch: u64,
        reason: String,
    },
    Pause,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdAction {
    Failover(Action),
    TryAcquire,
    PutWatermark { hrs: Hrs },
    Release,
}

/// The timing model for the old tests' cluster: 500 ms rounds, 300 ms blocks, fast starts
/// and stops (the simulated actuator's).
pub fn timing(round: Duration) -> syncguard_timing::Timing {
    let mut i = syncguard_timing::Inputs::new(round, 3, Duration::from_millis(300));
    i.start_timeout = Some(Duration::from_secs(1));
    i.verify_blocks = 2;
    syncguard_timing::derive_lenient(&i)
}

#[derive(Debug, Clone)]
pub struct EtcdMachine {
    core: syncguard_failover::EtcdMachine,
    /// The cluster-wide pause as the backend would show it (this node set it).
    paused: bool,
}

impl EtcdMachine {
    pub fn new(p: EtcdParams) -> EtcdMachine {
        let params = Params {
            node_id: NodeId::new(p.node_id.clone()),
            peer_id: NodeId::new(""),
            is_primary_site: false,
            peer_is_primary_site: false,
            fallback_grace_period: Duration::from_secs(60),
            timing: timing(p.health_check_interval),
        };
        let lease = LeaseParams {
            priority: p.priority,
            rank: p.rank,
            order: p.order,
            // The old tests' lease (see `lease_rules.rs`).
            lease_ttl: Duration::from_secs(3),
        };
        let core = syncguard_failover::EtcdMachine::etcd(params, lease).expect("params");
        EtcdMachine {
            core,
            paused: false,
        }
    }

    pub fn core(&self) -> &syncguard_failover::EtcdMachine {
        &self.core
    }

    pub fn held_role(&self) -> Role {
        self.core.held_role()
    }

    pub fn role(&self) -> Role {
        self.core.role()
    }

    pub fn epoch(&self) -> u64 {
        self.core.epoch()
    }

    pub fn last_why(&self) -> &str {
        self.core.last_why()
    }

    fn lock(&self, v: LockView) -> CoreLock {
        let paused_by = self.paused.then(|| NodeId::new("operator"));
        match v {
            LockView::Unreachable { reason } => CoreLock::Unreachable { reason },
            LockView::Free => CoreLock::Seen(LockState {
                paused_by,
                ..LockState::default()
            }),
            LockView::Held(h) => CoreLock::Seen(LockState {
                holder: Some(holder(h)),
                paused_by,
                ..LockState::default()
            }),
        }
    }

    /// A core event as it is (what the old vocabulary cannot say: requests, members).
    pub fn feed(&mut self, e: Event, now: Duration) -> Vec<Action> {
        self.core.handle(e, now)
    }

    pub fn handle(&mut self, e: EtcdEvent, now: Duration) -> Vec<EtcdAction> {
        let event = match e {
            EtcdEvent::Start { epoch_on_disk } => Event::Start {
                wish: Wish::Passive,
                epoch_on_disk,
                standby_right: Some(false),
            },
            EtcdEvent::Tick => Event::Tick,
            EtcdEvent::LocalHealth(h) => Event::LocalHealth(h),
            EtcdEvent::Chain(c) => Event::Chain(c),
            EtcdEvent::Lock { asked_at, view } => Event::Lock {
                asked_at,
                view: self.lock(view),
            },
            EtcdEvent::Witness(w) => Event::Witness(w),
            EtcdEvent::Acquire(a) => Event::Acquire(match a {
                AcquireReport::Acquired { epoch, watermark } => CoreAcquire::Acquired {
                    epoch,
                    watermark,
                    handover: None,
                },
                AcquireReport::Held(h) => CoreAcquire::Held(holder(h)),
                AcquireReport::Failed { reason } => CoreAcquire::Failed { reason },
            }),
            EtcdEvent::LeaseEnded { why } => Event::LeaseEnded { why },
            EtcdEvent::Actuator(r) => Event::Actuator(r),
            EtcdEvent::StateSeen { hrs } => Event::StateSeen { hrs },
            EtcdEvent::Verify(v) => Event::Verify(v),
            EtcdEvent::EpochPersistFailed { epoch, reason } => {
                Event::EpochPersistFailed { epoch, reason }
            }
            EtcdEvent::Pause => {
                self.paused = true;
                Event::Operator(OperatorCommand::Pause)
            }
            EtcdEvent::Resume => {
                self.paused = false;
                Event::Operator(OperatorCommand::Resume)
            }
        };
        self.core
            .handle(event, now)
            .into_iter()
            .filter_map(|a| match a {
                Action::TryAcquire { .. } => Some(EtcdAction::TryAcquire),
                Action::PutWatermark { hrs } => Some(EtcdAction::PutWatermark { hrs }),
                Action::Release => Some(EtcdAction::Release),
                // The pause is kept by `paused` above; nothing else of etcd's is asked here.
                Action::SetPaused { .. } => None,
                a => Some(EtcdAction::Failover(a)),
            })
            .collect()
    }
}

fn holder(h: Holder) -> LockHolder {
    LockHolder {
        node_id: NodeId::new(h.node_id),
        epoch: h.epoch,
    }
}
