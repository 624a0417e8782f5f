//! Height/round/step (HRS) ordering and CometBFT's `CheckHRS` rule.
//!
//! The order is lexicographic on (height, round, step), exactly the order in
//! which CometBFT's `FilePVLastSignState.CheckHRS` accepts signing requests.
//! Everything that decides "is this newer?" in SyncGuard goes through [`Hrs`]'s
//! `Ord`, so there is one definition of "never go back".

use std::fmt;

use thiserror::Error;

use crate::state::SignState;

/// A consensus step as stored in `priv_validator_state.json` (`"step"`).
///
/// The discriminants are CometBFT's `stepNone`..`stepPrecommit`; the derived
/// `Ord` follows them, which is what `CheckHRS` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Step {
    /// Nothing signed yet at this height/round (the initial state, and fences).
    None = 0,
    /// A block proposal.
    Propose = 1,
    /// A prevote.
    Prevote = 2,
    /// A precommit.
    Precommit = 3,
}

impl Step {
    /// All steps in ascending order.
    pub const ALL: [Step; 4] = [Step::None, Step::Propose, Step::Prevote, Step::Precommit];

    /// The number written in the state file.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The step for a state-file number, `None` (the Option) when it is not 0..=3.
    pub fn from_u8(value: u8) -> Option<Step> {
        Step::ALL.get(usize::from(value)).copied()
    }

    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Step::None => "none",
            Step::Propose => "propose",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
        }
    }
}

impl fmt::Display for Step {
    /// `3 (precommit)`: the number is what the file holds, the name is for humans.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u8(), self.name())
    }
}

/// A height/round/step triple.
///
/// Field order matters: the derived `Ord` compares height, then round, then
/// step, which is CometBFT's `CheckHRS` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hrs {
    /// Block height (non-negative in any valid state file).
    pub height: i64,
    /// Consensus round (non-negative in any valid state file).
    pub round: i32,
    /// Consensus step.
    pub step: Step,
}

impl Hrs {
    /// Shorthand constructor.
    pub fn new(height: i64, round: i32, step: Step) -> Self {
        Hrs {
            height,
            round,
            step,
        }
    }
}

impl fmt::Display for Hrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "height {} round {} step {}",
            self.height, self.round, self.step
        )
    }
}

/// What a signer may do with a request that passed [`check_hrs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignDecision {
    /// The request is strictly above the last signed HRS: sign it (and persist
    /// the new state before releasing the signature).
    Sign,
    /// The very same message was already signed at this HRS: hand out the stored
    /// signature again instead of signing anew (CometBFT does this after a crash
    /// between signing and writing its WAL).
    Reuse {
        /// The stored signature.
        signature: Vec<u8>,
    },
}

/// Why a signing request must be refused.
///
/// Messages follow CometBFT's wording so operators can match them with node logs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HrsError {
    /// The request's height is below the last signed height.
    #[error("height regression: got {got}, last height {last}")]
    HeightRegression {
        /// Requested height.
        got: i64,
        /// Last signed height.
        last: i64,
    },
    /// Same height, lower round.
    #[error("round regression at height {height}: got {got}, last round {last}")]
    RoundRegression {
        /// The (shared) height.
        height: i64,
        /// Requested round.
        got: i32,
        /// Last signed round.
        last: i32,
    },
    /// Same height and round, lower step.
    #[error("step regression at height {height} round {round}: got {got}, last step {last}")]
    StepRegression {
        /// The (shared) height.
        height: i64,
        /// The (shared) round.
        round: i32,
        /// Requested step.
        got: Step,
        /// Last signed step.
        last: Step,
    },
    /// Same HRS, different sign bytes: signing would be a double sign.
    #[error(
        "conflicting data at height {} round {} step {}",
        .hrs.height, .hrs.round, .hrs.step
    )]
    Conflict {
        /// The HRS both messages claim.
        hrs: Hrs,
    },
    /// Same HRS, but the state holds no sign bytes, so there is nothing to
    /// compare with: CometBFT refuses, and so do we.
    #[error(
        "no SignBytes found at height {} round {} step {}",
        .hrs.height, .hrs.round, .hrs.step
    )]
    NoSignBytes {
        /// The HRS of the request and of the state.
        hrs: Hrs,
    },
}

/// Decide whether a signer whose last signed state is `last` may sign
/// `sign_bytes` at `request`, exactly as CometBFT v0.38's `CheckHRS` followed by
/// its same-HRS comparison in `signVote`/`signProposal`.
///
/// Not reproduced: CometBFT also reuses the old signature when the two messages
/// differ *only in their timestamp* (it then rewrites the vote's timestamp).
/// Here such a request is reported as [`HrsError::Conflict`] — stricter, never
/// less safe, and SyncGuard never re-signs on behalf of a node.
pub fn check_hrs(
    last: &SignState,
    request: Hrs,
    sign_bytes: &[u8],
) -> Result<SignDecision, HrsError> {
    let prev = last.hrs();
    if request.height < prev.height {
        return Err(HrsError::HeightRegression {
            got: request.height,
            last: prev.height,
        });
    }
    if request.height == prev.height {
        if request.round < prev.round {
            return Err(HrsError::RoundRegression {
                height: request.height,
                got: request.round,
                last: prev.round,
            });
        }
        if request.round == prev.round {
            if request.step < prev.step {
                return Err(HrsError::StepRegression {
                    height: request.height,
                    round: request.round,
                    got: request.step,
                    last: prev.step,
                });
            }
            if request.step == prev.step {
                // SignState guarantees signature and sign bytes come as a pair.
                return match last.signed_data() {
                    None => Err(HrsError::NoSignBytes { hrs: request }),
                    Some((signature, stored)) if stored == sign_bytes => Ok(SignDecision::Reuse {
                        signature: signature.to_vec(),
                    }),
                    Some(_) => Err(HrsError::Conflict { hrs: request }),
                };
            }
        }
    }
    Ok(SignDecision::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_numbers_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_u8(step.as_u8()), Some(step));
        }
        assert_eq!(Step::from_u8(4), None);
    }

    #[test]
    fn order_is_lexicographic() {
        let a = Hrs::new(10, 0, Step::Precommit);
        let b = Hrs::new(10, 1, Step::None);
        let c = Hrs::new(11, 0, Step::None);
        assert!(a < b && b < c);
    }

    #[test]
    fn messages_name_the_heights() {
        let e = HrsError::HeightRegression { got: 9, last: 10 };
        assert_eq!(e.to_string(), "height regression: got 9, last height 10");
        let e = HrsError::Conflict {
            hrs: Hrs::new(10, 1, Step::Prevote),
        };
        assert_eq!(
            e.to_string(),
            "conflicting data at height 10 round 1 step 2 (prevote)"
        );
    }
}
