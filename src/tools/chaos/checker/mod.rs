//! Decides whether a chaos [`History`](super::history::History) could have come from one correct auction.
//!
//! Three checks, each aimed at a different way replication can go wrong:
//!
//! - [`check_linearizable`]: is there a single order of the operations, consistent with
//!   real time (an operation that finished before another started comes first), in which
//!   every answer is what the sequential auction model would have given? This is the
//!   Wing & Gong search with Lowe's memoization, as in Knossos and Porcupine.
//! - [`check_durability`]: does the result read after the cluster healed still contain
//!   every acknowledged bid?
//! - [`check_exactly_once`]: is there evidence that a request (retried by the client with
//!   the same request id) was applied twice?
//!
//! The sequential model is an auction that stays open for the whole run: a bid succeeds
//! exactly when its amount is above the current highest, and then becomes the highest and
//! counts as accepted. An operation whose outcome is Unknown may have taken effect at any
//! point after its invocation, or not at all.
//!
//! Layout: `model` is the sequential model; `linearizable` the first check,
//! which runs `search` over a memo (`memo`) and names the culprit of a
//! violation (`culprit`); `durability` and `exactly_once` the other two;
//! `render` how all of them describe operations to a person; `tests` one
//! file per topic.

mod culprit;
mod durability;
mod exactly_once;
mod linearizable;
mod memo;
mod model;
mod render;
mod search;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use super::history;

pub use durability::check_durability;
pub use exactly_once::check_exactly_once;
pub use linearizable::{DEFAULT_SEARCH_BUDGET, check_linearizable, check_linearizable_with_budget};
pub use model::ModelState;
pub use render::render_violation;

/// What [`check_linearizable`] concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Some order explains every answer. `order` is one such order, as operation ids: every
    /// answered operation, plus the Unknown bids that this order lets take effect (Unknown
    /// operations left out are ones that need not have taken effect).
    Linearizable { order: Vec<u64> },
    /// No order explains the answers.
    Violation(Violation),
    /// The search used up its budget of steps before deciding either way.
    Inconclusive { explored: u64 },
}

impl Verdict {
    /// True only for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }

    /// The violation, if that is the verdict.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Violation(violation) => Some(violation),
            _ => None,
        }
    }
}

/// Why a history is not what a correct auction could produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// A sentence or two for a person, naming the operation at fault.
    pub message: String,
    /// Ids of the operations to look at: the first one that could not be explained and its
    /// neighbours (the operations concurrent with it and the last ones before it), sorted.
    pub operations: Vec<u64>,
}
