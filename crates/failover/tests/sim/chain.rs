//! The chain and each node's view of it: blocks (at the configured interval, or faster),
//! the ledger of every signature and the commits that show them, a node's health round
//! (its verdict with hysteresis, the latest height, the block age), the chain report of the
//! validator's signatures in the commits it serves, and the witness.

use std::time::Duration;

use syncguard_failover::{ChainReport, Event, LocalHealth, WitnessReport};
use syncguard_validator::{Hrs, Step};

use super::{Ev, World};

/// A state file after signing height `h`.
pub(super) fn hrs_done(h: u64) -> Hrs {
    Hrs::new(i64::try_from(h).unwrap_or(i64::MAX), 0, Step::Precommit)
}

impl World {
    pub(super) fn stalled(&self, n: usize) -> bool {
        self.now < self.nodes[n].stalled_until
            || self.now < self.halted_until
            || self.now < self.nodes[n].story_down_until
    }

    pub(super) fn story_down(&self, n: usize) -> bool {
        self.now < self.nodes[n].story_down_until
    }

    pub(super) fn muted(&self, n: usize) -> bool {
        self.now < self.nodes[n].muted_until
    }

    pub(super) fn block_interval_ms(&mut self) -> u64 {
        let b = self.cfg.profile.block_ms;
        if self.cfg.fast_chain {
            // Faster than configured, with jitter: margins must hold in block time.
            self.rng.range(b * 2 / 5, b * 3 / 5)
        } else {
            b
        }
    }

    pub(super) fn sync_view(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.up && node.view != self.height {
            node.view = self.height;
            node.last_view_change = self.now;
        }
    }

    /// The next height: signed by every node whose `story` signs with the key and follows
    /// the chain; in the commits unless muted.
    pub(super) fn produce_block(&mut self) {
        let h = self.height + 1;
        let mut signers = Vec::new();
        let mut visible = Vec::new();
        for n in 0..self.nodes.len() {
            let stalled = self.stalled(n);
            let muted = self.muted(n);
            let now = self.now;
            let node = &mut self.nodes[n];
            let caught_up = now >= node.catching_up_until && node.view == self.height;
            if node.signing(now)
                && !stalled
                && caught_up
                && h >= node.sign_from
                && h > node.last_signed
            {
                node.last_signed = h;
                signers.push(n);
                if !muted {
                    visible.push(n);
                }
            }
        }
        self.height = h;
        self.block_times.insert(h, self.now);
        for &s in &signers {
            self.sign(h, s);
        }
        self.commits.insert(h, visible);
        for n in 0..self.nodes.len() {
            let stalled = self.stalled(n);
            let node = &mut self.nodes[n];
            if node.up && !stalled && self.now >= node.catching_up_until {
                node.view = h;
                node.last_view_change = self.now;
            }
        }
    }

    /// Node `n` signed height `h`: into the ledger; a second signer is a double sign.
    pub(super) fn sign(&mut self, h: u64, n: usize) {
        let who = self.ledger.entry(h).or_default();
        who.push(n);
        let mut who = who.clone();
        who.sort_unstable();
        who.dedup();
        if who.len() > 1 {
            let msg = format!(
                "DOUBLE SIGN at height {h} by nodes {who:?} (t={})",
                self.now
            );
            self.log(msg.clone());
            self.violations.push(msg);
        }
    }

    /// The health verdict of node `n` this round (2 good rounds make it healthy, 4 bad ones
    /// unhealthy); whether its node flags a stall.
    fn verdict(&mut self, n: usize) -> bool {
        let now = self.now;
        let stalled_fault = self.stalled(n);
        let height = self.height;
        let stall_ms = self.cfg.profile.stall_ms;
        let node = &mut self.nodes[n];
        if now >= node.catching_up_until && !stalled_fault && node.view != height {
            node.view = height;
            node.last_view_change = now;
        }
        let stalled_flag = now.saturating_sub(node.last_view_change) > stall_ms;
        let raw = !stalled_flag
            && now >= node.catching_up_until
            && now >= node.sick_until
            && now >= node.story_down_until;
        if raw {
            node.good_rounds += 1;
            node.bad_rounds = 0;
            if node.good_rounds >= 2 {
                node.verdict = true;
            }
        } else {
            node.bad_rounds += 1;
            node.good_rounds = 0;
            if node.bad_rounds >= 4 {
                node.verdict = false;
            }
        }
        stalled_flag
    }

    /// One health round of node `n`: its verdict, then what its commits show.
    pub(super) fn health_round(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        let stalled_flag = self.verdict(n);
        let story_down = self.story_down(n);
        let node = &self.nodes[n];
        let view = node.view;
        let block_age = (!story_down).then(|| {
            let t = self.block_times.get(&view).copied().unwrap_or(0);
            Duration::from_millis(self.now.saturating_sub(t))
        });
        let ev = Event::LocalHealth(LocalHealth {
            healthy: node.verdict,
            latest_height: (!story_down).then_some(view),
            stalled: stalled_flag || story_down,
            why: (!node.verdict).then(|| "simulated failure".to_string()),
            block_age,
            recovering: false,
        });
        let inc = node.inc;
        self.deliver(n, inc, ev);
        if !story_down {
            let report = self.chain_report(view);
            self.deliver(n, inc, Event::Chain(report));
        }
    }

    /// The chain reader: the validator's signatures in the canonical commits a node at
    /// `view` serves (its newest commit becomes canonical with the next block).
    fn chain_report(&self, view: u64) -> ChainReport {
        let view = view.saturating_sub(1);
        let last_signed = self
            .commits
            .range(..=view)
            .rev()
            .take(500)
            .find(|(_, who)| !who.is_empty())
            .map(|(h, _)| *h);
        let fastest = self
            .block_times
            .range(view.saturating_sub(20)..=view)
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .filter(|d| *d > 0)
            .min()
            .map(Duration::from_millis);
        ChainReport {
            latest_height: view,
            last_signed,
            fastest_block: fastest,
        }
    }

    pub(super) fn ask_witness(&mut self, n: usize, id: u64, blocks: u32) {
        let d = self.rng.range(20, 300);
        let inc = self.nodes[n].inc;
        let blocks = u64::from(blocks);
        let ev = Ev::WitnessFetch {
            node: n,
            inc,
            id,
            blocks,
        };
        self.at(self.now + d, ev);
    }

    pub(super) fn witness_fetch(&mut self, n: usize, inc: u64, id: u64, blocks: u64) {
        if !self.nodes[n].up || self.nodes[n].inc != inc {
            return;
        }
        // Canonical commits only, as the daemon reads them.
        let latest = self.nodes[n].view.saturating_sub(1);
        let lo = latest.saturating_sub(blocks.saturating_sub(1)).max(1);
        let mut report = WitnessReport {
            id,
            latest_height: latest,
            checked: Vec::new(),
            signed: Vec::new(),
            unknown: Vec::new(),
            block_times_ms: Vec::new(),
        };
        for h in lo..=latest {
            if self.story_down(n) || (!self.quiet && self.rng.chance(self.cfg.unreadable)) {
                report.unknown.push(h);
                continue;
            }
            if self.commits.get(&h).is_some_and(|w| !w.is_empty()) {
                report.signed.push(h);
            }
            report.checked.push(h);
            if let Some(&t) = self.block_times.get(&h) {
                report.block_times_ms.push((h, t));
            }
        }
        self.nodes[n].last_witness = Some(report.clone());
        self.deliver(n, inc, Event::Witness(report));
    }
}
