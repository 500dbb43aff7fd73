//! The write-ahead log: records keyed by a contiguous index, in segment files.
//!
//! A segment is named by the first index it holds (`00000000000000000001.wal`,
//! zero-padded so names sort) and starts with a header:
//!
//! ```text
//! magic "GAVELWAL" (8) | format version u32 | first index u64
//! ```
//!
//! then records, each `length u32 | crc32 u32 | index u64 | payload`, where
//! the CRC covers the index and the payload.
//!
//! Only the last segment is ever written to, and a segment is synced in full
//! before the next one is created, so damage in an earlier segment can only be
//! corruption, while a bad tail in the last one is a write torn by a crash,
//! cut away at recovery. Appends are buffered and reach the disk in one write
//! per [`Wal::flush`] or [`Wal::sync`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::disk::{AppendFile, Disk};
use super::{Damage, StorageError, crc32, io_error, read_u32, read_u64};

pub const WAL_FORMAT_VERSION: u32 = 1;
const SEGMENT_MAGIC: &[u8; 8] = b"GAVELWAL";
const SEGMENT_HEADER_LEN: usize = 20;
const RECORD_HEADER_LEN: usize = 16;
const SEGMENT_SUFFIX: &str = ".wal";

/// The size past which a segment is closed and the next one begun.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Buffered records go to the disk at this size even before a sync, so a long
/// run without syncs (under `FsyncPolicy::Never`) holds bounded memory.
const FLUSH_BYTES: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment that reaches this size is closed after the record that
    /// crossed it; smaller segments let compaction free space sooner.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

#[derive(Clone, Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
}

/// The log. One owner writes to it (see `StorageWriter`).
pub struct Wal {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    options: WalOptions,
    /// Every segment, oldest first; the last is the active one.
    segments: Vec<Segment>,
    /// The active segment, kept open so that appends do not reopen it.
    active: Box<dyn AppendFile>,
    /// Bytes in the active segment, written or still buffered: when to roll over.
    active_len: u64,
    /// Encoded records not yet handed to the disk.
    pending: Vec<u8>,
    next_index: u64,
    /// Whether the active segment holds writes not yet synced.
    unsynced: bool,
    /// Whether a segment was created since the directory was last synced.
    dir_unsynced: bool,
    /// Set by a failed write: see [`StorageError::Poisoned`].
    poisoned: bool,
}

/// What one step through a segment's bytes found.
enum Scan {
    Record { index: u64, payload_at: usize, next_at: usize },
    End,
    Bad(Damage),
}

impl Wal {
    /// Opens the log in `dir` (creating both if needed) and replays every
    /// record through `on_record` in index order, one segment in memory at a
    /// time. A bad tail of the last segment is cut away; damage anywhere else,
    /// or a gap in the indices, refuses to open. Everything replayed is
    /// durable when this returns.
    pub fn open<E: From<StorageError>>(
        disk: Arc<dyn Disk>,
        dir: impl Into<PathBuf>,
        options: WalOptions,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<Wal, E> {
        let dir = dir.into();
        disk.create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let names = disk.list(&dir).map_err(io_error("list", &dir))?;
        let mut segments: Vec<Segment> = names
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .map(|first_index| Segment { first_index, path: segment_path(&dir, first_index) })
            .collect();
        segments.sort_by_key(|segment| segment.first_index);
        if segments.is_empty() {
            let segment = Segment { first_index: 1, path: segment_path(&dir, 1) };
            write_segment_file(&*disk, &dir, &segment)?;
            segments.push(segment);
        }

        let mut next_index = segments[0].first_index;
        let mut active_len = 0;
        let last_position = segments.len() - 1;
        for (position, segment) in segments.iter().enumerate() {
            if segment.first_index != next_index {
                let damage = Damage::IndexOutOfOrder { expected: next_index, found: segment.first_index };
                return Err(StorageError::corrupt(&segment.path, 0, damage).into());
            }
            let is_last = position == last_position;
            active_len = recover_segment(&*disk, &dir, segment, is_last, &mut next_index, &mut on_record)?;
        }

        let active_path = &segments[last_position].path;
        let mut active = disk.open_append(active_path).map_err(io_error("open", active_path))?;
        // What was replayed may sit unsynced in the page cache (a process
        // crash under FsyncPolicy::Never): make it durable before the node
        // acknowledges anything on the strength of it.
        active.sync_data().map_err(io_error("sync", active_path))?;
        disk.sync_dir(&dir).map_err(io_error("sync directory", &dir))?;
        Ok(Wal {
            disk,
            dir,
            options,
            segments,
            active,
            active_len,
            pending: Vec::with_capacity(FLUSH_BYTES),
            next_index,
            unsynced: false,
            dir_unsynced: false,
            poisoned: false,
        })
    }

    /// The first index the log holds (or would hold, when empty).
    pub fn first_index(&self) -> u64 {
        self.segments.first().map_or(self.next_index, |segment| segment.first_index)
    }

    /// The last index appended; `first_index() - 1` when the log is empty.
    pub fn last_index(&self) -> u64 {
        self.next_index - 1
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record, buffered; durable after the next [`Wal::sync`].
    /// `index` is the next index, or an earlier one: then the log is first
    /// truncated from `index` (a new leader replaces an uncommitted tail).
    pub fn append(&mut self, index: u64, payload: &[u8]) -> Result<(), StorageError> {
        if index < self.next_index {
            self.truncate_from(index)?;
        }
        if index != self.next_index {
            return Err(StorageError::NotNext { expected: self.next_index, got: index });
        }
        let length = u32::try_from(payload.len()).map_err(|_| StorageError::RecordTooLarge(payload.len()))?;
        self.writing(|wal| {
            let index_bytes = index.to_le_bytes();
            wal.pending.extend_from_slice(&length.to_le_bytes());
            wal.pending.extend_from_slice(&crc32(&[&index_bytes, payload]).to_le_bytes());
            wal.pending.extend_from_slice(&index_bytes);
            wal.pending.extend_from_slice(payload);
            wal.next_index += 1;
            wal.active_len += (RECORD_HEADER_LEN + payload.len()) as u64;
            wal.unsynced = true;
            if wal.active_len >= wal.options.segment_bytes {
                wal.roll_over()?;
            } else if wal.pending.len() >= FLUSH_BYTES {
                wal.write_pending()?;
            }
            Ok(())
        })
    }

    /// Hands buffered records to the operating system, without syncing:
    /// they survive a crash of the process, not of the machine.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.writing(Wal::write_pending)
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.writing(Wal::sync_active)
    }

    /// Removes every record from `index` on, durably. The segment holding
    /// `index` is scanned to find its offset; later segments are removed.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        if index >= self.next_index {
            return Ok(());
        }
        if index < self.first_index() {
            return Err(StorageError::Compacted { index, first: self.first_index() });
        }
        self.writing(|wal| {
            wal.write_pending()?;
            let holder = wal.segments.partition_point(|segment| segment.first_index <= index) - 1;
            let removes_active = holder + 1 < wal.segments.len();
            // Later segments go newest first, each removal durable before the
            // next, and before the cut: a crash at any point leaves the log
            // contiguous.
            while wal.segments.len() > holder + 1 {
                if let Some(segment) = wal.segments.pop() {
                    wal.remove_segment(&segment)?;
                }
            }
            let segment = &wal.segments[holder];
            let data = wal.disk.read(&segment.path).map_err(io_error("read", &segment.path))?;
            let offset = offset_of(&data, segment, index)?;
            wal.disk.truncate(&segment.path, offset as u64).map_err(io_error("truncate", &segment.path))?;
            if removes_active {
                wal.active = wal.disk.open_append(&segment.path).map_err(io_error("open", &segment.path))?;
            }
            wal.active_len = offset as u64;
            wal.next_index = index;
            wal.unsynced = false;
            Ok(())
        })
    }

    /// Removes every segment whose records are all at or below `index`, once
    /// a snapshot through `index` is durable; never the active segment.
    /// Returns how many were removed.
    pub fn compact_through(&mut self, index: u64) -> Result<usize, StorageError> {
        let covered =
            self.segments.windows(2).take_while(|pair| pair[1].first_index <= index.saturating_add(1)).count();
        if covered == 0 {
            return Ok(0);
        }
        self.writing(|wal| {
            // Oldest first, each durable before the next: a crash leaves a
            // contiguous log.
            for _ in 0..covered {
                let segment = wal.segments.remove(0);
                wal.remove_segment(&segment)?;
            }
            Ok(covered)
        })
    }

    /// Empties the log and starts it over at `next_index`: after the node
    /// installs a snapshot newer than its whole log.
    pub fn restart_at(&mut self, next_index: u64) -> Result<(), StorageError> {
        self.writing(|wal| {
            wal.pending.clear();
            // Oldest first, so that a crash midway leaves a contiguous log.
            for segment in std::mem::take(&mut wal.segments) {
                wal.remove_segment(&segment)?;
            }
            wal.next_index = next_index;
            wal.start_segment()?;
            wal.sync_active()
        })
    }

    /// Runs a step that writes; a failure poisons the log.
    fn writing<T>(&mut self, step: impl FnOnce(&mut Wal) -> Result<T, StorageError>) -> Result<T, StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let result = step(self);
        self.poisoned = result.is_err();
        result
    }

    fn active_path(&self) -> &Path {
        self.segments.last().map_or(&self.dir, |segment| &segment.path)
    }

    fn write_pending(&mut self) -> Result<(), StorageError> {
        if !self.pending.is_empty() {
            let result = self.active.append(&self.pending);
            result.map_err(io_error("write", self.active_path()))?;
            self.pending.clear();
        }
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), StorageError> {
        self.write_pending()?;
        if self.unsynced {
            let result = self.active.sync_data();
            result.map_err(io_error("sync", self.active_path()))?;
            self.unsynced = false;
        }
        if self.dir_unsynced {
            self.disk.sync_dir(&self.dir).map_err(io_error("sync directory", &self.dir))?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Closes the full active segment and starts the next. The old one is
    /// synced first: recovery takes damage outside the last segment for
    /// corruption, not for a torn write.
    fn roll_over(&mut self) -> Result<(), StorageError> {
        self.sync_active()?;
        self.start_segment()
    }

    /// Creates a segment starting at `next_index` and makes it active; its
    /// header is buffered like a record, its name durable at the next sync.
    fn start_segment(&mut self) -> Result<(), StorageError> {
        let segment = Segment { first_index: self.next_index, path: segment_path(&self.dir, self.next_index) };
        self.active = self.disk.create(&segment.path).map_err(io_error("create", &segment.path))?;
        self.pending.extend_from_slice(&segment_header(segment.first_index));
        self.active_len = SEGMENT_HEADER_LEN as u64;
        self.segments.push(segment);
        self.unsynced = true;
        self.dir_unsynced = true;
        Ok(())
    }

    fn remove_segment(&self, segment: &Segment) -> Result<(), StorageError> {
        self.disk.remove(&segment.path).map_err(io_error("remove", &segment.path))?;
        self.disk.sync_dir(&self.dir).map_err(io_error("sync directory", &self.dir))
    }
}

/// Replays one segment, whose first index is `next_index`, advancing it;
/// returns the segment's length once a torn tail (of the last segment only)
/// is cut away.
fn recover_segment<E: From<StorageError>>(
    disk: &dyn Disk,
    dir: &Path,
    segment: &Segment,
    is_last: bool,
    next_index: &mut u64,
    on_record: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let data = disk.read(&segment.path).map_err(io_error("read", &segment.path))?;
    if !has_segment_header(&data, segment)? {
        if !is_last {
            return Err(StorageError::corrupt(&segment.path, 0, Damage::ShortHeader).into());
        }
        tracing::warn!(file = %segment.path.display(), bytes = data.len(), "torn segment header rewritten");
        write_segment_file(disk, dir, segment)?;
        return Ok(SEGMENT_HEADER_LEN as u64);
    }
    let mut at = SEGMENT_HEADER_LEN;
    loop {
        match read_record(&data, at) {
            Scan::End => return Ok(at as u64),
            Scan::Record { index, payload_at, next_at } => {
                if index != *next_index {
                    let damage = Damage::IndexOutOfOrder { expected: *next_index, found: index };
                    return Err(StorageError::corrupt(&segment.path, at, damage).into());
                }
                on_record(index, &data[payload_at..next_at])?;
                *next_index += 1;
                at = next_at;
            }
            Scan::Bad(damage) => {
                if !is_last {
                    return Err(StorageError::corrupt(&segment.path, at, damage).into());
                }
                if let Some(valid_at) = find_valid_record(&data, at, *next_index) {
                    let damage = Damage::ValidRecordFollows { damage: Box::new(damage), valid_at };
                    return Err(StorageError::corrupt(&segment.path, at, damage).into());
                }
                tracing::warn!(
                    file = %segment.path.display(), offset = at, bytes = data.len() - at, %damage,
                    "torn log tail truncated"
                );
                disk.truncate(&segment.path, at as u64).map_err(io_error("truncate", &segment.path))?;
                return Ok(at as u64);
            }
        }
    }
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_index.to_le_bytes());
    header
}

/// Writes a fresh, empty segment, durably: the first of a new log, or in
/// place of one whose header was torn.
fn write_segment_file(disk: &dyn Disk, dir: &Path, segment: &Segment) -> Result<(), StorageError> {
    let mut file = disk.create(&segment.path).map_err(io_error("create", &segment.path))?;
    file.append(&segment_header(segment.first_index)).map_err(io_error("write", &segment.path))?;
    file.sync_data().map_err(io_error("sync", &segment.path))?;
    disk.sync_dir(dir).map_err(io_error("sync directory", dir))
}

/// Whether the segment has a whole header (false: torn, short or zeroed);
/// an error if it is not a segment of this format.
fn has_segment_header(data: &[u8], segment: &Segment) -> Result<bool, StorageError> {
    let Some(header) = data.get(..SEGMENT_HEADER_LEN) else {
        return Ok(false);
    };
    if header.iter().all(|&byte| byte == 0) {
        return Ok(false);
    }
    if &header[..8] != SEGMENT_MAGIC {
        return Err(StorageError::corrupt(&segment.path, 0, Damage::BadMagic));
    }
    let version = read_u32(header, 8);
    if version != WAL_FORMAT_VERSION {
        let path = segment.path.clone();
        return Err(StorageError::UnknownVersion { path, found: version, supported: WAL_FORMAT_VERSION });
    }
    let in_header = read_u64(header, 12);
    if in_header != segment.first_index {
        let damage = Damage::NameMismatch { in_header, in_name: segment.first_index };
        return Err(StorageError::corrupt(&segment.path, 12, damage));
    }
    Ok(true)
}

fn read_record(data: &[u8], at: usize) -> Scan {
    let remaining = data.len() - at;
    if remaining == 0 {
        return Scan::End;
    }
    if remaining < RECORD_HEADER_LEN {
        return Scan::Bad(Damage::ShortRecord);
    }
    let length = read_u32(data, at) as usize;
    if length > remaining - RECORD_HEADER_LEN {
        return Scan::Bad(Damage::ShortRecord);
    }
    let next_at = at + RECORD_HEADER_LEN + length;
    if crc32(&[&data[at + 8..next_at]]) != read_u32(data, at + 4) {
        return Scan::Bad(Damage::BadChecksum);
    }
    Scan::Record { index: read_u64(data, at + 8), payload_at: at + RECORD_HEADER_LEN, next_at }
}

/// The offset of the first valid record after a bad one at `bad_at`, with an
/// index that could follow the records before it.
fn find_valid_record(data: &[u8], bad_at: usize, expected: u64) -> Option<u64> {
    let highest_possible = expected + (data.len() / RECORD_HEADER_LEN) as u64;
    let last_start = data.len().checked_sub(RECORD_HEADER_LEN)?;
    (bad_at + 1..=last_start)
        .find(|&at| {
            (expected..=highest_possible).contains(&read_u64(data, at + 8))
                && matches!(read_record(data, at), Scan::Record { .. })
        })
        .map(|at| at as u64)
}

/// The byte offset of record `index` (or of the end, for the next index) in a
/// segment recovery has already checked.
fn offset_of(data: &[u8], segment: &Segment, index: u64) -> Result<usize, StorageError> {
    let mut at = SEGMENT_HEADER_LEN;
    for _ in segment.first_index..index {
        at = match read_record(data, at) {
            Scan::Record { next_at, .. } => next_at,
            Scan::End => return Err(StorageError::corrupt(&segment.path, at, Damage::ShortRecord)),
            Scan::Bad(damage) => return Err(StorageError::corrupt(&segment.path, at, damage)),
        };
    }
    Ok(at)
}
