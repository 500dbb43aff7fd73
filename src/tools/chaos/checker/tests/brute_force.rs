//! An independent, naive model and order checker: what the search is
//! compared against.

use super::*;

/// The model written out on its own, on full `ModelState`s, to cross-check the search.
pub(super) fn naive_apply(state: &ModelState, operation: &Operation) -> Option<ModelState> {
    match (&operation.kind, &operation.outcome) {
        (OperationKind::Bid { bidder, amount }, outcome) => {
            let succeeds = *amount > state.highest_amount;
            let after = if succeeds {
                ModelState {
                    highest_amount: *amount,
                    highest_bidder: bidder.clone(),
                    accepted_bids: state.accepted_bids.saturating_add(1),
                }
            } else {
                state.clone()
            };
            match outcome {
                Outcome::Unknown => Some(after),
                Outcome::Bid { verdict, highest_amount, highest_bidder } => {
                    let verdict_fits = match verdict {
                        BidVerdict::Success => succeeds,
                        BidVerdict::Fail => !succeeds,
                        BidVerdict::Exception => false,
                    };
                    (verdict_fits && after.highest_amount == *highest_amount && after.highest_bidder == *highest_bidder)
                        .then_some(after)
                }
                Outcome::Result { .. } => None,
            }
        }
        (OperationKind::Result, Outcome::Unknown) => Some(state.clone()),
        (OperationKind::Result, Outcome::Result { highest_amount, highest_bidder, accepted_bids }) => {
            (*state == self::state(*highest_amount, highest_bidder, *accepted_bids)).then(|| state.clone())
        }
        _ => None,
    }
}

/// `a` must come before `b` in any linearization.
pub(super) fn precedes(a: &Operation, b: &Operation) -> bool {
    a.answered_at().is_some_and(|answered| answered < b.invoked_us)
}

/// Panics unless `order` is a valid linearization: every answered operation exactly
/// once, only Unknown operations besides, real time respected, the model satisfied.
pub(super) fn assert_valid_order(history: &History, initial: &ModelState, order: &[u64]) {
    let by_id: HashMap<u64, &Operation> = history.operations.iter().map(|op| (op.id, op)).collect();
    let mut seen = HashSet::new();
    for id in order {
        assert!(seen.insert(*id), "op {id} appears twice in {order:?}");
    }
    for operation in &history.operations {
        if operation.answered_at().is_some() {
            assert!(seen.contains(&operation.id), "op {} missing from the order", operation.id);
        }
    }
    // Real time: nothing placed later may have been answered before this one started,
    // i.e. the earliest answer among the later operations is not before its start.
    let mut earliest_answer_after = u64::MAX;
    for id in order.iter().rev() {
        let operation = by_id[id];
        assert!(
            earliest_answer_after >= operation.invoked_us,
            "an operation answered at {earliest_answer_after}us is ordered after op {id}, invoked at {}us",
            operation.invoked_us
        );
        if let Some(answered) = operation.answered_at() {
            earliest_answer_after = earliest_answer_after.min(answered);
        }
    }
    let mut current = initial.clone();
    for id in order {
        current =
            naive_apply(&current, by_id[id]).unwrap_or_else(|| panic!("op {id} does not fit the model at {current:?}"));
    }
}

/// Tries every subset of the Unknown bids and every order: only for tiny histories.
pub(super) fn brute_force_linearizable(history: &History, initial: &ModelState) -> bool {
    let answered: Vec<&Operation> = history.operations.iter().filter(|op| op.answered_at().is_some()).collect();
    let in_doubt: Vec<&Operation> = history
        .operations
        .iter()
        .filter(|op| op.answered_at().is_none() && matches!(op.kind, OperationKind::Bid { .. }))
        .collect();
    for mask in 0..(1u32 << in_doubt.len()) {
        let mut chosen = answered.clone();
        for (bit, operation) in in_doubt.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                chosen.push(operation);
            }
        }
        let mut used = vec![false; chosen.len()];
        if some_order_fits(&chosen, &mut used, initial) {
            return true;
        }
    }
    false
}

pub(super) fn some_order_fits(chosen: &[&Operation], used: &mut [bool], current: &ModelState) -> bool {
    if used.iter().all(|u| *u) {
        return true;
    }
    for next in 0..chosen.len() {
        if used[next] {
            continue;
        }
        let blocked =
            (0..chosen.len()).any(|other| !used[other] && other != next && precedes(chosen[other], chosen[next]));
        if blocked {
            continue;
        }
        if let Some(after) = naive_apply(current, chosen[next]) {
            used[next] = true;
            let fits = some_order_fits(chosen, used, &after);
            used[next] = false;
            if fits {
                return true;
            }
        }
    }
    false
}
