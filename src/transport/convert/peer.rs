//! The peer wire: log entries as the leader streams them, the hello a
//! backup opens its stream with, and the takeover probe's answer.

use crate::auction::machine::{Entry, Payload};
use crate::auction::{Bid, CancelAuction, Command, CreateAuction, NameDigest, OpenAuction};
use crate::replication::{LogPosition, NodeStatus, Role};
use crate::transport::Hello;
use crate::transport::pb::replication as rpb;

use super::MalformedMessage;

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
                name_digest: digest_to_wire(bid.name_digest.as_ref()),
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
                max_auctions: create.max_auctions,
                max_open_per_seller: create.max_open_per_seller,
                name_digest: digest_to_wire(create.name_digest.as_ref()),
            }),
            Payload::Command(Command::Cancel(cancel)) => P::CancelAuction(rpb::CancelAuction {
                auction_id: cancel.auction_id.clone(),
                seller: cancel.seller.clone(),
                client_id: cancel.client_id.clone(),
                request_id: cancel.request_id,
                at_unix_ms: cancel.at_unix_ms,
                retain_ms: cancel.retain_ms,
                name_digest: digest_to_wire(cancel.name_digest.as_ref()),
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

/// A name's digest on the wire: empty when there is none.
pub(super) fn digest_to_wire(digest: Option<&NameDigest>) -> Vec<u8> {
    digest.map(|digest| digest.to_vec()).unwrap_or_default()
}

pub(super) fn digest_from_wire(bytes: &[u8]) -> Result<Option<NameDigest>, MalformedMessage> {
    match bytes.len() {
        0 => Ok(None),
        _ => NameDigest::try_from(bytes).map(Some).map_err(|_| MalformedMessage("a name digest is 32 bytes")),
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
                name_digest: digest_from_wire(&bid.name_digest)?,
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
                max_auctions: create.max_auctions,
                max_open_per_seller: create.max_open_per_seller,
                name_digest: digest_from_wire(&create.name_digest)?,
            })),
            P::CancelAuction(cancel) => Payload::Command(Command::Cancel(CancelAuction {
                auction_id: cancel.auction_id,
                seller: cancel.seller,
                client_id: cancel.client_id,
                request_id: cancel.request_id,
                at_unix_ms: cancel.at_unix_ms,
                retain_ms: cancel.retain_ms,
                name_digest: digest_from_wire(&cancel.name_digest)?,
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
        waiting: None,
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
