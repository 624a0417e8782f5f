//! S1 (one signer) and S3 (fence height): every rule that keeps a validator from signing
//! twice, one test each, with simulated time. `cargo test double` selects them.

mod common;

use common::*;
use syncguard_failover::{
    Action, ActivationCause, Event, HandoverOutcome, MessageBody, OperatorCommand, RecordKind,
    RequestKind, Role, Wish,
};
use syncguard_validator::Step;

#[test]
fn double_sign_unplanned_failover_promotes_with_fence_h_plus_2() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    assert!(witness_request(&acts).is_some(), "b must check the chain");
    let h = b.height;
    let acts = b.answer_witness(&acts, &[], &[]);
    let (epoch, cause, fence, handed) =
        activation(&acts).unwrap_or_else(|| panic!("{:#?}", records(&acts)));
    assert_eq!(epoch, 2, "epoch + 1");
    assert_eq!(cause, ActivationCause::Failover);
    assert_eq!(fence, hrs(h as i64 + 2, 0, Step::None), "S3: (H + 2, 0, 0)");
    assert!(handed.is_none());
    // The epoch is persisted (without the standby right) before the activation.
    let p = pos(&acts, |a| {
        matches!(
            a,
            Action::PersistEpoch {
                epoch: 2,
                standby_right: false
            }
        )
    });
    let x = pos(&acts, |a| matches!(a, Action::Activate { .. }));
    assert!(
        p.is_some() && p < x,
        "PersistEpoch before Activate: {acts:?}"
    );
    assert!(said(
        &acts,
        RecordKind::RoleChange,
        "promoting to active at epoch 2"
    ));
    assert!(any_said(
        &acts,
        "the chain shows no signature from the validator in blocks"
    ));
    assert_eq!(b.m.held_role(), Role::Promoting);
    assert!(!b.m.has_standby_right(), "the holder is never the standby");
}

#[test]
fn double_sign_no_promotion_before_the_failover_window() {
    let mut b = standby_of_active(1);
    // Lost at the first round; the window is 3 s: two more rounds are not enough.
    let acts = b.rounds(3, None);
    assert!(witness_request(&acts).is_none());
    assert!(!has_activate(&acts));
    assert!(said(&acts, RecordKind::Refusal, "not promoting yet"));
}

#[test]
fn double_sign_no_promotion_while_the_validator_signs_on_chain() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    let latest = b.height;
    let acts = b.answer_witness(&acts, &[latest - 2], &[]);
    assert!(!has_activate(&acts));
    let expected = format!(
        "not promoting: the validator signed block {} two blocks ago — it is still active \
         somewhere",
        latest - 2
    );
    assert!(
        said(&acts, RecordKind::Refusal, &expected),
        "{:?}",
        records(&acts)
    );
    // Counted as a prevented double sign (metrics, alerts), with its reason.
    assert!(
        acts.iter().any(|a| matches!(a, Action::Record(r)
            if r.tag == syncguard_failover::RecordTag::DoubleSignPrevented
                && r.reason == "witness_signed")),
        "{:?}",
        records(&acts)
    );
    // A round later it asks again (one question per round); once the chain is clean it
    // promotes.
    let acts = b.rounds(2, None);
    assert!(witness_request(&acts).is_some());
    let acts = b.answer_witness(&acts, &[], &[]);
    assert!(has_activate(&acts));
}

#[test]
fn double_sign_incomplete_witness_is_no_evidence() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    let latest = b.height;
    let acts = b.answer_witness(&acts, &[], &[latest - 1]);
    assert!(!has_activate(&acts));
    // The test timing's witness reads 11 commits (enough block time for its spans).
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "could read only 10 of the last 11 commits"
    ));
}

#[test]
fn double_sign_stale_or_foreign_witness_is_ignored() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    let id = witness_request(&acts).expect("asked");
    // An answer to another request proves nothing.
    let latest = b.height;
    let acts = b.feed(Event::Witness(report(id + 7, latest, &[], &[])));
    assert!(!has_activate(&acts));
    // An answer arriving more than a round after it was asked is stale: a new question.
    b.advance_ms(1_500);
    let acts = b.feed(Event::Witness(report(id, latest, &[], &[])));
    assert!(!has_activate(&acts), "stale witness used: {acts:?}");
    assert!(witness_request(&acts).is_some_and(|new| new != id));
}

#[test]
fn double_sign_chain_halt_is_not_a_failover() {
    let mut b = standby_of_active(1);
    // The peer is gone and the chain stops: the height never moves past the loss.
    let mut acts = Vec::new();
    for _ in 0..30 {
        b.advance_ms(1_000);
        acts.extend(b.health(true, false));
        acts.extend(b.lost());
    }
    assert!(!has_activate(&acts));
    assert!(witness_request(&acts).is_none());
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "a halted chain is not a failover"
    ));
}

#[test]
fn double_sign_unhealthy_own_node_never_promotes() {
    let mut b = standby_of_active(1);
    let mut acts = Vec::new();
    for _ in 0..20 {
        b.advance_ms(1_000);
        b.height += 1;
        acts.extend(b.health(false, false));
        acts.extend(b.lost());
    }
    assert!(!has_activate(&acts));
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "my own node is unhealthy (CometBFT catching up)"
    ));
}

#[test]
fn double_sign_reachable_active_peer_is_never_replaced() {
    let mut b = standby_of_active(1);
    let acts = b.rounds(60, Some(status("a", Role::Active, 1)));
    assert!(!has_activate(&acts));
    assert!(witness_request(&acts).is_none());
}

#[test]
fn double_sign_without_the_standby_right_never_promotes_alone() {
    // A fresh, non-preferred node that never saw its peer: the peer may be the standby.
    let mut b = Node::new("b", "a", false);
    let acts = b.boot(Wish::Active, 0, None);
    assert!(!b.m.has_standby_right());
    assert_eq!(persisted(&acts), vec![(0, false)]);
    let acts = b.rounds(120, None);
    assert!(!has_activate(&acts));
    assert!(witness_request(&acts).is_none());
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "not the designated standby"
    ));
    assert!(any_said(&acts, "syncguard takeover"));
}

#[test]
fn double_sign_fresh_cluster_both_blind_exactly_one_may_take_the_role() {
    let mut a = Node::new("a", "b", true);
    let mut b = Node::new("b", "a", false);
    a.boot(Wish::Active, 0, None);
    b.boot(Wish::Active, 0, None);
    assert!(
        a.m.has_standby_right(),
        "the preferred node of a fresh cluster"
    );
    assert!(!b.m.has_standby_right());
    let mut promoted = [false, false];
    for (i, n) in [&mut a, &mut b].into_iter().enumerate() {
        let acts = n.lose_until_witness(60);
        if witness_request(&acts).is_some() {
            let acts = n.answer_witness(&acts, &[], &[]);
            promoted[i] = has_activate(&acts);
        }
    }
    assert_eq!(promoted, [true, false]);
}

#[test]
fn double_sign_fence_is_never_below_a_state_seen() {
    let mut b = standby_of_active(1);
    let replica = hrs(b.height as i64 + 50, 1, Step::Prevote);
    b.feed(Event::StateSeen { hrs: replica });
    let acts = b.lose_until_witness(10);
    let acts = b.answer_witness(&acts, &[], &[]);
    let (_, _, fence, _) = activation(&acts).expect("promotion");
    assert_eq!(fence, replica, "max(seen, H + 2)");
}

#[test]
fn double_sign_active_learning_a_newer_epoch_stands_down_at_once() {
    let mut a = active_node(3);
    let acts = a.sees(status("b", Role::Active, 4));
    assert!(has_deactivate(&acts));
    assert!(said(
        &acts,
        RecordKind::Alert,
        "the role moved on to epoch 4"
    ));
    assert_eq!(a.m.epoch(), 4);
    assert_eq!(a.m.held_role(), Role::Demoting);
}

#[test]
fn double_sign_equal_epochs_are_resolved_by_the_tie_break() {
    // a is preferred: it keeps the role and raises the alarm.
    let mut a = active_node(3);
    let acts = a.sees(status("b", Role::Active, 3));
    assert!(!has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Alert, "SPLIT BRAIN"));
    // b, in the same situation, stops.
    let mut b = standby_of_active(2);
    let acts = b.lose_until_witness(10);
    let acts = b.answer_witness(&acts, &[], &[]);
    assert_eq!(activation(&acts).map(|x| x.0), Some(3));
    b.feed(activated(3));
    let acts = b.sees(status("a", Role::Active, 3));
    assert!(has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Alert, "gives the role to a"));
}

#[test]
fn double_sign_promoting_node_aborts_when_the_role_moved_on() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    let acts = b.answer_witness(&acts, &[], &[]);
    assert!(has_activate(&acts));
    // The partition heals mid-activation: a is active under a newer epoch.
    let acts = b.sees(status("a", Role::Active, 5));
    assert!(!has_deactivate(&acts), "one actuator operation at a time");
    let acts = b.feed(activated(2));
    assert!(
        has_deactivate(&acts),
        "stops as soon as the activation reports"
    );
    assert_eq!(b.m.held_role(), Role::Demoting);
}

#[test]
fn double_sign_offer_from_an_older_epoch_is_refused() {
    let mut b = standby_of_active(5);
    let acts = b.feed(msg(
        "a",
        4,
        MessageBody::HandoverOffer { final_state: None },
    ));
    assert!(!has_activate(&acts));
    let reply = sent(&acts);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].epoch, 5, "the reply teaches the newer epoch");
    assert!(matches!(
        reply[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Ignored,
            ..
        }
    ));
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "a message from an older epoch is refused"
    ));
}

#[test]
fn double_sign_duplicated_offer_never_activates_twice() {
    let mut b = standby_of_active(1);
    let offer = msg(
        "a",
        2,
        MessageBody::HandoverOffer {
            final_state: Some(syncguard_failover::HandedState {
                hrs: hrs(200, 0, Step::Precommit),
                raw: "{}".into(),
            }),
        },
    );
    let first = b.feed(offer.clone());
    assert!(has_activate(&first));
    let again = b.feed(offer.clone());
    assert!(!has_activate(&again));
    assert!(matches!(
        sent(&again)[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Accepted,
            ..
        }
    ));
    b.feed(activated(2));
    let again = b.feed(offer);
    assert!(!has_activate(&again));
    assert!(matches!(
        sent(&again)[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Started,
            ..
        }
    ));
}

#[test]
fn double_sign_late_duplicate_offer_after_a_refusal_is_refused_again() {
    let mut b = standby_of_active(1);
    b.advance_ms(1_000);
    b.health(false, false);
    let offer = msg("a", 2, MessageBody::HandoverOffer { final_state: None });
    let acts = b.feed(offer.clone());
    assert!(!has_activate(&acts));
    assert!(matches!(
        sent(&acts)[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Refused,
            ..
        }
    ));
    // Healthy again, the same offer arrives late: refused again, never acted upon.
    b.rounds(3, Some(status("a", Role::Active, 2)));
    let acts = b.feed(offer);
    assert!(!has_activate(&acts));
    assert!(matches!(
        sent(&acts)[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Refused,
            ..
        }
    ));
}

/// An active `a` at 2 that has stopped and offered the role to `b` at 3.
fn handing_over() -> Node {
    let mut a = active_node(2);
    a.rounds(1, Some(status("b", Role::Passive, 2)));
    let acts = a.feed(op(OperatorCommand::Switchover { to: "b".into() }));
    assert!(has_deactivate(&acts));
    let acts = a.feed(deactivated_ok(Some(hrs(300, 0, Step::Precommit))));
    let offer = sent(&acts);
    assert_eq!(offer.len(), 1);
    assert_eq!(offer[0].epoch, 3);
    assert!(matches!(offer[0].body, MessageBody::HandoverOffer { .. }));
    a
}

/// Found by the flapping-primary test (peer mode, `failover_operator.rs`), flaky: `a`
/// stopped at 300/0/precommit, offered the role, `b` refused; `a` resumed with the fence at
/// its own final state — an unsigned state at the HRS its file holds signed, which the state
/// file refuses as different data at one HRS, so the resume failed and nobody signed. The
/// resume now starts from its own final state, handed to itself: no unsigned state at that
/// HRS (`activation_plan` writes a fence only above a handed state).
#[test]
fn double_sign_resume_after_a_refusal_starts_from_its_own_final_state() {
    let mut a = handing_over();
    let acts = a.feed(msg(
        "b",
        3,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Refused,
            reason: "my own node is not healthy".into(),
        },
    ));
    let activate = acts.iter().find_map(|x| match x {
        Action::Activate {
            fence,
            handed_state,
            cause: ActivationCause::Resume,
            ..
        } => Some((*fence, handed_state.clone())),
        _ => None,
    });
    let (fence, handed) = activate.unwrap_or_else(|| panic!("a resumes: {acts:#?}"));
    let own = hrs(300, 0, Step::Precommit);
    assert_eq!(fence, own, "never below its own last signature");
    assert_eq!(
        handed.map(|h| h.hrs),
        Some(own),
        "its own final state is what it starts from"
    );
}

#[test]
fn double_sign_handover_timeout_leaves_the_old_holder_passive() {
    let mut a = handing_over();
    a.advance_ms(6_000);
    let acts = a.feed(Event::Tick);
    assert!(!has_activate(&acts), "never resumes on an unknown outcome");
    assert_eq!(a.m.held_role(), Role::Passive);
    assert!(said(
        &acts,
        RecordKind::RoleChange,
        "may or may not have started"
    ));
    assert!(
        !a.m.has_standby_right(),
        "b may hold the role: a is not its standby"
    );
}

#[test]
fn double_sign_ignored_offer_is_never_a_reason_to_resume() {
    let mut a = handing_over();
    let acts = a.feed(msg(
        "b",
        3,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Ignored,
            reason: "b is active".into(),
        },
    ));
    assert!(!has_activate(&acts));
    assert_eq!(a.m.held_role(), Role::Passive);
    // A refusal naming an unrelated, newer epoch does not make it resume either.
    let mut a = handing_over();
    let acts = a.feed(msg(
        "b",
        9,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Refused,
            reason: "?".into(),
        },
    ));
    assert!(!has_activate(&acts));
    assert_eq!(a.m.epoch(), 9);
}

#[test]
fn double_sign_self_fence_when_stalled_and_cut_off() {
    let mut a = active_node(2);
    let mut acts = Vec::new();
    for _ in 0..4 {
        a.advance_ms(1_000);
        acts.extend(a.health(false, true));
        acts.extend(a.lost());
    }
    assert!(has_deactivate(&acts), "{:#?}", records(&acts));
    assert!(said(&acts, RecordKind::RoleChange, "self-fencing"));
    let acts = a.feed(deactivated_ok(None));
    assert_eq!(a.m.held_role(), Role::Fenced);
    assert!(said(&acts, RecordKind::RoleChange, "fenced"));
    // Fenced: healthy again but still cut off, it stays stopped.
    let acts = a.rounds(60, None);
    assert!(!has_activate(&acts));
    assert_eq!(a.m.held_role(), Role::Fenced);
}

#[test]
fn double_sign_chain_wide_halt_fences_nobody_and_promotes_nobody() {
    let mut a = active_node(2);
    let mut b = standby_of_active(2);
    let mut acts_a = Vec::new();
    let mut acts_b = Vec::new();
    for _ in 0..30 {
        a.advance_ms(1_000);
        b.advance_ms(1_000);
        acts_a.extend(a.health(false, true));
        acts_b.extend(b.health(false, true));
        let mut sa = status("a", Role::Active, 2);
        sa.healthy = false;
        let mut sb = status("b", Role::Passive, 2);
        sb.healthy = false;
        acts_a.extend(a.sees(sb));
        acts_b.extend(b.sees(sa));
    }
    assert!(
        !has_deactivate(&acts_a),
        "no fence, no handover: {:#?}",
        records(&acts_a)
    );
    assert!(!has_activate(&acts_b));
    assert_eq!(a.m.held_role(), Role::Active);
    assert_eq!(b.m.held_role(), Role::Passive);
}

#[test]
fn double_sign_every_start_is_passive_first() {
    let mut n = Node::new("a", "b", true);
    let acts = n.feed(Event::Start {
        wish: Wish::Active,
        epoch_on_disk: 7,
        standby_right: Some(false),
    });
    assert!(
        has_deactivate(&acts),
        "the key may still be live from before"
    );
    assert!(!has_activate(&acts));
    assert_eq!(n.m.held_role(), Role::Demoting);
    assert_eq!(
        n.m.peer_status().role,
        Role::Demoting,
        "peers must not promote on it"
    );
    assert_eq!(n.m.epoch(), 7);
    n.feed(deactivated_ok(None));
    assert_eq!(n.m.held_role(), Role::Passive);
}

#[test]
fn double_sign_wish_active_stays_passive_when_the_peer_holds_the_role() {
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Active, 3, Some(false));
    b.healthy();
    let acts = b.sees(status("a", Role::Active, 3));
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "staying passive: peer a is active at epoch 3"
    ));
    let acts = b.rounds(30, Some(status("a", Role::Active, 3)));
    assert!(!has_activate(&acts));
    assert!(sent(&acts).is_empty());
}

#[test]
fn double_sign_wish_active_stays_passive_while_the_validator_signs() {
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Active, 3, Some(false));
    b.healthy();
    let acts = b.sees(status("a", Role::Passive, 3));
    let latest = b.height;
    let acts = b.answer_witness(&acts, &[latest], &[]);
    assert!(
        sent(&acts).is_empty(),
        "no claim while the chain shows signatures"
    );
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "in the latest block — it is still active somewhere"
    ));
}

#[test]
fn double_sign_failed_activation_is_stopped_again() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    b.answer_witness(&acts, &[], &[]);
    let acts = b.feed(Event::Actuator(
        syncguard_failover::ActuatorResult::Activated {
            epoch: 2,
            result: Err("story did not start".into()),
            signed_at: None,
        },
    ));
    assert!(has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Alert, "ACTIVATION FAILED"));
    assert_eq!(b.m.peer_status().role, Role::Demoting);
    b.feed(deactivated_ok(None));
    assert_eq!(b.m.held_role(), Role::Passive);
}

#[test]
fn double_sign_failed_stop_keeps_demoting_and_retries() {
    let mut a = active_node(3);
    a.sees(status("b", Role::Active, 4));
    let acts = a.feed(Event::Actuator(
        syncguard_failover::ActuatorResult::Deactivated {
            result: Err("systemctl stop timed out".into()),
        },
    ));
    assert!(said(
        &acts,
        RecordKind::Alert,
        "COULD NOT STOP THE VALIDATOR"
    ));
    assert_eq!(a.m.held_role(), Role::Demoting, "still possibly signing");
    a.advance_ms(1_000);
    let acts = a.feed(Event::Tick);
    assert!(has_deactivate(&acts), "retried");
}

#[test]
fn double_sign_paused_active_still_stands_down() {
    let mut a = active_node(3);
    a.feed(op(OperatorCommand::Pause));
    assert_eq!(a.m.role(), Role::Paused);
    let acts = a.sees(status("b", Role::Active, 4));
    assert!(has_deactivate(&acts), "safety stops act while paused");
}

#[test]
fn double_sign_concurrent_claims_grant_exactly_one() {
    let mut a = Node::new("a", "b", true);
    let mut b = Node::new("b", "a", false);
    a.boot(Wish::Active, 0, None);
    b.boot(Wish::Active, 0, None);
    for n in [&mut a, &mut b] {
        n.healthy();
    }
    let acts_a = a.sees(status("b", Role::Passive, 0));
    let acts_b = b.sees(status("a", Role::Passive, 0));
    let claim_a = sent(&a.answer_witness(&acts_a, &[], &[]));
    let claim_b = sent(&b.answer_witness(&acts_b, &[], &[]));
    assert_eq!(claim_a.len(), 1);
    assert_eq!(claim_b.len(), 1);
    assert!(matches!(
        claim_a[0].body,
        MessageBody::RoleRequest {
            kind: RequestKind::Claim
        }
    ));
    // Cross delivery.
    let at_a = a.feed(Event::Message(claim_b[0].clone()));
    let at_b = b.feed(Event::Message(claim_a[0].clone()));
    let reply_a = sent(&at_a);
    let reply_b = sent(&at_b);
    assert!(matches!(
        reply_a[0].body,
        MessageBody::RoleReply { granted: false, .. }
    ));
    assert!(matches!(
        reply_b[0].body,
        MessageBody::RoleReply { granted: true, .. }
    ));
    let end_a = a.feed(Event::Message(reply_b[0].clone()));
    let end_b = b.feed(Event::Message(reply_a[0].clone()));
    assert!(has_activate(&end_a));
    assert!(!has_activate(&end_b));
    assert!(
        b.m.has_standby_right(),
        "the grantor is the claimer's standby"
    );
    assert!(!a.m.has_standby_right());
}

#[test]
fn double_sign_two_standby_rights_are_reconciled() {
    let mut b = standby_of_active(4);
    let mut a_view = status("a", Role::Passive, 4);
    a_view.standby_right = true;
    let acts = b.sees(a_view);
    assert!(!b.m.has_standby_right(), "b yields to a (preferred)");
    assert!(persisted(&acts).contains(&(4, false)));
    assert!(said(
        &acts,
        RecordKind::Alert,
        "also holds the standby right"
    ));
}

#[test]
fn double_sign_epoch_that_cannot_be_persisted_stops_the_activation() {
    let mut b = standby_of_active(1);
    let acts = b.lose_until_witness(10);
    b.answer_witness(&acts, &[], &[]);
    let acts = b.feed(Event::EpochPersistFailed {
        epoch: 2,
        reason: "disk full".into(),
    });
    assert!(has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Alert, "COULD NOT PERSIST EPOCH 2"));
}

#[test]
fn double_sign_unrequested_activation_report_stops_the_key() {
    let mut b = standby_of_active(1);
    let acts = b.feed(activated(9));
    assert!(has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Alert, "not performing"));
}
