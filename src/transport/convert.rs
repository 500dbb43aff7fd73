//! Conversions between the protobuf messages and the domain types. A proto
//! change touches this file and no other.

use std::collections::VecDeque;

use crate::auction::machine::{Entry, Payload, ReplicatedState, Snapshot};
use crate::auction::{
    AcceptedBid, Auction, AuctionBook, AuctionEvent, AuctionInfo, AuctionView, Bid, BidOutcome, CancelAuction,
    CancelOutcome, ClientSession, Command, CreateAuction, CreateOutcome, EventKind, NameProblem, OpenAuction, Party,
    Placed, Reason, RememberedOutcome, Verdict, WriteOutcome, render,
};
use crate::replication::{DiskCounts, LogPosition, NodeStatus, RecordView, Role};

use super::Hello;
use super::pb;
use super::pb::replication as rpb;

/// A message from the leader that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("malformed replication message: {0}")]
pub struct MalformedMessage(pub &'static str);

impl From<Verdict> for pb::Outcome {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Success => pb::Outcome::Success,
            Verdict::Fail => pb::Outcome::Fail,
            Verdict::Exception => pb::Outcome::Exception,
        }
    }
}

impl TryFrom<pb::Outcome> for Verdict {
    type Error = MalformedMessage;
    fn try_from(outcome: pb::Outcome) -> Result<Self, Self::Error> {
        match outcome {
            pb::Outcome::Success => Ok(Verdict::Success),
            pb::Outcome::Fail => Ok(Verdict::Fail),
            pb::Outcome::Exception => Ok(Verdict::Exception),
            pb::Outcome::Unspecified => Err(MalformedMessage("outcome unspecified")),
        }
    }
}

impl From<&Reason> for pb::Reason {
    fn from(reason: &Reason) -> Self {
        let mut message = pb::Reason { code: reason.code().to_string(), ..pb::Reason::default() };
        match reason {
            Reason::Registered { bidder } => message.name.clone_from(bidder),
            Reason::Name { party, problem } => {
                message.party = match party {
                    Party::Bidder => pb::Party::Bidder,
                    Party::Seller => pb::Party::Seller,
                } as i32;
                match problem {
                    NameProblem::TooLong { max } => message.limit = *max as u64,
                    NameProblem::NotNormal { given, normal } => {
                        message.name.clone_from(given);
                        message.normal.clone_from(normal);
                    }
                    NameProblem::Empty | NameProblem::Control | NameProblem::Format => {}
                }
            }
            Reason::AuctionIdTooLong { max }
            | Reason::ClientIdTooLong { max }
            | Reason::TitleTooLong { max }
            | Reason::DescriptionTooLong { max } => message.limit = *max as u64,
            Reason::UnknownAuction { auction_id }
            | Reason::NotTheSeller { auction_id }
            | Reason::HasBids { auction_id } => message.name.clone_from(auction_id),
            Reason::RequestIdReused { request_id } | Reason::RequestKindDiffers { request_id } => {
                message.request_id = *request_id;
            }
            Reason::RequestTooOld { request_id, window } => {
                message.request_id = *request_id;
                message.limit = *window as u64;
            }
            Reason::BelowMinimum { amount, minimum } => {
                message.amount = *amount;
                message.limit = *minimum;
            }
            Reason::NotHigher { amount, highest, highest_bidder } => {
                message.amount = *amount;
                message.limit = *highest;
                message.name.clone_from(highest_bidder);
            }
            Reason::NotAboveOwnBest { amount, own_best } => {
                message.amount = *amount;
                message.limit = *own_best;
            }
            Reason::AmountZero
            | Reason::TitleEmpty
            | Reason::TitleControl
            | Reason::NoEnd
            | Reason::DurationAndEnd
            | Reason::EndNotInFuture
            | Reason::TooLong
            | Reason::SessionUnknown
            | Reason::AuctionOver
            | Reason::SellerBids => {}
        }
        message
    }
}

impl TryFrom<pb::Reason> for Reason {
    type Error = MalformedMessage;
    fn try_from(message: pb::Reason) -> Result<Self, Self::Error> {
        let limit = message.limit;
        let max = usize::try_from(limit).map_err(|_| MalformedMessage("reason limit out of range"))?;
        let name = |problem| {
            let party = match pb::Party::try_from(message.party) {
                Ok(pb::Party::Bidder) => Party::Bidder,
                Ok(pb::Party::Seller) => Party::Seller,
                _ => return Err(MalformedMessage("reason names no party")),
            };
            Ok(Reason::Name { party, problem })
        };
        Ok(match message.code.as_str() {
            "registered" => Reason::Registered { bidder: message.name },
            "amount_zero" => Reason::AmountZero,
            "name_empty" => name(NameProblem::Empty)?,
            "name_control" => name(NameProblem::Control)?,
            "name_format" => name(NameProblem::Format)?,
            "name_too_long" => name(NameProblem::TooLong { max })?,
            "name_not_normal" => {
                name(NameProblem::NotNormal { given: message.name.clone(), normal: message.normal.clone() })?
            }
            "auction_id_too_long" => Reason::AuctionIdTooLong { max },
            "client_id_too_long" => Reason::ClientIdTooLong { max },
            "title_empty" => Reason::TitleEmpty,
            "title_too_long" => Reason::TitleTooLong { max },
            "title_control" => Reason::TitleControl,
            "description_too_long" => Reason::DescriptionTooLong { max },
            "no_end" => Reason::NoEnd,
            "duration_and_end" => Reason::DurationAndEnd,
            "end_not_in_future" => Reason::EndNotInFuture,
            "too_long" => Reason::TooLong,
            "unknown_auction" => Reason::UnknownAuction { auction_id: message.name },
            "request_id_reused" => Reason::RequestIdReused { request_id: message.request_id },
            "request_kind_differs" => Reason::RequestKindDiffers { request_id: message.request_id },
            "request_too_old" => Reason::RequestTooOld { request_id: message.request_id, window: max },
            "session_unknown" => Reason::SessionUnknown,
            "auction_over" => Reason::AuctionOver,
            "below_minimum" => Reason::BelowMinimum { amount: message.amount, minimum: limit },
            "not_higher" => Reason::NotHigher { amount: message.amount, highest: limit, highest_bidder: message.name },
            "not_above_own_best" => Reason::NotAboveOwnBest { amount: message.amount, own_best: limit },
            "seller_bids" => Reason::SellerBids,
            "not_the_seller" => Reason::NotTheSeller { auction_id: message.name },
            "has_bids" => Reason::HasBids { auction_id: message.name },
            _ => return Err(MalformedMessage("unknown reason code")),
        })
    }
}

/// An optional reason on the wire: absent when there is none.
fn reason_to_pb(reason: &Option<Reason>) -> Option<pb::Reason> {
    reason.as_ref().map(pb::Reason::from)
}

pub fn reason_from_pb(reason: Option<pb::Reason>) -> Result<Option<Reason>, MalformedMessage> {
    reason.map(Reason::try_from).transpose()
}

impl From<BidOutcome> for pb::BidReply {
    fn from(outcome: BidOutcome) -> Self {
        pb::BidReply {
            outcome: pb::Outcome::from(outcome.verdict) as i32,
            reason: render(&outcome.reason),
            typed_reason: reason_to_pb(&outcome.reason),
            highest_amount: outcome.highest_amount,
            highest_bidder: outcome.highest_bidder,
            revision: outcome.placed.map_or(0, |placed| placed.revision),
            at_unix_ms: outcome.placed.map_or(0, |placed| placed.at_unix_ms),
        }
    }
}

/// A bid's place from the wire: a revision of 0 means none.
fn placed_from(revision: u64, at_unix_ms: i64) -> Option<Placed> {
    (revision > 0).then_some(Placed { revision, at_unix_ms })
}

impl TryFrom<pb::BidReply> for BidOutcome {
    type Error = MalformedMessage;
    fn try_from(reply: pb::BidReply) -> Result<Self, Self::Error> {
        let outcome = pb::Outcome::try_from(reply.outcome).map_err(|_| MalformedMessage("unknown outcome"))?;
        Ok(BidOutcome {
            verdict: Verdict::try_from(outcome)?,
            reason: reason_from_pb(reply.typed_reason)?,
            highest_amount: reply.highest_amount,
            highest_bidder: reply.highest_bidder,
            placed: placed_from(reply.revision, reply.at_unix_ms),
        })
    }
}

/// The answer to `Result`, with the answering leader.
pub fn result_reply(view: AuctionView, leader: String) -> pb::ResultReply {
    pb::ResultReply {
        auction_id: view.auction_id,
        over: view.over,
        highest_amount: view.highest_amount,
        highest_bidder: view.highest_bidder,
        ends_at_unix_ms: view.ends_at_unix_ms,
        leader,
        accepted_bids: view.accepted_bids,
        now_unix_ms: view.now_unix_ms,
    }
}

impl From<pb::ResultReply> for AuctionView {
    fn from(reply: pb::ResultReply) -> Self {
        AuctionView {
            auction_id: reply.auction_id,
            over: reply.over,
            highest_amount: reply.highest_amount,
            highest_bidder: reply.highest_bidder,
            ends_at_unix_ms: reply.ends_at_unix_ms,
            accepted_bids: reply.accepted_bids,
            now_unix_ms: reply.now_unix_ms,
        }
    }
}

/// A seller's request as the service takes it: the end is absolute, or
/// a duration the leader turns into one when it sequences the create.
pub fn create_from_request(request: pb::CreateAuctionRequest) -> Result<CreateAuction, Reason> {
    match (request.duration_ms, request.ends_at_unix_ms) {
        (0, 0) => return Err(Reason::NoEnd),
        (0, _) | (_, 0) => {}
        _ => return Err(Reason::DurationAndEnd),
    }
    let create = CreateAuction {
        duration_ms: request.duration_ms,
        seller: request.seller,
        title: request.title,
        description: request.description,
        minimum_amount: request.minimum_amount,
        ends_at_unix_ms: request.ends_at_unix_ms,
        client_id: request.client_id,
        request_id: request.request_id,
        at_unix_ms: 0,
    };
    Ok(create)
}

impl From<CancelOutcome> for pb::CancelAuctionReply {
    fn from(outcome: CancelOutcome) -> Self {
        pb::CancelAuctionReply {
            outcome: pb::Outcome::from(outcome.verdict) as i32,
            reason: render(&outcome.reason),
            typed_reason: reason_to_pb(&outcome.reason),
        }
    }
}

impl From<CreateOutcome> for pb::CreateAuctionReply {
    fn from(outcome: CreateOutcome) -> Self {
        pb::CreateAuctionReply {
            outcome: pb::Outcome::from(outcome.verdict) as i32,
            reason: render(&outcome.reason),
            typed_reason: reason_to_pb(&outcome.reason),
            auction_id: outcome.auction_id,
        }
    }
}

impl From<AuctionInfo> for pb::AuctionInfo {
    fn from(info: AuctionInfo) -> Self {
        pb::AuctionInfo {
            auction_id: info.auction_id,
            seller: info.seller,
            title: info.title,
            description: info.description,
            minimum_amount: info.minimum_amount,
            created_at_unix_ms: info.created_at_unix_ms,
            ends_at_unix_ms: info.ends_at_unix_ms,
            over: info.over,
            highest_amount: info.highest_amount,
            highest_bidder: info.highest_bidder,
            accepted_bids: info.accepted_bids,
            now_unix_ms: info.now_unix_ms,
            revision: info.revision,
            cancelled: info.cancelled,
        }
    }
}

impl From<pb::AuctionInfo> for AuctionInfo {
    fn from(info: pb::AuctionInfo) -> Self {
        AuctionInfo {
            auction_id: info.auction_id,
            seller: info.seller,
            title: info.title,
            description: info.description,
            minimum_amount: info.minimum_amount,
            created_at_unix_ms: info.created_at_unix_ms,
            ends_at_unix_ms: info.ends_at_unix_ms,
            over: info.over,
            highest_amount: info.highest_amount,
            highest_bidder: info.highest_bidder,
            accepted_bids: info.accepted_bids,
            now_unix_ms: info.now_unix_ms,
            revision: info.revision,
            cancelled: info.cancelled,
        }
    }
}

impl From<AcceptedBid> for pb::AcceptedBid {
    fn from(bid: AcceptedBid) -> Self {
        pb::AcceptedBid { bidder: bid.bidder, amount: bid.amount, at_unix_ms: bid.at_unix_ms, revision: bid.revision }
    }
}

impl From<pb::AcceptedBid> for AcceptedBid {
    fn from(bid: pb::AcceptedBid) -> Self {
        AcceptedBid { bidder: bid.bidder, amount: bid.amount, at_unix_ms: bid.at_unix_ms, revision: bid.revision }
    }
}

impl From<AuctionEvent> for pb::AuctionEvent {
    fn from(event: AuctionEvent) -> Self {
        use pb::auction_event::Kind;
        let kind = match event.kind {
            EventKind::Opened(info) => Some(Kind::Opened(info.into())),
            EventKind::BidAccepted(bid) => Some(Kind::BidAccepted(bid.into())),
            EventKind::Closed(info) => Some(Kind::Closed(info.into())),
            EventKind::Progress => None,
        };
        pb::AuctionEvent { revision: event.revision, auction_id: event.auction_id, kind }
    }
}

impl TryFrom<pb::AuctionEvent> for AuctionEvent {
    type Error = MalformedMessage;
    fn try_from(event: pb::AuctionEvent) -> Result<Self, Self::Error> {
        use pb::auction_event::Kind;
        let kind = match event.kind {
            Some(Kind::Opened(info)) => EventKind::Opened(info.into()),
            Some(Kind::BidAccepted(bid)) => EventKind::BidAccepted(bid.into()),
            Some(Kind::Closed(info)) => EventKind::Closed(info.into()),
            None => EventKind::Progress,
        };
        Ok(AuctionEvent { revision: event.revision, auction_id: event.auction_id, kind })
    }
}

/// The bid a client asked for; the leader stamps the time later.
pub fn bid_from_request(request: pb::BidRequest) -> Bid {
    Bid {
        auction_id: request.auction_id,
        bidder: request.bidder,
        amount: request.amount,
        client_id: request.client_id,
        request_id: request.request_id,
        at_unix_ms: 0,
    }
}

impl From<&Entry> for rpb::Entry {
    fn from(entry: &Entry) -> Self {
        use rpb::entry::Payload as P;
        let payload = match &entry.payload {
            Payload::Command(Command::Open(open)) => P::OpenAuction(rpb::OpenAuction {
                auction_id: open.auction_id.clone(),
                description: open.description.clone(),
                minimum_amount: open.minimum_amount,
                ends_at_unix_ms: open.ends_at_unix_ms,
                at_unix_ms: open.at_unix_ms,
            }),
            Payload::Command(Command::Bid(bid)) => P::Bid(rpb::Bid {
                auction_id: bid.auction_id.clone(),
                bidder: bid.bidder.clone(),
                amount: bid.amount,
                client_id: bid.client_id.clone(),
                request_id: bid.request_id,
                at_unix_ms: bid.at_unix_ms,
            }),
            Payload::Command(Command::Close { auction_id, at_unix_ms, retain_ms }) => {
                P::CloseAuction(rpb::CloseAuction {
                    auction_id: auction_id.clone(),
                    at_unix_ms: *at_unix_ms,
                    retain_ms: *retain_ms,
                })
            }
            Payload::Command(Command::Create(create)) => P::CreateAuction(rpb::CreateAuction {
                duration_ms: create.duration_ms,
                seller: create.seller.clone(),
                title: create.title.clone(),
                description: create.description.clone(),
                minimum_amount: create.minimum_amount,
                ends_at_unix_ms: create.ends_at_unix_ms,
                client_id: create.client_id.clone(),
                request_id: create.request_id,
                at_unix_ms: create.at_unix_ms,
            }),
            Payload::Command(Command::Cancel(cancel)) => P::CancelAuction(rpb::CancelAuction {
                auction_id: cancel.auction_id.clone(),
                seller: cancel.seller.clone(),
                client_id: cancel.client_id.clone(),
                request_id: cancel.request_id,
                at_unix_ms: cancel.at_unix_ms,
                retain_ms: cancel.retain_ms,
            }),
            Payload::Join { node } => P::Join(rpb::Join { node: node.clone() }),
            Payload::Remove { node } => P::Remove(rpb::Remove { node: node.clone() }),
            Payload::Takeover { leader, backups, cluster_id } => P::Takeover(rpb::Takeover {
                leader: leader.clone(),
                backups: backups.clone(),
                cluster_id: cluster_id.clone(),
            }),
        };
        rpb::Entry { epoch: entry.epoch, index: entry.index, payload: Some(payload) }
    }
}

impl TryFrom<rpb::Entry> for Entry {
    type Error = MalformedMessage;
    fn try_from(entry: rpb::Entry) -> Result<Self, Self::Error> {
        use rpb::entry::Payload as P;
        let payload = match entry.payload.ok_or(MalformedMessage("entry without payload"))? {
            P::OpenAuction(open) => Payload::Command(Command::Open(OpenAuction {
                auction_id: open.auction_id,
                description: open.description,
                minimum_amount: open.minimum_amount,
                ends_at_unix_ms: open.ends_at_unix_ms,
                at_unix_ms: open.at_unix_ms,
            })),
            P::Bid(bid) => Payload::Command(Command::Bid(Bid {
                auction_id: bid.auction_id,
                bidder: bid.bidder,
                amount: bid.amount,
                client_id: bid.client_id,
                request_id: bid.request_id,
                at_unix_ms: bid.at_unix_ms,
            })),
            P::CloseAuction(close) => Payload::Command(Command::Close {
                auction_id: close.auction_id,
                at_unix_ms: close.at_unix_ms,
                retain_ms: close.retain_ms,
            }),
            P::CreateAuction(create) => Payload::Command(Command::Create(CreateAuction {
                duration_ms: create.duration_ms,
                seller: create.seller,
                title: create.title,
                description: create.description,
                minimum_amount: create.minimum_amount,
                ends_at_unix_ms: create.ends_at_unix_ms,
                client_id: create.client_id,
                request_id: create.request_id,
                at_unix_ms: create.at_unix_ms,
            })),
            P::CancelAuction(cancel) => Payload::Command(Command::Cancel(CancelAuction {
                auction_id: cancel.auction_id,
                seller: cancel.seller,
                client_id: cancel.client_id,
                request_id: cancel.request_id,
                at_unix_ms: cancel.at_unix_ms,
                retain_ms: cancel.retain_ms,
            })),
            P::Join(join) => Payload::Join { node: join.node },
            P::Remove(remove) => Payload::Remove { node: remove.node },
            P::Takeover(takeover) => Payload::Takeover {
                leader: takeover.leader,
                backups: takeover.backups,
                cluster_id: takeover.cluster_id,
            },
        };
        Ok(Entry { epoch: entry.epoch, index: entry.index, payload })
    }
}

fn remembered_outcome(remembered: &RememberedOutcome) -> rpb::RememberedOutcome {
    let mut message = rpb::RememberedOutcome {
        request_id: remembered.request_id,
        fingerprint: remembered.fingerprint,
        ..rpb::RememberedOutcome::default()
    };
    match &remembered.outcome {
        WriteOutcome::Bid(outcome) => {
            message.outcome = pb::Outcome::from(outcome.verdict) as u32;
            message.reason = reason_to_pb(&outcome.reason);
            message.highest_amount = outcome.highest_amount;
            message.highest_bidder.clone_from(&outcome.highest_bidder);
            if let Some(placed) = outcome.placed {
                message.revision = placed.revision;
                message.at_unix_ms = placed.at_unix_ms;
            }
        }
        WriteOutcome::Cancel(outcome) => {
            message.cancel = true;
            message.outcome = pb::Outcome::from(outcome.verdict) as u32;
            message.reason = reason_to_pb(&outcome.reason);
        }
        WriteOutcome::Create(outcome) => {
            message.create = true;
            message.outcome = pb::Outcome::from(outcome.verdict) as u32;
            message.reason = reason_to_pb(&outcome.reason);
            message.auction_id.clone_from(&outcome.auction_id);
        }
    }
    message
}

fn write_outcome(remembered: rpb::RememberedOutcome) -> Result<WriteOutcome, MalformedMessage> {
    let outcome = pb::Outcome::try_from(remembered.outcome as i32)
        .map_err(|_| MalformedMessage("unknown outcome in snapshot"))?;
    let verdict = Verdict::try_from(outcome)?;
    let reason = reason_from_pb(remembered.reason)?;
    Ok(if remembered.cancel {
        WriteOutcome::Cancel(CancelOutcome { verdict, reason })
    } else if remembered.create {
        WriteOutcome::Create(CreateOutcome { verdict, reason, auction_id: remembered.auction_id })
    } else {
        WriteOutcome::Bid(BidOutcome {
            verdict,
            reason,
            highest_amount: remembered.highest_amount,
            highest_bidder: remembered.highest_bidder,
            placed: placed_from(remembered.revision, remembered.at_unix_ms),
        })
    })
}

/// The snapshot format written: 1 since remembered bid outcomes carry their
/// revision and stamp (format 0 did not; such a snapshot still reads, its
/// remembered bids without a place).
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Items (auctions, bidders, a quarter of a session) per snapshot chunk:
/// a chunk stays well under a megabyte however large the state.
pub const SNAPSHOT_CHUNK_ITEMS: usize = 4096;
/// What a session counts for in a chunk's budget: up to eight outcomes.
const SESSION_ITEMS: usize = 4;

/// A snapshot as a sequence of bounded protobuf chunks, made lazily: each
/// chunk resumes after the last key the previous one sent. The state is a
/// persistent structure, so holding it here costs the leader nothing.
pub struct SnapshotChunks {
    snapshot: Snapshot,
    cursor: Cursor,
}

/// Where the next chunk resumes.
enum Cursor {
    /// The next auction after this id (from the first when `None`).
    NextAuction {
        after: Option<String>,
    },
    /// Auction `id`'s bidders after `bidders_after`.
    InAuction {
        id: String,
        bidders_after: Option<String>,
    },
    /// Auction `id`'s accepted bids from the `from`th on.
    InHistory {
        id: String,
        from: usize,
    },
    Sessions {
        after: Option<String>,
    },
    Done,
}

impl SnapshotChunks {
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotChunks { snapshot, cursor: Cursor::NextAuction { after: None } }
    }

    fn header(&self) -> rpb::Snapshot {
        let state = &self.snapshot.state;
        rpb::Snapshot {
            epoch: self.snapshot.epoch,
            last_epoch: state.last.epoch,
            last_index: state.last.index,
            membership: state.membership.clone(),
            clock_unix_ms: state.clock_unix_ms,
            cluster_id: state.cluster_id.clone(),
            auctions_created: state.machine.created,
            compacted: state.machine.compacted,
            format: SNAPSHOT_FORMAT,
            ..rpb::Snapshot::default()
        }
    }
}

fn accepted_bid_state(bid: AcceptedBid) -> rpb::AcceptedBidState {
    rpb::AcceptedBidState { bidder: bid.bidder, amount: bid.amount, at_unix_ms: bid.at_unix_ms, revision: bid.revision }
}

fn accepted_bid(state: rpb::AcceptedBidState) -> AcceptedBid {
    AcceptedBid { bidder: state.bidder, amount: state.amount, at_unix_ms: state.at_unix_ms, revision: state.revision }
}

fn auction_piece<'a>(auction: &Auction, bidders: impl Iterator<Item = (&'a String, &'a u64)>) -> rpb::AuctionState {
    rpb::AuctionState {
        auction_id: auction.auction_id.clone(),
        description: auction.description.clone(),
        minimum_amount: auction.minimum_amount,
        ends_at_unix_ms: auction.ends_at_unix_ms,
        closed: auction.closed,
        highest_amount: auction.highest_amount,
        highest_bidder: auction.highest_bidder.clone(),
        accepted_bids: auction.accepted_bids,
        bidders: bidders
            .map(|(bidder, best)| rpb::BidderState { bidder: bidder.clone(), best_amount: *best })
            .collect(),
        seller: auction.seller.clone(),
        title: auction.title.clone(),
        created_at_unix_ms: auction.created_at_unix_ms,
        created_revision: auction.created_revision,
        revision: auction.revision,
        history: Vec::new(),
        expires_at_unix_ms: auction.expires_at_unix_ms.unwrap_or(0),
        cancelled: auction.cancelled,
    }
}

impl Iterator for SnapshotChunks {
    type Item = rpb::Snapshot;

    fn next(&mut self) -> Option<rpb::Snapshot> {
        use std::ops::Bound::{Excluded, Unbounded};
        if matches!(self.cursor, Cursor::Done) {
            return None;
        }
        let mut chunk = self.header();
        let mut budget = SNAPSHOT_CHUNK_ITEMS;
        let book = &self.snapshot.state.machine;
        while budget > 0 {
            self.cursor = match std::mem::replace(&mut self.cursor, Cursor::Done) {
                Cursor::NextAuction { after } => {
                    let start = after.map_or(Unbounded, Excluded);
                    match book.auctions.range((start, Unbounded)).next() {
                        Some((id, _)) => Cursor::InAuction { id: id.clone(), bidders_after: None },
                        None => Cursor::Sessions { after: None },
                    }
                }
                Cursor::InAuction { id, bidders_after } => {
                    // A piece needs room for the auction and at least one
                    // bidder; otherwise the next chunk resumes here.
                    if budget < 2 {
                        self.cursor = Cursor::InAuction { id, bidders_after };
                        break;
                    }
                    let Some(auction) = book.auctions.get(&id) else { unreachable!("the cursor names a held auction") };
                    let start = bidders_after.map_or(Unbounded, Excluded);
                    let wanted = budget - 1;
                    let bidders: Vec<_> = auction.bidders.range((start, Unbounded)).take(wanted).collect();
                    let last = bidders.last().map(|(bidder, _)| (*bidder).clone());
                    let maybe_more = bidders.len() == wanted;
                    budget -= 1 + bidders.len();
                    chunk.auctions.push(auction_piece(auction, bidders.into_iter()));
                    match last {
                        Some(last) if maybe_more => Cursor::InAuction { id, bidders_after: Some(last) },
                        _ => Cursor::InHistory { id, from: 0 },
                    }
                }
                Cursor::InHistory { id, from } => {
                    let Some(auction) = book.auctions.get(&id) else { unreachable!("the cursor names a held auction") };
                    if from >= auction.history.len() {
                        Cursor::NextAuction { after: Some(id) }
                    } else if budget < 2 {
                        self.cursor = Cursor::InHistory { id, from };
                        break;
                    } else {
                        let bids: Vec<_> = auction.history.skip(from).iter().take(budget - 1).cloned().collect();
                        budget -= 1 + bids.len();
                        let mut piece = auction_piece(auction, std::iter::empty());
                        let next = from + bids.len();
                        piece.history = bids.into_iter().map(accepted_bid_state).collect();
                        chunk.auctions.push(piece);
                        Cursor::InHistory { id, from: next }
                    }
                }
                Cursor::Sessions { after } => {
                    let wanted = (budget / SESSION_ITEMS).max(1);
                    let sessions: Vec<_> = book.sessions_after(after.as_deref(), wanted).collect();
                    budget = budget.saturating_sub(sessions.len() * SESSION_ITEMS);
                    let exhausted = sessions.len() < wanted;
                    let last = sessions.last().map(|(client_id, _)| (*client_id).clone());
                    chunk.sessions.extend(sessions.into_iter().map(|(client_id, session)| rpb::ClientSession {
                        client_id: client_id.clone(),
                        outcomes: session.outcomes.iter().map(remembered_outcome).collect(),
                        highest_request_id: session.highest_request_id,
                        last_used_unix_ms: session.last_used_unix_ms,
                    }));
                    match last {
                        Some(last) if !exhausted => Cursor::Sessions { after: Some(last) },
                        _ => Cursor::Done,
                    }
                }
                Cursor::Done => break,
            };
        }
        chunk.more = !matches!(self.cursor, Cursor::Done);
        Some(chunk)
    }
}

/// Puts a chunked snapshot back together, one chunk at a time, so that the
/// receiver never holds more than one chunk's protobuf at once.
#[derive(Default)]
pub struct SnapshotAssembler {
    partial: Option<Snapshot>,
}

impl SnapshotAssembler {
    /// Adds a chunk; the whole snapshot once the last one came.
    pub fn add(&mut self, chunk: rpb::Snapshot) -> Result<Option<Snapshot>, MalformedMessage> {
        if chunk.format > SNAPSHOT_FORMAT {
            self.partial = None;
            return Err(MalformedMessage("a snapshot of a newer format than this gavel reads"));
        }
        let more = chunk.more;
        let header = ReplicatedState {
            cluster_id: chunk.cluster_id,
            membership: chunk.membership,
            last: LogPosition { epoch: chunk.last_epoch, index: chunk.last_index },
            clock_unix_ms: chunk.clock_unix_ms,
            machine: AuctionBook::default(),
        };
        let partial = self.partial.get_or_insert_with(|| Snapshot { epoch: chunk.epoch, state: header.clone() });
        let same_header = partial.epoch == chunk.epoch
            && partial.state.last == header.last
            && partial.state.cluster_id == header.cluster_id;
        if !same_header {
            self.partial = None;
            return Err(MalformedMessage("a snapshot chunk from another snapshot"));
        }
        let book = &mut partial.state.machine;
        book.created = chunk.auctions_created;
        book.compacted = chunk.compacted;
        for piece in chunk.auctions {
            let bidders = piece.bidders.into_iter().map(|bidder| (bidder.bidder, bidder.best_amount));
            let history = piece.history.into_iter().map(accepted_bid);
            match book.auctions.get_mut(&piece.auction_id) {
                Some(auction) => {
                    auction.bidders.extend(bidders);
                    auction.history.extend(history);
                }
                None => {
                    book.insert_auction(Auction {
                        auction_id: piece.auction_id,
                        seller: piece.seller,
                        title: piece.title,
                        created_at_unix_ms: piece.created_at_unix_ms,
                        created_revision: piece.created_revision,
                        revision: piece.revision,
                        expires_at_unix_ms: (piece.expires_at_unix_ms != 0).then_some(piece.expires_at_unix_ms),
                        cancelled: piece.cancelled,
                        description: piece.description,
                        minimum_amount: piece.minimum_amount,
                        ends_at_unix_ms: piece.ends_at_unix_ms,
                        closed: piece.closed,
                        highest_amount: piece.highest_amount,
                        highest_bidder: piece.highest_bidder,
                        accepted_bids: piece.accepted_bids,
                        bidders: bidders.collect(),
                        history: history.collect(),
                    });
                }
            }
        }
        for session in chunk.sessions {
            let mut outcomes = VecDeque::with_capacity(session.outcomes.len());
            for remembered in session.outcomes {
                let (request_id, fingerprint) = (remembered.request_id, remembered.fingerprint);
                outcomes.push_back(RememberedOutcome { request_id, fingerprint, outcome: write_outcome(remembered)? });
            }
            let restored = ClientSession {
                outcomes,
                highest_request_id: session.highest_request_id,
                last_used_unix_ms: session.last_used_unix_ms,
            };
            book.restore_session(session.client_id, restored);
        }
        Ok(if more { None } else { self.partial.take() })
    }
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Leader => pb::Role::Leader,
        Role::Backup => pb::Role::Backup,
        Role::Joining => pb::Role::Joining,
    }
}

/// What `Status` answers a client: the node, its role and the leaderQueue.
pub fn status_reply(status: NodeStatus) -> pb::StatusReply {
    pb::StatusReply {
        node: status.node,
        role: role_to_pb(status.role) as i32,
        epoch: status.epoch,
        leader: status.leader.unwrap_or_default(),
        leader_queue: status.membership,
        last_index: status.last.index,
        last_epoch: status.last.epoch,
        pid: status.pid,
        durable: status.disk.is_some(),
        fsyncs: status.disk.map_or(0, |disk| disk.fsyncs),
        fsynced_entries: status.disk.map_or(0, |disk| disk.fsynced_entries),
        http_address: status.http.unwrap_or_default(),
        record_version: status.record.as_ref().map_or(0, |record| record.version),
        record_members: status.record.map(|record| record.members).unwrap_or_default(),
    }
}

pub fn status_from_reply(reply: pb::StatusReply) -> NodeStatus {
    NodeStatus {
        node: reply.node,
        role: match pb::Role::try_from(reply.role) {
            Ok(pb::Role::Leader) => Role::Leader,
            Ok(pb::Role::Backup) => Role::Backup,
            _ => Role::Joining,
        },
        epoch: reply.epoch,
        leader: (!reply.leader.is_empty()).then_some(reply.leader),
        membership: reply.leader_queue,
        last: LogPosition { epoch: reply.last_epoch, index: reply.last_index },
        pid: reply.pid,
        cluster_id: String::new(),
        disk: reply.durable.then_some(DiskCounts { fsyncs: reply.fsyncs, fsynced_entries: reply.fsynced_entries }),
        http: (!reply.http_address.is_empty()).then_some(reply.http_address),
        record: (reply.record_version > 0)
            .then_some(RecordView { version: reply.record_version, members: reply.record_members }),
    }
}

/// What a takeover probe answers a peer.
pub fn probe_reply(status: NodeStatus) -> rpb::ProbeReply {
    rpb::ProbeReply {
        node: status.node,
        role: match status.role {
            Role::Leader => rpb::PeerRole::PeerLeader,
            Role::Backup => rpb::PeerRole::PeerBackup,
            Role::Joining => rpb::PeerRole::PeerJoining,
        } as i32,
        epoch: status.epoch,
        leader: status.leader.unwrap_or_default(),
        membership: status.membership,
        last_epoch: status.last.epoch,
        last_index: status.last.index,
        cluster_id: status.cluster_id,
    }
}

pub fn status_from_probe(reply: rpb::ProbeReply) -> NodeStatus {
    NodeStatus {
        node: reply.node,
        role: match rpb::PeerRole::try_from(reply.role) {
            Ok(rpb::PeerRole::PeerLeader) => Role::Leader,
            Ok(rpb::PeerRole::PeerBackup) => Role::Backup,
            _ => Role::Joining,
        },
        epoch: reply.epoch,
        leader: (!reply.leader.is_empty()).then_some(reply.leader),
        membership: reply.membership,
        last: LogPosition { epoch: reply.last_epoch, index: reply.last_index },
        pid: 0,
        cluster_id: reply.cluster_id,
        disk: None,
        http: None,
        record: None,
    }
}

/// Longest cluster id accepted in a Hello.
const MAX_CLUSTER_ID_LEN: usize = 64;

/// A Hello, checked: the node must be named by its address, as every node
/// is, and its position must be one a leader could have issued.
pub fn hello_from_message(hello: rpb::Hello) -> Result<Hello, MalformedMessage> {
    if hello.node.parse::<std::net::SocketAddr>().is_err() {
        return Err(MalformedMessage("hello must name the backup by its address, host:port"));
    }
    if hello.cluster_id.len() > MAX_CLUSTER_ID_LEN {
        return Err(MalformedMessage("cluster id too long"));
    }
    if !crate::replication::is_possible_epoch(hello.last_epoch) {
        return Err(MalformedMessage("an epoch no leader could have issued"));
    }
    if hello.incarnation == crate::replication::UNKNOWN_INCARNATION {
        return Err(MalformedMessage("hello must name the incarnation of the backup's state"));
    }
    Ok(Hello {
        node: hello.node,
        incarnation: hello.incarnation,
        last: LogPosition { epoch: hello.last_epoch, index: hello.last_index },
        cluster_id: hello.cluster_id,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::auction::{Command, OpenAuction};

    /// The next revision, as a log numbers its entries: an accepted bid's
    /// place is a revision above 0.
    fn next_revision(revision: &mut u64) -> u64 {
        *revision += 1;
        *revision
    }

    /// A state with a few auctions, one of many bidders, and many sessions.
    fn large_state(bidders: u64, auctions: usize) -> ReplicatedState {
        let mut revision = 0;
        let mut book = AuctionBook::default();
        for i in 0..auctions {
            book.apply_at(
                next_revision(&mut revision),
                &Command::Open(OpenAuction {
                    auction_id: format!("auction-{i}"),
                    description: "d".repeat(100),
                    minimum_amount: 1,
                    ends_at_unix_ms: 1_000_000,
                    at_unix_ms: 0,
                }),
            );
        }
        book.apply_at(
            next_revision(&mut revision),
            &Command::Create(CreateAuction {
                seller: "sam".into(),
                title: "a lamp".into(),
                description: String::new(),
                minimum_amount: 3,
                duration_ms: 0,
                ends_at_unix_ms: 2_000_000,
                client_id: "seller".into(),
                request_id: 1,
                at_unix_ms: 5,
            }),
        );
        for n in 1..=bidders {
            book.apply_at(
                next_revision(&mut revision),
                &Command::Bid(Bid {
                    auction_id: "auction-1".into(),
                    bidder: format!("bidder-{n}"),
                    amount: n,
                    client_id: format!("session-{n}"),
                    request_id: 1,
                    at_unix_ms: 10,
                }),
            );
        }
        ReplicatedState {
            cluster_id: "c".into(),
            machine: book,
            membership: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            last: LogPosition { epoch: 1 << 32, index: bidders + auctions as u64 },
            clock_unix_ms: 10,
        }
    }

    #[test]
    fn a_large_snapshot_streams_in_bounded_chunks_and_reassembles_exactly() {
        let snapshot = Snapshot { epoch: 2 << 32, state: large_state(20_000, 3) };
        let mut assembler = SnapshotAssembler::default();
        let mut chunks = 0;
        let mut rebuilt = None;
        for chunk in SnapshotChunks::new(snapshot.clone()) {
            chunks += 1;
            assert!(chunk.encoded_len() < 1024 * 1024, "chunk {chunks}: {} bytes", chunk.encoded_len());
            assert!(rebuilt.is_none(), "nothing follows the last chunk");
            rebuilt = assembler.add(chunk).expect("well-formed");
        }
        // 20,000 bidders and sessions cannot fit one chunk.
        assert!(chunks > 10, "{chunks} chunks");
        assert_eq!(rebuilt, Some(snapshot));
    }

    /// Auctions of every size around a chunk's budget, so that a chunk ends
    /// with a little room left before a large auction, and auctions span
    /// chunks: every bidder arrives.
    #[test]
    fn auctions_of_any_size_reassemble_exactly_across_chunks() {
        let mut revision = 0;
        for sizes in [[4094, 10, 3], [4093, 4096, 1], [1, 4095, 8190], [4095, 0, 4097], [2, 4094, 2]] {
            let mut book = AuctionBook::default();
            for (i, size) in sizes.iter().enumerate() {
                let id = format!("auction-{i}");
                book.apply_at(
                    next_revision(&mut revision),
                    &Command::Open(OpenAuction {
                        auction_id: id.clone(),
                        description: String::new(),
                        minimum_amount: 1,
                        ends_at_unix_ms: 1_000_000,
                        at_unix_ms: 0,
                    }),
                );
                for n in 1..=*size {
                    book.apply_at(
                        next_revision(&mut revision),
                        &Command::Bid(Bid {
                            auction_id: id.clone(),
                            bidder: format!("b{n:05}"),
                            amount: n,
                            client_id: String::new(),
                            request_id: 0,
                            at_unix_ms: 10,
                        }),
                    );
                }
            }
            let state = ReplicatedState { cluster_id: "c".into(), machine: book, ..ReplicatedState::default() };
            let snapshot = Snapshot { epoch: 1 << 32, state };
            let mut assembler = SnapshotAssembler::default();
            let mut rebuilt = None;
            for chunk in SnapshotChunks::new(snapshot.clone()) {
                rebuilt = assembler.add(chunk).expect("well-formed");
            }
            assert_eq!(rebuilt, Some(snapshot), "sizes {sizes:?}");
        }
    }

    #[test]
    fn an_empty_snapshot_is_one_chunk() {
        let snapshot = Snapshot { epoch: 1 << 32, state: ReplicatedState::default() };
        let chunks: Vec<_> = SnapshotChunks::new(snapshot.clone()).collect();
        assert_eq!(chunks.len(), 1);
        assert!(!chunks[0].more);
        let mut assembler = SnapshotAssembler::default();
        assert_eq!(assembler.add(chunks[0].clone()).expect("well-formed"), Some(snapshot));
    }

    #[test]
    fn a_chunk_of_another_snapshot_is_refused() {
        let snapshot = Snapshot { epoch: 2 << 32, state: large_state(10_000, 2) };
        let mut chunks = SnapshotChunks::new(snapshot);
        let mut assembler = SnapshotAssembler::default();
        assert_eq!(assembler.add(chunks.next().expect("a first chunk")).expect("well-formed"), None);
        let mut stranger = chunks.next().expect("a second chunk");
        stranger.last_index += 1;
        assert!(assembler.add(stranger).is_err());
    }

    /// One of each reason, with values in every field it carries.
    fn every_reason() -> Vec<Reason> {
        let name = |party, problem| Reason::Name { party, problem };
        vec![
            Reason::Registered { bidder: "alice".into() },
            Reason::AmountZero,
            name(Party::Bidder, NameProblem::Empty),
            name(Party::Seller, NameProblem::Control),
            name(Party::Bidder, NameProblem::Format),
            name(Party::Seller, NameProblem::TooLong { max: 64 }),
            name(Party::Bidder, NameProblem::NotNormal { given: " al".into(), normal: "al".into() }),
            Reason::AuctionIdTooLong { max: 64 },
            Reason::ClientIdTooLong { max: 65 },
            Reason::TitleEmpty,
            Reason::TitleTooLong { max: 128 },
            Reason::TitleControl,
            Reason::DescriptionTooLong { max: 2048 },
            Reason::NoEnd,
            Reason::DurationAndEnd,
            Reason::EndNotInFuture,
            Reason::TooLong,
            Reason::UnknownAuction { auction_id: "vase".into() },
            Reason::RequestIdReused { request_id: 7 },
            Reason::RequestKindDiffers { request_id: 8 },
            Reason::RequestTooOld { request_id: 9, window: 8 },
            Reason::SessionUnknown,
            Reason::AuctionOver,
            Reason::BelowMinimum { amount: 5, minimum: 10 },
            Reason::NotHigher { amount: 5, highest: 6, highest_bidder: "bob".into() },
            Reason::NotAboveOwnBest { amount: 5, own_best: 5 },
            Reason::SellerBids,
            Reason::NotTheSeller { auction_id: "a1".into() },
            Reason::HasBids { auction_id: "a2".into() },
        ]
    }

    #[test]
    fn every_reason_crosses_the_wire_as_the_same_value_under_its_own_code() {
        let reasons = every_reason();
        let codes: std::collections::HashSet<_> = reasons.iter().map(Reason::code).collect();
        assert_eq!(codes.len(), reasons.len(), "one code per kind of reason");
        for reason in reasons {
            let bytes = pb::Reason::from(&reason).encode_to_vec();
            let decoded = pb::Reason::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(Reason::try_from(decoded).ok(), Some(reason.clone()), "{reason:?}");
        }
        let unknown = pb::Reason { code: "made_up".into(), ..pb::Reason::default() };
        assert!(Reason::try_from(unknown).is_err());
    }

    #[test]
    fn a_snapshot_keeps_a_refusal_as_a_value_and_a_retry_after_it_gets_the_same_one() {
        let mut revision = 0;
        let mut state = large_state(2, 1);
        let low = Bid {
            auction_id: "auction-0".into(),
            bidder: "carol".into(),
            amount: 0,
            client_id: "session-low".into(),
            request_id: 1,
            at_unix_ms: 20,
        };
        // A refusal that reaches the dedup table: below the highest bid.
        state.machine.apply_at(next_revision(&mut revision), &Command::Bid(Bid { amount: 5, ..low.clone() }));
        state.machine.apply_at(
            next_revision(&mut revision),
            &Command::Bid(Bid { amount: 1, client_id: "session-fail".into(), ..low.clone() }),
        );
        let snapshot = Snapshot { epoch: 1 << 32, state };
        let mut assembler = SnapshotAssembler::default();
        let mut rebuilt = None;
        for chunk in SnapshotChunks::new(snapshot.clone()) {
            rebuilt = assembler.add(chunk).expect("well-formed");
        }
        let rebuilt = rebuilt.expect("complete");
        assert_eq!(rebuilt, snapshot);
        let remembered = rebuilt.state.machine.remembered("session-fail", 1).expect("remembered");
        assert_eq!(
            remembered.reason,
            Some(Reason::NotHigher { amount: 1, highest: 5, highest_bidder: "carol".into() })
        );
    }

    #[test]
    fn a_remembered_bid_keeps_its_place_and_a_snapshot_of_format_0_reads_without_it() {
        let state = large_state(3, 2);
        let placed = state.machine.remembered("session-2", 1).and_then(|outcome| outcome.placed);
        assert!(placed.is_some_and(|placed| placed.revision > 0), "{placed:?}");
        let snapshot = Snapshot { epoch: 1 << 32, state };
        let chunks: Vec<rpb::Snapshot> = SnapshotChunks::new(snapshot.clone()).collect();
        assert!(chunks.iter().all(|chunk| chunk.format == SNAPSHOT_FORMAT));

        let mut assembler = SnapshotAssembler::default();
        let rebuilt = chunks.iter().cloned().map(|chunk| assembler.add(chunk).expect("well-formed")).last();
        assert_eq!(rebuilt.flatten(), Some(snapshot.clone()));

        // As the commit before wrote it: format 0, no place remembered.
        let mut assembler = SnapshotAssembler::default();
        let mut rebuilt = None;
        for mut chunk in chunks.iter().cloned() {
            chunk.format = 0;
            for outcome in chunk.sessions.iter_mut().flat_map(|session| session.outcomes.iter_mut()) {
                (outcome.revision, outcome.at_unix_ms) = (0, 0);
            }
            rebuilt = assembler.add(chunk).expect("format 0 reads");
        }
        let rebuilt = rebuilt.expect("complete");
        let remembered = rebuilt.state.machine.remembered("session-2", 1).expect("remembered");
        assert_eq!(remembered.placed, None);
        assert_eq!(remembered.highest_amount, 2);

        // A format this gavel does not know is refused, not misread.
        let mut newer = chunks[0].clone();
        newer.format = SNAPSHOT_FORMAT + 1;
        assert!(SnapshotAssembler::default().add(newer).is_err());
    }
}
