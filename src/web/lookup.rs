//! Finding an accepted bid's revision and the leader's stamp, which a bid's
//! outcome does not carry, in its auction's history. The amounts of a
//! history rise strictly, so the amount finds the bid; a bid just accepted
//! is among the newest.
//!
//! Each lookup is a linearizable read through the leader, so the fewer the
//! better: the node remembers, per auction, how many bids the history held
//! up to the last bid it found there, and reads one window from there. A
//! bid accepted later sits at or after that count (the history only grows),
//! so unless more than a window of bids came in between, one read finds it.
//! Without a hint, or past the window, it reads the auction's count first.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;

use crate::auction::AcceptedBid;
use crate::client::Client;

use super::error::ApiError;
use super::routes::{bids_from, read_auction};

/// Bids one read of a lookup covers.
const WINDOW: usize = 32;
/// Auctions remembered at most; past it the hints start afresh (a missing
/// hint costs one more read, never a wrong answer).
const MAX_HINTS: usize = 4096;

/// Per auction, the history's length up to the last bid found in it.
#[derive(Default)]
pub struct HistoryHints {
    counts: Mutex<HashMap<String, usize>>,
}

impl HistoryHints {
    fn hint(&self, auction_id: &str) -> Option<usize> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(auction_id).copied()
    }

    fn remember(&self, auction_id: &str, count: usize) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= MAX_HINTS && !counts.contains_key(auction_id) {
            counts.clear();
        }
        let known = counts.entry(auction_id.to_string()).or_default();
        *known = (*known).max(count);
    }

    /// The accepted bid of `amount` in `auction_id`'s history; `None` if
    /// the auction was forgotten since.
    pub async fn find_accepted_bid(
        &self,
        client: &mut Client,
        auction_id: &str,
        amount: u64,
    ) -> Result<Option<AcceptedBid>, ApiError> {
        let gone = |error: &ApiError| error.status == StatusCode::NOT_FOUND;
        if let Some(from) = self.hint(auction_id) {
            match bids_from(client, auction_id, from, WINDOW).await {
                Ok(bids) => {
                    if let Some(found) = self.pick(auction_id, from, &bids, amount) {
                        return Ok(Some(found));
                    }
                }
                Err(error) if gone(&error) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        let info = match read_auction(client, auction_id).await {
            Ok(info) => info,
            Err(error) if gone(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut end = usize::try_from(info.accepted_bids).unwrap_or(usize::MAX);
        loop {
            let from = end.saturating_sub(WINDOW);
            let bids = bids_from(client, auction_id, from, WINDOW).await?;
            if let Some(found) = self.pick(auction_id, from, &bids, amount) {
                return Ok(Some(found));
            }
            match bids.first() {
                Some(first) if first.amount > amount && from > 0 => end = from,
                _ => return Ok(None),
            }
        }
    }

    /// The bid of `amount` among `bids` (read from position `from`), and
    /// the hint it leaves.
    fn pick(&self, auction_id: &str, from: usize, bids: &[AcceptedBid], amount: u64) -> Option<AcceptedBid> {
        let at = bids.iter().position(|bid| bid.amount == amount)?;
        self.remember(auction_id, from + at + 1);
        Some(bids[at].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(amount: u64, revision: u64) -> AcceptedBid {
        AcceptedBid { bidder: "ann".into(), amount, at_unix_ms: 0, revision }
    }

    #[test]
    fn a_found_bid_leaves_the_count_up_to_it() {
        let hints = HistoryHints::default();
        assert_eq!(hints.hint("a1"), None);
        let page = [bid(10, 5), bid(20, 7), bid(30, 9)];
        assert_eq!(hints.pick("a1", 40, &page, 20), Some(bid(20, 7)));
        assert_eq!(hints.hint("a1"), Some(42));
        assert_eq!(hints.pick("a1", 40, &page, 25), None, "not there: the hint stays");
        assert_eq!(hints.hint("a1"), Some(42));
        hints.remember("a1", 30);
        assert_eq!(hints.hint("a1"), Some(42), "a hint never goes back");
    }

    #[test]
    fn hints_are_bounded() {
        let hints = HistoryHints::default();
        for auction in 0..MAX_HINTS + 10 {
            hints.remember(&format!("a{auction}"), 1);
        }
        assert!(hints.counts.lock().unwrap().len() <= MAX_HINTS);
    }
}
