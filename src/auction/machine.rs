//! The auction book as the state machine that replication replicates.

use std::time::Duration;

use crate::replication::{self, StateMachine};

use super::{
    Applied, AuctionBook, BidOutcome, CancelOutcome, Command, CreateOutcome, MAX_AUCTION_ID_LEN, Party, Query,
    QueryAnswer, QueryError, command_time, normalize_in_place, validate_bid, validate_create_fields, validate_ids,
};

/// How long a closed auction is kept by default: a day.
pub const DEFAULT_RETAIN_CLOSED: Duration = Duration::from_secs(24 * 60 * 60);

/// What the leader stamps into the auction commands it sequences.
#[derive(Clone, Debug)]
pub struct AuctionSettings {
    /// How long a closed auction and its history are kept.
    pub retain_closed: Duration,
}

impl Default for AuctionSettings {
    fn default() -> Self {
        AuctionSettings { retain_closed: DEFAULT_RETAIN_CLOSED }
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
                .map_err(|reason| Applied::Bid(BidOutcome::exception(reason))),
            // The end is checked once the leader has set it.
            Command::Create(create) => normalize_in_place(&mut create.seller, Party::Seller)
                .and_then(|()| validate_create_fields(create))
                .map_err(|reason| Applied::Created(CreateOutcome::exception(reason))),
            Command::Cancel(cancel) => normalize_in_place(&mut cancel.seller, Party::Seller)
                .and_then(|()| validate_ids(&cancel.auction_id, &cancel.client_id))
                .map_err(|reason| Applied::Cancelled(CancelOutcome::exception(reason))),
            // The cluster's own commands.
            Command::Open(_) | Command::Close { .. } => Ok(()),
        }
    }

    fn check_read(query: &Query) -> Result<(), String> {
        match query {
            Query::View { auction_id } | Query::Get { auction_id } | Query::History { auction_id, .. }
                if auction_id.len() > MAX_AUCTION_ID_LEN =>
            {
                Err(format!("auction id is longer than {MAX_AUCTION_ID_LEN} bytes"))
            }
            _ => Ok(()),
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
}

/// What a proposed command came to: its output, and the index it was
/// applied at (`None` for input refused before it was sequenced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub index: Option<u64>,
    pub output: Applied,
}

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
