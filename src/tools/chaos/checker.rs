//! Decides whether a chaos [`History`] could have come from one correct auction.
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

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::history::{BidVerdict, History, Operation, OperationKind, Outcome};

/// How many search steps [`check_linearizable`] takes before giving up with
/// [`Verdict::Inconclusive`]. A good history of 50,000 operations from 8 clients takes
/// well under a million, and pinning down a violation in one a few million; this budget
/// bounds a pathological search to seconds and a few hundred megabytes (release build).
pub const DEFAULT_SEARCH_BUDGET: u64 = 50_000_000;

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
/// [`check_exactly_once`]; here it catches a final state that no run of this history
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
/// are inconsistent with any single application are [`check_linearizable`]'s job.
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

// ---------------------------------------------------------------------------------------
// Reporting helpers shared by the checks.

/// Lists of operations in a report are capped so it stays readable.
const MAX_LISTED: usize = 16;
/// How many operations that finished just before the culprit a report shows.
const PREDECESSORS_LISTED: usize = 4;
/// How many Unknown bids bearing on the culprit a report shows.
const IN_DOUBT_LISTED: usize = 8;
/// How many distinct model states at the stuck point a message lists.
const STATES_LISTED: usize = 4;

fn malformed(problem: String) -> Violation {
    Violation { message: format!("malformed history: {problem}"), operations: Vec::new() }
}

fn sorted_ids(ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn more_suffix(count: usize, what: &str) -> String {
    match count {
        0 => String::new(),
        1 => format!(" (and 1 more {what})"),
        _ => format!(" (and {count} more {what}s)"),
    }
}

/// Bids with the given verdict (`None`: bids with an Unknown outcome), with bidder and amount.
fn bids_with_verdict(history: &History, wanted: Option<BidVerdict>) -> Vec<(&Operation, &str, u64)> {
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

fn describe_state(state: &ModelState) -> String {
    describe_highest(state.highest_amount, &state.highest_bidder, Some(state.accepted_bids))
}

fn describe_highest(amount: u64, bidder: &str, accepted: Option<u64>) -> String {
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
fn describe_operation(operation: &Operation) -> String {
    match &operation.kind {
        OperationKind::Bid { bidder, amount } => {
            format!("bid at op {} (client {}, {bidder} bids {amount})", operation.id, operation.client)
        }
        OperationKind::Result => {
            format!("read at op {} (client {})", operation.id, operation.client)
        }
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
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

fn format_micros(micros: u64) -> String {
    format!("{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
}

fn render_operation(operation: &Operation) -> String {
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

/// Answers the model can give in no state at all: reported before searching, because the
/// search would only say "stuck here" where the reason is simply the answer itself.
fn impossible_answers(history: &History) -> Option<Violation> {
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

// ---------------------------------------------------------------------------------------
// The linearizability search.

/// Bidder names are interned so the model state is small and `Copy`: the search copies
/// and hashes it at every step.
type BidderId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Snapshot {
    highest_amount: u64,
    highest_bidder: BidderId,
    accepted_bids: u64,
}

/// What an operation's answer requires of the state it is placed in.
#[derive(Debug, Clone, Copy)]
enum Expectation {
    /// The bid must raise the highest (its report was checked to name itself).
    Succeeded { bidder: BidderId, amount: u64 },
    /// The bid must not raise the highest, and the highest must be the one reported.
    Failed { amount: u64, reported: (u64, BidderId) },
    /// No answer: placed only where it raises the highest. Placing it where it would fail
    /// changes nothing, which is the same as leaving it out, and leaving it out is allowed;
    /// refusing those placements keeps the search from exploring identical futures twice
    /// (and lets the search set such a bid aside for good, see [`Undo::SetAside`]).
    InDoubt { bidder: BidderId, amount: u64 },
    /// The state must be exactly the one read.
    Read(Snapshot),
}

impl Expectation {
    /// The highest amount the state must have right after this operation, for an answered
    /// one; since the highest never falls, it must not be exceeded before the operation is
    /// placed either.
    fn required_highest(&self) -> u64 {
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
fn apply(state: Snapshot, expectation: &Expectation) -> Option<Snapshot> {
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

/// Where an operation lives in [`PlacedSet`]: answered operations are numbered in
/// invocation order so the set can be stored as a prefix plus a small window; Unknown ones
/// need no place there at all (see [`MemoKey`]).
#[derive(Debug, Clone, Copy)]
enum Slot {
    Answered(usize),
    InDoubt,
}

#[derive(Debug)]
struct SearchOp {
    id: u64,
    history_index: usize,
    invoked_us: u64,
    /// `None` for Unknown outcomes: the effect, if any, is not bounded in time.
    answered_us: Option<u64>,
    expectation: Expectation,
    slot: Slot,
}

/// The history reduced to what the search needs, sorted by invocation.
struct Prepared {
    ops: Vec<SearchOp>,
    answered_count: usize,
    initial: Snapshot,
    bidder_names: Vec<String>,
}

impl Prepared {
    fn new(history: &History, initial: &ModelState) -> Prepared {
        let mut bidder_ids: HashMap<String, BidderId> = HashMap::new();
        let mut bidder_names: Vec<String> = Vec::new();
        let mut intern = |name: &str| -> BidderId {
            if let Some(id) = bidder_ids.get(name) {
                return *id;
            }
            let id = bidder_names.len() as BidderId;
            bidder_names.push(name.to_string());
            bidder_ids.insert(name.to_string(), id);
            id
        };
        let initial_snapshot = Snapshot {
            highest_amount: initial.highest_amount,
            highest_bidder: intern(&initial.highest_bidder),
            accepted_bids: initial.accepted_bids,
        };

        let mut ops = Vec::with_capacity(history.operations.len());
        for (history_index, operation) in history.operations.iter().enumerate() {
            let expectation = match (&operation.kind, &operation.outcome) {
                (OperationKind::Bid { bidder, amount }, Outcome::Bid { verdict, highest_amount, highest_bidder }) => {
                    match verdict {
                        BidVerdict::Success => Expectation::Succeeded { bidder: intern(bidder), amount: *amount },
                        // EXCEPTION answers were rejected before preparing; were one to get
                        // here it would demand a state that can never match, like FAIL.
                        BidVerdict::Fail | BidVerdict::Exception => {
                            Expectation::Failed { amount: *amount, reported: (*highest_amount, intern(highest_bidder)) }
                        }
                    }
                }
                (OperationKind::Bid { bidder, amount }, Outcome::Unknown) => {
                    // The highest never falls, so a bid in doubt at or below the initial
                    // highest can never take effect: leave it out of the search.
                    if *amount <= initial.highest_amount {
                        continue;
                    }
                    Expectation::InDoubt { bidder: intern(bidder), amount: *amount }
                }
                (OperationKind::Result, Outcome::Result { highest_amount, highest_bidder, accepted_bids }) => {
                    Expectation::Read(Snapshot {
                        highest_amount: *highest_amount,
                        highest_bidder: intern(highest_bidder),
                        accepted_bids: *accepted_bids,
                    })
                }
                // A read with no answer neither changes nor shows anything. Mismatched
                // kinds were rejected by validation.
                _ => continue,
            };
            ops.push(SearchOp {
                id: operation.id,
                history_index,
                invoked_us: operation.invoked_us,
                answered_us: operation.answered_at(),
                expectation,
                slot: Slot::Answered(0),
            });
        }
        ops.sort_by_key(|op| (op.invoked_us, op.id));

        let mut answered_count = 0;
        for op in &mut ops {
            op.slot = if op.answered_us.is_some() {
                answered_count += 1;
                Slot::Answered(answered_count - 1)
            } else {
                Slot::InDoubt
            };
        }
        Prepared { ops, answered_count, initial: initial_snapshot, bidder_names }
    }

    fn describe_snapshot(&self, snapshot: &Snapshot) -> String {
        let bidder = self.bidder_names.get(snapshot.highest_bidder as usize).map_or("?", String::as_str);
        describe_highest(snapshot.highest_amount, bidder, Some(snapshot.accepted_bids))
    }
}

/// The answered operations placed so far on the current search path.
///
/// The memo key must identify this set exactly, and a full bitset per memo entry would
/// cost n/8 bytes each (6 KB at 50,000 operations). But answered operations are placed
/// nearly in invocation order: one can be placed only before the first pending answer,
/// so everything placed beyond the first unplaced answered operation was invoked while
/// that one was running. The set is therefore stored as that prefix length plus the few
/// placed operations beyond it.
///
/// It also tracks the lowest highest amount that an unplaced answered operation still
/// requires (see [`Expectation::required_highest`]): the highest never falls, so a path
/// that raises it above that is dead.
struct PlacedSet {
    answered_bits: Vec<u64>,
    answered_placed: usize,
    /// Every answered operation below this index is placed; the one at it is not.
    answered_prefix: usize,
    answered_total: usize,
    requirements: MinTree,
}

/// One memoized configuration: which answered operations are placed, and the model state
/// after them. Two paths reaching the same key have the same futures, so the second one
/// need not be explored.
///
/// Which Unknown bids are placed is deliberately not part of the key, because it does not
/// change the futures. The highest never falls, so a placed bid is at or below the
/// current highest and can never take effect again, while every bid above the current
/// highest is unplaced. So the bids in doubt still able to take effect are those above
/// the highest (among those already invoked, which the answered set decides), whatever
/// subset was placed to get there. Keying on the subset would make the memo miss on
/// equivalent configurations, and grow with every subset of a burst of Unknown bids.
#[derive(Debug, PartialEq, Eq, Hash)]
struct MemoKey {
    state: Snapshot,
    answered_prefix: u32,
    answered_beyond_prefix: Box<[u32]>,
}

fn has_bit(bits: &[u64], index: usize) -> bool {
    bits[index / 64] & (1 << (index % 64)) != 0
}

impl PlacedSet {
    /// `requirements[i]` is the required highest of answered operation `i`.
    fn new(requirements: Vec<u64>) -> PlacedSet {
        let answered_total = requirements.len();
        PlacedSet {
            answered_bits: vec![0; answered_total.div_ceil(64)],
            answered_placed: 0,
            answered_prefix: 0,
            answered_total,
            requirements: MinTree::new(requirements),
        }
    }

    /// The smallest required highest among answered operations not yet placed.
    fn lowest_requirement_unplaced(&self) -> u64 {
        self.requirements.min()
    }

    fn all_answered_placed(&self) -> bool {
        self.answered_placed == self.answered_total
    }

    /// Adds an operation; returns the prefix length to hand back to [`PlacedSet::remove`].
    fn insert(&mut self, slot: Slot) -> usize {
        let previous_prefix = self.answered_prefix;
        if let Slot::Answered(index) = slot {
            self.answered_bits[index / 64] |= 1 << (index % 64);
            self.answered_placed += 1;
            self.requirements.hide(index);
            while self.answered_prefix < self.answered_total && has_bit(&self.answered_bits, self.answered_prefix) {
                self.answered_prefix += 1;
            }
        }
        previous_prefix
    }

    /// Undoes the matching [`PlacedSet::insert`]; removals come in reverse order of
    /// insertions (the search is a stack), so restoring the saved prefix is exact.
    fn remove(&mut self, slot: Slot, previous_prefix: usize) {
        if let Slot::Answered(index) = slot {
            self.answered_bits[index / 64] &= !(1 << (index % 64));
            self.answered_placed -= 1;
            self.requirements.restore(index);
        }
        self.answered_prefix = previous_prefix;
    }

    fn key(&self, state: Snapshot) -> MemoKey {
        let wanted = self.answered_placed - self.answered_prefix;
        let mut beyond = Vec::with_capacity(wanted);
        if wanted > 0 {
            // Bit `answered_prefix` is clear, so start just after it. There are `wanted`
            // set bits beyond it, so the scan ends inside the bitset.
            let start = self.answered_prefix + 1;
            let mut word_index = start / 64;
            let mut word = self.answered_bits[word_index] & (u64::MAX << (start % 64));
            loop {
                while word != 0 {
                    beyond.push((word_index * 64) as u32 + word.trailing_zeros());
                    word &= word - 1;
                }
                if beyond.len() >= wanted {
                    break;
                }
                word_index += 1;
                word = self.answered_bits[word_index];
            }
        }
        MemoKey {
            state,
            answered_prefix: self.answered_prefix as u32,
            answered_beyond_prefix: beyond.into_boxed_slice(),
        }
    }
}

/// A segment tree answering "smallest value not hidden", with hide and restore in
/// O(log n): the search hides an operation's requirement when it places it.
struct MinTree {
    values: Vec<u64>,
    /// `nodes[1]` is the root; leaves start at `leaves`; hidden leaves hold `u64::MAX`.
    nodes: Vec<u64>,
    leaves: usize,
}

impl MinTree {
    fn new(values: Vec<u64>) -> MinTree {
        let leaves = values.len().next_power_of_two();
        let mut nodes = vec![u64::MAX; 2 * leaves];
        nodes[leaves..leaves + values.len()].copy_from_slice(&values);
        for node in (1..leaves).rev() {
            nodes[node] = nodes[2 * node].min(nodes[2 * node + 1]);
        }
        MinTree { values, nodes, leaves }
    }

    fn min(&self) -> u64 {
        self.nodes.get(1).copied().unwrap_or(u64::MAX)
    }

    fn hide(&mut self, index: usize) {
        self.set(index, u64::MAX);
    }

    fn restore(&mut self, index: usize) {
        self.set(index, self.values[index]);
    }

    fn set(&mut self, index: usize, value: u64) {
        let mut node = self.leaves + index;
        self.nodes[node] = value;
        while node > 1 {
            node /= 2;
            self.nodes[node] = self.nodes[2 * node].min(self.nodes[2 * node + 1]);
        }
    }
}

/// FxHash (as in rustc): the memo is hashed at every step, the keys are not attacker
/// controlled, and SipHash would cost more than the rest of the step.
#[derive(Default)]
struct FastHasher {
    hash: u64,
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FastBuildHasher = BuildHasherDefault<FastHasher>;

/// Marks the end of the event list.
const NIL: usize = usize::MAX;
/// Node 0 is the head sentinel of the event list.
const HEAD: usize = 0;

/// One entry of the search stack: what was done on the current path, and how to take it
/// back. Undone strictly in reverse, which the dancing links require.
enum Undo {
    /// An operation placed next, with the state and prefix before it.
    Placed { call_node: usize, state_before: Snapshot, prefix_before: usize },
    /// A bid in doubt taken out of the event list because it can no longer take effect on
    /// this path (its amount is at or below the highest, which never falls). Without this
    /// every walk from the front would step over every dead Unknown bid invoked so far.
    SetAside { call_node: usize },
}

/// The furthest point (in time) at which a search path found an answered operation due and
/// could not place it; every path gets stuck no later than this.
struct StuckPoint {
    return_node: usize,
    op: usize,
    states: Vec<Snapshot>,
}

enum SearchEnd {
    /// Indices into `Prepared::ops`, in linearization order.
    Found(Vec<usize>),
    Stuck(Option<StuckPoint>),
    OutOfBudget(u64),
}

/// The doubly linked list of call and return events, sorted by time. Placing an
/// operation lifts its two events out; backtracking puts them back (dancing links), so
/// the list always holds exactly the unplaced operations and the search only ever looks
/// at its front.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node (the head excepted): the operation, and whether it is its call.
    op_of: Vec<usize>,
    is_call: Vec<bool>,
    /// For each operation: the node of its return.
    return_of: Vec<usize>,
}

impl EventList {
    fn new(ops: &[SearchOp]) -> EventList {
        // Calls sort before returns at the same instant, so operations that merely touch
        // in time count as concurrent (the lenient reading of a microsecond clock).
        // Unknown operations return after everything, even an answer stamped u64::MAX.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (index, op) in ops.iter().enumerate() {
            events.push((op.invoked_us, 0, index));
            match op.answered_us {
                Some(answered) => events.push((answered, 1, index)),
                None => events.push((u64::MAX, 2, index)),
            }
        }
        events.sort_unstable();

        let nodes = events.len() + 1;
        let mut op_of = vec![NIL; nodes];
        let mut is_call = vec![false; nodes];
        let mut return_of = vec![NIL; ops.len()];
        for (position, &(_, rank, op)) in events.iter().enumerate() {
            let node = position + 1;
            op_of[node] = op;
            if rank == 0 {
                is_call[node] = true;
            } else {
                return_of[op] = node;
            }
        }
        EventList {
            next: (1..=nodes).map(|node| if node < nodes { node } else { NIL }).collect(),
            prev: (0..nodes).map(|node| node.checked_sub(1).unwrap_or(NIL)).collect(),
            op_of,
            is_call,
            return_of,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, call_node: usize) {
        let return_node = self.return_of[self.op_of[call_node]];
        self.unlink(call_node);
        self.unlink(return_node);
    }

    fn unlift(&mut self, call_node: usize) {
        let return_node = self.return_of[self.op_of[call_node]];
        self.relink(return_node);
        self.relink(call_node);
    }
}

/// Wing & Gong's search with Lowe's memoization, in Porcupine's iterative form. Walk the
/// event list from the front; at a call, try to place that operation next (the model must
/// accept its answer, and the resulting configuration must be new to the memo); at a return,
/// the operation is due and unplaced, so this path is dead: take back the last placement
/// and try the next candidate after it. Success once every answered operation is placed:
/// Unknown ones left over are taken not to have happened (equivalently, to have happened at
/// the very end, which nothing observed).
///
/// Also returns the number of steps taken.
fn search(prepared: &Prepared, max_steps: u64) -> (SearchEnd, u64) {
    let ops = &prepared.ops;
    let mut events = EventList::new(ops);
    let requirements: Vec<u64> = ops
        .iter()
        .filter(|op| matches!(op.slot, Slot::Answered(_)))
        .map(|op| op.expectation.required_highest())
        .collect();
    debug_assert_eq!(requirements.len(), prepared.answered_count);
    let mut placed = PlacedSet::new(requirements);
    let mut memo: HashSet<MemoKey, FastBuildHasher> = HashSet::default();
    let mut undo: Vec<Undo> = Vec::new();
    let mut state = prepared.initial;
    let mut entry = events.next[HEAD];
    let mut steps: u64 = 0;
    let mut furthest: Option<StuckPoint> = None;

    loop {
        if placed.all_answered_placed() {
            let order = undo
                .iter()
                .filter_map(|done| match done {
                    Undo::Placed { call_node, .. } => Some(events.op_of[*call_node]),
                    Undo::SetAside { .. } => None,
                })
                .collect();
            return (SearchEnd::Found(order), steps);
        }
        if steps >= max_steps {
            return (SearchEnd::OutOfBudget(steps), steps);
        }
        steps += 1;

        // While answered operations remain, one of their returns is still in the list and
        // comes before every Unknown return, so the walk meets a return before the end;
        // `entry == NIL` is handled like a return only for robustness.
        if entry != NIL && events.is_call[entry] {
            let op = &ops[events.op_of[entry]];
            if let Expectation::InDoubt { amount, .. } = op.expectation {
                if amount <= state.highest_amount {
                    // The walk never reaches an Unknown return while answered operations
                    // remain, so the node after this one is still in the list.
                    events.lift(entry);
                    undo.push(Undo::SetAside { call_node: entry });
                    entry = events.next[entry];
                    continue;
                }
                if amount > placed.lowest_requirement_unplaced() {
                    // Taking effect now would raise the highest beyond what some answered
                    // operation still needs to see: a dead path, however long. Without
                    // this, a burst of lost bids above every later amount would make the
                    // search try every increasing chain of them at every point. (Answered
                    // operations are not pruned this way, so that a violation is reported
                    // at the operation whose answer is wrong.)
                    entry = events.next[entry];
                    continue;
                }
            }
            if let Some(after) = apply(state, &op.expectation) {
                let prefix_before = placed.insert(op.slot);
                if memo.insert(placed.key(after)) {
                    undo.push(Undo::Placed { call_node: entry, state_before: state, prefix_before });
                    state = after;
                    events.lift(entry);
                    entry = events.next[HEAD];
                    continue;
                }
                placed.remove(op.slot, prefix_before);
            }
            entry = events.next[entry];
        } else {
            if entry != NIL {
                note_stuck(&mut furthest, entry, events.op_of[entry], state);
            }
            // Take back what was set aside since the last placement, then the placement,
            // and go on with the candidate after it.
            loop {
                match undo.pop() {
                    None => return (SearchEnd::Stuck(furthest), steps),
                    Some(Undo::SetAside { call_node }) => events.unlift(call_node),
                    Some(Undo::Placed { call_node, state_before, prefix_before }) => {
                        placed.remove(ops[events.op_of[call_node]].slot, prefix_before);
                        state = state_before;
                        events.unlift(call_node);
                        entry = events.next[call_node];
                        break;
                    }
                }
            }
        }
    }
}

fn note_stuck(furthest: &mut Option<StuckPoint>, return_node: usize, op: usize, state: Snapshot) {
    match furthest {
        Some(point) if point.return_node > return_node => {}
        Some(point) if point.return_node == return_node => {
            if point.states.len() < STATES_LISTED && !point.states.contains(&state) {
                point.states.push(state);
            }
        }
        _ => {
            *furthest = Some(StuckPoint { return_node, op, states: vec![state] });
        }
    }
}

/// Turns the furthest stuck point into a message about the operation that could not be
/// placed, with the operations around it.
fn stuck_violation(history: &History, prepared: &Prepared, stuck: Option<StuckPoint>) -> Violation {
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
fn neighbourhood(history: &History, culprit: &Operation, lowest_reached_highest: u64) -> Vec<u64> {
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

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

    // ----- an independent, naive model and order checker -----

    /// The model written out on its own, on full `ModelState`s, to cross-check the search.
    fn naive_apply(state: &ModelState, operation: &Operation) -> Option<ModelState> {
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
                        (verdict_fits
                            && after.highest_amount == *highest_amount
                            && after.highest_bidder == *highest_bidder)
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
    fn precedes(a: &Operation, b: &Operation) -> bool {
        a.answered_at().is_some_and(|answered| answered < b.invoked_us)
    }

    /// Panics unless `order` is a valid linearization: every answered operation exactly
    /// once, only Unknown operations besides, real time respected, the model satisfied.
    fn assert_valid_order(history: &History, initial: &ModelState, order: &[u64]) {
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
            current = naive_apply(&current, by_id[id])
                .unwrap_or_else(|| panic!("op {id} does not fit the model at {current:?}"));
        }
    }

    /// Tries every subset of the Unknown bids and every order: only for tiny histories.
    fn brute_force_linearizable(history: &History, initial: &ModelState) -> bool {
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

    fn some_order_fits(chosen: &[&Operation], used: &mut [bool], current: &ModelState) -> bool {
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

    // ----- simulated runs -----

    /// Deterministic pseudo-random numbers (Knuth's MMIX LCG), so failures reproduce.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    struct Simulation {
        seed: u64,
        operations: usize,
        clients: usize,
        /// Each step of an operation in flight gives up with probability 1/this.
        give_up_one_in: u64,
        max_in_doubt: usize,
        /// Smallest clock advance per event; 0 makes events share timestamps.
        min_tick: u64,
        /// Amounts from {10, 20, 30, 40} and two bidders, so tiny histories collide often.
        tiny_domain: bool,
        /// Every `.0` microseconds the servers are down for `.1`: clients give up on what
        /// they have in flight far more often, as when a primary crashes.
        outages: Option<(u64, u64)>,
    }

    struct Simulated {
        history: History,
        final_state: ModelState,
        /// For each bid that took effect, the state just before it did.
        state_before: HashMap<u64, ModelState>,
    }

    /// A real sequential execution spread over concurrent clients: each operation takes
    /// effect at one instant strictly inside [invocation, completion], so the history is
    /// linearizable by construction. Clients give up on some operations (Unknown), whose
    /// effect happened already, happens later, or never.
    fn simulate(config: &Simulation) -> Simulated {
        let names: &[&str] = if config.tiny_domain { &["a", "b"] } else { &["alice", "bob", "carol", "dave", "erin"] };
        let mut rng = Lcg(config.seed);
        let mut current = ModelState::default();
        let mut operations: Vec<Operation> = Vec::new();
        // Per client: the operation in flight and whether it has taken effect.
        let mut in_flight: Vec<Option<(usize, bool)>> = vec![None; config.clients];
        let mut delayed_effects: Vec<(u64, usize)> = Vec::new();
        let mut state_before = HashMap::new();
        let mut in_doubt = 0;
        let mut now = 0;

        let take_effect =
            |current: &mut ModelState, state_before: &mut HashMap<u64, ModelState>, operation: &Operation| -> Outcome {
                match &operation.kind {
                    OperationKind::Bid { bidder, amount } => {
                        let succeeds = *amount > current.highest_amount;
                        if succeeds {
                            state_before.insert(operation.id, current.clone());
                            *current = ModelState {
                                highest_amount: *amount,
                                highest_bidder: bidder.clone(),
                                accepted_bids: current.accepted_bids + 1,
                            };
                        }
                        Outcome::Bid {
                            verdict: if succeeds { BidVerdict::Success } else { BidVerdict::Fail },
                            highest_amount: current.highest_amount,
                            highest_bidder: current.highest_bidder.clone(),
                        }
                    }
                    OperationKind::Result => Outcome::Result {
                        highest_amount: current.highest_amount,
                        highest_bidder: current.highest_bidder.clone(),
                        accepted_bids: current.accepted_bids,
                    },
                }
            };

        while operations.len() < config.operations || in_flight.iter().any(Option::is_some) {
            now += config.min_tick + rng.below(3);
            let mut index = 0;
            while index < delayed_effects.len() {
                if delayed_effects[index].0 <= now {
                    let (_, op) = delayed_effects.swap_remove(index);
                    take_effect(&mut current, &mut state_before, &operations[op]);
                } else {
                    index += 1;
                }
            }

            let client = rng.below(config.clients as u64) as usize;
            match in_flight[client] {
                None => {
                    if operations.len() >= config.operations {
                        continue;
                    }
                    let kind = if rng.below(10) < 3 {
                        OperationKind::Result
                    } else {
                        let amount = if config.tiny_domain {
                            10 * (1 + rng.below(4))
                        } else {
                            (current.highest_amount + rng.below(150)).saturating_sub(50).max(1)
                        };
                        OperationKind::Bid { bidder: names[rng.below(names.len() as u64) as usize].to_string(), amount }
                    };
                    in_flight[client] = Some((operations.len(), false));
                    operations.push(Operation {
                        id: operations.len() as u64,
                        client: client as u32,
                        kind,
                        invoked_us: now,
                        completed_us: None,
                        outcome: Outcome::Unknown,
                    });
                }
                Some((op, taken_effect)) => {
                    let down = config.outages.is_some_and(|(every, length)| now % every < length);
                    let give_up_one_in = if down { 4 } else { config.give_up_one_in };
                    if in_doubt < config.max_in_doubt && rng.below(give_up_one_in) == 0 {
                        in_doubt += 1;
                        operations[op].outcome = Outcome::Unknown;
                        let is_bid = matches!(operations[op].kind, OperationKind::Bid { .. });
                        if !taken_effect && is_bid && rng.below(2) == 0 {
                            delayed_effects.push((now + 1 + rng.below(3_000), op));
                        }
                        in_flight[client] = None;
                    } else if !taken_effect {
                        let outcome = take_effect(&mut current, &mut state_before, &operations[op]);
                        operations[op].outcome = outcome;
                        in_flight[client] = Some((op, true));
                    } else {
                        operations[op].completed_us = Some(now);
                        in_flight[client] = None;
                    }
                }
            }
        }
        for (_, op) in delayed_effects {
            take_effect(&mut current, &mut state_before, &operations[op]);
        }
        Simulated { history: History { operations }, final_state: current, state_before }
    }

    // ----- good histories pass -----

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check_linearizable(&History::default(), &empty()), Verdict::Linearizable { order: Vec::new() });
    }

    #[test]
    fn sequential_good_history_is_linearizable() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            read(1, 1, (20, 30), (100, "alice", 1)),
            fail(2, 1, "bob", 90, (40, 50), (100, "alice")),
            success(3, 0, "bob", 150, (60, 70)),
            read(4, 0, (80, 90), (150, "bob", 2)),
        ]);
        assert_eq!(expect_order(check_linearizable(&h, &empty())), vec![0, 1, 2, 3, 4]);
        assert_eq!(check_durability(&h, &empty(), &state(150, "bob", 2)), Ok(()));
        assert_eq!(check_exactly_once(&h, &empty(), &state(150, "bob", 2)), Ok(()));
    }

    #[test]
    fn concurrent_history_needing_a_non_trivial_order_is_linearizable() {
        // Three concurrent bids invoked highest first: the only order that lets all three
        // succeed is the reverse of invocation, and the read and the FAIL pin carol's bid
        // between bob's and alice's.
        let h = history(vec![
            success(0, 0, "alice", 300, (0, 100)),
            success(1, 1, "carol", 200, (1, 100)),
            success(2, 2, "bob", 100, (2, 100)),
            fail(3, 3, "dave", 150, (3, 98), (200, "carol")),
            read(4, 4, (5, 95), (200, "carol", 2)),
            read(5, 4, (110, 120), (300, "alice", 3)),
        ]);
        let order = expect_order(check_linearizable(&h, &empty()));
        assert_valid_order(&h, &empty(), &order);
        assert!(position(&order, 2) < position(&order, 1));
        assert!(position(&order, 1) < position(&order, 4));
        assert!(position(&order, 4) < position(&order, 0));
        assert!(position(&order, 3) < position(&order, 0));
    }

    #[test]
    fn read_concurrent_with_a_bid_may_see_the_old_highest() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            success(1, 0, "bob", 200, (40, 50)),
            read(2, 1, (45, 70), (100, "alice", 1)),
        ]);
        let order = expect_order(check_linearizable(&h, &empty()));
        assert_valid_order(&h, &empty(), &order);
    }

    #[test]
    fn initial_state_is_respected() {
        let initial = state(500, "zed", 7);
        let h = history(vec![
            fail(0, 0, "bob", 400, (0, 10), (500, "zed")),
            read(1, 1, (20, 30), (500, "zed", 7)),
            success(2, 0, "alice", 600, (40, 50)),
            read(3, 1, (60, 70), (600, "alice", 8)),
        ]);
        assert_valid_order(&h, &initial, &expect_order(check_linearizable(&h, &initial)));
        assert_eq!(check_durability(&h, &initial, &state(600, "alice", 8)), Ok(()));
        assert_eq!(check_exactly_once(&h, &initial, &state(600, "alice", 8)), Ok(()));

        // The same bid of 400 cannot succeed over an initial highest of 500.
        let h = history(vec![success(0, 0, "bob", 400, (0, 10))]);
        let violation = expect_violation(check_linearizable(&h, &initial));
        assert!(violation.message.contains("bid at op 0"), "{}", violation.message);
        assert!(violation.message.contains("highest 500 by zed"), "{}", violation.message);
    }

    // ----- Unknown outcomes -----

    #[test]
    fn unknown_bid_that_took_effect_passes() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            in_doubt_bid(1, 1, "bob", 200, 20),
            read(2, 0, (30, 40), (100, "alice", 1)),
            read(3, 2, (50, 60), (200, "bob", 2)),
            in_doubt_read(4, 3, 55),
        ]);
        let order = expect_order(check_linearizable(&h, &empty()));
        assert_valid_order(&h, &empty(), &order);
        assert!(position(&order, 2) < position(&order, 1));
        assert!(position(&order, 1) < position(&order, 3));
        assert_eq!(check_durability(&h, &empty(), &state(200, "bob", 2)), Ok(()));
        assert_eq!(check_exactly_once(&h, &empty(), &state(200, "bob", 2)), Ok(()));
    }

    #[test]
    fn unknown_bid_that_never_took_effect_passes() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            in_doubt_bid(1, 1, "bob", 200, 20),
            read(2, 0, (30, 40), (100, "alice", 1)),
            read(3, 2, (1_000, 1_010), (100, "alice", 1)),
            success(4, 0, "carol", 150, (1_020, 1_030)),
            read(5, 2, (1_040, 1_050), (150, "carol", 2)),
        ]);
        let order = expect_order(check_linearizable(&h, &empty()));
        assert_valid_order(&h, &empty(), &order);
        assert!(!order.contains(&1), "bob's bid cannot be in {order:?}");
        assert_eq!(check_durability(&h, &empty(), &state(150, "carol", 2)), Ok(()));
        assert_eq!(check_exactly_once(&h, &empty(), &state(150, "carol", 2)), Ok(()));
    }

    // ----- bad histories are rejected -----

    #[test]
    fn lost_acknowledged_bid_is_a_violation() {
        let h = history(vec![
            success(0, 0, "bob", 50, (0, 10)),
            success(1, 0, "alice", 100, (20, 30)),
            read(2, 1, (40, 50), (50, "bob", 1)),
        ]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(
            violation.message.starts_with("read at op 2 (client 1) saw highest 50 by bob"),
            "{}",
            violation.message
        );
        assert!(violation.message.contains("highest 100 by alice with 2 accepted bids"));
        assert_eq!(violation.operations, vec![0, 1, 2]);
    }

    #[test]
    fn stale_read_after_a_later_bid_is_a_violation() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            read(1, 1, (20, 30), (100, "alice", 1)),
            success(2, 0, "bob", 200, (40, 50)),
            read(3, 1, (60, 70), (100, "alice", 1)),
        ]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.starts_with("read at op 3"), "{}", violation.message);
        assert!(violation.operations.contains(&3));
        assert!(violation.operations.contains(&2));
    }

    #[test]
    fn read_of_a_bid_that_never_succeeded_is_a_violation() {
        // A value nobody bid.
        let h = history(vec![success(0, 0, "alice", 100, (0, 10)), read(1, 1, (20, 30), (300, "carol", 2))]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.contains("read at op 1"), "{}", violation.message);

        // A bid that was answered FAIL.
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            fail(1, 1, "bob", 80, (20, 30), (100, "alice")),
            read(2, 1, (40, 50), (80, "bob", 2)),
        ]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.contains("read at op 2"), "{}", violation.message);
    }

    #[test]
    fn concurrent_success_bids_are_rejected_only_when_no_order_fits() {
        // bob's 100 runs alongside alice's 200. The read (after alice's bid finished)
        // counts one accepted bid, so bob's bid was not yet applied; applied later, a bid
        // of 100 under a highest of 200 must FAIL, yet it was answered SUCCESS.
        let impossible = history(vec![
            success(0, 0, "alice", 200, (0, 10)),
            success(1, 1, "bob", 100, (0, 50)),
            read(2, 2, (20, 30), (200, "alice", 1)),
        ]);
        let violation = expect_violation(check_linearizable(&impossible, &empty()));
        assert!(
            violation.message.starts_with("bid at op 1 (client 1, bob bids 100) was answered SUCCESS"),
            "{}",
            violation.message
        );
        assert!(violation.message.contains("lets it succeed"));
        assert_eq!(violation.operations, vec![0, 1, 2]);

        // Had the read counted two accepted bids, bob's bid went first: fine.
        let possible = history(vec![
            success(0, 0, "alice", 200, (0, 10)),
            success(1, 1, "bob", 100, (0, 50)),
            read(2, 2, (20, 30), (200, "alice", 2)),
        ]);
        let order = expect_order(check_linearizable(&possible, &empty()));
        assert_eq!(order, vec![1, 0, 2]);
    }

    #[test]
    fn bid_applied_twice_is_rejected() {
        // alice's bid of 100 is answered FAIL, reporting itself as the highest: its first
        // attempt (same request id, inside the client library) was applied, and the retry
        // was judged as a new bid.
        let applied_twice = history(vec![
            success(0, 0, "bob", 50, (0, 10)),
            fail(1, 1, "alice", 100, (20, 40), (100, "alice")),
            read(2, 0, (50, 60), (100, "alice", 2)),
        ]);
        let final_state = state(100, "alice", 2);
        let violation = check_exactly_once(&applied_twice, &empty(), &final_state)
            .expect_err("FAIL reporting itself with no other request that could place it");
        assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
        assert!(violation.message.contains("applied twice"));
        assert_eq!(violation.operations, vec![1]);
        let violation = expect_violation(check_linearizable(&applied_twice, &empty()));
        assert!(violation.message.starts_with("bid at op 1"), "{}", violation.message);

        // An earlier, separate request for the same bid that timed out explains it: that
        // one took effect and this one legitimately fails. Indistinguishable, so accepted.
        let explained = history(vec![
            success(0, 0, "bob", 50, (0, 10)),
            in_doubt_bid(1, 1, "alice", 100, 15),
            fail(2, 1, "alice", 100, (20, 40), (100, "alice")),
            read(3, 0, (50, 60), (100, "alice", 2)),
        ]);
        assert_eq!(check_exactly_once(&explained, &empty(), &final_state), Ok(()));
        assert_valid_order(&explained, &empty(), &expect_order(check_linearizable(&explained, &empty())));

        // A same-amount request invoked only after the FAIL was answered explains nothing.
        let too_late = history(vec![
            success(0, 0, "bob", 50, (0, 10)),
            fail(1, 1, "alice", 100, (20, 40), (100, "alice")),
            in_doubt_bid(2, 1, "alice", 100, 45),
            read(3, 0, (50, 60), (100, "alice", 2)),
        ]);
        let violation = check_exactly_once(&too_late, &empty(), &final_state)
            .expect_err("the Unknown bid started after the FAIL was answered");
        assert_eq!(violation.operations, vec![1, 2]);
        expect_violation(check_linearizable(&too_late, &empty()));
    }

    #[test]
    fn final_accepted_bids_beyond_the_history_are_rejected() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            success(1, 1, "bob", 200, (20, 30)),
            fail(2, 2, "carol", 150, (40, 50), (200, "bob")),
        ]);
        // Three accepted, but only two bids could have been accepted.
        let counted_twice = state(200, "bob", 3);
        let violation =
            check_exactly_once(&h, &empty(), &counted_twice).expect_err("3 accepted bids from 2 distinct amounts");
        assert!(violation.message.contains("applied more than once"), "{}", violation.message);
        let violation = check_durability(&h, &empty(), &counted_twice).expect_err("3 accepted bids from 2 possible");
        assert!(violation.message.contains("counts 3 bids"), "{}", violation.message);
        assert_eq!(check_exactly_once(&h, &empty(), &state(200, "bob", 2)), Ok(()));

        // An Unknown bid of a new amount in range could be the third.
        let mut with_doubt = h.clone();
        with_doubt.operations.push(in_doubt_bid(3, 3, "erin", 120, 5));
        assert_eq!(check_exactly_once(&with_doubt, &empty(), &counted_twice), Ok(()));
        assert_eq!(check_durability(&with_doubt, &empty(), &counted_twice), Ok(()));

        // Relative to the initial count: 10 before the run, 2 during it.
        let initial = state(50, "zed", 10);
        assert_eq!(check_exactly_once(&h, &initial, &state(200, "bob", 12)), Ok(()));
        check_exactly_once(&h, &initial, &state(200, "bob", 13)).expect_err("13 - 10 > 2");
    }

    #[test]
    fn durability_failures_are_rejected() {
        let h = history(vec![success(0, 0, "alice", 100, (0, 10)), success(1, 1, "bob", 200, (20, 30))]);
        assert_eq!(check_durability(&h, &empty(), &state(200, "bob", 2)), Ok(()));

        let violation =
            check_durability(&h, &empty(), &state(100, "alice", 2)).expect_err("bob's acknowledged 200 is gone");
        assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
        assert!(violation.message.contains("lost"));
        assert_eq!(violation.operations, vec![1]);

        let violation = check_durability(&h, &empty(), &state(200, "carol", 2))
            .expect_err("the 200 is credited to the wrong bidder");
        assert!(violation.message.contains("bob's"), "{}", violation.message);

        check_durability(&h, &empty(), &state(200, "bob", 1)).expect_err("one acknowledged bid lost");
        check_durability(&h, &empty(), &state(300, "dave", 3)).expect_err("nobody bid 300");

        // ... unless dave's bid of 300 is in doubt, or carol's 200 (same amount) is.
        let mut with_doubt = h.clone();
        with_doubt.operations.push(in_doubt_bid(2, 2, "dave", 300, 25));
        with_doubt.operations.push(in_doubt_bid(3, 3, "carol", 200, 26));
        assert_eq!(check_durability(&with_doubt, &empty(), &state(300, "dave", 3)), Ok(()));
        assert_eq!(check_durability(&with_doubt, &empty(), &state(200, "carol", 2)), Ok(()));

        check_durability(&h, &state(400, "zed", 5), &state(300, "zed", 7))
            .expect_err("below the highest before the run");
    }

    #[test]
    fn exception_answer_is_a_violation() {
        let h = history(vec![
            success(0, 0, "alice", 100, (0, 10)),
            bid_answered(1, 1, "bob", 200, (20, 30), BidVerdict::Exception, (100, "alice")),
        ]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
        assert!(violation.message.contains("EXCEPTION"));
        assert_eq!(violation.operations, vec![1]);
    }

    #[test]
    fn success_not_reporting_itself_is_a_violation() {
        let h = history(vec![bid_answered(0, 0, "alice", 100, (0, 10), BidVerdict::Success, (90, "bob"))]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.contains("not itself"), "{}", violation.message);
    }

    #[test]
    fn malformed_history_is_reported() {
        let mut h = history(vec![success(0, 0, "alice", 100, (0, 10))]);
        h.operations[0].completed_us = None;
        let violation = expect_violation(check_linearizable(&h, &empty()));
        assert!(violation.message.starts_with("malformed history"), "{}", violation.message);
    }

    #[test]
    fn render_violation_lists_each_operation() {
        let h = history(vec![
            success(0, 0, "bob", 50, (0, 10)),
            success(1, 0, "alice", 100, (1_000_020, 1_000_030)),
            in_doubt_bid(2, 2, "carol", 70, 1_000_025),
            read(3, 1, (1_000_040, 1_000_050), (50, "bob", 1)),
        ]);
        let violation = expect_violation(check_linearizable(&h, &empty()));
        let text = render_violation(&h, &violation);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), violation.operations.len(), "{text}");
        assert!(lines[3].starts_with("  op       3  client   1  result"), "{text}");
        assert!(text.contains("bid alice 100"), "{text}");
        assert!(text.contains("1.000020s"), "{text}");
        assert!(text.contains("1.000030s  -> SUCCESS, highest 100 by alice"), "{text}");
        assert!(text.contains("never  -> no answer (unknown)"), "{text}");
        assert!(text.contains("-> highest 50 by bob with 1 accepted bid"), "{text}");

        let missing = Violation { message: "x".into(), operations: vec![99] };
        assert!(render_violation(&h, &missing).contains("op 99: not in the history"));
    }

    // ----- cross-checks against brute force -----

    #[test]
    fn small_random_histories_agree_with_brute_force() {
        let mut rng = Lcg(7);
        let (mut agreed_good, mut agreed_bad) = (0, 0);
        for seed in 0..2_000 {
            let simulated = simulate(&Simulation {
                seed,
                operations: 2 + (seed % 6) as usize,
                clients: 3,
                give_up_one_in: 6,
                max_in_doubt: 2,
                min_tick: 0,
                tiny_domain: true,
                outages: None,
            });
            let mut h = simulated.history;
            // Half the time, corrupt one answer; some corruptions are still explainable.
            if seed % 2 == 1 {
                let answered: Vec<usize> =
                    (0..h.operations.len()).filter(|i| h.operations[*i].answered_at().is_some()).collect();
                if !answered.is_empty() {
                    let target = answered[rng.below(answered.len() as u64) as usize];
                    let choice = rng.below(4);
                    match &mut h.operations[target].outcome {
                        Outcome::Result { highest_amount, highest_bidder, accepted_bids } => match choice {
                            0 => *highest_amount += 10,
                            1 => *highest_amount = highest_amount.saturating_sub(10),
                            2 => *accepted_bids += 1,
                            _ => *highest_bidder = if highest_bidder == "a" { "b" } else { "a" }.into(),
                        },
                        Outcome::Bid { verdict, highest_amount, highest_bidder } => match choice {
                            0 => *verdict = BidVerdict::Fail,
                            1 => *verdict = BidVerdict::Success,
                            2 => *highest_amount += 10,
                            _ => *highest_bidder = if highest_bidder == "a" { "b" } else { "a" }.into(),
                        },
                        Outcome::Unknown => {}
                    }
                }
            }
            // Sometimes start from an auction that already has bids (the simulation does
            // not know, so some of those histories are wrong, which is fine here).
            let initial = if seed % 3 == 0 { state(20, "b", 5) } else { empty() };
            let expected = brute_force_linearizable(&h, &initial);
            match check_linearizable(&h, &initial) {
                Verdict::Linearizable { order } => {
                    assert!(expected, "seed {seed}: checker accepted, brute force did not: {h:?}");
                    assert_valid_order(&h, &initial, &order);
                    agreed_good += 1;
                }
                Verdict::Violation(violation) => {
                    assert!(!expected, "seed {seed}: checker rejected ({}): {h:?}", violation.message);
                    agreed_bad += 1;
                }
                Verdict::Inconclusive { .. } => {
                    panic!("seed {seed}: inconclusive on a tiny history")
                }
            }
        }
        // Both answers must actually be exercised.
        assert!(agreed_good > 200 && agreed_bad > 50, "{agreed_good} good, {agreed_bad} bad");
    }

    // ----- scale -----

    fn large_run() -> Simulated {
        simulate(&Simulation {
            seed: 2024,
            operations: 20_000,
            clients: 8,
            give_up_one_in: 500,
            max_in_doubt: 40,
            min_tick: 1,
            tiny_domain: false,
            outages: Some((25_000, 200)),
        })
    }

    #[test]
    fn large_random_history_passes_and_one_tampered_read_is_rejected() {
        let simulated = large_run();
        let h = &simulated.history;
        let summary = h.summary();
        assert_eq!(summary.total(), 20_000);
        assert!(summary.unknown >= 20, "{summary}");
        assert!(summary.success > 1_000 && summary.fail > 1_000, "{summary}");

        let started = Instant::now();
        let order = expect_order(check_linearizable(h, &empty()));
        let good_time = started.elapsed();
        assert_valid_order(h, &empty(), &order);
        assert_eq!(check_durability(h, &empty(), &simulated.final_state), Ok(()));
        assert_eq!(check_exactly_once(h, &empty(), &simulated.final_state), Ok(()));

        // Tamper with a read half way through: make it return the state from just before
        // the last SUCCESS bid that finished before the read started, which it must see.
        let mut tampered = h.clone();
        let read_index = (h.operations.len() / 2..h.operations.len())
            .find(|i| matches!(h.operations[*i].outcome, Outcome::Result { .. }))
            .expect("some read in the second half");
        let read_invoked = h.operations[read_index].invoked_us;
        let overtaken = h
            .operations
            .iter()
            .filter(|op| {
                matches!(op.outcome, Outcome::Bid { verdict: BidVerdict::Success, .. })
                    && op.answered_at().is_some_and(|t| t < read_invoked)
            })
            .max_by_key(|op| op.answered_at())
            .expect("some SUCCESS before the read");
        let stale = &simulated.state_before[&overtaken.id];
        tampered.operations[read_index].outcome = Outcome::Result {
            highest_amount: stale.highest_amount,
            highest_bidder: stale.highest_bidder.clone(),
            accepted_bids: stale.accepted_bids,
        };
        let tampered_id = h.operations[read_index].id;

        let started = Instant::now();
        let violation = expect_violation(check_linearizable(&tampered, &empty()));
        let bad_time = started.elapsed();
        assert!(violation.message.starts_with(&format!("read at op {tampered_id} ")), "{}", violation.message);
        assert!(violation.operations.contains(&tampered_id));
        assert!(violation.operations.len() <= 1 + MAX_LISTED + IN_DOUBT_LISTED + PREDECESSORS_LISTED);
        eprintln!("{summary}");
        eprintln!("good history of 20,000 operations checked in {good_time:?}");
        eprintln!("tampered history rejected in {bad_time:?}");
        eprintln!("{}\n{}", violation.message, render_violation(&tampered, &violation));
    }

    #[test]
    fn small_budget_gives_inconclusive() {
        let simulated = large_run();
        assert_eq!(
            check_linearizable_with_budget(&simulated.history, &empty(), 1_000),
            Verdict::Inconclusive { explored: 1_000 }
        );
    }

    #[test]
    fn burst_of_lost_bids_above_everything_stays_cheap() {
        // Bids that timed out and never took effect, far above anything bid later: each
        // can "take effect" at any point, and chains of them could be tried at every
        // point. The search prunes them because a later answer needs a lower highest.
        let mut h = large_run().history;
        let good_steps = search(&Prepared::new(&h, &empty()), DEFAULT_SEARCH_BUDGET).1;
        let mut rng = Lcg(99);
        let mut next_id = h.operations.len() as u64;
        for burst in 1..=4u64 {
            let invoked = h.operations[h.operations.len() * burst as usize / 5].invoked_us;
            for client in 0..8 {
                let amount = 1_000_000_000 + rng.below(1_000);
                h.operations.push(in_doubt_bid(next_id, 100 + client, "mallory", amount, invoked + u64::from(client)));
                next_id += 1;
            }
        }
        let started = Instant::now();
        let (end, steps) = search(&Prepared::new(&h, &empty()), DEFAULT_SEARCH_BUDGET);
        assert!(matches!(end, SearchEnd::Found(_)));
        // Stepping over the 32 pruned bids at each point is the only extra work.
        assert!(steps < good_steps * 10, "{steps} steps against {good_steps} without the burst");
        eprintln!("with 32 lost bids: {steps} steps (against {good_steps}) in {:?}", started.elapsed());
    }
}
