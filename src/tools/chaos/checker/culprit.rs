//! Turns the point where every search path got stuck into a violation: the
//! operation that could not be placed and the operations around it.

use super::Violation;
use super::history::{BidVerdict, History, Operation, OperationKind, Outcome};
use super::render::{
    IN_DOUBT_LISTED, MAX_LISTED, PREDECESSORS_LISTED, describe_highest, describe_operation, describe_outcome,
    sorted_ids,
};
use super::search::{Prepared, StuckPoint};

/// Turns the furthest stuck point into a message about the operation that could not be
/// placed, with the operations around it.
pub(super) fn stuck_violation(history: &History, prepared: &Prepared, stuck: Option<StuckPoint>) -> Violation {
    let Some(stuck) = stuck else {
        return Violation {
            message: "no order of the operations explains the answers".to_string(),
            operations: Vec::new(),
        };
    };
    let culprit = &history.operations[prepared.ops[stuck.op].history_index];
    let states: Vec<String> = stuck.states.iter().map(|snapshot| prepared.describe_snapshot(snapshot)).collect();
    let reachable = format!(
        "by the time it was answered, the orders that explain everything before it reach: {}",
        states.join("; ")
    );
    let what = match (&culprit.kind, &culprit.outcome) {
        (OperationKind::Result, Outcome::Result { highest_amount, highest_bidder, accepted_bids }) => format!(
            "{} saw {}, but no order of the operations before it gives that",
            describe_operation(culprit),
            describe_highest(*highest_amount, highest_bidder, Some(*accepted_bids))
        ),
        (OperationKind::Bid { .. }, Outcome::Bid { verdict, .. }) => {
            let fits = match verdict {
                BidVerdict::Success => "lets it succeed",
                _ => "leaves it below that highest",
            };
            format!(
                "{} was answered {}, but no order of the operations before it {fits}",
                describe_operation(culprit),
                describe_outcome(&culprit.outcome)
            )
        }
        _ => format!("{} cannot be placed in any order", describe_operation(culprit)),
    };
    let lowest_reached_highest = stuck.states.iter().map(|state| state.highest_amount).min().unwrap_or(u64::MAX);
    Violation {
        message: format!("{what} ({reachable})"),
        operations: neighbourhood(history, culprit, lowest_reached_highest),
    }
}

/// The culprit, the operations concurrent with it (the other candidates at the point where
/// the search got stuck), the last few that finished before it started, and the Unknown
/// bids that bear on it: recent ones, ones of the amount it reports, and ones that could
/// still take effect in some state the search reached (`lowest_reached_highest`). Old
/// Unknown bids long overtaken are left out; they explain nothing.
pub(super) fn neighbourhood(history: &History, culprit: &Operation, lowest_reached_highest: u64) -> Vec<u64> {
    let start = culprit.invoked_us;
    let end = culprit.answered_at().unwrap_or(u64::MAX);
    let reported_amount = match &culprit.outcome {
        Outcome::Bid { highest_amount, .. } | Outcome::Result { highest_amount, .. } => Some(*highest_amount),
        Outcome::Unknown => None,
    };
    let mut concurrent: Vec<&Operation> = Vec::new();
    let mut in_doubt: Vec<(&Operation, u64)> = Vec::new();
    let mut before: Vec<&Operation> = Vec::new();
    for operation in &history.operations {
        if operation.id == culprit.id {
            continue;
        }
        match (&operation.kind, operation.answered_at()) {
            (OperationKind::Bid { amount, .. }, None) if operation.invoked_us <= end => {
                in_doubt.push((operation, *amount));
            }
            (_, Some(answered)) if answered < start => before.push(operation),
            (_, Some(_)) if operation.invoked_us <= end => concurrent.push(operation),
            _ => {}
        }
    }
    concurrent.sort_by_key(|op| (op.invoked_us.abs_diff(start), op.id));
    concurrent.truncate(MAX_LISTED);
    before.sort_by_key(|op| (std::cmp::Reverse(op.answered_at()), op.id));
    before.truncate(PREDECESSORS_LISTED);
    let recent_since = concurrent.iter().chain(&before).map(|op| op.invoked_us).min().unwrap_or(start);
    in_doubt.retain(|(op, amount)| {
        op.invoked_us >= recent_since || Some(*amount) == reported_amount || *amount > lowest_reached_highest
    });
    in_doubt.sort_by_key(|(op, _)| (std::cmp::Reverse(op.invoked_us), op.id));
    in_doubt.truncate(IN_DOUBT_LISTED);
    sorted_ids(
        std::iter::once(culprit.id)
            .chain(concurrent.iter().map(|op| op.id))
            .chain(in_doubt.iter().map(|(op, _)| op.id))
            .chain(before.iter().map(|op| op.id)),
    )
}
