//! The auction book as the state machine that replication replicates.

use std::time::Duration;

use tracing::info;

use crate::replication::{self, EventSource, RateLimit, StateMachine};

use super::catalogue::check_visible_text;
use super::{
    Applied, AuctionBook, AuctionEvent, BidOutcome, CancelOutcome, Command, CreateOutcome, DEFAULT_AUCTION, EventKind,
    EventScope, MAX_AUCTION_ID_LEN, MAX_WATCHED_AUCTIONS, OpenAuction, Party, Query, QueryAnswer, QueryError, Reason,
    check_request_id, command_time, normalize_in_place, validate_bid, validate_create_fields, validate_ids,
};

/// How long a closed auction is kept by default: a day.
pub const DEFAULT_RETAIN_CLOSED: Duration = Duration::from_secs(24 * 60 * 60);

/// The most auctions the house holds by default: about 3.4 KB each on
/// every node with 2 KiB descriptions, 340 MB in all.
pub const DEFAULT_MAX_AUCTIONS: u64 = 100_000;

/// How long the default auction runs by default, from the bootstrap.
pub const DEFAULT_AUCTION_DURATION: Duration = Duration::from_secs(120);

/// What the leader stamps into the auction commands it sequences, and what
/// a new cluster starts with.
#[derive(Clone, Debug)]
pub struct AuctionSettings {
    /// How long a closed auction and its history are kept.
    pub retain_closed: Duration,
    /// How long the default auction, opened by a new cluster, runs.
    pub default_auction_duration: Duration,
    /// The most auctions the house holds at once, closed ones until they
    /// expire: what bounds its memory (0: no limit).
    pub max_auctions: u64,
    /// The most open auctions one seller may have (0: no limit).
    pub max_open_per_seller: u64,
    /// Bids one bidder may send a second, with a burst of as many (0: no
    /// limit): the leader refuses those past it before sequencing.
    pub max_bids_per_second: u32,
    /// Creates one seller may send a second, likewise.
    pub max_creates_per_second: u32,
}

/// A seller's open auctions at once: a house, not a flood.
pub const DEFAULT_MAX_OPEN_PER_SELLER: u64 = 1_000;
/// A bidder's bids a second: far above what the benchmark's busiest bidder
/// sends (one client alone, about 3,300 a second), so that only a flood is
/// refused.
pub const DEFAULT_MAX_BIDS_PER_SECOND: u32 = 10_000;
/// A seller's creates a second: a person never comes near it; a script that
/// fills the house does.
pub const DEFAULT_MAX_CREATES_PER_SECOND: u32 = 100;

impl Default for AuctionSettings {
    fn default() -> Self {
        AuctionSettings {
            retain_closed: DEFAULT_RETAIN_CLOSED,
            default_auction_duration: DEFAULT_AUCTION_DURATION,
            max_auctions: DEFAULT_MAX_AUCTIONS,
            max_open_per_seller: DEFAULT_MAX_OPEN_PER_SELLER,
            max_bids_per_second: DEFAULT_MAX_BIDS_PER_SECOND,
            max_creates_per_second: DEFAULT_MAX_CREATES_PER_SECOND,
        }
    }
}

impl AuctionSettings {
    fn retain_ms(&self) -> u64 {
        u64::try_from(self.retain_closed.as_millis()).unwrap_or(u64::MAX)
    }
}

impl StateMachine for AuctionBook {
    type Command = Command;
    type Output = Applied;
    type Query = Query;
    type Answer = Result<QueryAnswer, QueryError>;
    type Settings = AuctionSettings;

    fn admit(command: &mut Command) -> Result<(), Applied> {
        match command {
            Command::Bid(bid) => normalize_in_place(&mut bid.bidder, Party::Bidder)
                .and_then(|()| validate_bid(&bid.auction_id, &bid.bidder, bid.amount, &bid.client_id))
                .and_then(|()| check_request_id(bid.request_id))
                .map_err(|reason| Applied::Bid(BidOutcome::exception(reason))),
            // The end is checked once the leader has set it.
            Command::Create(create) => normalize_in_place(&mut create.seller, Party::Seller)
                .and_then(|()| validate_create_fields(create))
                .and_then(|()| check_visible_text(create))
                .and_then(|()| check_request_id(create.request_id))
                .map_err(|reason| Applied::Created(CreateOutcome::exception(reason))),
            Command::Cancel(cancel) => normalize_in_place(&mut cancel.seller, Party::Seller)
                .and_then(|()| validate_ids(&cancel.auction_id, &cancel.client_id))
                .and_then(|()| check_request_id(cancel.request_id))
                .map_err(|reason| Applied::Cancelled(CancelOutcome::exception(reason))),
            // The cluster's own commands.
            Command::Open(_) | Command::Close { .. } => Ok(()),
        }
    }

    fn check_read(query: &Query) -> Result<(), String> {
        match query {
            Query::View { auction_id } | Query::Get { auction_id } | Query::History { auction_id, .. } => {
                check_auction_id(auction_id)
            }
            Query::List { .. } => Ok(()),
        }
    }

    fn stamp(command: &mut Command, at_unix_ms: i64, settings: &AuctionSettings) {
        match command {
            Command::Open(open) => open.at_unix_ms = at_unix_ms,
            Command::Bid(bid) => bid.at_unix_ms = at_unix_ms,
            Command::Close { at_unix_ms: at, retain_ms, .. } => {
                *at = at_unix_ms;
                *retain_ms = settings.retain_ms();
            }
            Command::Create(create) => {
                // A duration sets the end from the time stamped.
                create.at_unix_ms = at_unix_ms;
                create.max_auctions = settings.max_auctions;
                create.max_open_per_seller = settings.max_open_per_seller;
                if create.duration_ms > 0 {
                    let duration_ms = i64::try_from(create.duration_ms).unwrap_or(i64::MAX);
                    create.ends_at_unix_ms = at_unix_ms.saturating_add(duration_ms);
                }
            }
            Command::Cancel(cancel) => {
                cancel.at_unix_ms = at_unix_ms;
                cancel.retain_ms = settings.retain_ms();
            }
        }
    }

    fn command_time(command: &Command) -> i64 {
        command_time(command)
    }

    fn apply(&mut self, index: u64, command: &Command) -> Applied {
        self.apply_at(index, command)
    }

    fn read(&self, query: &Query, at_unix_ms: i64) -> Result<QueryAnswer, QueryError> {
        self.query(query, at_unix_ms)
    }

    fn due(&self, at_unix_ms: i64, settings: &AuctionSettings) -> Vec<Command> {
        // Found through the deadline index: listing every open auction each
        // tick cost a leader of 100,000 auctions most of its time.
        let retain_ms = settings.retain_ms();
        let overdue = self.overdue(at_unix_ms).into_iter();
        overdue.map(|auction_id| Command::Close { auction_id, at_unix_ms, retain_ms }).collect()
    }

    /// The default auction, which the assignment's clients bid on without
    /// naming one.
    fn genesis(settings: &AuctionSettings, at_unix_ms: i64) -> Vec<Command> {
        let duration_ms = i64::try_from(settings.default_auction_duration.as_millis()).unwrap_or(i64::MAX);
        vec![Command::Open(OpenAuction {
            auction_id: DEFAULT_AUCTION.to_string(),
            description: "the default auction".to_string(),
            minimum_amount: 1,
            ends_at_unix_ms: at_unix_ms.saturating_add(duration_ms),
            at_unix_ms,
        })]
    }

    /// Each auction the closes ended, with its winner.
    fn log_due(&self, due: &[Command]) {
        let closed = due.iter().filter_map(|command| match command {
            Command::Close { auction_id, .. } => self.auctions.get(auction_id).filter(|auction| auction.closed),
            _ => None,
        });
        for auction in closed {
            info!(
                auction = %auction.auction_id,
                winner = %auction.highest_bidder,
                amount = auction.highest_amount,
                "auction over"
            );
        }
    }

    /// A bidder's bids and a seller's creates, each at its own rate.
    fn rate_limit<'a>(command: &'a Command, settings: &AuctionSettings) -> Option<RateLimit<'a>> {
        match command {
            Command::Bid(bid) => {
                Some(RateLimit { kind: "bids", principal: &bid.bidder, per_second: settings.max_bids_per_second })
            }
            Command::Create(create) => Some(RateLimit {
                kind: "creates",
                principal: &create.seller,
                per_second: settings.max_creates_per_second,
            }),
            Command::Cancel(_) | Command::Open(_) | Command::Close { .. } => None,
        }
    }
}

impl EventSource for AuctionBook {
    type Event = AuctionEvent;
    type Scope = EventScope;
    type Topic = String;

    fn check_scope(scope: &EventScope) -> Result<(), String> {
        let EventScope::Auctions(ids) = scope else { return Ok(()) };
        if ids.len() > MAX_WATCHED_AUCTIONS {
            return Err(format!(
                "a watch follows at most {MAX_WATCHED_AUCTIONS} auctions by id ({} asked); watch every auction instead",
                ids.len()
            ));
        }
        ids.iter().try_for_each(|id| check_auction_id(id))
    }

    fn everything() -> EventScope {
        EventScope::All
    }

    fn topic(event: &AuctionEvent) -> String {
        event.auction_id.clone()
    }

    fn scope_topics(scope: &EventScope) -> Option<Vec<String>> {
        match scope {
            EventScope::All => None,
            EventScope::Auctions(ids) => Some(ids.iter().cloned().collect()),
        }
    }

    fn events(&self, scope: &EventScope, after: u64, upto: u64, clock_unix_ms: i64) -> Vec<AuctionEvent> {
        match scope {
            EventScope::All => AuctionBook::events(self, None, after, upto, clock_unix_ms),
            EventScope::Auctions(ids) => {
                let mut events: Vec<AuctionEvent> =
                    ids.iter().flat_map(|id| AuctionBook::events(self, Some(id), after, upto, clock_unix_ms)).collect();
                events.sort_by_key(|event| event.revision);
                events
            }
        }
    }

    fn revision(event: &AuctionEvent) -> u64 {
        event.revision
    }

    fn event_size(event: &AuctionEvent) -> usize {
        event.size()
    }

    fn progress(revision: u64) -> AuctionEvent {
        AuctionEvent { revision, auction_id: String::new(), kind: EventKind::Progress }
    }

    fn compacted(&self) -> u64 {
        self.compacted
    }
}

/// A read's or a watch's auction id, checked before it is asked.
fn check_auction_id(auction_id: &str) -> Result<(), String> {
    if auction_id.len() > MAX_AUCTION_ID_LEN {
        return Err(Reason::AuctionIdTooLong { max: MAX_AUCTION_ID_LEN }.to_string());
    }
    Ok(())
}

/// What a proposed auction command came to.
pub type Proposed = replication::Proposed<Applied>;

impl Applied {
    /// A bid's outcome, if this is one.
    pub fn into_bid(self) -> Option<BidOutcome> {
        if let Applied::Bid(outcome) = self { Some(outcome) } else { None }
    }

    /// A create's outcome, if this is one.
    pub fn into_created(self) -> Option<CreateOutcome> {
        if let Applied::Created(outcome) = self { Some(outcome) } else { None }
    }

    /// A cancel's outcome, if this is one.
    pub fn into_cancelled(self) -> Option<CancelOutcome> {
        if let Applied::Cancelled(outcome) = self { Some(outcome) } else { None }
    }
}

/// The replication types over the auction book.
pub type ReplicatedState = replication::ReplicatedState<AuctionBook>;
pub type Entry = replication::Entry<Command>;
pub type Payload = replication::Payload<Command>;
pub type Snapshot = replication::Snapshot<AuctionBook>;
pub type Leader = replication::Leader<AuctionBook>;
pub type Backup = replication::Backup<AuctionBook>;
pub type LeaderSettings = replication::LeaderSettings<AuctionSettings>;
pub type Event = replication::Event<AuctionBook>;
pub type Reply = replication::Reply<AuctionBook>;
pub type Action = replication::Action<AuctionBook>;
pub type Message = replication::Message<AuctionBook>;
