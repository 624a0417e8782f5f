//! A minimal decoder for the sign bytes stored in `priv_validator_state.json`.
//!
//! CometBFT signs the varint-length-prefixed protobuf encoding of a
//! `CanonicalVote` or `CanonicalProposal` (proto/tendermint/types/canonical.proto):
//!
//! | field | CanonicalVote            | CanonicalProposal        |
//! |-------|--------------------------|--------------------------|
//! | 1     | type (varint)            | type (varint)            |
//! | 2     | height (sfixed64)        | height (sfixed64)        |
//! | 3     | round (sfixed64)         | round (sfixed64)         |
//! | 4     | block_id (message)       | pol_round (int64 varint) |
//! | 5     | timestamp (message)      | block_id (message)       |
//! | 6     | chain_id (string)        | timestamp (message)      |
//! | 7     | —                        | chain_id (string)        |
//!
//! Types: 1 prevote, 2 precommit, 32 proposal. Proto3 omits zero values, so a
//! missing height/round means 0.
//!
//! Why decode at all: [`verify_state`] checks that a state file's sign bytes
//! really describe the HRS the file claims, so a hand-edited or corrupted state
//! cannot pass for a higher (or lower) one. The decoder never panics on any
//! input and rejects anything it does not fully understand.

use thiserror::Error;

use crate::hrs::{Hrs, Step};
use crate::state::SignState;

/// The message type inside sign bytes (`SignedMsgType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMsgType {
    /// Type 1.
    Prevote,
    /// Type 2.
    Precommit,
    /// Type 32.
    Proposal,
}

impl SignedMsgType {
    /// The protobuf enum value.
    pub fn code(self) -> u64 {
        match self {
            SignedMsgType::Prevote => 1,
            SignedMsgType::Precommit => 2,
            SignedMsgType::Proposal => 32,
        }
    }

    /// The state-file step a signer records after signing this type.
    pub fn step(self) -> Step {
        match self {
            SignedMsgType::Prevote => Step::Prevote,
            SignedMsgType::Precommit => Step::Precommit,
            SignedMsgType::Proposal => Step::Propose,
        }
    }
}

/// The fields of a canonical vote or proposal that SyncGuard looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalSignBytes {
    /// Vote or proposal type.
    pub msg_type: SignedMsgType,
    /// Block height.
    pub height: i64,
    /// Round (sfixed64 on the wire, int32 in CometBFT).
    pub round: i64,
    /// Proposals only: the proof-of-lock round (-1 when none).
    pub pol_round: Option<i64>,
    /// Hash of the block voted for / proposed; `None` for a nil vote.
    pub block_hash: Option<Vec<u8>>,
    /// Timestamp as (seconds, nanos) since the Unix epoch, when present.
    pub timestamp: Option<(i64, i32)>,
    /// The chain the message was signed for.
    pub chain_id: String,
}

/// Why sign bytes could not be decoded or do not match their state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignBytesError {
    /// The bytes end inside a length prefix, tag or field.
    #[error("sign bytes are truncated ({0})")]
    Truncated(&'static str),
    /// A varint longer than 10 bytes or beyond 64 bits.
    #[error("sign bytes contain an invalid varint")]
    BadVarint,
    /// The length prefix does not match the bytes that follow.
    #[error("length prefix says {declared} bytes but {actual} follow")]
    LengthMismatch {
        /// From the prefix.
        declared: u64,
        /// Actually present.
        actual: usize,
    },
    /// A field number of zero, a deprecated group wire type, or similar.
    #[error("invalid protobuf tag {0}")]
    BadTag(u64),
    /// A known field encoded with the wrong wire type.
    #[error("field {field} has wire type {got}, expected {expected}")]
    WrongWireType {
        /// Field number.
        field: u64,
        /// Wire type found.
        got: u8,
        /// Wire type the schema requires.
        expected: u8,
    },
    /// A non-repeated field appears twice (CometBFT never writes that).
    #[error("field {0} appears more than once")]
    DuplicateField(u64),
    /// `type` is absent or not 1, 2 or 32.
    #[error("unknown signed message type {0} (expected 1 prevote, 2 precommit or 32 proposal)")]
    UnknownType(u64),
    /// A field number that is not in the message for this type.
    #[error("unexpected field {field} in a {kind}")]
    UnknownField {
        /// Field number.
        field: u64,
        /// "vote" or "proposal".
        kind: &'static str,
    },
    /// `chain_id` is not UTF-8.
    #[error("chain_id is not valid UTF-8")]
    BadChainId,
    /// A varint field whose value does not fit its type.
    #[error("field {0} is out of range")]
    OutOfRange(u64),
    /// The message type is not the one the state's step implies.
    #[error("sign bytes are a {msg_type:?} (type {code}) but the state's step is {step}")]
    TypeStepMismatch {
        /// Type in the bytes.
        msg_type: SignedMsgType,
        /// Its code.
        code: u64,
        /// Step in the state.
        step: Step,
    },
    /// The height in the bytes differs from the state's.
    #[error("sign bytes are for height {in_bytes} but the state says height {in_state}")]
    HeightMismatch {
        /// Height in the bytes.
        in_bytes: i64,
        /// Height in the state.
        in_state: i64,
    },
    /// The round in the bytes differs from the state's.
    #[error("sign bytes are for round {in_bytes} but the state says round {in_state}")]
    RoundMismatch {
        /// Round in the bytes.
        in_bytes: i64,
        /// Round in the state.
        in_state: i32,
    },
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// One raw field value.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

impl Raw<'_> {
    fn wire(&self) -> u8 {
        match self {
            Raw::Varint(_) => WIRE_VARINT,
            Raw::Fixed64(_) => WIRE_FIXED64,
            Raw::Len(_) => WIRE_LEN,
            Raw::Fixed32 => WIRE_FIXED32,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, SignBytesError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or(SignBytesError::Truncated(what))?;
            self.buf = rest;
            let bits = u64::from(byte & 0x7f);
            // The 10th byte may only contribute the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(SignBytesError::BadVarint);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(SignBytesError::BadVarint)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SignBytesError> {
        if self.buf.len() < n {
            return Err(SignBytesError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn fixed64(&mut self) -> Result<u64, SignBytesError> {
        let bytes = self.take(8, "fixed64")?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(arr))
    }

    /// Next `(field number, value)`, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Raw<'a>)>, SignBytesError> {
        if self.is_empty() {
            return Ok(None);
        }
        let tag = self.varint("tag")?;
        let number = tag >> 3;
        if number == 0 {
            return Err(SignBytesError::BadTag(tag));
        }
        let raw = match (tag & 7) as u8 {
            WIRE_VARINT => Raw::Varint(self.varint("varint field")?),
            WIRE_FIXED64 => Raw::Fixed64(self.fixed64()?),
            WIRE_LEN => {
                let len = self.varint("field length")?;
                let len = usize::try_from(len).map_err(|_| SignBytesError::Truncated("field"))?;
                Raw::Len(self.take(len, "length-delimited field")?)
            }
            WIRE_FIXED32 => {
                self.take(4, "fixed32")?;
                Raw::Fixed32
            }
            _ => return Err(SignBytesError::BadTag(tag)),
        };
        Ok(Some((number, raw)))
    }
}

/// Collect a message's fields, refusing duplicates (all fields we read are
/// singular; CometBFT's canonical encoding writes each at most once).
fn fields(buf: &[u8]) -> Result<Vec<(u64, Raw<'_>)>, SignBytesError> {
    let mut reader = Reader::new(buf);
    let mut out: Vec<(u64, Raw<'_>)> = Vec::new();
    while let Some((number, raw)) = reader.field()? {
        if out.iter().any(|(n, _)| *n == number) {
            return Err(SignBytesError::DuplicateField(number));
        }
        out.push((number, raw));
    }
    Ok(out)
}

fn want_varint(field: u64, raw: Raw<'_>) -> Result<u64, SignBytesError> {
    match raw {
        Raw::Varint(v) => Ok(v),
        other => Err(SignBytesError::WrongWireType {
            field,
            got: other.wire(),
            expected: WIRE_VARINT,
        }),
    }
}

fn want_fixed64(field: u64, raw: Raw<'_>) -> Result<i64, SignBytesError> {
    match raw {
        // sfixed64 is two's complement little-endian.
        Raw::Fixed64(v) => Ok(v as i64),
        other => Err(SignBytesError::WrongWireType {
            field,
            got: other.wire(),
            expected: WIRE_FIXED64,
        }),
    }
}

fn want_len(field: u64, raw: Raw<'_>) -> Result<&[u8], SignBytesError> {
    match raw {
        Raw::Len(b) => Ok(b),
        other => Err(SignBytesError::WrongWireType {
            field,
            got: other.wire(),
            expected: WIRE_LEN,
        }),
    }
}

/// `CanonicalBlockID`: field 1 hash (bytes), field 2 part_set_header (message).
fn block_hash(buf: &[u8]) -> Result<Option<Vec<u8>>, SignBytesError> {
    let mut hash = None;
    for (number, raw) in fields(buf)? {
        match number {
            1 => hash = Some(want_len(number, raw)?.to_vec()),
            2 => {
                // Validate the part-set header's framing; its content is not needed.
                fields(want_len(number, raw)?)?;
            }
            _ => {
                return Err(SignBytesError::UnknownField {
                    field: number,
                    kind: "block_id",
                })
            }
        }
    }
    Ok(hash.filter(|h| !h.is_empty()))
}

/// `google.protobuf.Timestamp`: field 1 seconds (int64), field 2 nanos (int32).
fn timestamp(buf: &[u8]) -> Result<(i64, i32), SignBytesError> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for (number, raw) in fields(buf)? {
        match number {
            1 => seconds = want_varint(number, raw)? as i64,
            2 => {
                nanos = i32::try_from(want_varint(number, raw)? as i64)
                    .map_err(|_| SignBytesError::OutOfRange(number))?
            }
            _ => {
                return Err(SignBytesError::UnknownField {
                    field: number,
                    kind: "timestamp",
                })
            }
        }
    }
    Ok((seconds, nanos))
}

/// Decode length-prefixed sign bytes as CometBFT stores them.
pub fn decode(sign_bytes: &[u8]) -> Result<CanonicalSignBytes, SignBytesError> {
    let mut reader = Reader::new(sign_bytes);
    let declared = reader.varint("length prefix")?;
    let body = reader.buf;
    if usize::try_from(declared).ok() != Some(body.len()) {
        return Err(SignBytesError::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    decode_body(body)
}

/// Decode an unprefixed `CanonicalVote` / `CanonicalProposal`.
fn decode_body(body: &[u8]) -> Result<CanonicalSignBytes, SignBytesError> {
    let all = fields(body)?;
    let code = match all.iter().find(|(n, _)| *n == 1) {
        Some(&(n, raw)) => want_varint(n, raw)?,
        None => 0,
    };
    let msg_type = match code {
        1 => SignedMsgType::Prevote,
        2 => SignedMsgType::Precommit,
        32 => SignedMsgType::Proposal,
        other => return Err(SignBytesError::UnknownType(other)),
    };
    let proposal = msg_type == SignedMsgType::Proposal;
    // Field numbers that move between the two schemas.
    let (block_id_field, timestamp_field, chain_id_field) =
        if proposal { (5, 6, 7) } else { (4, 5, 6) };

    let mut out = CanonicalSignBytes {
        msg_type,
        height: 0,
        round: 0,
        pol_round: proposal.then_some(0),
        block_hash: None,
        timestamp: None,
        chain_id: String::new(),
    };
    for (number, raw) in all {
        match number {
            1 => {}
            2 => out.height = want_fixed64(number, raw)?,
            3 => out.round = want_fixed64(number, raw)?,
            4 if proposal => out.pol_round = Some(want_varint(number, raw)? as i64),
            n if n == block_id_field => out.block_hash = block_hash(want_len(number, raw)?)?,
            n if n == timestamp_field => out.timestamp = Some(timestamp(want_len(number, raw)?)?),
            n if n == chain_id_field => {
                out.chain_id = std::str::from_utf8(want_len(number, raw)?)
                    .map_err(|_| SignBytesError::BadChainId)?
                    .to_owned();
            }
            _ => {
                return Err(SignBytesError::UnknownField {
                    field: number,
                    kind: if proposal { "proposal" } else { "vote" },
                })
            }
        }
    }
    Ok(out)
}

/// Check that a state's sign bytes describe the state's own HRS: the message
/// type matches the step (prevote ↔ 2, precommit ↔ 3, proposal ↔ 1) and the
/// height and round are equal. Returns the decoded message, or `None` when
/// the state holds no sign bytes (nothing to check).
pub fn verify_state(state: &SignState) -> Result<Option<CanonicalSignBytes>, SignBytesError> {
    let Some(bytes) = state.sign_bytes() else {
        return Ok(None);
    };
    let decoded = decode(bytes)?;
    check_against(&decoded, state.hrs())?;
    Ok(Some(decoded))
}

fn check_against(decoded: &CanonicalSignBytes, hrs: Hrs) -> Result<(), SignBytesError> {
    if decoded.msg_type.step() != hrs.step {
        return Err(SignBytesError::TypeStepMismatch {
            msg_type: decoded.msg_type,
            code: decoded.msg_type.code(),
            step: hrs.step,
        });
    }
    if decoded.height != hrs.height {
        return Err(SignBytesError::HeightMismatch {
            in_bytes: decoded.height,
            in_state: hrs.height,
        });
    }
    if decoded.round != i64::from(hrs.round) {
        return Err(SignBytesError::RoundMismatch {
            in_bytes: decoded.round,
            in_state: hrs.round,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sign bytes of the h36 fixture (CometBFT docs, precommit at height 36).
    const H36: &str = "76080211240000000000000022480A20D1823B950D1A0FD7335B4E63D2B65CF9D0CEAC13DF4E9E2DFB4765D2C69C74D0122408011220DB69B3B750BBCEAB4BC86BB1847D3E0DDB342EFAFE5731605C61A828265E09802A0C08CDF288AF0610A88CA8FE023211746573742D636861696E2D4866644B6E44";

    fn h36() -> Vec<u8> {
        hex::decode(H36).unwrap()
    }

    #[test]
    fn decodes_fixture_precommit() {
        let d = decode(&h36()).unwrap();
        assert_eq!(d.msg_type, SignedMsgType::Precommit);
        assert_eq!(d.height, 36);
        assert_eq!(d.round, 0);
        assert_eq!(d.chain_id, "test-chain-HfdKnD");
        assert_eq!(d.pol_round, None);
        assert_eq!(
            hex::encode_upper(d.block_hash.unwrap()),
            "D1823B950D1A0FD7335B4E63D2B65CF9D0CEAC13DF4E9E2DFB4765D2C69C74D0"
        );
        assert!(d.timestamp.unwrap().0 > 1_500_000_000);
    }

    #[test]
    fn every_prefix_of_fixture_is_an_error_not_a_panic() {
        let bytes = h36();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let mut bytes = h36();
        bytes.push(0);
        assert!(matches!(
            decode(&bytes),
            Err(SignBytesError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn proposal_layout() {
        // type=32, height=5 (sfixed64), round=1, pol_round=-1, chain_id "c" at field 7.
        let mut body = vec![0x08, 32, 0x11];
        body.extend_from_slice(&5i64.to_le_bytes());
        body.push(0x19);
        body.extend_from_slice(&1i64.to_le_bytes());
        body.push(0x20);
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        body.extend_from_slice(&[0x3a, 1, b'c']);
        let mut bytes = vec![body.len() as u8];
        bytes.extend_from_slice(&body);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.msg_type, SignedMsgType::Proposal);
        assert_eq!((d.height, d.round, d.pol_round), (5, 1, Some(-1)));
        assert_eq!(d.chain_id, "c");
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xff; 11];
        assert_eq!(decode(&bytes), Err(SignBytesError::BadVarint));
    }
}
