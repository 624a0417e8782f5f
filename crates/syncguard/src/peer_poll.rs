//! The peer poller: one look at the peer's `/peer/status` per health round, fed to the
//! failover machine as `Event::Peer`.
//!
//! The machine takes a look as news for two rounds only; after that it says "no recent news
//! of peer" and moves nothing, for lack of evidence either way. A look, though, may take up
//! to `communication.request_timeout`, which can be longer than a round (the devnet: 1 s
//! against 0.5 s rounds; an operator's 1 s rounds with the 2 s default). A look begun one
//! round after the last answer, at a peer that hangs (its SyncGuard stopped or starved),
//! fails only when its timeout is up — three rounds or more after the last news — so the
//! machine saw no news where there was an unreachable peer, and started its unreachable clock
//! late. So when the machine's last news is about to age out while a look is still
//! unanswered, that is reported as `Unreachable` ("no answer for … yet"), and the answer,
//! when it comes, as usual: while this task runs, the machine never goes two rounds without
//! news. A peer that answers within those two rounds, however slowly, is never reported
//! unreachable.

use std::future::Future;
use std::time::{Duration, SystemTime};

use syncguard_failover::{Event, PeerObservation, PeerStatus};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::daemon::{next_tick, ticker};
use crate::view::Shared;

/// When the poller speaks up about a look begun at `asked` and still unanswered: when the
/// last news is about to age out — the machine's two rounds of freshness less a quarter round
/// for the event to reach it — but never before the look has had a quarter round: when this
/// task was itself held up (the daemon stopped or starved), the machine rightly has no news,
/// and the peer is not to blame.
fn unanswered_due(last_news: Option<Instant>, asked: Instant, round: Duration) -> Instant {
    let ages_out = last_news.unwrap_or(asked) + round.saturating_mul(2).saturating_sub(round / 4);
    ages_out.max(asked + round / 4)
}

/// Looks at the peer once per round (`interval`) with `look(epoch)` until `stop` flips or
/// the machine's inbox is gone.
pub(crate) async fn poll_peer<L, F>(
    mut look: L,
    interval: Duration,
    shared: Shared,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) where
    L: FnMut(u64) -> F,
    F: Future<Output = Result<PeerStatus, String>>,
{
    let mut ticker = ticker(interval);
    let round = ticker.period();
    // The last observation sent (none yet: counted from the first look).
    let mut last_news: Option<Instant> = None;
    while next_tick(&mut ticker, &mut stop).await {
        let asked = Instant::now();
        let answer = look(current_epoch(&shared));
        tokio::pin!(answer);
        let result = loop {
            let due = unanswered_due(last_news, asked, round);
            tokio::select! {
                result = &mut answer => break result,
                _ = tokio::time::sleep_until(due) => {
                    let reason = format!(
                        "no answer for {:.1} s yet (a look may wait up to \
                         communication.request_timeout)",
                        asked.elapsed().as_secs_f64(),
                    );
                    tracing::debug!("peer look unanswered: {reason}");
                    let observation = PeerObservation::Unreachable { reason };
                    if events.send(Event::Peer(observation)).await.is_err() {
                        return;
                    }
                    last_news = Some(Instant::now());
                }
                _ = stop.changed() => return,
            }
        };
        let took = asked.elapsed();
        if took > round {
            tracing::debug!(
                seconds = took.as_secs_f64(),
                ok = result.is_ok(),
                "peer look took longer than a health round"
            );
        }
        let observation = match result {
            Ok(status) => {
                shared.update(|v| v.peer_last_contact = Some(SystemTime::now()));
                PeerObservation::Reachable(status)
            }
            Err(reason) => PeerObservation::Unreachable { reason },
        };
        if events.send(Event::Peer(observation)).await.is_err() {
            return;
        }
        last_news = Some(Instant::now());
    }
}

fn current_epoch(shared: &Shared) -> u64 {
    shared.read(|v| v.failover.as_ref().map_or(0, |s| s.epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use syncguard_config::{NodeRole, SiteRole};
    use syncguard_failover::{NodeId, Role};

    use crate::view::NodeView;

    /// One look, boxed so that a test's looks are all of one type.
    type Look = std::pin::Pin<Box<dyn Future<Output = Result<PeerStatus, String>> + Send>>;

    const ROUND: Duration = Duration::from_millis(500);
    /// The devnet's `communication.request_timeout`: two rounds.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

    fn status() -> PeerStatus {
        PeerStatus {
            node_id: NodeId::new("node-b"),
            role: Role::Promoting,
            epoch: 6,
            healthy: false,
            paused: false,
            is_primary_site: false,
            standby_right: false,
            latest_height: Some(87),
            last_state: None,
            wants_role: false,
            peer_lost: false,
        }
    }

    fn shared() -> Shared {
        Shared::new(NodeView::new(
            "node-a".into(),
            SiteRole::Primary,
            NodeRole::Active,
        ))
    }

    /// Runs the poller against `look` for `span` of (paused, virtual) time; returns each
    /// observation with the instant the machine's inbox got it, counted from the start.
    async fn observe<L, F>(look: L, span: Duration) -> Vec<(Duration, PeerObservation)>
    where
        L: FnMut(u64) -> F + Send + 'static,
        F: Future<Output = Result<PeerStatus, String>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel(256);
        let (stop_tx, stop_rx) = watch::channel(false);
        let t0 = Instant::now();
        let task = tokio::spawn(poll_peer(look, ROUND, shared(), tx, stop_rx));
        let mut seen = Vec::new();
        let deadline = t0 + span;
        loop {
            tokio::select! {
                Some(Event::Peer(o)) = rx.recv() => seen.push((t0.elapsed(), o)),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let _ = stop_tx.send(true);
        task.await.expect("the poller ends when told to stop");
        seen
    }

    /// A peer that answers its first `good` looks at once, and then hangs: every later look
    /// fails only at the request timeout.
    fn hangs_after(good: u32) -> impl FnMut(u64) -> Look + Send + 'static {
        let n = Arc::new(AtomicU32::new(0));
        move |_epoch| {
            let k = n.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if k < good {
                    Ok(status())
                } else {
                    tokio::time::sleep(REQUEST_TIMEOUT).await;
                    Err("peer `node-b` did not answer within 1s".to_string())
                }
            })
        }
    }

    /// The machine's freshness: a look is news for two rounds (`Machine::is_fresh`).
    fn longest_silence(seen: &[(Duration, PeerObservation)]) -> Duration {
        seen.windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn peer_poll_a_hanging_peer_is_news_every_round_never_silence() {
        // Seed 4246 of the soak: node-b's SyncGuard stopped (SIGSTOP) for a second; node-a's
        // look, begun a round after the last answer, would fail at its 1 s timeout — three
        // rounds after the last news — and node-a's machine said "no recent news of peer".
        let seen = observe(hangs_after(2), Duration::from_secs(6)).await;
        assert!(
            matches!(seen.first(), Some((_, PeerObservation::Reachable(_)))),
            "{seen:?}"
        );
        let silence = longest_silence(&seen);
        assert!(
            silence <= ROUND * 2,
            "the machine went {silence:?} without news of its peer (more than two rounds): {seen:?}"
        );
        // After the last answer, the hang is reported as it lasts, in words.
        let last_good = seen
            .iter()
            .rposition(|(_, o)| matches!(o, PeerObservation::Reachable(_)))
            .expect("answers at first");
        let after: Vec<&PeerObservation> = seen[last_good + 1..].iter().map(|(_, o)| o).collect();
        assert!(after.len() >= 6, "{after:?}");
        assert!(after
            .iter()
            .all(|o| matches!(o, PeerObservation::Unreachable { .. })));
        assert!(
            after.iter().any(|o| matches!(
                o,
                PeerObservation::Unreachable { reason } if reason.starts_with("no answer for")
            )),
            "{after:?}"
        );
    }

    /// Looks answered after `first` for the first one, then after `then` each.
    fn answers_after(first: Duration, then: Duration) -> impl FnMut(u64) -> Look + Send {
        let n = Arc::new(AtomicU32::new(0));
        move |_epoch| {
            let k = n.fetch_add(1, Ordering::SeqCst);
            let wait = if k == 0 { first } else { then };
            Box::pin(async move {
                tokio::time::sleep(wait).await;
                Ok(status())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peer_poll_a_slow_peer_answering_within_two_rounds_is_never_called_unreachable() {
        // Every look answers after 1.6 rounds: slow, but each answer comes while the last
        // is still news. Nothing in between: no flapping reachable/unreachable.
        let slow = ROUND * 8 / 5;
        let seen = observe(answers_after(slow, slow), Duration::from_secs(5)).await;
        assert!(seen.len() >= 5, "{seen:?}");
        assert!(
            seen.iter()
                .all(|(_, o)| matches!(o, PeerObservation::Reachable(_))),
            "{seen:?}"
        );
        assert!(longest_silence(&seen) <= ROUND * 2, "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn peer_poll_a_peer_turning_slow_is_news_before_the_last_ages_out() {
        // The first look answers at once; the next one, begun a round later, takes 1.6
        // rounds: 2.6 rounds after the last news. The round in between is reported, and the
        // slow answer too.
        let seen = observe(
            answers_after(Duration::ZERO, ROUND * 8 / 5),
            Duration::from_secs(4),
        )
        .await;
        assert!(longest_silence(&seen) <= ROUND * 2, "{seen:?}");
        let kinds: Vec<bool> = seen
            .iter()
            .map(|(_, o)| matches!(o, PeerObservation::Reachable(_)))
            .collect();
        assert_eq!(kinds[..3], [true, false, true], "{seen:?}");
        assert!(kinds[3..].iter().all(|r| *r), "{seen:?}");
    }

    #[test]
    fn peer_poll_an_unanswered_look_is_reported_before_the_last_news_ages_out() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Prompt last answer, next look a round later: reported 1.75 rounds after the news.
        assert_eq!(unanswered_due(Some(t), t + ROUND, ROUND), t + ms(875));
        // No news yet: counted from the first look.
        assert_eq!(unanswered_due(None, t, ROUND), t + ms(875));
        // The poller itself was held up for seconds: the fresh look still gets a quarter
        // round before it is called unanswered.
        assert_eq!(
            unanswered_due(Some(t), t + Duration::from_secs(3), ROUND),
            t + ms(3125)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn peer_poll_a_prompt_peer_is_one_answer_per_round_only() {
        let look = |_epoch: u64| -> Look { Box::pin(async { Ok(status()) }) };
        let seen = observe(look, Duration::from_millis(2_250)).await;
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen
            .iter()
            .all(|(_, o)| matches!(o, PeerObservation::Reachable(_))));
    }
}
