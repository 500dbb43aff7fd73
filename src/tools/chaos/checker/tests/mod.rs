//! The checker's tests, one file per topic: the checks on histories built by
//! hand ([`linearizable`], [`durability`], [`exactly_once`], [`render`]),
//! cross-checks against an independent brute-force checker ([`brute_force`],
//! [`cross_check`]) and simulated runs at scale ([`simulated`], [`scale`]).
//! This file builds the histories.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::history::{BidVerdict, History, Operation, OperationKind, Outcome};
use super::render::{IN_DOUBT_LISTED, MAX_LISTED, PREDECESSORS_LISTED};
use super::search::{Prepared, SearchEnd, search};
use super::*;

mod brute_force;
mod cross_check;
mod durability;
mod exactly_once;
mod linearizable;
mod render;
mod scale;
mod simulated;

use brute_force::{assert_valid_order, brute_force_linearizable};
use simulated::{Lcg, Simulated, Simulation, simulate};

// ----- building histories by hand -----

fn success(id: u64, client: u32, bidder: &str, amount: u64, span: (u64, u64)) -> Operation {
    bid_answered(id, client, bidder, amount, span, BidVerdict::Success, (amount, bidder))
}

fn fail(id: u64, client: u32, bidder: &str, amount: u64, span: (u64, u64), highest: (u64, &str)) -> Operation {
    bid_answered(id, client, bidder, amount, span, BidVerdict::Fail, highest)
}

fn bid_answered(
    id: u64,
    client: u32,
    bidder: &str,
    amount: u64,
    (invoked, completed): (u64, u64),
    verdict: BidVerdict,
    (highest_amount, highest_bidder): (u64, &str),
) -> Operation {
    Operation {
        id,
        client,
        kind: OperationKind::Bid { bidder: bidder.into(), amount },
        invoked_us: invoked,
        completed_us: Some(completed),
        outcome: Outcome::Bid { verdict, highest_amount, highest_bidder: highest_bidder.into() },
    }
}

fn in_doubt_bid(id: u64, client: u32, bidder: &str, amount: u64, invoked: u64) -> Operation {
    Operation {
        id,
        client,
        kind: OperationKind::Bid { bidder: bidder.into(), amount },
        invoked_us: invoked,
        completed_us: None,
        outcome: Outcome::Unknown,
    }
}

fn read(id: u64, client: u32, (invoked, completed): (u64, u64), seen: (u64, &str, u64)) -> Operation {
    Operation {
        id,
        client,
        kind: OperationKind::Result,
        invoked_us: invoked,
        completed_us: Some(completed),
        outcome: Outcome::Result { highest_amount: seen.0, highest_bidder: seen.1.into(), accepted_bids: seen.2 },
    }
}

fn in_doubt_read(id: u64, client: u32, invoked: u64) -> Operation {
    Operation {
        id,
        client,
        kind: OperationKind::Result,
        invoked_us: invoked,
        completed_us: None,
        outcome: Outcome::Unknown,
    }
}

fn history(operations: Vec<Operation>) -> History {
    History { operations }
}

fn state(highest_amount: u64, highest_bidder: &str, accepted_bids: u64) -> ModelState {
    ModelState { highest_amount, highest_bidder: highest_bidder.into(), accepted_bids }
}

fn empty() -> ModelState {
    ModelState::default()
}

fn expect_violation(verdict: Verdict) -> Violation {
    match verdict {
        Verdict::Violation(violation) => violation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

fn expect_order(verdict: Verdict) -> Vec<u64> {
    match verdict {
        Verdict::Linearizable { order } => order,
        other => panic!("expected linearizable, got {other:?}"),
    }
}

fn position(order: &[u64], id: u64) -> usize {
    order.iter().position(|x| *x == id).unwrap_or_else(|| panic!("op {id} not in {order:?}"))
}
