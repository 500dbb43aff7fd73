//! The durability check: the result read after the run holds every
//! acknowledged bid.

use super::Violation;
use super::history::{BidVerdict, History, Operation};
use super::model::ModelState;
use super::render::{
    MAX_LISTED, bids_with_verdict, describe_operation, describe_state, malformed, more_suffix, sorted_ids,
};

/// Checks that the result read after all clients stopped and the cluster healed
/// (`final_result`) still holds every acknowledged bid, given the state before the run
/// (`initial`):
///
/// - its highest amount is at least every SUCCESS bid's amount (and at least the initial
///   highest);
/// - if the largest SUCCESS amount is the final highest, the final bidder is that bid's
///   bidder, or the bidder of an Unknown bid of the same amount (which could have taken
///   effect instead, were the order different);
/// - if the final highest is above every SUCCESS bid, an Unknown bid (or the initial
///   state) has exactly that amount and bidder, since nothing else could have put it there;
/// - the bids accepted during the run (`final - initial` accepted_bids) number at least the
///   SUCCESS bids, and at most the SUCCESS plus the Unknown bids.
///
/// The upper bound on accepted bids is also checked, more tightly, by
/// [`check_exactly_once`](super::check_exactly_once); here it catches a final state that no run of this history
/// explains at all.
pub fn check_durability(history: &History, initial: &ModelState, final_result: &ModelState) -> Result<(), Violation> {
    history.validate().map_err(malformed)?;
    let final_text = describe_state(final_result);

    if final_result.highest_amount < initial.highest_amount {
        return Err(Violation {
            message: format!(
                "the final result shows {final_text}, below the highest the auction had before the run ({})",
                describe_state(initial)
            ),
            operations: Vec::new(),
        });
    }

    let successes: Vec<(&Operation, &str, u64)> = bids_with_verdict(history, Some(BidVerdict::Success));
    let in_doubt: Vec<(&Operation, &str, u64)> = bids_with_verdict(history, None);

    let mut lost: Vec<&(&Operation, &str, u64)> =
        successes.iter().filter(|(_, _, amount)| *amount > final_result.highest_amount).collect();
    if !lost.is_empty() {
        lost.sort_by_key(|(op, _, amount)| (std::cmp::Reverse(*amount), op.id));
        let (first, bidder, amount) = lost[0];
        return Err(Violation {
            message: format!(
                "the final result shows {final_text}, but {} was acknowledged SUCCESS ({bidder} bid {amount}){}: an acknowledged bid was lost",
                describe_operation(first),
                more_suffix(lost.len() - 1, "acknowledged bid")
            ),
            operations: sorted_ids(lost.iter().take(MAX_LISTED).map(|(op, _, _)| op.id)),
        });
    }

    let max_success = successes.iter().map(|(_, _, amount)| *amount).max();
    let final_amount = final_result.highest_amount;
    let final_bidder = final_result.highest_bidder.as_str();
    let final_bid_in_doubt =
        in_doubt.iter().any(|(_, bidder, amount)| *amount == final_amount && *bidder == final_bidder);
    if max_success == Some(final_amount) {
        let winners: Vec<&(&Operation, &str, u64)> =
            successes.iter().filter(|(_, _, amount)| *amount == final_amount).collect();
        let credited = winners.iter().any(|(_, bidder, _)| *bidder == final_bidder);
        if !credited && !final_bid_in_doubt {
            let (winner, bidder, _) = winners[0];
            return Err(Violation {
                message: format!(
                    "the final result shows {final_text}, but the acknowledged bid of {final_amount} was {bidder}'s ({}) and no bid of {final_amount} by {final_bidder} is in doubt",
                    describe_operation(winner)
                ),
                operations: sorted_ids(winners.iter().take(MAX_LISTED).map(|(op, _, _)| op.id)),
            });
        }
    } else {
        // The final highest is above every acknowledged bid: only a bid in doubt, or the
        // state before the run, can have put it there.
        let from_initial = final_amount == initial.highest_amount && final_bidder == initial.highest_bidder;
        if !from_initial && !final_bid_in_doubt {
            return Err(Violation {
                message: format!(
                    "the final result shows {final_text}, but no acknowledged or in-doubt bid of {final_amount} by {final_bidder} was made during the run, and the auction did not hold it before"
                ),
                operations: Vec::new(),
            });
        }
    }

    let Some(accepted_during_run) = final_result.accepted_bids.checked_sub(initial.accepted_bids) else {
        return Err(Violation {
            message: format!(
                "the final result counts {} accepted bids, fewer than the {} the auction had before the run",
                final_result.accepted_bids, initial.accepted_bids
            ),
            operations: Vec::new(),
        });
    };
    let acknowledged = successes.len() as u64;
    let possible = acknowledged + in_doubt.len() as u64;
    if accepted_during_run < acknowledged {
        return Err(Violation {
            message: format!(
                "the final result counts {accepted_during_run} bids accepted during the run, but {acknowledged} were acknowledged SUCCESS: acknowledged bids were lost"
            ),
            operations: Vec::new(),
        });
    }
    if accepted_during_run > possible {
        return Err(Violation {
            message: format!(
                "the final result counts {accepted_during_run} bids accepted during the run, but only {acknowledged} were acknowledged and {} more are in doubt",
                in_doubt.len()
            ),
            operations: Vec::new(),
        });
    }
    Ok(())
}
