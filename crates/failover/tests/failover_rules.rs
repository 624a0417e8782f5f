//! The rules around the core: handover, switchover, fallback, pause, fencing, takeover,
//! verification, records, parameters and serialization.

mod common;

use std::time::Duration;

use common::*;
use syncguard_failover::{
    step, Action, ActivationCause, Event, HandoverOutcome, LocalHealth, Machine, MessageBody,
    NodeId, OperatorCommand, Params, ParamsError, PeerMessage, PeerObservation, RecordKind,
    RequestKind, Role, VerifyReport, Wish,
};
use syncguard_validator::Step;

fn deliver(to: &mut Node, acts: &[Action]) -> Vec<Action> {
    let mut out = Vec::new();
    for m in sent(acts) {
        out.extend(to.feed(Event::Message(m)));
    }
    out
}

#[test]
fn failover_handover_on_local_failure_full_sequence() {
    let mut a = active_node(2);
    let mut b = standby_of_active(2);
    b.height = a.height;
    // a's node turns unhealthy (not stalled: say story-geth is down); b is healthy.
    a.advance_ms(1_000);
    let acts = a.health(false, false);
    assert!(has_deactivate(&acts), "step 1: stop here first");
    assert!(said(
        &acts,
        RecordKind::RoleChange,
        "handing the role over to b"
    ));
    assert_eq!(a.m.peer_status().role, Role::Demoting);
    // Stop confirmed: a hands over its final state with epoch + 1.
    let final_state = hrs(500, 0, Step::Precommit);
    let acts = a.feed(deactivated_ok(Some(final_state)));
    assert_eq!(persisted(&acts), vec![(3, false)]);
    let offer = sent(&acts);
    assert_eq!(offer.len(), 1);
    assert_eq!(offer[0].epoch, 3);
    assert_eq!(offer[0].from, NodeId::new("a"));
    // b writes max(own, handed, fence), installs the key, starts.
    let acts_b = deliver(&mut b, &acts);
    let (epoch, cause, fence, handed) = activation(&acts_b).expect("b activates");
    assert_eq!(epoch, 3);
    assert_eq!(cause, ActivationCause::Handover { from: "a".into() });
    // One height, one signer: b starts at the height after a's final state.
    assert_eq!(fence, hrs(501, 0, Step::None));
    assert_eq!(handed.map(|h| h.hrs), Some(final_state));
    assert!(matches!(
        sent(&acts_b)[0].body,
        MessageBody::HandoverReply {
            outcome: HandoverOutcome::Accepted,
            ..
        }
    ));
    let acts_a = deliver(&mut a, &acts_b);
    assert!(!has_activate(&acts_a));
    // b started and its signature is on chain (the actuator reports only verified
    // activations): it acks; a is passive and b's standby.
    let acts_b = b.feed(activated(3));
    assert!(said(&acts_b, RecordKind::RoleChange, "active at epoch 3"));
    let acts_a = deliver(&mut a, &acts_b);
    assert!(said(
        &acts_a,
        RecordKind::RoleChange,
        "handover complete: b is active at epoch 3"
    ));
    assert_eq!(a.m.held_role(), Role::Passive);
    assert_eq!(b.m.held_role(), Role::Active);
    assert!(a.m.has_standby_right());
    assert!(!b.m.has_standby_right());
}

/// After a chain-wide halt both nodes recover through the verdict's hysteresis, one maybe
/// a round before the other: the active whose verdict is still unhealthy but recovering
/// keeps the role (the mutant without `LocalView::recovering` hands over here — seen in a CI
/// run of `double_sign_scenario_chain_wide_halt_changes_nothing`).
#[test]
fn failover_no_handover_while_the_own_verdict_is_recovering() {
    let mut a = active_node(2);
    a.rounds(1, Some(status("b", Role::Passive, 2)));
    let round = |a: &mut Node, recovering: bool| {
        a.advance_ms(1_000);
        a.height += 1;
        let h = a.height;
        a.feed(Event::LocalHealth(LocalHealth {
            healthy: false,
            latest_height: Some(h),
            stalled: false,
            why: Some("unhealthy, recovering (1 of 3 good rounds before healthy)".into()),
            block_age: Some(Duration::from_millis(200)),
            recovering,
        }))
    };
    for _ in 0..3 {
        let acts = round(&mut a, true);
        assert!(!has_deactivate(&acts), "{:#?}", records(&acts));
        let mut b = status("b", Role::Passive, 2);
        b.latest_height = Some(a.height);
        a.sees(b);
    }
    assert_eq!(a.m.held_role(), Role::Active);
    // A failed round again (no longer recovering): the handover rule applies.
    let acts = round(&mut a, false);
    assert!(has_deactivate(&acts), "{:#?}", records(&acts));
}

#[test]
fn failover_handover_refused_old_holder_resumes_under_the_offered_epoch() {
    let mut a = active_node(2);
    let mut b = standby_of_active(2);
    b.height = a.height;
    a.advance_ms(1_000);
    a.health(false, false);
    let acts = a.feed(deactivated_ok(Some(hrs(500, 0, Step::Precommit))));
    // b's own node is unhealthy: it refuses, provably never starting.
    b.advance_ms(1_000);
    b.health(false, false);
    let acts_b = deliver(&mut b, &acts);
    assert!(!has_activate(&acts_b));
    assert!(b.m.has_standby_right(), "b is the standby of a's resume");
    let acts_a = deliver(&mut a, &acts_b);
    let (epoch, cause, fence, _) = activation(&acts_a).expect("a resumes");
    assert_eq!(epoch, 3);
    assert_eq!(cause, ActivationCause::Resume);
    assert!(fence >= hrs(500, 0, Step::Precommit));
    assert!(said(
        &acts_a,
        RecordKind::RoleChange,
        "provably never started"
    ));
}

#[test]
fn failover_handover_target_failure_resumes_under_the_next_epoch() {
    let mut a = active_node(2);
    let mut b = standby_of_active(2);
    b.height = a.height;
    a.advance_ms(1_000);
    a.health(false, false);
    let acts = a.feed(deactivated_ok(Some(hrs(500, 0, Step::Precommit))));
    let acts_b = deliver(&mut b, &acts);
    assert!(has_activate(&acts_b));
    let acts_b = b.feed(syncguard_failover::Event::Actuator(
        syncguard_failover::ActuatorResult::Activated {
            epoch: 3,
            result: Err("key file missing".into()),
            signed_at: None,
        },
    ));
    assert!(has_deactivate(&acts_b));
    assert!(
        sent(&acts_b).is_empty(),
        "no answer before the stop is confirmed"
    );
    let acts_b = b.feed(deactivated_ok(None));
    let reply = sent(&acts_b);
    assert_eq!(reply[0].epoch, 4, "b reserves epoch 4 for a");
    assert_eq!(b.m.epoch(), 4);
    let acts_a = deliver(&mut a, &acts_b);
    assert_eq!(activation(&acts_a).map(|x| x.0), Some(4));
}

#[test]
fn failover_operator_switchover_on_the_active() {
    let mut a = active_node(2);
    a.rounds(1, Some(status("b", Role::Passive, 2)));
    let acts = a.feed(op(OperatorCommand::Switchover { to: "b".into() }));
    assert!(has_deactivate(&acts));
    assert!(any_said(&acts, "an operator asked for a switchover"));
    // Elsewhere: refused, with the reason.
    let mut b = standby_of_active(2);
    let acts = b.feed(op(OperatorCommand::Switchover { to: "a".into() }));
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "run it on the active node"
    ));
    let acts = b.feed(op(OperatorCommand::Switchover { to: "zz".into() }));
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "neither this node nor its peer"
    ));
}

#[test]
fn failover_switchover_refused_when_the_target_is_not_ready() {
    let mut a = active_node(2);
    let mut sick = status("b", Role::Passive, 2);
    sick.healthy = false;
    a.rounds(1, Some(sick));
    let acts = a.feed(op(OperatorCommand::Switchover { to: "b".into() }));
    assert!(!has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Refusal, "b's node is unhealthy"));
}

#[test]
fn failover_switchover_to_self_asks_the_active() {
    let mut b = standby_of_active(2);
    let acts = b.feed(op(OperatorCommand::Switchover { to: "b".into() }));
    let req = sent(&acts);
    assert!(matches!(
        req[0].body,
        MessageBody::RoleRequest {
            kind: RequestKind::Switchover
        }
    ));
    let mut a = active_node(2);
    a.height = b.height;
    a.rounds(1, Some(status("b", Role::Passive, 2)));
    let acts = deliver(&mut a, &acts);
    assert!(has_deactivate(&acts), "the active starts the handover");
}

#[test]
fn failover_fallback_after_the_grace_period_and_flapping_restarts_it() {
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Passive, 2, Some(true));
    let b_active = status("b", Role::Active, 2);
    // 8 s healthy, one bad round, 8 s healthy: no request yet.
    let mut acts = a.rounds(8, Some(b_active.clone()));
    a.advance_ms(1_000);
    acts.extend(a.health(false, false));
    acts.extend(a.rounds(8, Some(b_active.clone())));
    assert!(
        sent(&acts).is_empty(),
        "a flapping primary restarts its grace period"
    );
    let acts = a.rounds(3, Some(b_active));
    let req = sent(&acts);
    assert_eq!(req.len(), 1);
    assert!(matches!(
        req[0].body,
        MessageBody::RoleRequest {
            kind: RequestKind::Fallback
        }
    ));
    assert!(any_said(
        &acts,
        "fallback: this primary node has been healthy for 10 s"
    ));
}

#[test]
fn failover_fallback_request_is_honoured_only_for_the_primary() {
    // b (secondary) active; a (primary) asks: handover.
    let mut b = standby_of_active(2);
    let acts = lose_until_promoted(&mut b);
    assert!(has_activate(&acts));
    b.feed(activated(3));
    b.rounds(1, Some(status("a", Role::Passive, 3)));
    let acts = b.feed(msg(
        "a",
        3,
        MessageBody::RoleRequest {
            kind: RequestKind::Fallback,
        },
    ));
    assert!(has_deactivate(&acts));
    // a (primary) active; b asks for a fallback: declined.
    let mut a = active_node(2);
    let acts = a.feed(msg(
        "b",
        2,
        MessageBody::RoleRequest {
            kind: RequestKind::Fallback,
        },
    ));
    assert!(!has_deactivate(&acts));
    assert!(said(&acts, RecordKind::Refusal, "not the primary site"));
}

fn lose_until_promoted(n: &mut Node) -> Vec<Action> {
    let acts = n.lose_until_witness(20);
    if witness_request(&acts).is_some() {
        return n.answer_witness(&acts, &[], &[]);
    }
    Vec::new()
}

#[test]
fn failover_pause_freezes_promotion_and_resume_continues() {
    let mut b = standby_of_active(1);
    let acts = b.feed(op(OperatorCommand::Pause));
    assert!(said(&acts, RecordKind::Info, "paused by the operator"));
    assert_eq!(b.m.role(), Role::Paused);
    assert_eq!(b.m.held_role(), Role::Passive);
    let acts = b.rounds(20, None);
    assert!(!has_activate(&acts));
    assert!(witness_request(&acts).is_none());
    assert!(said(&acts, RecordKind::Refusal, "automation is paused"));
    b.feed(op(OperatorCommand::Resume));
    assert_eq!(b.m.role(), Role::Passive);
    let acts = lose_until_promoted(&mut b);
    assert!(has_activate(&acts));
}

#[test]
fn failover_paused_active_does_not_hand_over() {
    let mut a = active_node(2);
    a.feed(op(OperatorCommand::Pause));
    a.advance_ms(1_000);
    let acts = a.health(false, false);
    assert!(!has_deactivate(&acts));
    assert_eq!(a.m.held_role(), Role::Active);
    // Resumed: the rules apply again at once.
    let acts = a.feed(op(OperatorCommand::Resume));
    assert!(has_deactivate(&acts));
}

#[test]
fn failover_fenced_leaves_when_the_peer_is_reachable_again() {
    let mut a = fenced_node();
    let acts = a.rounds(1, Some(status("b", Role::Active, 3)));
    assert_eq!(a.m.held_role(), Role::Passive);
    assert!(said(
        &acts,
        RecordKind::RoleChange,
        "leaving fenced: peer b is reachable again"
    ));
    assert_eq!(a.m.epoch(), 3);
    assert!(a.m.has_standby_right(), "b holds epoch 3: a is its standby");
}

#[test]
fn failover_unfence_by_the_operator() {
    let mut a = fenced_node();
    let acts = a.feed(op(OperatorCommand::Unfence));
    assert_eq!(a.m.held_role(), Role::Passive);
    assert!(said(
        &acts,
        RecordKind::RoleChange,
        "unfenced by the operator"
    ));
    let acts = a.feed(op(OperatorCommand::Unfence));
    assert!(said(&acts, RecordKind::Refusal, "unfence ignored"));
}

#[test]
fn failover_takeover_by_the_operator_still_needs_a_clean_chain() {
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Passive, 4, Some(false));
    b.rounds(5, None);
    let acts = b.feed(op(OperatorCommand::Takeover));
    assert!(any_said(&acts, "takeover requested"));
    let acts = b.rounds(1, None);
    let latest = b.height;
    let acts = b.answer_witness(&acts, &[latest - 1], &[]);
    assert!(!has_activate(&acts));
    assert!(said(&acts, RecordKind::Refusal, "takeover refused"));
    b.feed(op(OperatorCommand::Takeover));
    let acts = b.rounds(1, None);
    let acts = b.answer_witness(&acts, &[], &[]);
    let (epoch, cause, _, _) = activation(&acts).expect("takeover");
    assert_eq!((epoch, cause), (5, ActivationCause::Takeover));
}

#[test]
fn failover_an_activation_is_reported_verified_and_a_verify_report_changes_nothing() {
    let mut a = active_node(2);
    // The actuator reports an activation only once verified; a separate verify answer is
    // not a decision any more.
    let acts = a.feed(Event::Verify(VerifyReport {
        epoch: 2,
        signed: false,
        detail: "no signature in heights 101-103".into(),
    }));
    assert!(acts.iter().all(|x| matches!(x, Action::Record(_))) || acts.is_empty());
    assert!(!has_deactivate(&acts));
    assert_eq!(a.m.held_role(), Role::Active);
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Passive, 0, None);
    let rec = records(&[]);
    assert!(rec.is_empty());
}

#[test]
fn failover_identical_refusals_are_recorded_once() {
    let mut b = standby_of_active(1);
    let mut all = Vec::new();
    for _ in 0..12 {
        let acts = b.rounds(1, None);
        let latest = b.height;
        all.extend(acts.clone());
        if witness_request(&acts).is_some() {
            all.extend(b.answer_witness(&acts, &[latest], &[]));
        }
    }
    let signed = records(&all)
        .iter()
        .filter(|r| r.why.contains("still active somewhere"))
        .count();
    assert_eq!(signed, 1, "{:#?}", records(&all));
}

#[test]
fn failover_peer_identity_mismatch_blocks_promotion() {
    let mut b = standby_of_active(1);
    let acts = b.rounds(10, Some(status("mallory", Role::Passive, 1)));
    assert!(!has_activate(&acts));
    assert!(said(&acts, RecordKind::Alert, "answers as node `mallory`"));
    assert!(said(&acts, RecordKind::Refusal, "fix communication.peers"));
}

#[test]
fn failover_messages_from_strangers_are_ignored() {
    let mut b = standby_of_active(1);
    let acts = b.feed(msg(
        "zz",
        9,
        MessageBody::HandoverOffer { final_state: None },
    ));
    assert!(!has_activate(&acts));
    assert!(sent(&acts).is_empty());
    assert_eq!(b.m.epoch(), 1);
}

#[test]
fn failover_both_passive_the_preferred_claims_after_the_window() {
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Passive, 3, Some(false));
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Passive, 3, Some(false));
    let acts_b = b.rounds(10, Some(status("a", Role::Passive, 3)));
    assert!(sent(&acts_b).is_empty(), "b defers to a");
    assert!(said(
        &acts_b,
        RecordKind::Refusal,
        "peer a is preferred and healthy"
    ));
    let mut acts = a.rounds(2, Some(status("b", Role::Passive, 3)));
    assert!(sent(&acts).is_empty(), "waits the failover window first");
    for _ in 0..3 {
        let r = a.rounds(1, Some(status("b", Role::Passive, 3)));
        acts.extend(r.clone());
        if witness_request(&r).is_some() {
            acts.extend(a.answer_witness(&r, &[], &[]));
            break;
        }
    }
    let claim = sent(&acts);
    assert_eq!(claim.len(), 1);
    assert_eq!(claim[0].epoch, 4);
    let grant = deliver(&mut b, &acts);
    let acts = deliver(&mut a, &grant);
    assert_eq!(
        activation(&acts).map(|x| (x.0, x.1)),
        Some((4, ActivationCause::Claim))
    );
}

#[test]
fn failover_time_going_backwards_is_clamped() {
    let mut b = standby_of_active(1);
    let before = b.now;
    b.now = Duration::from_millis(5);
    let acts = b.feed(Event::Tick);
    assert!(!has_activate(&acts));
    b.now = before;
    assert!(b.m.status().peer_unreachable_for_ms.is_none());
}

#[test]
fn failover_status_and_peer_status_describe_the_node() {
    let mut b = standby_of_active(1);
    b.rounds(2, None);
    let st = b.m.status();
    assert_eq!(st.role, Role::Passive);
    assert_eq!(st.epoch, 1);
    assert!(st.peer.is_none());
    assert!(st.peer_unreachable_for_ms.is_some());
    let ps = b.m.peer_status();
    assert_eq!(ps.node_id, NodeId::new("b"));
    assert!(ps.standby_right);
    assert!(!ps.is_primary_site);
}

#[test]
fn failover_params_are_validated() {
    let good = params("a", "b", true);
    assert!(good.validate().is_ok());
    let mut p = good.clone();
    p.peer_id = p.node_id.clone();
    assert!(matches!(p.validate(), Err(ParamsError::SameIds(_))));
    let mut p = good.clone();
    p.timing.witness_blocks = 0;
    assert!(matches!(p.validate(), Err(ParamsError::ZeroWitness)));
    // Hand-built timings that break the model's inequalities are refused.
    let mut p = good.clone();
    p.timing.window = p.timing.contact_lag;
    assert!(matches!(Machine::new(p), Err(ParamsError::Timing(_))));
    let mut p = good.clone();
    p.timing.witness_span_silent = Duration::from_millis(1);
    assert!(matches!(p.validate(), Err(ParamsError::Timing(_))));
    let mut p = good;
    p.timing.settle = Duration::from_secs(1);
    assert!(matches!(p.validate(), Err(ParamsError::Timing(_))));
    assert!(Params::with_defaults("a".into(), "b".into(), true)
        .validate()
        .is_ok());
}

#[test]
fn failover_events_actions_and_state_serialize() {
    let mut b = standby_of_active(1);
    let acts = lose_until_promoted(&mut b);
    let json = serde_json::to_string(&acts).expect("actions serialize");
    assert!(json.contains("\"action\":\"activate\""));
    assert!(json.contains("\"fence\":{\"height\":"));
    let back: Vec<Action> = serde_json::from_str(&json).expect("actions deserialize");
    assert_eq!(back, acts);
    let ev = Event::Peer(PeerObservation::Reachable(status("a", Role::Active, 1)));
    let text = serde_json::to_string(&ev).expect("event serializes");
    let again: Event = serde_json::from_str(&text).expect("event deserializes");
    assert_eq!(again, ev);
    let m = PeerMessage {
        from: "a".into(),
        epoch: 3,
        body: MessageBody::HandoverOffer { final_state: None },
    };
    let text = serde_json::to_string(&m).expect("message serializes");
    assert!(text.contains("\"type\":\"handover_offer\""));
    assert!(
        serde_json::to_string(&b.m).is_ok(),
        "the whole machine, for debugging"
    );
    assert!(serde_json::to_string(&b.m.status()).is_ok());
    // A bad step number is refused, not panicked on.
    let bad = r#"{"event":"state_seen","hrs":{"height":1,"round":0,"step":9}}"#;
    assert!(serde_json::from_str::<Event>(bad).is_err());
}

#[test]
fn failover_functional_step_matches_handle() {
    let m = Machine::new(params("a", "b", true)).expect("params");
    let (m, acts) = step(
        m,
        Event::Start {
            wish: Wish::Passive,
            epoch_on_disk: 0,
            standby_right: None,
        },
        Duration::ZERO,
    );
    assert!(has_deactivate(&acts));
    assert_eq!(m.held_role(), Role::Demoting);
}

#[test]
fn failover_events_before_start_change_nothing() {
    let mut n = Node::new("a", "b", true);
    let acts = n.feed(msg(
        "b",
        3,
        MessageBody::HandoverOffer { final_state: None },
    ));
    assert!(acts.is_empty());
    let acts = n.feed(op(OperatorCommand::Takeover));
    assert!(said(&acts, RecordKind::Refusal, "has not started"));
    assert_eq!(n.m.epoch(), 0);
}

#[test]
fn failover_grant_arriving_after_the_claim_deadline_is_not_acted_upon() {
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Active, 0, None);
    a.healthy();
    let acts = a.sees(status("b", Role::Passive, 0));
    let claim = sent(&a.answer_witness(&acts, &[], &[]));
    assert_eq!(claim.len(), 1);
    a.advance_ms(6_000);
    let acts = a.feed(msg(
        "b",
        1,
        MessageBody::RoleReply {
            granted: true,
            reason: "late".into(),
        },
    ));
    assert!(
        !has_activate(&acts),
        "the claim was withdrawn at its deadline"
    );
}

#[test]
fn failover_operator_switchover_to_self_refused_when_own_node_is_behind_or_unhealthy() {
    // b is a's healthy standby; its own node falls behind a's: nothing is asked of a.
    let mut b = standby_of_active(2);
    let mut a_st = status("a", Role::Active, 2);
    a_st.latest_height = Some(b.height + 10);
    b.sees(a_st.clone());
    let to_b = NodeId::new("b");
    let why = b.m.switchover_check(&to_b, b.now).expect_err("b is behind");
    assert!(why.contains("my node is behind"), "{why}");
    let acts = b.feed(op(OperatorCommand::Switchover { to: to_b.clone() }));
    assert!(sent(&acts).is_empty(), "nothing is asked of the active");
    assert!(said(&acts, RecordKind::Refusal, "my node is behind"));
    // Caught up but unhealthy: refused too.
    a_st.latest_height = Some(b.height);
    b.sees(a_st.clone());
    b.health(false, false);
    let acts = b.feed(op(OperatorCommand::Switchover { to: to_b.clone() }));
    assert!(sent(&acts).is_empty());
    assert!(said(
        &acts,
        RecordKind::Refusal,
        "my own node is not healthy"
    ));
    // Healthy and caught up: the check passes and the command asks the active.
    b.healthy();
    b.sees(a_st);
    assert_eq!(b.m.switchover_check(&to_b, b.now), Ok(()));
    let acts = b.feed(op(OperatorCommand::Switchover { to: to_b }));
    assert!(matches!(
        sent(&acts).first().map(|m| &m.body),
        Some(MessageBody::RoleRequest {
            kind: RequestKind::Switchover
        })
    ));
}

#[test]
fn failover_operator_switchover_refused_while_paused_and_nothing_stops() {
    let mut a = active_node(2);
    a.rounds(1, Some(status("b", Role::Passive, 2)));
    a.feed(op(OperatorCommand::Pause));
    let to_b = NodeId::new("b");
    let why = a.m.switchover_check(&to_b, a.now).expect_err("paused");
    assert!(why.contains("paused"), "{why}");
    let acts = a.feed(op(OperatorCommand::Switchover { to: to_b.clone() }));
    assert!(!has_deactivate(&acts), "a paused active keeps signing");
    assert_eq!(a.m.held_role(), Role::Active);
    a.feed(op(OperatorCommand::Resume));
    assert_eq!(a.m.switchover_check(&to_b, a.now), Ok(()));
}

#[test]
fn failover_operator_switchover_target_within_two_rounds_of_blocks_is_caught_up() {
    // 1 s rounds, 2.4 s blocks: two rounds of observation lag are at most 1 block, +1.
    let p = params("a", "b", true);
    assert_eq!(p.catch_up_tolerance(), 2);
    let mut fast = p.clone();
    fast.timing.block = Duration::from_millis(300);
    fast.timing.round = Duration::from_millis(500);
    assert_eq!(fast.catch_up_tolerance(), 5);
    let mut a = active_node(2);
    let mut b_st = status("b", Role::Passive, 2);
    b_st.latest_height = Some(a.height.saturating_sub(2));
    a.advance_ms(500);
    a.healthy();
    a.sees(b_st.clone());
    assert_eq!(a.m.switchover_check(&NodeId::new("b"), a.now), Ok(()));
    b_st.latest_height = Some(a.height.saturating_sub(3));
    a.sees(b_st);
    let why =
        a.m.switchover_check(&NodeId::new("b"), a.now)
            .expect_err("3 blocks behind");
    assert!(why.contains("b is behind"), "{why}");
}

/// Found by the random worlds (seed 7849181164459595): a message from the peer is contact
/// even while its status API does not answer — a granted claim most of all, after which the
/// peer starts signing. The mutant without `Pair::heard_from` asks the chain at once here.
#[test]
fn double_sign_a_claim_heard_from_an_unreachable_peer_restarts_the_loss_clock() {
    // a, the standby of epoch 3, has not reached b's status API for longer than the window
    // (its witness questions unanswered) when b's claim for epoch 4 arrives.
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Passive, 3, Some(true));
    a.rounds(1, Some(status("b", Role::Passive, 3)));
    a.rounds(6, None);
    let claim = MessageBody::RoleRequest {
        kind: RequestKind::Claim,
    };
    let grant = a.feed(msg("b", 4, claim));
    assert!(
        matches!(
            sent(&grant).first().map(|m| &m.body),
            Some(MessageBody::RoleReply { granted: true, .. })
        ),
        "{grant:?}"
    );
    // b starts at once: its signature is on a's chain from the next round on (which ends
    // the late-start wait), and its status API still does not answer.
    a.last_signed = Some(a.height + 1);
    let acts = a.rounds(2, None);
    assert!(
        witness_request(&acts).is_none() && !has_activate(&acts),
        "the grant was contact: a whole window from it before the chain is even asked: \
         {acts:?}"
    );
    assert!(
        said(&acts, RecordKind::Refusal, "has been unreachable for 1 s"),
        "{:#?}",
        records(&acts)
    );
}
