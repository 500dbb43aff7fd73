//! The search's memo: the set of placed answered operations, kept small
//! enough to key a hash set at every step ([`PlacedSet`], [`MemoKey`]), and
//! the segment tree that tracks what the unplaced ones still require.

use super::model::Snapshot;

/// Where an operation lives in [`PlacedSet`]: answered operations are numbered in
/// invocation order so the set can be stored as a prefix plus a small window; Unknown ones
/// need no place there at all (see [`MemoKey`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Answered(usize),
    InDoubt,
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
/// requires (see [`Expectation::required_highest`](super::model::Expectation::required_highest)): the highest never falls, so a path
/// that raises it above that is dead.
pub(super) struct PlacedSet {
    pub(super) answered_bits: Vec<u64>,
    pub(super) answered_placed: usize,
    /// Every answered operation below this index is placed; the one at it is not.
    pub(super) answered_prefix: usize,
    pub(super) answered_total: usize,
    pub(super) requirements: MinTree,
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
pub(super) struct MemoKey {
    pub(super) state: Snapshot,
    pub(super) answered_prefix: u32,
    pub(super) answered_beyond_prefix: Box<[u32]>,
}

pub(super) fn has_bit(bits: &[u64], index: usize) -> bool {
    bits[index / 64] & (1 << (index % 64)) != 0
}

impl PlacedSet {
    /// `requirements[i]` is the required highest of answered operation `i`.
    pub(super) fn new(requirements: Vec<u64>) -> PlacedSet {
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
    pub(super) fn lowest_requirement_unplaced(&self) -> u64 {
        self.requirements.min()
    }

    pub(super) fn all_answered_placed(&self) -> bool {
        self.answered_placed == self.answered_total
    }

    /// Adds an operation; returns the prefix length to hand back to [`PlacedSet::remove`].
    pub(super) fn insert(&mut self, slot: Slot) -> usize {
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
    pub(super) fn remove(&mut self, slot: Slot, previous_prefix: usize) {
        if let Slot::Answered(index) = slot {
            self.answered_bits[index / 64] &= !(1 << (index % 64));
            self.answered_placed -= 1;
            self.requirements.restore(index);
        }
        self.answered_prefix = previous_prefix;
    }

    pub(super) fn key(&self, state: Snapshot) -> MemoKey {
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
pub(super) struct MinTree {
    pub(super) values: Vec<u64>,
    /// `nodes[1]` is the root; leaves start at `leaves`; hidden leaves hold `u64::MAX`.
    pub(super) nodes: Vec<u64>,
    pub(super) leaves: usize,
}

impl MinTree {
    pub(super) fn new(values: Vec<u64>) -> MinTree {
        let leaves = values.len().next_power_of_two();
        let mut nodes = vec![u64::MAX; 2 * leaves];
        nodes[leaves..leaves + values.len()].copy_from_slice(&values);
        for node in (1..leaves).rev() {
            nodes[node] = nodes[2 * node].min(nodes[2 * node + 1]);
        }
        MinTree { values, nodes, leaves }
    }

    pub(super) fn min(&self) -> u64 {
        self.nodes.get(1).copied().unwrap_or(u64::MAX)
    }

    pub(super) fn hide(&mut self, index: usize) {
        self.set(index, u64::MAX);
    }

    pub(super) fn restore(&mut self, index: usize) {
        self.set(index, self.values[index]);
    }

    pub(super) fn set(&mut self, index: usize, value: u64) {
        let mut node = self.leaves + index;
        self.nodes[node] = value;
        while node > 1 {
            node /= 2;
            self.nodes[node] = self.nodes[2 * node].min(self.nodes[2 * node + 1]);
        }
    }
}
