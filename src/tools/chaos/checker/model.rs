//! The sequential auction model: the state the checks are given and
//! compare against ([`ModelState`]), and the compact form the search copies
//! and hashes at every step ([`Snapshot`]), with its one step ([`apply`]).
//!
//! The auction stays open for the whole run: a bid succeeds exactly when its
//! amount is above the current highest, and then becomes the highest and
//! counts as accepted.

use serde::{Deserialize, Serialize};

/// The auction as the sequential model sees it. Also how the checks are given the state
/// before the run (the auction may already have bids) and the result read after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelState {
    /// 0 when there is no bid yet.
    pub highest_amount: u64,
    /// Empty when there is no bid yet.
    pub highest_bidder: String,
    /// How many bids the auction has accepted since it opened.
    pub accepted_bids: u64,
}

/// Bidder names are interned so the model state is small and `Copy`: the search copies
/// and hashes it at every step.
pub(super) type BidderId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Snapshot {
    pub(super) highest_amount: u64,
    pub(super) highest_bidder: BidderId,
    pub(super) accepted_bids: u64,
}

/// What an operation's answer requires of the state it is placed in.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expectation {
    /// The bid must raise the highest (its report was checked to name itself).
    Succeeded { bidder: BidderId, amount: u64 },
    /// The bid must not raise the highest, and the highest must be the one reported.
    Failed { amount: u64, reported: (u64, BidderId) },
    /// No answer: placed only where it raises the highest. Placing it where it would fail
    /// changes nothing, which is the same as leaving it out, and leaving it out is allowed;
    /// refusing those placements keeps the search from exploring identical futures twice
    /// (and lets the search set such a bid aside for good, see [`Undo::SetAside`](super::search::Undo::SetAside)).
    InDoubt { bidder: BidderId, amount: u64 },
    /// The state must be exactly the one read.
    Read(Snapshot),
}

impl Expectation {
    /// The highest amount the state must have right after this operation, for an answered
    /// one; since the highest never falls, it must not be exceeded before the operation is
    /// placed either.
    pub(super) fn required_highest(&self) -> u64 {
        match *self {
            Expectation::Succeeded { amount, .. } => amount,
            Expectation::Failed { reported, .. } => reported.0,
            Expectation::Read(read) => read.highest_amount,
            Expectation::InDoubt { .. } => u64::MAX,
        }
    }
}

/// The model's step: the state after placing an operation with this expectation, or
/// `None` if its answer is impossible in `state`.
pub(super) fn apply(state: Snapshot, expectation: &Expectation) -> Option<Snapshot> {
    match *expectation {
        Expectation::Succeeded { bidder, amount } | Expectation::InDoubt { bidder, amount } => {
            (amount > state.highest_amount).then_some(Snapshot {
                highest_amount: amount,
                highest_bidder: bidder,
                accepted_bids: state.accepted_bids.saturating_add(1),
            })
        }
        Expectation::Failed { amount, reported } => (amount <= state.highest_amount
            && (state.highest_amount, state.highest_bidder) == reported)
            .then_some(state),
        Expectation::Read(read) => (read == state).then_some(state),
    }
}
