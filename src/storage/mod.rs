//! Durable storage: a write-ahead log of opaque records and snapshot blobs.
//!
//! This layer knows nothing of auctions or protobuf. It keeps byte records
//! keyed by a contiguous log index, snapshots of whatever the caller
//! serialises, and small metadata files, and it says exactly when each is
//! durable. The node encodes its entries and decides what to replay.
//!
//! - `disk`: the file-system seam: [`OsDisk`] for the real disk, [`SimDisk`]
//!   in memory with a crash model, for tests and simulations.
//! - `wal`: the segmented [`Wal`]: append, sync, recovery, truncation, compaction.
//! - `snapshot`: atomic snapshot and metadata files ([`write_snapshot`], [`write_meta`]).
//! - `writer`: the group-commit thread ([`StorageWriter`]) that owns the log,
//!   so that fsyncs never block the async runtime; or, in a simulation, no
//!   thread at all ([`WriterMode::Inline`]).
//!
//! Everything lives in one data directory:
//!
//! ```text
//! 00000000000000000001.wal        log segments, named by their first index
//! 00000000000000052139.wal
//! snapshot-00000000000000052000.snap
//! cluster.meta                    metadata files (write_meta)
//! ```
//!
//! All integers on disk are little-endian; every file starts with an 8-byte
//! magic and a format version, so a build never misreads a format it does not
//! know.

mod disk;
mod snapshot;
mod wal;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use disk::{AppendFile, Disk, FileLock, OsDisk, SimDisk};
pub use snapshot::{
    META_FORMAT_VERSION, SNAPSHOT_FORMAT_VERSION, latest_snapshot, read_meta, write_meta, write_snapshot,
};
pub use wal::{DEFAULT_SEGMENT_BYTES, WAL_FORMAT_VERSION, Wal, WalOptions};
pub use writer::{FsyncPolicy, Persisted, StorageHandle, StorageWriter, WriterMode, WriterStats};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {}: {source}", .path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has format version {found}; this build reads version {supported}", .path.display())]
    UnknownVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{} is corrupt at byte {offset}: {damage}", .path.display())]
    Corrupt { path: PathBuf, offset: u64, damage: Damage },
    #[error("append at index {got}, but the next index is {expected}")]
    NotNext { expected: u64, got: u64 },
    #[error("index {index} is below the first index the log holds, {first}")]
    Compacted { index: u64, first: u64 },
    #[error("a record of {0} bytes is larger than a record can be")]
    RecordTooLarge(usize),
    /// After a failed write or sync nobody knows what reached the disk (a
    /// failed fsync may have dropped the dirty pages), so the log writes no
    /// more; reopening it recovers what is really there.
    #[error("the log refuses writes since an earlier write failed")]
    Poisoned,
    #[error("metadata name {0:?} must be letters, digits, '-' or '_'")]
    InvalidMetaName(String),
    #[error("the storage writer has stopped")]
    WriterStopped,
    #[error("the storage writer failed: {0}")]
    WriterFailed(Arc<StorageError>),
}

/// What is wrong with the bytes at a corrupt offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("not a gavel file of this kind (bad magic)")]
    BadMagic,
    #[error("header cut short")]
    ShortHeader,
    #[error("record cut short")]
    ShortRecord,
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("index {found} where {expected} was expected")]
    IndexOutOfOrder { expected: u64, found: u64 },
    #[error("the header says index {in_header}, the file name {in_name}")]
    NameMismatch { in_header: u64, in_name: u64 },
    #[error("the header says {in_header} bytes, the file holds {in_file}")]
    LengthMismatch { in_header: u64, in_file: u64 },
    /// In the last segment a bad record is a torn write only if nothing valid
    /// follows it; a valid record after it means bytes were damaged in place.
    #[error("{damage}, yet a valid record follows at byte {valid_at}")]
    ValidRecordFollows { damage: Box<Damage>, valid_at: u64 },
}

impl StorageError {
    fn corrupt(path: &Path, offset: usize, damage: Damage) -> Self {
        StorageError::Corrupt { path: path.to_path_buf(), offset: offset as u64, damage }
    }
}

/// Wraps an I/O error with what was being done to which file.
fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError + use<> {
    let path = path.to_path_buf();
    move |source| StorageError::Io { operation, path, source }
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// Little-endian reads at an offset the caller has checked is in bounds.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}
