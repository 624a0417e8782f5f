//! [`Dispatcher`]: the pure core of alert delivery. No I/O and no clock: every call takes
//! `now`, a monotonic time since the caller's origin, so tests run in simulated time.
//!
//! Per sink a bounded FIFO queue with at most one request in flight (a dead sink delays
//! only itself); an accepted alert is queued once per sink. A failure is retried with
//! exponential backoff until `attempts` tries were made, then given up. Alerts whose
//! dedup key was accepted less than `dedup_window` ago are counted and not sent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;
use syncguard_config::AlertsConfig;

use crate::alert::Alert;
use crate::sink::{Request, Sink};

/// Dedup memory beyond this many keys forgets the oldest (a flood of distinct keys must
/// not grow memory without bound).
const DEDUP_MEMORY: usize = 4096;

/// Knobs of delivery. [`Tuning::from_config`] reads `alerts:`; the rest are defaults tests
/// may shorten.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Tries per alert and sink (`alerts.retries`), at least 1.
    pub attempts: u32,
    /// One try's limit (`alerts.timeout`); enforced by the shell.
    pub timeout: Duration,
    /// `alerts.dedup_window`; zero disables de-duplication.
    pub dedup_window: Duration,
    /// Wait before the 2nd try; doubled for each further try, capped at `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Alerts waiting per sink; beyond it the oldest waiting one is dropped.
    pub queue_bound: usize,
    /// Alerts waiting between `notify` and the dispatcher; beyond it `notify` drops.
    pub channel_bound: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(5),
            dedup_window: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            queue_bound: 64,
            channel_bound: 256,
        }
    }
}

impl Tuning {
    pub fn from_config(c: &AlertsConfig) -> Self {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
        Self {
            attempts: c.retries.max(1),
            timeout: secs(c.timeout),
            dedup_window: secs(c.dedup_window),
            ..Self::default()
        }
    }

    /// The wait after failed try number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// Identifies one try of one alert at one sink.
pub type JobId = u64;

/// A request to make now; report how it went with [`Dispatcher::on_result`].
#[derive(Debug, Clone)]
pub struct SendJob {
    pub id: JobId,
    /// Index into the dispatcher's sinks.
    pub sink: usize,
    pub sink_name: &'static str,
    /// 1 for the first try.
    pub attempt: u32,
    pub request: Request,
}

/// Why a try failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No answer within `alerts.timeout`.
    Timeout,
    /// Connection refused, reset, DNS, TLS ...; the text never holds the URL.
    Network(String),
    /// The service answered with this non-2xx status.
    Status(u16),
}

impl SendError {
    /// A 4xx other than 408/429 means the request itself is wrong (bad token, bad chat id):
    /// trying again cannot help.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Timeout | SendError::Network(_) => true,
            SendError::Status(s) => !(400..500).contains(s) || *s == 408 || *s == 429,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout => f.write_str("no answer within alerts.timeout"),
            SendError::Network(e) => write!(f, "{e}"),
            SendError::Status(s) => write!(f, "HTTP status {s}"),
        }
    }
}

/// What [`Dispatcher::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Queued at this many sinks (0 when none is configured).
    Queued(usize),
    /// Same dedup key within the window: not sent.
    Deduplicated,
}

/// What [`Dispatcher::on_result`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        sink: &'static str,
        attempt: u32,
    },
    /// Will try again at `at` (same clock as `now`).
    Retry {
        sink: &'static str,
        attempt: u32,
        error: SendError,
        at: Duration,
    },
    GaveUp {
        sink: &'static str,
        attempt: u32,
        error: SendError,
    },
    /// No such job in flight (a stale or repeated report); ignored.
    Unknown,
}

/// Counters, also the source of the `syncguard_alerts_*` metrics. Every configured sink
/// has an entry in `sent` and `failed`, zero or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertStats {
    pub sent: BTreeMap<String, u64>,
    /// Alerts given up on, per sink.
    pub failed: BTreeMap<String, u64>,
    /// Alerts lost to a full queue or a full channel.
    pub dropped: u64,
    pub deduplicated: u64,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    /// Tries made so far.
    tries: u32,
    not_before: Duration,
}

#[derive(Debug)]
struct Lane {
    sink: Sink,
    queue: VecDeque<Pending>,
    /// The job of the queue's front, while a try is under way.
    in_flight: Option<JobId>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Dispatcher {
    tuning: Tuning,
    lanes: Vec<Lane>,
    /// Dedup key → when it was last accepted.
    seen: HashMap<String, Duration>,
    next_id: JobId,
    stats: AlertStats,
}

impl Dispatcher {
    pub fn new(sinks: Vec<Sink>, tuning: Tuning) -> Self {
        let mut stats = AlertStats::default();
        for s in &sinks {
            stats.sent.insert(s.name().to_string(), 0);
            stats.failed.insert(s.name().to_string(), 0);
        }
        Self {
            tuning,
            lanes: sinks
                .into_iter()
                .map(|sink| Lane {
                    sink,
                    queue: VecDeque::new(),
                    in_flight: None,
                })
                .collect(),
            seen: HashMap::new(),
            next_id: 1,
            stats,
        }
    }

    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    pub fn sinks(&self) -> impl Iterator<Item = &Sink> {
        self.lanes.iter().map(|l| &l.sink)
    }

    /// Takes an alert: drops it as a repeat, or queues one request per sink.
    pub fn accept(&mut self, alert: &Alert, now: Duration) -> Accepted {
        let window = self.tuning.dedup_window;
        self.seen
            .retain(|_, at| now.saturating_sub(*at) < window && *at <= now);
        if let Some(at) = self.seen.get(&alert.dedup_key) {
            if now.saturating_sub(*at) < window {
                self.stats.deduplicated += 1;
                return Accepted::Deduplicated;
            }
        }
        if !window.is_zero() {
            if self.seen.len() >= DEDUP_MEMORY {
                if let Some(oldest) = self
                    .seen
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                {
                    self.seen.remove(&oldest);
                }
            }
            self.seen.insert(alert.dedup_key.clone(), now);
        }
        // A relapse (unhealthy after recovered, and back again) is news at once.
        if let Some(other) = alert.counterpart_key() {
            self.seen.remove(&other);
        }
        let bound = self.tuning.queue_bound.max(1);
        for lane in &mut self.lanes {
            if lane.queue.len() >= bound {
                // Keep the try under way; drop the oldest that is only waiting.
                let victim = usize::from(lane.in_flight.is_some());
                if lane.queue.remove(victim).is_some() {
                    self.stats.dropped += 1;
                }
            }
            lane.queue.push_back(Pending {
                request: lane.sink.request(alert),
                tries: 0,
                not_before: now,
            });
        }
        Accepted::Queued(self.lanes.len())
    }

    /// Counts an alert dropped before it got here (the shell's full channel).
    pub fn count_dropped(&mut self, n: u64) {
        self.stats.dropped += n;
    }

    /// The tries to start now: at most one per sink, and none where one is under way.
    pub fn poll(&mut self, now: Duration) -> Vec<SendJob> {
        let mut jobs = Vec::new();
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if lane.in_flight.is_some() {
                continue;
            }
            let Some(front) = lane.queue.front_mut() else {
                continue;
            };
            if front.not_before > now {
                continue;
            }
            front.tries += 1;
            let id = self.next_id;
            self.next_id += 1;
            lane.in_flight = Some(id);
            jobs.push(SendJob {
                id,
                sink: i,
                sink_name: lane.sink.name(),
                attempt: front.tries,
                request: front.request.clone(),
            });
        }
        jobs
    }

    /// Reports how a try went; decides retry or give-up.
    pub fn on_result(
        &mut self,
        id: JobId,
        result: Result<(), SendError>,
        now: Duration,
    ) -> Outcome {
        let Some(lane) = self.lanes.iter_mut().find(|l| l.in_flight == Some(id)) else {
            return Outcome::Unknown;
        };
        lane.in_flight = None;
        let sink = lane.sink.name();
        let Some(front) = lane.queue.front_mut() else {
            return Outcome::Unknown;
        };
        let attempt = front.tries;
        match result {
            Ok(()) => {
                lane.queue.pop_front();
                *self.stats.sent.entry(sink.to_string()).or_default() += 1;
                Outcome::Sent { sink, attempt }
            }
            Err(error) if error.is_retryable() && attempt < self.tuning.attempts => {
                let at = now + self.tuning.backoff(attempt);
                front.not_before = at;
                Outcome::Retry {
                    sink,
                    attempt,
                    error,
                    at,
                }
            }
            Err(error) => {
                lane.queue.pop_front();
                *self.stats.failed.entry(sink.to_string()).or_default() += 1;
                Outcome::GaveUp {
                    sink,
                    attempt,
                    error,
                }
            }
        }
    }

    /// When [`Dispatcher::poll`] will next have work, if no result comes first: `None`
    /// when every sink is idle or busy with a try.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.lanes
            .iter()
            .filter(|l| l.in_flight.is_none())
            .filter_map(|l| l.queue.front().map(|p| p.not_before))
            .min()
    }

    /// Nothing queued and nothing under way.
    pub fn is_idle(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.queue.is_empty() && l.in_flight.is_none())
    }

    pub fn stats(&self) -> &AlertStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn hook(name: &str) -> Sink {
        Sink::Webhook {
            url: format!("http://127.0.0.1:9/{name}"),
        }
    }

    fn two_sinks() -> Dispatcher {
        Dispatcher::new(
            vec![
                hook("a"),
                Sink::Discord {
                    url: "http://127.0.0.1:9/d".into(),
                },
            ],
            Tuning::default(),
        )
    }

    fn alert(kind: AlertKind) -> Alert {
        Alert::new(kind, "node-a", "something")
    }

    #[test]
    fn alerts_dispatch_sends_to_every_sink_once() {
        let mut d = two_sinks();
        assert_eq!(
            d.accept(&alert(AlertKind::PeerLost), Duration::ZERO),
            Accepted::Queued(2)
        );
        let jobs = d.poll(Duration::ZERO);
        assert_eq!(jobs.len(), 2);
        assert!(
            d.poll(Duration::ZERO).is_empty(),
            "one try in flight per sink"
        );
        assert_eq!(d.next_deadline(), None);
        for j in &jobs {
            assert_eq!(j.attempt, 1);
            assert!(matches!(
                d.on_result(j.id, Ok(()), Duration::ZERO),
                Outcome::Sent { attempt: 1, .. }
            ));
        }
        assert_eq!(d.on_result(jobs[0].id, Ok(()), S), Outcome::Unknown);
        assert!(d.is_idle());
        assert_eq!(d.stats().sent.get("webhook"), Some(&1));
        assert_eq!(d.stats().sent.get("discord"), Some(&1));
    }

    #[test]
    fn alerts_dispatch_retries_with_backoff_then_gives_up() {
        let mut d = Dispatcher::new(vec![hook("a")], Tuning::default());
        d.accept(&alert(AlertKind::SelfFence), Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for attempt in 1..=3 {
            let jobs = d.poll(now);
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].attempt, attempt);
            match d.on_result(jobs[0].id, Err(SendError::Status(500)), now) {
                Outcome::Retry { at, .. } => {
                    assert!(d.poll(at - Duration::from_millis(1)).is_empty());
                    assert_eq!(d.next_deadline(), Some(at));
                    waits.push(at - now);
                    now = at;
                }
                Outcome::GaveUp { attempt: 3, .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(waits, vec![S, 2 * S]);
        assert!(d.is_idle());
        assert_eq!(d.stats().failed.get("webhook"), Some(&1));
        assert_eq!(d.stats().sent.get("webhook"), Some(&0));
    }

    #[test]
    fn alerts_dispatch_client_errors_are_not_retried() {
        let mut d = Dispatcher::new(vec![hook("a")], Tuning::default());
        d.accept(&alert(AlertKind::SelfFence), Duration::ZERO);
        let j = d.poll(Duration::ZERO);
        assert!(matches!(
            d.on_result(j[0].id, Err(SendError::Status(404)), Duration::ZERO),
            Outcome::GaveUp { attempt: 1, .. }
        ));
        d.accept(&alert(AlertKind::FailoverStarted), Duration::ZERO);
        let j = d.poll(Duration::ZERO);
        assert!(matches!(
            d.on_result(j[0].id, Err(SendError::Status(429)), Duration::ZERO),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn alerts_dispatch_dedups_within_the_window_only() {
        let mut d = two_sinks();
        let a = alert(AlertKind::StateSyncStale);
        assert_eq!(d.accept(&a, Duration::ZERO), Accepted::Queued(2));
        assert_eq!(d.accept(&a, 299 * S), Accepted::Deduplicated);
        assert_eq!(d.accept(&a, 300 * S), Accepted::Queued(2));
        assert_eq!(d.stats().deduplicated, 1);
        let other = alert(AlertKind::StateSyncStale).about("replica");
        assert_eq!(d.accept(&other, 301 * S), Accepted::Queued(2));
    }

    #[test]
    fn alerts_dispatch_a_relapse_is_sent_at_once() {
        let mut d = two_sinks();
        let down = alert(AlertKind::NodeUnhealthy);
        let up = alert(AlertKind::NodeRecovered);
        assert_eq!(d.accept(&down, Duration::ZERO), Accepted::Queued(2));
        assert_eq!(d.accept(&down, S), Accepted::Deduplicated);
        assert_eq!(d.accept(&up, 2 * S), Accepted::Queued(2));
        assert_eq!(d.accept(&down, 3 * S), Accepted::Queued(2));
        assert_eq!(d.accept(&up, 4 * S), Accepted::Queued(2));
    }

    #[test]
    fn alerts_dispatch_zero_window_never_dedups() {
        let tuning = Tuning {
            dedup_window: Duration::ZERO,
            ..Tuning::default()
        };
        let mut d = Dispatcher::new(vec![hook("a")], tuning);
        let a = alert(AlertKind::PeerLost);
        assert_eq!(d.accept(&a, Duration::ZERO), Accepted::Queued(1));
        assert_eq!(d.accept(&a, Duration::ZERO), Accepted::Queued(1));
    }

    #[test]
    fn alerts_dispatch_full_queue_drops_the_oldest_waiting() {
        let tuning = Tuning {
            queue_bound: 3,
            dedup_window: Duration::ZERO,
            ..Tuning::default()
        };
        let mut d = Dispatcher::new(vec![hook("a")], tuning);
        let numbered = |n: u64| alert(AlertKind::FailoverStarted).with_epoch(n);
        d.accept(&numbered(1), Duration::ZERO);
        let first = d.poll(Duration::ZERO);
        for n in 2..=5 {
            d.accept(&numbered(n), Duration::ZERO);
        }
        assert_eq!(d.stats().dropped, 2);
        // The try under way (epoch 1) survives; 2 and 3 were dropped.
        d.on_result(first[0].id, Ok(()), Duration::ZERO);
        let mut epochs = Vec::new();
        while let Some(j) = d.poll(Duration::ZERO).pop() {
            epochs.push(j.request.body["epoch"].as_u64());
            d.on_result(j.id, Ok(()), Duration::ZERO);
        }
        assert_eq!(epochs, vec![Some(4), Some(5)]);
    }

    #[test]
    fn alerts_dispatch_backoff_is_capped() {
        let t = Tuning::default();
        assert_eq!(t.backoff(1), S);
        assert_eq!(t.backoff(3), 4 * S);
        assert_eq!(t.backoff(6), 30 * S);
        assert_eq!(t.backoff(200), 30 * S);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Accept(u8),
        Ok,
        Fail(u16),
        Advance(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..6).prop_map(Step::Accept),
            Just(Step::Ok),
            prop::sample::select(vec![0u16, 404, 429, 500, 503]).prop_map(Step::Fail),
            (0u16..5000).prop_map(Step::Advance),
        ]
    }

    proptest! {
        /// Whatever happens, every accepted alert is eventually sent, given up or dropped,
        /// never more than `attempts` tries, never before its backoff, and the counters add up.
        #[test]
        fn alerts_dispatch_accounting_holds(steps in prop::collection::vec(step(), 1..200)) {
            let tuning = Tuning { queue_bound: 4, dedup_window: Duration::from_secs(3), ..Tuning::default() };
            let mut d = Dispatcher::new(vec![hook("a"), hook("b")], tuning.clone());
            let mut now = Duration::ZERO;
            let mut queued = 0u64;
            let mut in_flight: Vec<SendJob> = Vec::new();
            let kinds = AlertKind::ALL;
            for s in steps {
                match s {
                    Step::Accept(k) => {
                        if let Accepted::Queued(n) = d.accept(&alert(kinds[k as usize]), now) {
                            queued += n as u64;
                        }
                    }
                    Step::Ok | Step::Fail(_) => {
                        if let Some(j) = in_flight.pop() {
                            let r = match s { Step::Fail(0) => Err(SendError::Timeout), Step::Fail(c) => Err(SendError::Status(c)), _ => Ok(()) };
                            if let Outcome::Retry { at, attempt, .. } = d.on_result(j.id, r, now) {
                                prop_assert!(attempt < tuning.attempts);
                                prop_assert!(at > now);
                            }
                        }
                    }
                    Step::Advance(ms) => now += Duration::from_millis(ms.into()),
                }
                if let Some(dl) = d.next_deadline() {
                    prop_assert!(dl >= Duration::ZERO);
                }
                for j in d.poll(now) {
                    prop_assert!(j.attempt >= 1 && j.attempt <= tuning.attempts);
                    prop_assert!(!in_flight.iter().any(|o| o.sink == j.sink));
                    in_flight.push(j);
                }
            }
            // Drain: answer every try with success, advancing to each deadline.
            let mut guard = 0;
            while !d.is_idle() {
                guard += 1;
                prop_assert!(guard < 10_000);
                if let Some(j) = in_flight.pop() {
                    d.on_result(j.id, Ok(()), now);
                }
                if let Some(dl) = d.next_deadline() { now = now.max(dl); }
                in_flight.extend(d.poll(now));
            }
            let st = d.stats();
            let done: u64 = st.sent.values().sum::<u64>() + st.failed.values().sum::<u64>() + st.dropped;
            prop_assert_eq!(done, queued);
        }
    }
}
