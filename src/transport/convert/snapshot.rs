//! The snapshot stream: a state as a sequence of bounded chunks
//! ([`SnapshotChunks`]) and back ([`SnapshotAssembler`]), the format
//! version the chunks carry, and the remembered outcomes inside them.

use std::collections::VecDeque;

use crate::auction::machine::{ReplicatedState, Snapshot};
use crate::auction::{
    AcceptedBid, Auction, AuctionBook, BidOutcome, CancelOutcome, ClientSession, CreateOutcome, RememberedOutcome,
    Verdict, WriteOutcome,
};
use crate::replication::LogPosition;
use crate::transport::pb;
use crate::transport::pb::replication as rpb;

use super::{MalformedMessage, placed_from, reason_from_pb, reason_to_pb};

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

/// The snapshot format written: 2 since names may be bound to secrets (a
/// gavel that reads 1 at most would drop the bindings: it refuses 2 instead);
/// 1 since remembered bid outcomes carry their revision and stamp (format 0
/// did not; such a snapshot still reads, its remembered bids without a place).
pub const SNAPSHOT_FORMAT: u32 = 2;

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
    /// The names bound to a secret, after this one.
    NameOwners {
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
                        let bids: Vec<_> = auction.history.cloned_from(from).take(budget - 1).collect();
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
                        _ => Cursor::NameOwners { after: None },
                    }
                }
                Cursor::NameOwners { after } => {
                    let owners: Vec<_> = book.name_owners_after(after.as_deref(), budget).collect();
                    budget -= owners.len();
                    let last = owners.last().map(|(name, _)| (*name).clone());
                    let exhausted = budget > 0;
                    chunk.name_owners.extend(
                        owners
                            .into_iter()
                            .map(|(name, digest)| rpb::NameOwner { name: name.clone(), digest: digest.to_vec() }),
                    );
                    match last {
                        Some(last) if !exhausted => Cursor::NameOwners { after: Some(last) },
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
        for owner in chunk.name_owners {
            let digest =
                super::peer::digest_from_wire(&owner.digest)?.ok_or(MalformedMessage("a name bound to no digest"))?;
            book.restore_name_owner(owner.name, digest);
        }
        Ok(if more { None } else { self.partial.take() })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::auction::{Bid, Command, CreateAuction, OpenAuction, Reason};

    /// The next revision, as a log numbers its entries: an accepted bid's
    /// place is a revision above 0.
    fn next_revision(revision: &mut u64) -> u64 {
        *revision += 1;
        *revision
    }

    /// A made-up digest of a name's secret, one per `n`.
    fn digest_of(n: u64) -> crate::auction::NameDigest {
        let mut digest = [0; 32];
        digest[..8].copy_from_slice(&n.to_le_bytes());
        digest
    }

    /// A state with a few auctions, one of many bidders (each name bound to
    /// a secret), and many sessions.
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
                max_open_per_seller: 0,
                name_digest: None,
                seller: "sam".into(),
                title: "a lamp".into(),
                description: String::new(),
                minimum_amount: 3,
                duration_ms: 0,
                ends_at_unix_ms: 2_000_000,
                client_id: "seller".into(),
                request_id: 1,
                at_unix_ms: 5,
                max_auctions: 0,
            }),
        );
        for n in 1..=bidders {
            book.apply_at(
                next_revision(&mut revision),
                &Command::Bid(Bid {
                    // Every bidder binds its name: more names than a chunk holds.
                    name_digest: Some(digest_of(n)),
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
        let rebuilt = rebuilt.expect("the last chunk came");
        assert_eq!(rebuilt.state.machine.name_owner("bidder-20000"), Some(&digest_of(20_000)));
        assert_eq!(rebuilt, snapshot);
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
                            name_digest: None,
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

    #[test]
    fn a_snapshot_keeps_a_refusal_as_a_value_and_a_retry_after_it_gets_the_same_one() {
        let mut revision = 0;
        let mut state = large_state(2, 1);
        let low = Bid {
            name_digest: None,
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
