//! The values stored in the backend (JSON, so an operator can read them with `etcdctl get`).

// The leader value and the codecs are used by the etcd backend only.
#![cfg_attr(not(feature = "etcd"), allow(dead_code))]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use syncguard_validator::{Hrs, Step};

use crate::backend::Watermark;
use crate::error::CoordError;

/// The leader key's value. The epoch is not in it: it is the key's create revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaderValue {
    pub node_id: String,
    pub priority: u32,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // These types are plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Any stored value; `key` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, CoordError> {
    serde_json::from_slice(bytes).map_err(|e| CoordError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn decode_leader(key: &str, bytes: &[u8]) -> Result<LeaderValue, CoordError> {
    decode(key, bytes)
}

pub(crate) fn decode_watermark(key: &str, bytes: &[u8]) -> Result<Watermark, CoordError> {
    decode(key, bytes)
}

/// `{"height":..,"round":..,"step":..}` with the step as CometBFT's number.
pub(crate) mod hrs_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Raw {
        height: i64,
        round: i32,
        step: u8,
    }

    pub fn serialize<S: Serializer>(h: &Hrs, s: S) -> Result<S::Ok, S::Error> {
        Raw {
            height: h.height,
            round: h.round,
            step: h.step.as_u8(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hrs, D::Error> {
        let raw = Raw::deserialize(d)?;
        let step = Step::from_u8(raw.step)
            .ok_or_else(|| serde::de::Error::custom(format!("step {} is not 0..=3", raw.step)))?;
        Ok(Hrs::new(raw.height, raw.round, step))
    }
}

/// [`hrs_serde`] for an optional state: `null` (or absent, with `#[serde(default)]`) is `None`.
pub(crate) mod hrs_opt_serde {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::hrs_serde")] Hrs);

    pub fn serialize<S: Serializer>(h: &Option<Hrs>, s: S) -> Result<S::Ok, S::Error> {
        h.map(Wrap).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hrs>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}
