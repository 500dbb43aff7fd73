//! What happened to the auctions, as watchers see it: events derived from
//! the replicated state itself (an auction's creation, its accepted bids
//! with their revisions, its close), so any replica that holds an entry can
//! tell its events, and a watcher that resumes after a failover gets the
//! same ones from the new leader.

use std::ops::Bound::{Excluded, Unbounded};

use super::{AcceptedBid, Auction, AuctionBook, AuctionInfo};

/// One change of one auction, at the revision (log index) that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionEvent {
    pub revision: u64,
    pub auction_id: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The auction as created, before any bid.
    Opened(AuctionInfo),
    /// A bid was accepted: the previous highest bidder is outbid.
    BidAccepted(AcceptedBid),
    /// The auction's final state: the winner.
    Closed(AuctionInfo),
    /// No change: where a watch that asked for "from now on" starts, so
    /// that a watcher always knows the revision to resume after (etcd's
    /// progress notification). Its auction id is empty.
    Progress,
}

/// The auctions a watch follows at most by name; for more, watch every
/// auction.
pub const MAX_WATCHED_AUCTIONS: usize = 100;

/// Which auctions' events a watcher asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventScope {
    /// Every auction's.
    All,
    /// These auctions' (one or more, each once).
    Auctions(std::collections::BTreeSet<String>),
}

impl EventScope {
    /// The scope of these auction ids (empty ones are none); none means
    /// every auction.
    pub fn of<'a>(auction_ids: impl IntoIterator<Item = &'a str>) -> Self {
        let ids: std::collections::BTreeSet<String> =
            auction_ids.into_iter().filter(|id| !id.is_empty()).map(str::to_string).collect();
        if ids.is_empty() { EventScope::All } else { EventScope::Auctions(ids) }
    }
}

impl AuctionEvent {
    /// About how many bytes the event holds, its strings counted.
    pub fn size(&self) -> usize {
        let strings = match &self.kind {
            EventKind::Opened(info) | EventKind::Closed(info) => {
                info.auction_id.len()
                    + info.seller.len()
                    + info.title.len()
                    + info.description.len()
                    + info.highest_bidder.len()
            }
            EventKind::BidAccepted(bid) => bid.bidder.len(),
            EventKind::Progress => 0,
        };
        std::mem::size_of::<Self>() + self.auction_id.len() + strings
    }
}

impl AuctionBook {
    /// The events with revisions in `(after, up_to]`, oldest first: of one
    /// auction, or of every auction when `auction_id` is `None`. `now_unix_ms`
    /// stamps the infos they carry.
    pub fn events(&self, auction_id: Option<&str>, after: u64, up_to: u64, now_unix_ms: i64) -> Vec<AuctionEvent> {
        let mut events = Vec::new();
        match auction_id {
            Some(auction_id) => {
                if let Some(auction) = self.auctions.get(auction_id) {
                    auction_events(auction, after, up_to, now_unix_ms, &mut events);
                }
            }
            None => {
                // Only the auctions changed since `after` can have events,
                // and only those created by `up_to` (a catch-up through a
                // house's creations passes over the rest unread).
                let changed = self.by_last_change.range((Excluded((after, String::new())), Unbounded));
                for ((_, auction_id), created) in changed {
                    if *created > up_to {
                        continue;
                    }
                    if let Some(auction) = self.auctions.get(auction_id) {
                        auction_events(auction, after, up_to, now_unix_ms, &mut events);
                    }
                }
                events.sort_by_key(|event| event.revision);
            }
        }
        events
    }
}

fn auction_events(auction: &Auction, after: u64, up_to: u64, now_unix_ms: i64, events: &mut Vec<AuctionEvent>) {
    let within = |revision: u64| revision > after && revision <= up_to;
    let event = |revision, kind| AuctionEvent { revision, auction_id: auction.auction_id.clone(), kind };
    if within(auction.created_revision) {
        let opened = AuctionInfo {
            over: false,
            highest_amount: 0,
            highest_bidder: String::new(),
            accepted_bids: 0,
            revision: auction.created_revision,
            ..AuctionInfo::of(auction, now_unix_ms)
        };
        events.push(event(auction.created_revision, EventKind::Opened(opened)));
    }
    // The history is in revision order: find the first bid after `after`.
    let first = auction.history.count_through(after);
    for bid in auction.history.cloned_from(first).take_while(|bid| bid.revision <= up_to) {
        events.push(event(bid.revision, EventKind::BidAccepted(bid)));
    }
    // A closed auction changes no more: its last change is its close.
    if auction.closed && within(auction.revision) {
        events.push(event(auction.revision, EventKind::Closed(AuctionInfo::of(auction, now_unix_ms))));
    }
}
