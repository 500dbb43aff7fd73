//! The linearizability search: the history reduced to what the search
//! needs ([`Prepared`]), the dancing-links event list, and Wing & Gong's
//! search with Lowe's memoization ([`search`]).

use std::collections::HashMap;

use rustc_hash::FxHashSet;

use super::history::{BidVerdict, History, OperationKind, Outcome};
use super::memo::{MemoKey, PlacedSet, Slot};
use super::model::{BidderId, Expectation, ModelState, Snapshot, apply};
use super::render::{STATES_LISTED, describe_highest};

#[derive(Debug)]
pub(super) struct SearchOp {
    pub(super) id: u64,
    pub(super) history_index: usize,
    pub(super) invoked_us: u64,
    /// `None` for Unknown outcomes: the effect, if any, is not bounded in time.
    pub(super) answered_us: Option<u64>,
    pub(super) expectation: Expectation,
    pub(super) slot: Slot,
}

/// The history reduced to what the search needs, sorted by invocation.
pub(super) struct Prepared {
    pub(super) ops: Vec<SearchOp>,
    pub(super) answered_count: usize,
    pub(super) initial: Snapshot,
    pub(super) bidder_names: Vec<String>,
}

impl Prepared {
    pub(super) fn new(history: &History, initial: &ModelState) -> Prepared {
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

    pub(super) fn describe_snapshot(&self, snapshot: &Snapshot) -> String {
        let bidder = self.bidder_names.get(snapshot.highest_bidder as usize).map_or("?", String::as_str);
        describe_highest(snapshot.highest_amount, bidder, Some(snapshot.accepted_bids))
    }
}

/// Marks the end of the event list.
pub(super) const NIL: usize = usize::MAX;
/// Node 0 is the head sentinel of the event list.
pub(super) const HEAD: usize = 0;

/// One entry of the search stack: what was done on the current path, and how to take it
/// back. Undone strictly in reverse, which the dancing links require.
pub(super) enum Undo {
    /// An operation placed next, with the state and prefix before it.
    Placed { call_node: usize, state_before: Snapshot, prefix_before: usize },
    /// A bid in doubt taken out of the event list because it can no longer take effect on
    /// this path (its amount is at or below the highest, which never falls). Without this
    /// every walk from the front would step over every dead Unknown bid invoked so far.
    SetAside { call_node: usize },
}

/// The furthest point (in time) at which a search path found an answered operation due and
/// could not place it; every path gets stuck no later than this.
pub(super) struct StuckPoint {
    pub(super) return_node: usize,
    pub(super) op: usize,
    pub(super) states: Vec<Snapshot>,
}

pub(super) enum SearchEnd {
    /// Indices into `Prepared::ops`, in linearization order.
    Found(Vec<usize>),
    Stuck(Option<StuckPoint>),
    OutOfBudget(u64),
}

/// The doubly linked list of call and return events, sorted by time. Placing an
/// operation lifts its two events out; backtracking puts them back (dancing links), so
/// the list always holds exactly the unplaced operations and the search only ever looks
/// at its front.
pub(super) struct EventList {
    pub(super) next: Vec<usize>,
    pub(super) prev: Vec<usize>,
    /// For each node (the head excepted): the operation, and whether it is its call.
    pub(super) op_of: Vec<usize>,
    pub(super) is_call: Vec<bool>,
    /// For each operation: the node of its return.
    pub(super) return_of: Vec<usize>,
}

impl EventList {
    pub(super) fn new(ops: &[SearchOp]) -> EventList {
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

    pub(super) fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    pub(super) fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    pub(super) fn lift(&mut self, call_node: usize) {
        let return_node = self.return_of[self.op_of[call_node]];
        self.unlink(call_node);
        self.unlink(return_node);
    }

    pub(super) fn unlift(&mut self, call_node: usize) {
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
pub(super) fn search(prepared: &Prepared, max_steps: u64) -> (SearchEnd, u64) {
    let ops = &prepared.ops;
    let mut events = EventList::new(ops);
    let requirements: Vec<u64> = ops
        .iter()
        .filter(|op| matches!(op.slot, Slot::Answered(_)))
        .map(|op| op.expectation.required_highest())
        .collect();
    debug_assert_eq!(requirements.len(), prepared.answered_count);
    let mut placed = PlacedSet::new(requirements);
    // FxHash: the memo is hashed at every step, the keys are not attacker
    // controlled, and SipHash would cost more than the rest of the step.
    let mut memo: FxHashSet<MemoKey> = FxHashSet::default();
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

pub(super) fn note_stuck(furthest: &mut Option<StuckPoint>, return_node: usize, op: usize, state: Snapshot) {
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
