//! The values stored in the backend (JSON, so an operator can read them with `etcdctl get`).

// The leader value and the codecs are used by the etcd backend only.
#![cfg_attr(not(feature = "etcd"), allow(dead_code))]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use syncguard_validator::{Hrs, Step};

use crate::backend::{Watermark, MAX_MEMBER_STATUS_BYTES};
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

/// Why `node_id` cannot name a member key (`<prefix>/members/<node_id>`), if it cannot.
pub(crate) fn node_id_fault(node_id: &str) -> Option<String> {
    if node_id.is_empty() {
        Some("the node id is empty".into())
    } else if node_id.contains('/') {
        Some(format!(
            "node id {node_id:?} contains '/' (it is the last part of the key members/<node_id>)"
        ))
    } else {
        None
    }
}

/// `node_id` as the last part of a member key, refused (`Invalid`) when it cannot be one.
pub(crate) fn check_node_id(op: &'static str, node_id: &str) -> Result<(), CoordError> {
    match node_id_fault(node_id) {
        Some(reason) => Err(CoordError::Invalid { op, reason }),
        None => Ok(()),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A member's status as stored: the JSON object itself, at most [`MAX_MEMBER_STATUS_BYTES`].
/// `Invalid` (naming the node) otherwise, and when `node_id` cannot be part of a key.
pub(crate) fn encode_member(
    op: &'static str,
    node_id: &str,
    status: &serde_json::Value,
) -> Result<Vec<u8>, CoordError> {
    check_node_id(op, node_id)?;
    if !status.is_object() {
        return Err(CoordError::Invalid {
            op,
            reason: format!(
                "the status of node {node_id:?} is a JSON {}, not an object",
                json_kind(status)
            ),
        });
    }
    let bytes = serde_json::to_vec(status).map_err(|e| CoordError::Invalid {
        op,
        reason: format!("the status of node {node_id:?} cannot be written as JSON: {e}"),
    })?;
    if bytes.len() > MAX_MEMBER_STATUS_BYTES {
        return Err(CoordError::Invalid {
            op,
            reason: format!(
                "the status of node {node_id:?} is {} bytes of JSON, more than \
                 {MAX_MEMBER_STATUS_BYTES}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// A stored member status (`key` names it in the error): a JSON object of at most
/// [`MAX_MEMBER_STATUS_BYTES`], as [`encode_member`] writes it.
pub(crate) fn decode_member(key: &str, bytes: &[u8]) -> Result<serde_json::Value, CoordError> {
    let corrupt = |reason: String| CoordError::Corrupt {
        key: key.to_string(),
        reason,
    };
    if bytes.len() > MAX_MEMBER_STATUS_BYTES {
        return Err(corrupt(format!(
            "{} bytes, more than a member status may take ({MAX_MEMBER_STATUS_BYTES})",
            bytes.len()
        )));
    }
    let v: serde_json::Value = decode(key, bytes)?;
    if !v.is_object() {
        return Err(corrupt(format!(
            "a JSON {}, not a member status (an object)",
            json_kind(&v)
        )));
    }
    Ok(v)
}

/// `{"height":..,"round":..,"step":..}` with the step as CometBFT's number. The height and
/// the round are signed on the wire (CometBFT's int64 and int32) but never negative in a sign
/// state: a negative one is refused, naming the field.
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
        if raw.height < 0 {
            return Err(serde::de::Error::custom(format!(
                "field `height` is {}: a sign state's height is never negative",
                raw.height
            )));
        }
        if raw.round < 0 {
            return Err(serde::de::Error::custom(format!(
                "field `round` is {}: a sign state's round is never negative",
                raw.round
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn watermark(json: &str) -> Result<Watermark, CoordError> {
        decode_watermark("/sg/watermark", json.as_bytes())
    }

    #[test]
    fn coordination_record_hrs_codec_refuses_negative_heights_and_rounds_naming_the_field() {
        let ok = watermark(r#"{"hrs":{"height":0,"round":0,"step":3},"epoch":7}"#).unwrap();
        assert_eq!((ok.hrs, ok.epoch), (Hrs::new(0, 0, Step::Precommit), 7));
        let back = watermark(std::str::from_utf8(&encode(&ok)).unwrap()).unwrap();
        assert_eq!(back, ok);

        for (json, field, value) in [
            (
                r#"{"hrs":{"height":-1,"round":0,"step":3},"epoch":7}"#,
                "height",
                "-1",
            ),
            (
                r#"{"hrs":{"height":-9223372036854775808,"round":0,"step":1},"epoch":7}"#,
                "height",
                "-9223372036854775808",
            ),
            (
                r#"{"hrs":{"height":5,"round":-1,"step":2},"epoch":7}"#,
                "round",
                "-1",
            ),
        ] {
            match watermark(json) {
                Err(CoordError::Corrupt { key, reason }) => {
                    assert_eq!(key, "/sg/watermark");
                    assert!(
                        reason.contains(&format!("field `{field}` is {value}"))
                            && reason.contains("never negative"),
                        "{json}: {reason}"
                    );
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        // The optional codec (the handover's final state) refuses it too.
        let handover = r#"{"from":"a","to":"b","from_epoch":3,
            "final_state":{"height":-4,"round":0,"step":1}}"#;
        match decode::<crate::backend::Handover>("/sg/handover", handover.as_bytes()) {
            Err(CoordError::Corrupt { reason, .. }) => {
                assert!(reason.contains("field `height` is -4"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn coordination_record_member_codec_takes_objects_up_to_the_limit_only() {
        let status = json!({"role": "active", "height": 12});
        let bytes = encode_member("put_member", "a", &status).unwrap();
        assert_eq!(decode_member("/sg/members/a", &bytes).unwrap(), status);

        for bad in ["", "a/b", "/"] {
            match encode_member("put_member", bad, &status) {
                Err(CoordError::Invalid { op, reason }) => {
                    assert_eq!(op, "put_member");
                    assert!(reason.contains("node id"), "{bad:?}: {reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        for not_object in [json!(null), json!(5), json!("x"), json!([1])] {
            let e = encode_member("put_member", "a", &not_object).unwrap_err();
            assert!(e.to_string().contains("not an object"), "{e}");
        }
        // Exactly at the limit is fine, one byte more is not.
        let pad = |n: usize| json!({ "p": "x".repeat(n) });
        let overhead = encode_member("put_member", "a", &pad(0)).unwrap().len();
        let at_limit = pad(MAX_MEMBER_STATUS_BYTES - overhead);
        let bytes = encode_member("put_member", "a", &at_limit).unwrap();
        assert_eq!(bytes.len(), MAX_MEMBER_STATUS_BYTES);
        decode_member("/sg/members/a", &bytes).unwrap();
        let e = encode_member(
            "put_member",
            "a",
            &pad(MAX_MEMBER_STATUS_BYTES - overhead + 1),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("8193 bytes of JSON, more than 8192"),
            "{e}"
        );

        for (bytes, words) in [
            (&b"not json"[..], "expected"),
            (&b"[1,2]"[..], "a JSON array"),
            (&b"null"[..], "a JSON null"),
        ] {
            match decode_member("/sg/members/x", bytes) {
                Err(CoordError::Corrupt { key, reason }) => {
                    assert_eq!(key, "/sg/members/x");
                    assert!(reason.contains(words), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        let big = vec![b' '; MAX_MEMBER_STATUS_BYTES + 1];
        assert!(decode_member("/sg/members/x", &big).is_err());
    }
}
