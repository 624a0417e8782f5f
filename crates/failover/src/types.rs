//! The machine's vocabulary: node ids, roles, the boot wish, a handed-over state, and serde
//! helpers for [`Hrs`] (the validator crate keeps `Hrs` free of serde; here it travels in
//! events, actions and records).

use std::fmt;

use serde::{Deserialize, Serialize};
use syncguard_validator::Hrs;

/// A node's id, as configured (`server.node_id`) and as carried by every peer message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        NodeId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        NodeId(id.to_string())
    }
}

/// A node's role (DESIGN §4).
///
/// [`Role::Paused`] is only ever *shown* (by [`crate::Machine::role`]); the role a paused
/// node holds underneath is reported separately ([`crate::Machine::held_role`],
/// [`crate::PeerStatus::role`] plus `paused`), because for safety what matters is whether
/// the key may be live, not whether an operator paused the automation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Full node with the placeholder key; a standby.
    Passive,
    /// Activation ordered (state written, key installed, `story` starting): may already sign.
    Promoting,
    /// Holds and uses the validator key.
    Active,
    /// Deactivation ordered, or handing over: may still sign until the stop is confirmed.
    Demoting,
    /// Stopped itself (S4, or refused to go on); leaves only when the cluster agrees.
    Fenced,
    /// Maintenance: no automatic transition.
    Paused,
}

impl Role {
    /// Whether a node in this role may have the validator key live (or be about to).
    /// `Paused` counts: a peer reporting only "paused" could be paused while active.
    pub fn may_sign(self) -> bool {
        matches!(
            self,
            Role::Promoting | Role::Active | Role::Demoting | Role::Paused
        )
    }

    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Passive => "passive",
            Role::Promoting => "promoting",
            Role::Active => "active",
            Role::Demoting => "demoting",
            Role::Fenced => "fenced",
            Role::Paused => "paused",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `--role` a node was started with: a wish, not an order (every node boots passive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wish {
    /// Take the role as soon as it is provably safe (no waiting for a failover window when
    /// the peer is reachable and passive).
    Active,
    /// Stand by.
    Passive,
}

/// The old holder's final sign state, handed over in a planned handover (S3).
///
/// The machine only reads `hrs` (to keep fences monotonic); `raw` is the state file as the
/// actuator read it, passed through untouched to the target's actuator, which writes
/// `max(own, handed)`. A state file holds no key material (S5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedState {
    /// Height/round/step of the final state.
    #[serde(with = "hrs_serde")]
    pub hrs: Hrs,
    /// The `priv_validator_state.json` text (opaque here).
    pub raw: String,
}

/// `Hrs` as `{"height":..,"round":..,"step":..}` (step as CometBFT's number).
pub mod hrs_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use syncguard_validator::{Hrs, Step};

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Repr {
        height: i64,
        round: i32,
        step: u8,
    }

    impl From<Hrs> for Repr {
        fn from(h: Hrs) -> Self {
            Repr {
                height: h.height,
                round: h.round,
                step: h.step.as_u8(),
            }
        }
    }

    impl TryFrom<Repr> for Hrs {
        type Error = String;
        fn try_from(r: Repr) -> Result<Self, String> {
            let step =
                Step::from_u8(r.step).ok_or_else(|| format!("step {} is not 0..=3", r.step))?;
            if r.height < 0 || r.round < 0 {
                return Err(format!(
                    "height {} / round {} must not be negative",
                    r.height, r.round
                ));
            }
            Ok(Hrs::new(r.height, r.round, step))
        }
    }

    /// Serializes an `Hrs`.
    pub fn serialize<S: Serializer>(hrs: &Hrs, s: S) -> Result<S::Ok, S::Error> {
        Repr::from(*hrs).serialize(s)
    }

    /// Deserializes an `Hrs`, refusing out-of-range values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hrs, D::Error> {
        Hrs::try_from(Repr::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `Option<Hrs>` with the same representation (`null` when absent).
pub mod opt_hrs_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use syncguard_validator::Hrs;

    use super::hrs_serde::Repr;

    /// Serializes an `Option<Hrs>`.
    pub fn serialize<S: Serializer>(hrs: &Option<Hrs>, s: S) -> Result<S::Ok, S::Error> {
        hrs.map(Repr::from).serialize(s)
    }

    /// Deserializes an `Option<Hrs>`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hrs>, D::Error> {
        Option::<Repr>::deserialize(d)?
            .map(Hrs::try_from)
            .transpose()
            .map_err(D::Error::custom)
    }
}
