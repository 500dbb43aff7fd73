//! The bytes a node keeps on its disk: the replication wire's own protobuf
//! messages. A log record is an entry as a backup receives it; a snapshot is
//! the chunks a joiner receives, each length-delimited, so a state of any
//! size is written and read one chunk's protobuf at a time, and one format
//! serves the wire and the disk.

use prost::Message as _;

use crate::replication::{Entry, Snapshot};
use crate::transport::pb::replication as rpb;

use super::{MalformedMessage, Wire};

/// The record of one log entry.
pub fn encode_entry<M: Wire>(entry: &Entry<M::Command>) -> Vec<u8> {
    M::entry_to_wire(entry).encode_to_vec()
}

/// An entry back from its record.
pub fn decode_entry<M: Wire>(record: &[u8]) -> Result<Entry<M::Command>, MalformedMessage> {
    let message = rpb::Entry::decode(record).map_err(|_| MalformedMessage("a log record that is not an entry"))?;
    M::entry_from_wire(message)
}

/// A snapshot as one blob: its chunks, each length-delimited.
pub fn encode_snapshot<M: Wire>(snapshot: Snapshot<M>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for chunk in M::snapshot_chunks(snapshot) {
        chunk.encode_length_delimited(&mut bytes).expect("a Vec grows as needed");
    }
    bytes
}

/// A snapshot back from its blob.
pub fn decode_snapshot<M: Wire>(mut bytes: &[u8]) -> Result<Snapshot<M>, MalformedMessage> {
    let mut assembler = M::SnapshotAssembler::default();
    while !bytes.is_empty() {
        let chunk = rpb::Snapshot::decode_length_delimited(&mut bytes)
            .map_err(|_| MalformedMessage("a snapshot file whose chunks do not decode"))?;
        if let Some(snapshot) = M::add_snapshot_chunk(&mut assembler, chunk)? {
            return if bytes.is_empty() {
                Ok(snapshot)
            } else {
                Err(MalformedMessage("bytes after a snapshot's last chunk"))
            };
        }
    }
    Err(MalformedMessage("a snapshot file that ends before its last chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::AuctionBook;
    use crate::auction::machine::{Payload, ReplicatedState};
    use crate::auction::{Bid, Command, OpenAuction};
    use crate::replication::LogPosition;

    /// The next revision, as a log numbers its entries: an accepted bid's
    /// place is a revision above 0.
    fn next_revision(revision: &mut u64) -> u64 {
        *revision += 1;
        *revision
    }

    #[test]
    fn entries_and_snapshots_read_back_as_written_and_a_cut_snapshot_is_refused() {
        let mut revision = 0;
        let open = Command::Open(OpenAuction {
            auction_id: "vase".into(),
            description: "a vase".into(),
            minimum_amount: 1,
            ends_at_unix_ms: 1_000_000,
            at_unix_ms: 0,
        });
        let entry = Entry { epoch: 1 << 32, index: 2, payload: Payload::Command(open.clone()) };
        assert_eq!(decode_entry::<AuctionBook>(&encode_entry::<AuctionBook>(&entry)).ok(), Some(entry));
        assert!(decode_entry::<AuctionBook>(&[0xff, 0xff, 0xff]).is_err());

        let mut state = ReplicatedState { cluster_id: "c".into(), ..ReplicatedState::default() };
        state.machine.apply_at(next_revision(&mut revision), &open);
        for n in 1..=10_000 {
            let bid = Bid {
                name_digest: None,
                auction_id: "vase".into(),
                bidder: format!("b{n}"),
                amount: n,
                client_id: format!("s{n}"),
                request_id: 1,
                at_unix_ms: 5,
            };
            state.machine.apply_at(next_revision(&mut revision), &Command::Bid(bid));
        }
        state.last = LogPosition { epoch: 1 << 32, index: 10_002 };
        let snapshot = Snapshot { epoch: 1 << 32, state };
        let bytes = encode_snapshot(snapshot.clone());
        assert_eq!(decode_snapshot::<AuctionBook>(&bytes).ok(), Some(snapshot));
        assert!(decode_snapshot::<AuctionBook>(&bytes[..bytes.len() / 2]).is_err());
        assert!(decode_snapshot::<AuctionBook>(&[]).is_err());
    }

    /// Not a check: how long a large state takes to encode, which the node
    /// does on its loop once per `--snapshot-every` entries.
    /// `cargo test --release --lib disk_format::tests::time_a_large_snapshot -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_a_large_snapshot() {
        let mut revision = 0;
        let mut state = ReplicatedState { cluster_id: "c".into(), ..ReplicatedState::default() };
        state.machine.apply_at(
            next_revision(&mut revision),
            &Command::Open(OpenAuction {
                auction_id: "vase".into(),
                description: String::new(),
                minimum_amount: 1,
                ends_at_unix_ms: i64::MAX,
                at_unix_ms: 0,
            }),
        );
        for n in 1..=1_000_000 {
            let bid = Bid {
                name_digest: None,
                auction_id: "vase".into(),
                bidder: format!("bidder-{n}"),
                amount: n,
                client_id: format!("session-{n}"),
                request_id: 1,
                at_unix_ms: 5,
            };
            state.machine.apply_at(next_revision(&mut revision), &Command::Bid(bid));
        }
        state.last = LogPosition { epoch: 1 << 32, index: 1_000_001 };
        let started = std::time::Instant::now();
        let bytes = encode_snapshot(Snapshot { epoch: 1 << 32, state });
        let encoded = started.elapsed();
        let started = std::time::Instant::now();
        decode_snapshot::<AuctionBook>(&bytes).expect("decodes");
        println!(
            "1,000,000 bidders and sessions: {} MB, encoded in {encoded:?}, decoded in {:?}",
            bytes.len() / 1_000_000,
            started.elapsed()
        );
    }
}
