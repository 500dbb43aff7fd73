//! The linearizability check's entry points and the answers rejected
//! before any search.

use super::culprit::stuck_violation;
use super::history::{BidVerdict, History, OperationKind, Outcome};
use super::model::ModelState;
use super::render::{MAX_LISTED, describe_highest, describe_operation, malformed, more_suffix, sorted_ids};
use super::search::{Prepared, SearchEnd, search};
use super::{Verdict, Violation};

/// How many search steps [`check_linearizable`] takes before giving up with
/// [`Verdict::Inconclusive`]. A good history of 50,000 operations from 8 clients takes
/// well under a million, and pinning down a violation in one a few million; this budget
/// bounds a pathological search to seconds and a few hundred megabytes (release build).
pub const DEFAULT_SEARCH_BUDGET: u64 = 50_000_000;

/// [`check_linearizable_with_budget`] with [`DEFAULT_SEARCH_BUDGET`].
pub fn check_linearizable(history: &History, initial: &ModelState) -> Verdict {
    check_linearizable_with_budget(history, initial, DEFAULT_SEARCH_BUDGET)
}

/// Searches for an order of the operations of `history`, starting from the auction state
/// `initial`, that respects real time and the sequential model.
///
/// The search takes at most `max_steps` steps (one step is one look at an event: an
/// attempt to place an operation next, or a backtrack); past that it answers
/// [`Verdict::Inconclusive`] rather than running for hours on a pathological history.
///
/// On a violation, the culprit is the operation at the furthest point in time that any
/// candidate order reached: every order explains the history up to that operation's
/// answer, and none explains that answer.
///
/// A history that is malformed (see [`History::validate`]) or contains an answer the model
/// can never give (an EXCEPTION, a SUCCESS that does not report itself as the highest, a
/// FAIL that reports a highest below its own amount) is reported as a violation at once.
pub fn check_linearizable_with_budget(history: &History, initial: &ModelState, max_steps: u64) -> Verdict {
    if let Err(problem) = history.validate() {
        return Verdict::Violation(malformed(problem));
    }
    if let Some(violation) = impossible_answers(history) {
        return Verdict::Violation(violation);
    }
    let prepared = Prepared::new(history, initial);
    match search(&prepared, max_steps).0 {
        SearchEnd::Found(order) => {
            Verdict::Linearizable { order: order.into_iter().map(|op| prepared.ops[op].id).collect() }
        }
        SearchEnd::Stuck(stuck) => Verdict::Violation(stuck_violation(history, &prepared, stuck)),
        SearchEnd::OutOfBudget(explored) => Verdict::Inconclusive { explored },
    }
}

/// Answers the model can give in no state at all: reported before searching, because the
/// search would only say "stuck here" where the reason is simply the answer itself.
pub(super) fn impossible_answers(history: &History) -> Option<Violation> {
    let mut reasons: Vec<(u64, String)> = Vec::new();
    for operation in &history.operations {
        let (OperationKind::Bid { bidder, amount }, Outcome::Bid { verdict, highest_amount, highest_bidder }) =
            (&operation.kind, &operation.outcome)
        else {
            continue;
        };
        let reason = match verdict {
            BidVerdict::Exception => Some(format!(
                "{} was answered EXCEPTION, which the model never allows: the run only sends valid bids to an auction that stays open",
                describe_operation(operation)
            )),
            BidVerdict::Success if highest_amount != amount || highest_bidder != bidder => Some(format!(
                "{} was answered SUCCESS but reported {}, not itself, as the highest",
                describe_operation(operation),
                describe_highest(*highest_amount, highest_bidder, None)
            )),
            BidVerdict::Fail if highest_amount < amount => Some(format!(
                "{} was answered FAIL but reported {}, below its own amount",
                describe_operation(operation),
                describe_highest(*highest_amount, highest_bidder, None)
            )),
            _ => None,
        };
        if let Some(reason) = reason {
            reasons.push((operation.id, reason));
        }
    }
    let (first_id, first_reason) = reasons.first()?;
    Some(Violation {
        message: format!("{first_reason}{}", more_suffix(reasons.len() - 1, "impossible answer")),
        operations: sorted_ids(
            std::iter::once(*first_id).chain(reasons.iter().skip(1).take(MAX_LISTED - 1).map(|(id, _)| *id)),
        ),
    })
}
