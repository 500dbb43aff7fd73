//! Conversions between the protobuf messages and the domain types. A proto
//! change touches this file and no other.

use std::collections::VecDeque;

use crate::auction::{
    Auction, AuctionBook, AuctionView, Bid, BidOutcome, ClientSession, Command, OpenAuction, RememberedOutcome, Verdict,
};
use crate::replication::{Entry, LogPosition, NodeStatus, Payload, ReplicatedState, Role, Snapshot};

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

impl From<BidOutcome> for pb::BidReply {
    fn from(outcome: BidOutcome) -> Self {
        pb::BidReply {
            outcome: pb::Outcome::from(outcome.verdict) as i32,
            reason: outcome.reason,
            highest_amount: outcome.highest_amount,
            highest_bidder: outcome.highest_bidder,
        }
    }
}

impl TryFrom<pb::BidReply> for BidOutcome {
    type Error = MalformedMessage;
    fn try_from(reply: pb::BidReply) -> Result<Self, Self::Error> {
        let outcome = pb::Outcome::try_from(reply.outcome).map_err(|_| MalformedMessage("unknown outcome"))?;
        Ok(BidOutcome {
            verdict: Verdict::try_from(outcome)?,
            reason: reply.reason,
            highest_amount: reply.highest_amount,
            highest_bidder: reply.highest_bidder,
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
            Payload::Command(Command::Close { auction_id, at_unix_ms }) => {
                P::CloseAuction(rpb::CloseAuction { auction_id: auction_id.clone(), at_unix_ms: *at_unix_ms })
            }
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
            P::CloseAuction(close) => {
                Payload::Command(Command::Close { auction_id: close.auction_id, at_unix_ms: close.at_unix_ms })
            }
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
    let outcome = &remembered.outcome;
    rpb::RememberedOutcome {
        request_id: remembered.request_id,
        outcome: pb::Outcome::from(outcome.verdict) as u32,
        reason: outcome.reason.clone(),
        highest_amount: outcome.highest_amount,
        highest_bidder: outcome.highest_bidder.clone(),
        fingerprint: remembered.fingerprint,
    }
}

impl From<&Snapshot> for rpb::Snapshot {
    fn from(snapshot: &Snapshot) -> Self {
        let state = &snapshot.state;
        rpb::Snapshot {
            epoch: snapshot.epoch,
            last_epoch: state.last.epoch,
            last_index: state.last.index,
            membership: state.membership.clone(),
            cluster_id: state.cluster_id.clone(),
            auctions: state
                .book
                .auctions
                .values()
                .map(|auction| rpb::AuctionState {
                    auction_id: auction.auction_id.clone(),
                    description: auction.description.clone(),
                    minimum_amount: auction.minimum_amount,
                    ends_at_unix_ms: auction.ends_at_unix_ms,
                    closed: auction.closed,
                    highest_amount: auction.highest_amount,
                    highest_bidder: auction.highest_bidder.clone(),
                    accepted_bids: auction.accepted_bids,
                    bidders: auction
                        .bidders
                        .iter()
                        .map(|(bidder, best)| rpb::BidderState { bidder: bidder.clone(), best_amount: *best })
                        .collect(),
                })
                .collect(),
            sessions: state
                .book
                .sessions()
                .map(|(client_id, session)| rpb::ClientSession {
                    client_id: client_id.clone(),
                    outcomes: session.outcomes.iter().map(remembered_outcome).collect(),
                    highest_request_id: session.highest_request_id,
                    last_used_unix_ms: session.last_used_unix_ms,
                })
                .collect(),
            clock_unix_ms: state.clock_unix_ms,
        }
    }
}

impl TryFrom<rpb::Snapshot> for Snapshot {
    type Error = MalformedMessage;
    fn try_from(snapshot: rpb::Snapshot) -> Result<Self, Self::Error> {
        let mut book = AuctionBook::default();
        for auction in snapshot.auctions {
            let bidders = auction.bidders.into_iter().map(|bidder| (bidder.bidder, bidder.best_amount)).collect();
            book.auctions.insert(
                auction.auction_id.clone(),
                Auction {
                    auction_id: auction.auction_id,
                    description: auction.description,
                    minimum_amount: auction.minimum_amount,
                    ends_at_unix_ms: auction.ends_at_unix_ms,
                    closed: auction.closed,
                    highest_amount: auction.highest_amount,
                    highest_bidder: auction.highest_bidder,
                    accepted_bids: auction.accepted_bids,
                    bidders,
                },
            );
        }
        for session in snapshot.sessions {
            let mut outcomes = VecDeque::with_capacity(session.outcomes.len());
            for remembered in session.outcomes {
                let outcome = pb::Outcome::try_from(remembered.outcome as i32)
                    .map_err(|_| MalformedMessage("unknown outcome in snapshot"))?;
                outcomes.push_back(RememberedOutcome {
                    request_id: remembered.request_id,
                    fingerprint: remembered.fingerprint,
                    outcome: BidOutcome {
                        verdict: Verdict::try_from(outcome)?,
                        reason: remembered.reason,
                        highest_amount: remembered.highest_amount,
                        highest_bidder: remembered.highest_bidder,
                    },
                });
            }
            let restored = ClientSession {
                outcomes,
                highest_request_id: session.highest_request_id,
                last_used_unix_ms: session.last_used_unix_ms,
            };
            book.restore_session(session.client_id, restored);
        }
        Ok(Snapshot {
            epoch: snapshot.epoch,
            state: ReplicatedState {
                cluster_id: snapshot.cluster_id,
                book,
                membership: snapshot.membership,
                last: LogPosition { epoch: snapshot.last_epoch, index: snapshot.last_index },
                clock_unix_ms: snapshot.clock_unix_ms,
            },
        })
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
    Ok(Hello {
        node: hello.node,
        last: LogPosition { epoch: hello.last_epoch, index: hello.last_index },
        cluster_id: hello.cluster_id,
    })
}
