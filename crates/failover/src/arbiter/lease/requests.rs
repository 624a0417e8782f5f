//! The holder's answers in etcd mode: to a request for the role (a switchover to a ready
//! node, a fallback to the primary site) and to its own handover of the lock.

use std::time::Duration;

use super::Lease;
use crate::action::Action;
use crate::arbiter::ready_as_target;
use crate::common::Common;
use crate::lock::LockState;
use crate::message::RequestKind;
use crate::phase::Phase;
use crate::record::{RecordKind, RecordTag};
use crate::types::NodeId;

impl Lease {
    pub(super) fn on_handed_over(
        &mut self,
        c: &mut Common,
        to: NodeId,
        result: Result<bool, String>,
        now: Duration,
    ) {
        if !matches!(&c.phase, Phase::HandingOver { to: t, .. } if *t == to) {
            return;
        }
        c.enter_passive(now);
        match result {
            Ok(true) => {
                // The target may start any moment: a later failover waits for it.
                c.holder_may_start(now);
                let why = format!(
                    "handover: the lock is handed to {to}; it takes the lock and starts — this \
                     node stays passive"
                );
                c.record(now, RecordKind::RoleChange, why);
            }
            Ok(false) => {
                let why = format!(
                    "handover to {to} failed: this node's lease no longer held the lock; the \
                     key is off here, staying passive"
                );
                let tag = (RecordTag::SwitchoverAborted, "lease_lost");
                c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
            }
            Err(reason) => {
                c.holder_may_start(now);
                let why = format!(
                    "handover to {to}: etcd did not confirm it ({reason}); the key is off here, \
                     staying passive — the lock shows what happened"
                );
                let tag = (RecordTag::SwitchoverAborted, "etcd_unreachable");
                c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
            }
        }
    }

    /// The holder answers a request for the role once: a switchover to a ready node, a
    /// fallback to the primary site.
    pub(super) fn answer_request(&mut self, c: &mut Common, st: &LockState, now: Duration) {
        let Some(r) = &st.request else {
            self.answered_request = None;
            return;
        };
        let key = (r.from.clone(), r.kind);
        let repeat = c.params.timing.handover_timeout;
        let answered = self
            .answered_request
            .as_ref()
            .is_some_and(|(k, at)| *k == key && now.saturating_sub(*at) < repeat);
        if r.from == c.params.node_id || answered {
            return;
        }
        self.answered_request = Some((key, now));
        let from = r.from.clone();
        let deny = if c.paused {
            Some("automation is paused".to_string())
        } else if r.kind == RequestKind::Fallback && c.params.is_primary_site {
            Some("this node is a primary site too".to_string())
        } else {
            let ready = ready_as_target(c, &from, self.member(c, &from, now));
            ready.err()
        };
        if let Some(reason) = deny {
            let why = format!("declined {from}'s {} request: {reason}", r.kind.name());
            c.record(now, RecordKind::Refusal, why);
            c.push(Action::ClearRequest { from });
            return;
        }
        let why = match r.kind {
            RequestKind::Fallback => format!(
                "{from}, the primary site, has been healthy for the grace period and asks for \
                 its role back"
            ),
            _ => format!("an operator asked for a switchover to {from}"),
        };
        crate::operator::start_handover(c, from, why, now);
    }
}
