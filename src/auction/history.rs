//! An auction's accepted bids: a persistent list that the copies of the
//! state share, small for the many auctions with a few bids.
//!
//! A plain `imbl::Vector` allocates a whole chunk of 64 bids (3 KiB) from
//! its second bid on: over 20,000 auctions of a few bids each, that was
//! most of a node's memory. Here the latest bids sit in a small vector
//! that grows as bids come, and every full run of [`RUN`] bids moves into
//! the shared vector, whose chunks it then fills exactly.

use std::sync::Arc;

use imbl::Vector;

use super::AcceptedBid;

/// The bids the recent part holds before they move, as a run, into the
/// shared part. A copy of the state that shares the recent part makes the
/// next bid copy at most this many.
const RUN: usize = 64;

/// An auction's accepted bids, oldest first, in revision order.
#[derive(Clone, Debug, Default)]
pub struct BidHistory {
    /// Whole runs of bids; its length is a multiple of [`RUN`].
    sealed: Vector<AcceptedBid>,
    /// The bids after them: fewer than [`RUN`].
    recent: Arc<Vec<AcceptedBid>>,
}

impl BidHistory {
    pub fn len(&self) -> usize {
        self.sealed.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push_back(&mut self, bid: AcceptedBid) {
        let recent = Arc::make_mut(&mut self.recent);
        recent.push(bid);
        if recent.len() == RUN {
            self.sealed.extend(recent.drain(..));
            *recent = Vec::new();
        }
    }

    pub fn get(&self, index: usize) -> Option<&AcceptedBid> {
        match index.checked_sub(self.sealed.len()) {
            None => self.sealed.get(index),
            Some(in_recent) => self.recent.get(in_recent),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &AcceptedBid> {
        self.sealed.iter().chain(self.recent.iter())
    }

    /// The bids from the `from`th on, cloned; without walking the ones
    /// before it.
    pub fn cloned_from(&self, from: usize) -> impl Iterator<Item = AcceptedBid> + '_ {
        let sealed = if from < self.sealed.len() { self.sealed.skip(from) } else { Vector::new() };
        let in_recent = from.saturating_sub(self.sealed.len()).min(self.recent.len());
        sealed.into_iter().chain(self.recent[in_recent..].iter().cloned())
    }

    /// How many bids have a revision at or before `revision`: the index of
    /// the first bid after it.
    pub fn count_through(&self, revision: u64) -> usize {
        let after = |bid: &AcceptedBid| bid.revision <= revision;
        match self.sealed.back() {
            Some(last) if !after(last) => {
                self.sealed.binary_search_by(|bid| bid.revision.cmp(&revision)).map_or_else(|at| at, |at| at + 1)
            }
            _ => self.sealed.len() + self.recent.partition_point(after),
        }
    }
}

impl PartialEq for BidHistory {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for BidHistory {}

impl Extend<AcceptedBid> for BidHistory {
    fn extend<I: IntoIterator<Item = AcceptedBid>>(&mut self, bids: I) {
        for bid in bids {
            self.push_back(bid);
        }
    }
}

impl FromIterator<AcceptedBid> for BidHistory {
    fn from_iter<I: IntoIterator<Item = AcceptedBid>>(bids: I) -> Self {
        let mut history = BidHistory::default();
        history.extend(bids);
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(revision: u64) -> AcceptedBid {
        AcceptedBid { bidder: format!("b{revision}"), amount: revision, at_unix_ms: 0, revision }
    }

    #[test]
    fn reads_the_same_as_a_plain_list_across_runs_and_shared_copies() {
        let mut history = BidHistory::default();
        let mut plain = Vec::new();
        let mut copies = Vec::new();
        for n in 1..=(3 * RUN as u64 + 5) {
            // Odd revisions only, so a revision between two bids exists.
            history.push_back(bid(2 * n + 1));
            plain.push(bid(2 * n + 1));
            if n % 17 == 0 {
                copies.push((history.clone(), plain.clone()));
            }
        }
        copies.push((history, plain));
        for (history, plain) in &copies {
            assert_eq!(history.len(), plain.len());
            assert!(history.iter().eq(plain.iter()));
            assert_eq!(*history, plain.iter().cloned().collect::<BidHistory>());
            for from in [0, 1, RUN - 1, RUN, RUN + 1, plain.len(), plain.len() + 3] {
                let expected: Vec<_> = plain.iter().skip(from).cloned().collect();
                assert_eq!(history.cloned_from(from).collect::<Vec<_>>(), expected, "from {from}");
                assert_eq!(history.get(from), plain.get(from));
            }
            for revision in 0..(2 * plain.len() as u64 + 6) {
                let expected = plain.iter().filter(|bid| bid.revision <= revision).count();
                assert_eq!(history.count_through(revision), expected, "through {revision}");
            }
        }
    }
}
