//! The client API's messages: bids, creates, cancels, results, auction
//! information and events, and the node's status as `Status` answers it.

use crate::auction::{
    AcceptedBid, AuctionEvent, AuctionInfo, AuctionView, Bid, BidOutcome, CancelOutcome, CreateAuction, CreateOutcome,
    EventKind, NameDigest, Reason, Verdict, render,
};
use crate::replication::{DiskCounts, LogPosition, NodeStatus, RecordView, Role};
use crate::security::SECRET_BYTES;
use crate::transport::pb;

use super::{MalformedMessage, placed_from, reason_from_pb, reason_to_pb};

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
        max_open_per_seller: 0,
        duration_ms: request.duration_ms,
        seller: request.seller,
        title: request.title,
        description: request.description,
        minimum_amount: request.minimum_amount,
        ends_at_unix_ms: request.ends_at_unix_ms,
        client_id: request.client_id,
        request_id: request.request_id,
        at_unix_ms: 0,
        max_auctions: 0,
        name_digest: None,
    };
    Ok(create)
}

/// What the leader sequences for a name a client certificate proves: a
/// digest no secret has (a secret's input is 16 bytes; this one is longer),
/// so a name bound to the certificate needs it, and one bound to a secret
/// needs the secret.
pub fn certificate_digest(name: &str) -> NameDigest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"gavel client certificate\0");
    hasher.update(name.as_bytes());
    hasher.finalize().into()
}

/// What the leader sequences of a name's secret: its SHA-256, when names
/// are authenticated and a secret was given; nothing otherwise. A secret of
/// the wrong length is refused, whether or not names are authenticated.
pub fn name_digest(secret: &[u8], authenticated: bool) -> Result<Option<NameDigest>, String> {
    use sha2::Digest as _;
    match secret.len() {
        0 => Ok(None),
        SECRET_BYTES if authenticated => Ok(Some(sha2::Sha256::digest(secret).into())),
        SECRET_BYTES => Ok(None),
        length => Err(format!("a name's secret is {SECRET_BYTES} bytes, not {length}")),
    }
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
        name_digest: None,
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
        waiting: status.waiting.unwrap_or_default(),
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
        waiting: (!reply.waiting.is_empty()).then_some(reply.waiting),
    }
}
