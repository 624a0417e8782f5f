//! `signing.strip` of `GET /status`, drawn by the status page: the last [`HEIGHTS`] heights
//! up to the node's newest, each signed / missed / not yet known, and the moments the role
//! moved on this node as markers at their heights — so an operator sees at a glance when the
//! validator stopped signing and who took over. Pure: the cells come from the commit log the
//! health loop already keeps (no RPC call of its own), the markers from the records `/events`
//! serves.
//!
//! A marker's height is the one its record names when it names one (a promotion: the fence
//! height, the first height the new holder may sign; a verified activation: the first height
//! it signed); otherwise the chain's newest height at the record's time, read from the block
//! times of the commits on the strip.
//!
//! ```json
//! "strip": {"first": 901, "last": 1000, "cells": "SSSS…MMMMMM…SSS?",
//!           "markers": [{"height": 957, "placed_by": "record", "node": "node-b",
//!                        "role": "active", "epoch": 2, "tag": "failover_completed",
//!                        "at": "…", "why": "active at epoch 2: …"}]}
//! ```
//!
//! `cells` has one letter per height from `first`: `S` signed, `M` missed (the canonical
//! commit does not carry the validator's signature), `?` not yet known (the newest height,
//! whose commit is not final yet, or a commit not read).

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use syncguard_failover::{Record, RecordKind, RecordTag, Role};
use syncguard_health::Strip;

use crate::view::{format_time, NodeView};

/// Heights on the strip.
pub const HEIGHTS: u64 = 100;

/// A role change of this node, placed on the strip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    pub height: u64,
    /// `record`: the record names the height; `time`: the chain's newest height at the
    /// record's time.
    pub placed_by: &'static str,
    /// The node whose role changed (this one: records are its own).
    pub node: String,
    /// The role after the change.
    pub role: Role,
    pub epoch: u64,
    pub tag: RecordTag,
    pub at: String,
    pub why: String,
}

/// Where `record`, made at `at`, goes on `strip` (`None`: off the strip).
fn place(strip: &Strip, record: &Record, at: SystemTime) -> Option<(u64, &'static str)> {
    let (height, by) = match record.heights.first() {
        Some(&h) => (h, "record"),
        None => (strip.height_at(at)?, "time"),
    };
    strip.shows(height).then_some((height, by))
}

/// The role changes of `view`'s records that fall on `strip`, oldest first.
pub fn markers(view: &NodeView, strip: &Strip) -> Vec<Marker> {
    view.records
        .iter()
        .filter(|r| r.kind == RecordKind::RoleChange)
        .filter_map(|r| {
            let at = view.record_time(r);
            let (height, placed_by) = place(strip, r, at)?;
            Some(Marker {
                height,
                placed_by,
                node: view.node_id.clone(),
                role: r.role,
                epoch: r.epoch,
                tag: r.tag,
                at: format_time(at),
                why: r.why.clone(),
            })
        })
        .collect()
}

/// `signing.strip` (null before the first health round has read the chain).
pub fn strip_json(view: &NodeView) -> Value {
    let Some(strip) = view.strip.as_ref() else {
        return Value::Null;
    };
    let Some(last) = strip.last() else {
        return Value::Null;
    };
    json!({
        "first": strip.first,
        "last": last,
        "cells": strip.letters(),
        "markers": markers(view, strip),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use syncguard_config::{NodeRole, SiteRole};
    use syncguard_health::Cell;

    use super::*;

    const T0: u64 = 1_800_000_000_000;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Heights 101..=110, block h made at T0 + h s; 101–104 signed, 105–107 missed,
    /// 108–109 signed, 110 not known yet.
    fn strip() -> Strip {
        let cells: Vec<Cell> = "SSSSMMMSS?"
            .chars()
            .map(|c| match c {
                'S' => Cell::Signed,
                'M' => Cell::Missed,
                _ => Cell::Unknown,
            })
            .collect();
        let times = (101..=110)
            .map(|h| (h < 110).then(|| at(T0 + h * 1000)))
            .collect();
        Strip {
            first: 101,
            cells,
            times,
        }
    }

    fn record(at_ms: u64, kind: RecordKind, role: Role, heights: Vec<u64>) -> Record {
        Record {
            at_ms,
            kind,
            role,
            epoch: 2,
            why: format!("{role:?}"),
            heights,
            tag: RecordTag::Other,
            reason: String::new(),
        }
    }

    fn view(records: Vec<Record>) -> NodeView {
        let mut v = NodeView::new("node-b".into(), SiteRole::Secondary, NodeRole::Passive);
        v.started_at = at(T0);
        v.records = records.into();
        v.strip = Some(strip());
        v
    }

    #[test]
    fn story_signing_strip_places_role_changes_by_their_heights_or_their_time() {
        let v = view(vec![
            // Before the strip: left off.
            record(50_000, RecordKind::RoleChange, Role::Passive, vec![]),
            // Not a role change: never a marker.
            record(105_500, RecordKind::Refusal, Role::Passive, vec![105]),
            // The promotion names its fence height; the activation its first signature.
            record(106_200, RecordKind::RoleChange, Role::Promoting, vec![108]),
            record(107_900, RecordKind::RoleChange, Role::Active, vec![108]),
            // No height: the chain's newest at its time (block 106 at T0 + 106 s).
            record(106_500, RecordKind::RoleChange, Role::Fenced, vec![]),
            // After every block read: the newest height.
            record(200_000, RecordKind::RoleChange, Role::Demoting, vec![]),
            // A height past the strip (the chain has not got there): not yet shown.
            record(109_000, RecordKind::RoleChange, Role::Promoting, vec![112]),
        ]);
        let m = markers(&v, v.strip.as_ref().unwrap());
        let got: Vec<(u64, Role, &str)> =
            m.iter().map(|m| (m.height, m.role, m.placed_by)).collect();
        assert_eq!(
            got,
            vec![
                (108, Role::Promoting, "record"),
                (108, Role::Active, "record"),
                (106, Role::Fenced, "time"),
                (110, Role::Demoting, "time"),
            ]
        );
        assert!(m.iter().all(|m| m.node == "node-b" && m.epoch == 2));
        let j = strip_json(&v);
        assert_eq!(j["first"], 101);
        assert_eq!(j["last"], 110);
        assert_eq!(j["cells"], "SSSSMMMSS?");
        assert_eq!(j["markers"][1]["role"], "active");
        assert_eq!(j["markers"][1]["height"], 108);
    }

    #[test]
    fn story_signing_strip_is_null_before_the_chain_was_read() {
        let mut v = view(vec![]);
        v.strip = None;
        assert_eq!(strip_json(&v), Value::Null);
        v.strip = Some(Strip::default());
        assert_eq!(strip_json(&v), Value::Null);
    }
}
