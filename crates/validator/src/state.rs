//! `priv_validator_state.json`: CometBFT's last-sign state, parsed strictly and
//! written back in CometBFT's own layout.
//!
//! Format (CometBFT v0.38 `FilePVLastSignState`, `cmtjson.MarshalIndent(.., "", "  ")`):
//!
//! ```json
//! {
//!   "height": "36",
//!   "round": 0,
//!   "step": 3,
//!   "signature": "<base64>",
//!   "signbytes": "<HEX>"
//! }
//! ```
//!
//! Why strict: this file is the only thing standing between a restarted node
//! and a double sign, so anything we cannot read with certainty is an error,
//! never a guess and never a panic. Why the exact layout: CometBFT must read
//! what we write (it rejects a numeric height, and treats `""` sign bytes as
//! "signed" and then panics), and operators diff these files by eye.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};
use thiserror::Error;

use crate::hrs::{Hrs, Step};

const HEIGHT: &str = "height";
const ROUND: &str = "round";
const STEP: &str = "step";
const SIGNATURE: &str = "signature";
const SIGNBYTES: &str = "signbytes";

/// The last-sign state of a CometBFT file signer.
///
/// Invariants (enforced by every constructor and by the parser): height and
/// round are non-negative, and `signature`/`signbytes` are either both present
/// and non-empty or both absent. Unknown JSON fields are carried along so that a
/// rewrite by SyncGuard loses nothing a newer CometBFT may have added.
#[derive(Clone, PartialEq, Eq)]
pub struct SignState {
    hrs: Hrs,
    signed: Option<Signed>,
    extra: Map<String, Value>,
}

#[derive(Clone, PartialEq, Eq)]
struct Signed {
    signature: Vec<u8>,
    sign_bytes: Vec<u8>,
}

impl fmt::Debug for SignState {
    /// Compact: HRS plus hex, so test failures and logs stay readable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SignState");
        d.field("hrs", &format_args!("{}", self.hrs));
        if let Some(s) = &self.signed {
            d.field(
                "signature",
                &format_args!("{}", BASE64.encode(&s.signature)),
            );
            d.field(
                "signbytes",
                &format_args!("{}", hex::encode_upper(&s.sign_bytes)),
            );
        }
        if !self.extra.is_empty() {
            d.field("extra", &self.extra);
        }
        d.finish()
    }
}

/// A state-file problem together with where it came from.
#[derive(Debug, Error)]
#[error("{}: {kind}", origin.display())]
pub struct StateError {
    /// The file (or other named source) that was being read.
    pub origin: PathBuf,
    /// What is wrong with it.
    pub kind: StateErrorKind,
}

/// What is wrong with a state file or a state value. Every message names the
/// field concerned, so an operator can fix the file by hand.
#[derive(Debug, Error)]
pub enum StateErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[source] std::io::Error),
    /// Zero bytes (or only whitespace): typically a crash of a non-atomic writer.
    #[error("the file is empty")]
    Empty,
    /// Valid JSON so far, but it stops early.
    #[error("truncated JSON: input ends at line {line} column {column}")]
    Truncated {
        /// Line where the input ended.
        line: usize,
        /// Column where the input ended.
        column: usize,
    },
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("expected a JSON object at the top level")]
    NotAnObject,
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}`: expected {expected}, found {found}")]
    WrongType {
        /// The field name.
        field: &'static str,
        /// What CometBFT writes there.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A number (or numeric string) that is not a whole number.
    #[error("field `{field}`: {value} is not an integer")]
    NotAnInteger {
        /// The field name.
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// Heights and rounds are never negative.
    #[error("field `{field}`: {value} is negative")]
    Negative {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// Too large for the field's CometBFT type.
    #[error("field `{field}`: {value} does not fit in {ty}")]
    Overflow {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: String,
        /// CometBFT's type for the field (`int64`, `int32`).
        ty: &'static str,
    },
    /// `step` outside 0..=3.
    #[error("field `step`: {value} is not a step (0 none, 1 propose, 2 prevote, 3 precommit)")]
    InvalidStep {
        /// The offending value.
        value: String,
    },
    /// `signature` is not standard padded base64.
    #[error("field `{field}`: invalid base64: {source}")]
    InvalidBase64 {
        /// The field name.
        field: &'static str,
        /// Decoder detail.
        #[source]
        source: base64::DecodeError,
    },
    /// `signbytes` is not hex.
    #[error("field `{field}`: invalid hex: {source}")]
    InvalidHex {
        /// The field name.
        field: &'static str,
        /// Decoder detail.
        #[source]
        source: hex::FromHexError,
    },
    /// `""` where CometBFT omits the field: CometBFT would treat the HRS as
    /// signed and then panic on the empty bytes, so we refuse it.
    #[error("field `{field}` is empty; CometBFT omits the field instead of writing \"\"")]
    EmptyBytes {
        /// The field name.
        field: &'static str,
    },
    /// Exactly one of `signature`/`signbytes` is present.
    #[error("`{present}` is present without `{missing}`")]
    Unpaired {
        /// The field that is there.
        present: &'static str,
        /// The field that is not.
        missing: &'static str,
    },
}

impl StateErrorKind {
    fn at(self, origin: &Path) -> StateError {
        StateError {
            origin: origin.to_path_buf(),
            kind: self,
        }
    }
}

impl SignState {
    /// The state `init` writes: height 0, round 0, step 0, nothing signed.
    pub fn initial() -> Self {
        SignState {
            hrs: Hrs::new(0, 0, Step::None),
            signed: None,
            extra: Map::new(),
        }
    }

    /// A state with nothing signed at `hrs` — what a fence (S3) writes.
    pub fn unsigned(hrs: Hrs) -> Result<Self, StateErrorKind> {
        check_hrs_range(hrs)?;
        Ok(SignState {
            hrs,
            signed: None,
            extra: Map::new(),
        })
    }

    /// A state recording that `sign_bytes` were signed at `hrs` with `signature`.
    pub fn signed(
        hrs: Hrs,
        signature: Vec<u8>,
        sign_bytes: Vec<u8>,
    ) -> Result<Self, StateErrorKind> {
        check_hrs_range(hrs)?;
        if signature.is_empty() {
            return Err(StateErrorKind::EmptyBytes { field: SIGNATURE });
        }
        if sign_bytes.is_empty() {
            return Err(StateErrorKind::EmptyBytes { field: SIGNBYTES });
        }
        Ok(SignState {
            hrs,
            signed: Some(Signed {
                signature,
                sign_bytes,
            }),
            extra: Map::new(),
        })
    }

    /// Height, round and step.
    pub fn hrs(&self) -> Hrs {
        self.hrs
    }

    /// The stored signature, if something was signed at this HRS.
    pub fn signature(&self) -> Option<&[u8]> {
        self.signed.as_ref().map(|s| s.signature.as_slice())
    }

    /// The stored sign bytes (length-prefixed canonical vote/proposal), if any.
    pub fn sign_bytes(&self) -> Option<&[u8]> {
        self.signed.as_ref().map(|s| s.sign_bytes.as_slice())
    }

    /// `(signature, sign_bytes)` when something was signed at this HRS.
    pub fn signed_data(&self) -> Option<(&[u8], &[u8])> {
        self.signed
            .as_ref()
            .map(|s| (s.signature.as_slice(), s.sign_bytes.as_slice()))
    }

    /// Same HRS, signature and sign bytes; unknown fields are ignored. Two
    /// states at the same HRS that differ here mean two different messages
    /// were signed at one HRS.
    pub fn same_signed_data(&self, other: &SignState) -> bool {
        self.hrs == other.hrs && self.signed == other.signed
    }

    /// Read and parse a state file.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let bytes = fs::read(path).map_err(|e| StateErrorKind::Io(e).at(path))?;
        SignState::from_json(&bytes).map_err(|k| k.at(path))
    }

    /// Parse the JSON text of a state file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateErrorKind> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(StateErrorKind::Empty);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_eof() {
                StateErrorKind::Truncated {
                    line: e.line(),
                    column: e.column(),
                }
            } else {
                StateErrorKind::NotJson(e)
            }
        })?;
        SignState::from_value(value)
    }

    /// Interpret an already-parsed JSON value (e.g. embedded in a peer message).
    pub fn from_value(value: Value) -> Result<Self, StateErrorKind> {
        let Value::Object(map) = value else {
            return Err(StateErrorKind::NotAnObject);
        };
        let mut height = None;
        let mut round = None;
        let mut step = None;
        let mut signature = None;
        let mut sign_bytes = None;
        let mut extra = Map::new();
        // Walk in file order so unknown fields keep their order on rewrite.
        for (key, value) in map {
            match key.as_str() {
                HEIGHT => height = Some(parse_height(&value)?),
                ROUND => round = Some(parse_round(&value)?),
                STEP => step = Some(parse_step(&value)?),
                SIGNATURE => signature = parse_base64(SIGNATURE, &value)?,
                SIGNBYTES => sign_bytes = parse_hex(SIGNBYTES, &value)?,
                _ => {
                    extra.insert(key, value);
                }
            }
        }
        let hrs = Hrs {
            height: height.ok_or(StateErrorKind::MissingField { field: HEIGHT })?,
            round: round.ok_or(StateErrorKind::MissingField { field: ROUND })?,
            step: step.ok_or(StateErrorKind::MissingField { field: STEP })?,
        };
        let signed = match (signature, sign_bytes) {
            (None, None) => None,
            (Some(signature), Some(sign_bytes)) => Some(Signed {
                signature,
                sign_bytes,
            }),
            (Some(_), None) => {
                return Err(StateErrorKind::Unpaired {
                    present: SIGNATURE,
                    missing: SIGNBYTES,
                })
            }
            (None, Some(_)) => {
                return Err(StateErrorKind::Unpaired {
                    present: SIGNBYTES,
                    missing: SIGNATURE,
                })
            }
        };
        Ok(SignState { hrs, signed, extra })
    }

    /// The JSON value in CometBFT's key order, unknown fields last.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert(HEIGHT.into(), Value::String(self.hrs.height.to_string()));
        map.insert(ROUND.into(), Value::Number(Number::from(self.hrs.round)));
        map.insert(
            STEP.into(),
            Value::Number(Number::from(self.hrs.step.as_u8())),
        );
        if let Some(s) = &self.signed {
            map.insert(SIGNATURE.into(), Value::String(BASE64.encode(&s.signature)));
            map.insert(
                SIGNBYTES.into(),
                Value::String(hex::encode_upper(&s.sign_bytes)),
            );
        }
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }

    /// The file text exactly as CometBFT writes it: two-space indent, no
    /// trailing newline.
    pub fn to_json(&self) -> String {
        // Display of a Value cannot fail; `{:#}` is serde_json's pretty form
        // with two-space indentation.
        format!("{:#}", self.to_value())
    }
}

impl Serialize for SignState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SignState {
    /// Same strict rules as the file parser, so a state received from a peer
    /// is held to the same standard as one read from disk.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        SignState::from_value(value).map_err(serde::de::Error::custom)
    }
}

fn check_hrs_range(hrs: Hrs) -> Result<(), StateErrorKind> {
    if hrs.height < 0 {
        return Err(StateErrorKind::Negative {
            field: HEIGHT,
            value: hrs.height.to_string(),
        });
    }
    if hrs.round < 0 {
        return Err(StateErrorKind::Negative {
            field: ROUND,
            value: hrs.round.to_string(),
        });
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An integer as written, before range checks: either it fits i64, or we
/// know why not.
enum Int {
    Fits(i64),
    TooLarge(String),
    TooSmall(String),
}

fn int_from_number(field: &'static str, n: &Number) -> Result<Int, StateErrorKind> {
    if let Some(i) = n.as_i64() {
        return Ok(Int::Fits(i));
    }
    if n.is_u64() {
        return Ok(Int::TooLarge(n.to_string()));
    }
    // serde_json stores integers beyond u64 as f64; tell them apart from 1.5.
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f > 0.0 => Ok(Int::TooLarge(n.to_string())),
        Some(f) if f.is_finite() && f.fract() == 0.0 && f < 0.0 => Ok(Int::TooSmall(n.to_string())),
        _ => Err(StateErrorKind::NotAnInteger {
            field,
            value: n.to_string(),
        }),
    }
}

fn int_from_decimal_string(field: &'static str, s: &str) -> Result<Int, StateErrorKind> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Int::Fits(i));
    }
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let shown = s.to_string();
        return Ok(if negative {
            Int::TooSmall(shown)
        } else {
            Int::TooLarge(shown)
        });
    }
    Err(StateErrorKind::NotAnInteger {
        field,
        value: format!("{s:?}"),
    })
}

/// CometBFT writes int64 as a JSON string; older tools and hand edits use a
/// number. Both are read; only the string form is written.
fn parse_height(value: &Value) -> Result<i64, StateErrorKind> {
    let int = match value {
        Value::String(s) => int_from_decimal_string(HEIGHT, s)?,
        Value::Number(n) => int_from_number(HEIGHT, n)?,
        other => {
            return Err(StateErrorKind::WrongType {
                field: HEIGHT,
                expected: "a decimal string or a number",
                found: type_name(other),
            })
        }
    };
    match int {
        Int::Fits(h) if h < 0 => Err(StateErrorKind::Negative {
            field: HEIGHT,
            value: h.to_string(),
        }),
        Int::Fits(h) => Ok(h),
        Int::TooSmall(v) => Err(StateErrorKind::Negative {
            field: HEIGHT,
            value: v,
        }),
        Int::TooLarge(v) => Err(StateErrorKind::Overflow {
            field: HEIGHT,
            value: v,
            ty: "int64",
        }),
    }
}

fn expect_number<'a>(field: &'static str, value: &'a Value) -> Result<&'a Number, StateErrorKind> {
    match value {
        Value::Number(n) => Ok(n),
        other => Err(StateErrorKind::WrongType {
            field,
            expected: "a number",
            found: type_name(other),
        }),
    }
}

fn parse_round(value: &Value) -> Result<i32, StateErrorKind> {
    match int_from_number(ROUND, expect_number(ROUND, value)?)? {
        Int::Fits(r) if r < 0 => Err(StateErrorKind::Negative {
            field: ROUND,
            value: r.to_string(),
        }),
        Int::TooSmall(v) => Err(StateErrorKind::Negative {
            field: ROUND,
            value: v,
        }),
        Int::Fits(r) => i32::try_from(r).map_err(|_| StateErrorKind::Overflow {
            field: ROUND,
            value: r.to_string(),
            ty: "int32",
        }),
        Int::TooLarge(v) => Err(StateErrorKind::Overflow {
            field: ROUND,
            value: v,
            ty: "int32",
        }),
    }
}

fn parse_step(value: &Value) -> Result<Step, StateErrorKind> {
    let n = expect_number(STEP, value)?;
    let invalid = || StateErrorKind::InvalidStep {
        value: n.to_string(),
    };
    match int_from_number(STEP, n)? {
        Int::Fits(s) => u8::try_from(s)
            .ok()
            .and_then(Step::from_u8)
            .ok_or_else(invalid),
        Int::TooLarge(_) | Int::TooSmall(_) => Err(invalid()),
    }
}

/// `None` for an absent-equivalent `null` (Go decodes it to a nil slice).
fn optional_string<'a>(
    field: &'static str,
    value: &'a Value,
) -> Result<Option<&'a str>, StateErrorKind> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Err(StateErrorKind::EmptyBytes { field }),
        Value::String(s) => Ok(Some(s)),
        other => Err(StateErrorKind::WrongType {
            field,
            expected: "a string",
            found: type_name(other),
        }),
    }
}

fn parse_base64(field: &'static str, value: &Value) -> Result<Option<Vec<u8>>, StateErrorKind> {
    let Some(s) = optional_string(field, value)? else {
        return Ok(None);
    };
    BASE64
        .decode(s)
        .map(Some)
        .map_err(|source| StateErrorKind::InvalidBase64 { field, source })
}

fn parse_hex(field: &'static str, value: &Value) -> Result<Option<Vec<u8>>, StateErrorKind> {
    let Some(s) = optional_string(field, value)? else {
        return Ok(None);
    };
    hex::decode(s)
        .map(Some)
        .map_err(|source| StateErrorKind::InvalidHex { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_state_text() {
        assert_eq!(
            SignState::initial().to_json(),
            "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}"
        );
    }

    #[test]
    fn numeric_height_is_read_and_written_as_string() {
        let s = SignState::from_json(br#"{"height":7,"round":1,"step":2}"#).unwrap();
        assert_eq!(s.hrs(), Hrs::new(7, 1, Step::Prevote));
        assert!(s.to_json().contains("\"height\": \"7\""));
    }

    #[test]
    fn unknown_fields_keep_their_order_after_known_ones() {
        let s =
            SignState::from_json(br#"{"z":1,"height":"1","a":[true],"round":0,"step":0}"#).unwrap();
        let text = s.to_json();
        let z = text.find("\"z\"").unwrap();
        let a = text.find("\"a\"").unwrap();
        let step = text.find("\"step\"").unwrap();
        assert!(step < z && z < a, "{text}");
        assert_eq!(SignState::from_json(text.as_bytes()).unwrap(), s);
    }

    #[test]
    fn null_signature_fields_mean_absent() {
        let s = SignState::from_json(
            br#"{"height":"1","round":0,"step":1,"signature":null,"signbytes":null}"#,
        )
        .unwrap();
        assert_eq!(s.signed_data(), None);
        assert!(!s.to_json().contains("null"));
    }

    #[test]
    fn constructors_enforce_invariants() {
        assert!(matches!(
            SignState::unsigned(Hrs::new(-1, 0, Step::None)),
            Err(StateErrorKind::Negative {
                field: "height",
                ..
            })
        ));
        assert!(matches!(
            SignState::signed(Hrs::new(1, 0, Step::Prevote), vec![], vec![1]),
            Err(StateErrorKind::EmptyBytes { field: "signature" })
        ));
    }
}
