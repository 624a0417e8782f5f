//! The timers are complete (found by the simulated world driven by timers alone, `sim/`): a
//! machine woken only at `poll_timeout` makes every decision that time alone makes, at the
//! first instant it may — and a decision that needs no waiting is made at once.

mod common;

use std::time::Duration;

use common::*;
use syncguard_failover::{Action, Event, MessageBody, RequestKind, Role, Wish};

fn s(x: u64) -> Duration {
    Duration::from_secs(x)
}

/// Wakes `n` at its own timers only, at most `wakes` times, until `done` holds for what it
/// asked: returns everything asked for (and the instant of the last wake).
fn on_timers(n: &mut Node, wakes: usize, done: impl Fn(&[Action]) -> bool) -> Vec<Action> {
    let mut all = Vec::new();
    for _ in 0..wakes {
        let Some(at) = n.m.poll_timeout() else {
            break;
        };
        n.now = at;
        let acts = n.m.handle_timeout(at);
        all.extend(acts);
        if done(&all) {
            break;
        }
    }
    all
}

/// Whether `acts` ask the peer for the role back.
fn asks_fallback(acts: &[Action]) -> bool {
    matches!(
        sent(acts).first().map(|m| &m.body),
        Some(MessageBody::RoleRequest {
            kind: RequestKind::Fallback
        })
    )
}

#[test]
fn failover_timers_a_late_start_wait_is_not_masked_by_an_earlier_wait() {
    // b, the designated standby, boots (any holder may start late: settle, 20 s) and loses
    // its peer (the window, 3 s, ends long before). Both waits arm `WaitEnds`.
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Passive, 1, Some(true));
    let acts = b.rounds(19, None);
    assert!(
        witness_request(&acts).is_none(),
        "the late start is not over"
    );
    assert_eq!(
        b.m.poll_timeout(),
        Some(s(MARGIN_S)),
        "the late start's end"
    );
    let acts = on_timers(&mut b, 1, |_| true);
    assert!(witness_request(&acts).is_some(), "{acts:?}");
}

#[test]
fn failover_timers_news_ages_out_just_after_its_age() {
    // An active whose health rounds and looks at the peer stop altogether: S4 must fence it
    // on its timers alone (at `news_max_age` the news is still news; just after, it is not).
    let mut a = active_node(2);
    let aged = a.now + a.m.params().timing.news_max_age;
    let acts = on_timers(&mut a, 10, has_deactivate);
    assert!(has_deactivate(&acts), "{:#?}", records(&acts));
    assert!(any_said(
        &acts,
        "no health round has reported on my own node"
    ));
    assert!(
        a.now <= aged + Duration::from_millis(1),
        "fenced at {:?}",
        a.now
    );
}

#[test]
fn failover_timers_a_refused_witness_is_asked_again_a_round_later() {
    let mut b = standby_of_active(1);
    let (acts, asked) = (0..30)
        .map(|_| (b.rounds(1, None), b.now))
        .find(|(acts, _)| witness_request(acts).is_some())
        .expect("the standby asks for a witness");
    let latest = b.height;
    let acts = b.answer_witness(&acts, &[latest - 1], &[]);
    assert!(!has_activate(&acts));
    let round = b.m.params().timing.round;
    let at = b.m.poll_timeout().expect("a timer");
    assert!(at <= asked + round + Duration::from_millis(1), "{at:?}");
    let acts = on_timers(&mut b, 1, |_| true);
    assert!(witness_request(&acts).is_some(), "{acts:?}");
}

#[test]
fn failover_timers_a_declined_fallback_is_asked_again_on_time() {
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Passive, 2, Some(true));
    let b_active = status("b", Role::Active, 2);
    let asked = (0..20)
        .map(|_| (a.rounds(1, Some(b_active.clone())), a.now))
        .find(|(acts, _)| !sent(acts).is_empty())
        .map(|(_, at)| at)
        .expect("the first fallback request");
    let reply = MessageBody::RoleReply {
        granted: false,
        reason: "not now".into(),
    };
    a.feed(msg("b", 2, reply));
    a.rounds(5, Some(b_active.clone()));
    a.advance_ms(500);
    a.healthy();
    a.chain();
    a.sees(b_active);
    let again = asked + a.m.params().timing.handover_timeout;
    assert_eq!(a.m.poll_timeout(), Some(again));
    let acts = on_timers(&mut a, 1, |_| true);
    assert!(asks_fallback(&acts), "{acts:?}");
}

#[test]
fn failover_unfenced_node_decides_at_once() {
    // A fenced primary, healthy again for longer than its grace period while its peer stays
    // out of sight, sees the peer active: it leaves `Fenced` and asks for its role back in
    // the same step — nothing else would wake it for that before the next input.
    let mut a = fenced_node();
    a.rounds(12, None);
    assert_eq!(a.m.held_role(), Role::Fenced);
    let acts = a.feed(Event::Peer(syncguard_failover::PeerObservation::Reachable(
        status("b", Role::Active, 3),
    )));
    assert_eq!(a.m.held_role(), Role::Passive);
    assert!(asks_fallback(&acts), "{acts:?}");
}
