//! The exactly-once check: no evidence that a retried request was applied
//! twice.

use std::collections::HashSet;

use super::Violation;
use super::history::{BidVerdict, History, Operation, OperationKind, Outcome};
use super::model::ModelState;
use super::render::{MAX_LISTED, describe_operation, malformed, sorted_ids};

/// Looks for evidence that a request was applied twice. The client library retries a bid
/// with the same request id; if the servers fail to recognise the retry, two things can
/// show:
///
/// 1. The retry is answered FAIL, reporting as the highest the very bid it carries (same
///    amount, same bidder): the first attempt was applied, and the retry was judged as a new
///    bid that is not higher than itself. This is a violation unless another request could
///    have placed that bid: a SUCCESS or Unknown bid with the same bidder and amount invoked
///    before the FAIL was answered, or the state before the run.
/// 2. The final result counts more accepted bids than the history allows. Every accepted bid
///    raises the highest, so the bids accepted during the run have distinct amounts, all
///    above the initial highest and at most the final highest, and each is a SUCCESS or an
///    Unknown bid. More accepted bids than such distinct amounts means something counted
///    twice.
///
/// What it cannot see: a retry applied twice whose second application was rejected (not
/// higher than itself) while the client got the first answer, since nothing observable
/// changes; a retry answered FAIL when the same bidder also has another in-doubt or
/// acknowledged bid of the same amount, which is indistinguishable from that other request
/// having placed it; and a duplicate FAIL, which has no effect. Answers during the run that
/// are inconsistent with any single application are [`check_linearizable`](super::check_linearizable)'s job.
pub fn check_exactly_once(history: &History, initial: &ModelState, final_result: &ModelState) -> Result<(), Violation> {
    history.validate().map_err(malformed)?;

    for operation in &history.operations {
        let (
            OperationKind::Bid { bidder, amount },
            Outcome::Bid { verdict: BidVerdict::Fail, highest_amount, highest_bidder },
        ) = (&operation.kind, &operation.outcome)
        else {
            continue;
        };
        if highest_amount != amount || highest_bidder != bidder {
            continue;
        }
        if initial.highest_amount == *amount && initial.highest_bidder == *bidder {
            continue;
        }
        let answered = operation.answered_at().unwrap_or(u64::MAX);
        let same_bid: Vec<&Operation> = history
            .operations
            .iter()
            .filter(|other| {
                other.id != operation.id
                    && matches!(&other.kind, OperationKind::Bid { bidder: b, amount: a } if b == bidder && a == amount)
            })
            .collect();
        let explained = same_bid.iter().any(|other| {
            other.invoked_us <= answered
                && matches!(other.outcome, Outcome::Unknown | Outcome::Bid { verdict: BidVerdict::Success, .. })
        });
        if !explained {
            let mut ids: Vec<u64> = same_bid.iter().take(MAX_LISTED).map(|op| op.id).collect();
            ids.push(operation.id);
            return Err(Violation {
                message: format!(
                    "{} was answered FAIL, yet the highest it reports is that same bid ({amount} by {bidder}) and no other request could have placed it: the request was applied and then judged again as a new bid (applied twice)",
                    describe_operation(operation)
                ),
                operations: sorted_ids(ids),
            });
        }
    }

    let accepted_during_run = final_result.accepted_bids.saturating_sub(initial.accepted_bids);
    let distinct_amounts: HashSet<u64> = history
        .operations
        .iter()
        .filter_map(|operation| match (&operation.kind, &operation.outcome) {
            (
                OperationKind::Bid { amount, .. },
                Outcome::Unknown | Outcome::Bid { verdict: BidVerdict::Success, .. },
            ) => Some(*amount),
            _ => None,
        })
        .filter(|amount| *amount > initial.highest_amount && *amount <= final_result.highest_amount)
        .collect();
    let allowed = distinct_amounts.len() as u64;
    if accepted_during_run > allowed {
        return Err(Violation {
            message: format!(
                "the final result counts {accepted_during_run} bids accepted during the run, but only {allowed} distinct amounts between {} and {} were acknowledged or in doubt, and each accepted bid must raise the highest: some bid was applied more than once",
                initial.highest_amount, final_result.highest_amount
            ),
            operations: Vec::new(),
        });
    }
    Ok(())
}
