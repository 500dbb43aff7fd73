//! Conversions between the protobuf messages and the domain types, one file
//! per conversation: the client API, the peer wire, the snapshot stream and
//! the disk format. A proto change touches this folder and no other. What
//! more than one of them needs (the malformed-message error, verdicts and
//! reasons, a bid's place) lives here.

mod client_api;
pub mod disk_format;
mod peer;
mod snapshot;

use crate::auction::{AuctionBook, NameProblem, Party, Placed, Reason, Verdict};
use crate::replication::{Entry, Snapshot, StateMachine};

use super::pb;
use super::pb::replication as rpb;

pub use client_api::{
    bid_from_request, certificate_digest, create_from_request, name_digest, result_reply, status_from_reply,
    status_reply,
};
pub use peer::{hello_from_message, probe_reply, status_from_probe};
pub use snapshot::{SNAPSHOT_CHUNK_ITEMS, SnapshotAssembler, SnapshotChunks};

/// A message from the leader that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("malformed replication message: {0}")]
pub struct MalformedMessage(pub &'static str);

/// How a state machine's log entries and snapshots are written: on the
/// peer wire and, in the same protobuf, on disk (see [`disk_format`]).
pub trait Wire: StateMachine {
    /// A snapshot, in bounded chunks made one at a time.
    type SnapshotChunks: Iterator<Item = rpb::Snapshot> + Send;
    /// Puts a snapshot back together, one chunk at a time.
    type SnapshotAssembler: Default + Send;

    fn entry_to_wire(entry: &Entry<Self::Command>) -> rpb::Entry;
    fn entry_from_wire(entry: rpb::Entry) -> Result<Entry<Self::Command>, MalformedMessage>;
    fn snapshot_chunks(snapshot: Snapshot<Self>) -> Self::SnapshotChunks;
    /// Adds a chunk; the whole snapshot once the last one came.
    fn add_snapshot_chunk(
        assembler: &mut Self::SnapshotAssembler,
        chunk: rpb::Snapshot,
    ) -> Result<Option<Snapshot<Self>>, MalformedMessage>;
}

impl Wire for AuctionBook {
    type SnapshotChunks = SnapshotChunks;
    type SnapshotAssembler = SnapshotAssembler;

    fn entry_to_wire(entry: &Entry<Self::Command>) -> rpb::Entry {
        rpb::Entry::from(entry)
    }

    fn entry_from_wire(entry: rpb::Entry) -> Result<Entry<Self::Command>, MalformedMessage> {
        Entry::try_from(entry)
    }

    fn snapshot_chunks(snapshot: Snapshot<Self>) -> SnapshotChunks {
        SnapshotChunks::new(snapshot)
    }

    fn add_snapshot_chunk(
        assembler: &mut SnapshotAssembler,
        chunk: rpb::Snapshot,
    ) -> Result<Option<Snapshot<Self>>, MalformedMessage> {
        assembler.add(chunk)
    }
}

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
            Reason::NameOwned { party, name } => {
                message.party = match party {
                    Party::Bidder => pb::Party::Bidder,
                    Party::Seller => pb::Party::Seller,
                } as i32;
                message.name.clone_from(name);
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
            Reason::TooManyAuctions { max }
            | Reason::TooManyOpenAuctions { max }
            | Reason::RequestIdTooLarge { max } => message.limit = *max,
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
            | Reason::TitleFormat
            | Reason::DescriptionHidden
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
        let party = || match pb::Party::try_from(message.party) {
            Ok(pb::Party::Bidder) => Ok(Party::Bidder),
            Ok(pb::Party::Seller) => Ok(Party::Seller),
            _ => Err(MalformedMessage("reason names no party")),
        };
        let name = |problem| Ok(Reason::Name { party: party()?, problem });
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
            "title_format" => Reason::TitleFormat,
            "description_hidden" => Reason::DescriptionHidden,
            "description_too_long" => Reason::DescriptionTooLong { max },
            "no_end" => Reason::NoEnd,
            "duration_and_end" => Reason::DurationAndEnd,
            "end_not_in_future" => Reason::EndNotInFuture,
            "too_long" => Reason::TooLong,
            "too_many_auctions" => Reason::TooManyAuctions { max: limit },
            "too_many_open_auctions" => Reason::TooManyOpenAuctions { max: limit },
            "unknown_auction" => Reason::UnknownAuction { auction_id: message.name },
            "request_id_reused" => Reason::RequestIdReused { request_id: message.request_id },
            "request_kind_differs" => Reason::RequestKindDiffers { request_id: message.request_id },
            "request_too_old" => Reason::RequestTooOld { request_id: message.request_id, window: max },
            "session_unknown" => Reason::SessionUnknown,
            "request_id_too_large" => Reason::RequestIdTooLarge { max: limit },
            "name_owned" => Reason::NameOwned { party: party()?, name: message.name },
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

/// A bid's place from the wire: a revision of 0 means none.
fn placed_from(revision: u64, at_unix_ms: i64) -> Option<Placed> {
    (revision > 0).then_some(Placed { revision, at_unix_ms })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

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
            Reason::TitleFormat,
            Reason::DescriptionHidden,
            Reason::DescriptionTooLong { max: 2048 },
            Reason::NoEnd,
            Reason::DurationAndEnd,
            Reason::EndNotInFuture,
            Reason::TooLong,
            Reason::TooManyAuctions { max: 100 },
            Reason::TooManyOpenAuctions { max: 10 },
            Reason::UnknownAuction { auction_id: "vase".into() },
            Reason::RequestIdReused { request_id: 7 },
            Reason::RequestKindDiffers { request_id: 8 },
            Reason::RequestTooOld { request_id: 9, window: 8 },
            Reason::SessionUnknown,
            Reason::RequestIdTooLarge { max: 1 << 20 },
            Reason::NameOwned { party: Party::Seller, name: "ann".into() },
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
}
