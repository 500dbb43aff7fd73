//! How the checks describe operations, states and outcomes to a person, and
//! the caps that keep their reports readable.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Violation;
use super::history::{BidVerdict, History, Operation, OperationKind, Outcome};
use super::model::ModelState;

/// The violation's operations, one per line (id, client, kind, invocation and completion
/// times, outcome), for a person reading a failed run next to the violation's message.
pub fn render_violation(history: &History, violation: &Violation) -> String {
    let by_id: HashMap<u64, &Operation> =
        history.operations.iter().map(|operation| (operation.id, operation)).collect();
    let mut text = String::new();
    for id in &violation.operations {
        match by_id.get(id) {
            Some(operation) => {
                let _ = writeln!(text, "  {}", render_operation(operation));
            }
            None => {
                let _ = writeln!(text, "  op {id}: not in the history");
            }
        }
    }
    text
}

/// Lists of operations in a report are capped so it stays readable.
pub(super) const MAX_LISTED: usize = 16;
/// How many operations that finished just before the culprit a report shows.
pub(super) const PREDECESSORS_LISTED: usize = 4;
/// How many Unknown bids bearing on the culprit a report shows.
pub(super) const IN_DOUBT_LISTED: usize = 8;
/// How many distinct model states at the stuck point a message lists.
pub(super) const STATES_LISTED: usize = 4;

pub(super) fn malformed(problem: String) -> Violation {
    Violation { message: format!("malformed history: {problem}"), operations: Vec::new() }
}

pub(super) fn sorted_ids(ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub(super) fn more_suffix(count: usize, what: &str) -> String {
    match count {
        0 => String::new(),
        1 => format!(" (and 1 more {what})"),
        _ => format!(" (and {count} more {what}s)"),
    }
}

/// Bids with the given verdict (`None`: bids with an Unknown outcome), with bidder and amount.
pub(super) fn bids_with_verdict(history: &History, wanted: Option<BidVerdict>) -> Vec<(&Operation, &str, u64)> {
    history
        .operations
        .iter()
        .filter_map(|operation| {
            let OperationKind::Bid { bidder, amount } = &operation.kind else {
                return None;
            };
            let verdict = match &operation.outcome {
                Outcome::Bid { verdict, .. } => Some(*verdict),
                Outcome::Unknown => None,
                Outcome::Result { .. } => return None,
            };
            (verdict == wanted).then_some((operation, bidder.as_str(), *amount))
        })
        .collect()
}

pub(super) fn describe_state(state: &ModelState) -> String {
    describe_highest(state.highest_amount, &state.highest_bidder, Some(state.accepted_bids))
}

pub(super) fn describe_highest(amount: u64, bidder: &str, accepted: Option<u64>) -> String {
    let highest = if amount == 0 && bidder.is_empty() {
        "no bid yet".to_string()
    } else {
        format!("highest {amount} by {bidder}")
    };
    match accepted {
        Some(1) => format!("{highest} with 1 accepted bid"),
        Some(count) => format!("{highest} with {count} accepted bids"),
        None => highest,
    }
}

/// "bid at op 42 (client 3, alice bids 100)" or "read at op 42 (client 3)".
pub(super) fn describe_operation(operation: &Operation) -> String {
    match &operation.kind {
        OperationKind::Bid { bidder, amount } => {
            format!("bid at op {} (client {}, {bidder} bids {amount})", operation.id, operation.client)
        }
        OperationKind::Result => {
            format!("read at op {} (client {})", operation.id, operation.client)
        }
    }
}

pub(super) fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Bid { verdict, highest_amount, highest_bidder } => {
            let verdict = match verdict {
                BidVerdict::Success => "SUCCESS",
                BidVerdict::Fail => "FAIL",
                BidVerdict::Exception => "EXCEPTION",
            };
            format!("{verdict}, {}", describe_highest(*highest_amount, highest_bidder, None))
        }
        Outcome::Result { highest_amount, highest_bidder, accepted_bids } => {
            describe_highest(*highest_amount, highest_bidder, Some(*accepted_bids))
        }
        Outcome::Unknown => "no answer (unknown)".to_string(),
    }
}

pub(super) fn format_micros(micros: u64) -> String {
    format!("{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
}

pub(super) fn render_operation(operation: &Operation) -> String {
    let kind = match &operation.kind {
        OperationKind::Bid { bidder, amount } => format!("bid {bidder} {amount}"),
        OperationKind::Result => "result".to_string(),
    };
    let completed = match operation.answered_at() {
        Some(micros) => format_micros(micros),
        None => "never".to_string(),
    };
    format!(
        "op {:>7}  client {:>3}  {:<22}  invoked {:>14}  completed {:>14}  -> {}",
        operation.id,
        operation.client,
        kind,
        format_micros(operation.invoked_us),
        completed,
        describe_outcome(&operation.outcome)
    )
}
