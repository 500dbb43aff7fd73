//! Snapshots and metadata: whole files replaced atomically.
//!
//! Each is written to a temporary file, synced, renamed over its final name,
//! and the directory synced: after a crash a reader finds the old file or the
//! new one, never a mix. A header carries a magic, a format version and a CRC
//! of the body:
//!
//! ```text
//! snapshot: "GAVELSNP" (8) | version u32 | index u64 | body length u64 | crc32 u32
//! metadata: "GAVELMET" (8) | version u32 | body length u64 | crc32 u32
//! ```

use std::path::{Path, PathBuf};

use super::disk::Disk;
use super::{Damage, StorageError, crc32, io_error, read_u32, read_u64};

pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const SNAPSHOT_MAGIC: &[u8; 8] = b"GAVELSNP";
const SNAPSHOT_HEADER_LEN: usize = 32;
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".tmp";

pub const META_FORMAT_VERSION: u32 = 1;
const META_MAGIC: &[u8; 8] = b"GAVELMET";
const META_HEADER_LEN: usize = 24;
const META_SUFFIX: &str = ".meta";

/// Writes the snapshot of the state through `index`, durably and atomically,
/// then removes every other snapshot and leftover temporary files.
pub fn write_snapshot(disk: &dyn Disk, dir: &Path, index: u64, body: &[u8]) -> Result<(), StorageError> {
    let mut file = Vec::with_capacity(SNAPSHOT_HEADER_LEN + body.len());
    file.extend_from_slice(SNAPSHOT_MAGIC);
    file.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&index.to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32(&[body]).to_le_bytes());
    file.extend_from_slice(body);
    let name = snapshot_name(index);
    write_atomically(disk, dir, &name, &format!("{SNAPSHOT_PREFIX}{index:020}{TEMPORARY_SUFFIX}"), &file)?;

    let names = disk.list(dir).map_err(io_error("list", dir))?;
    // A snapshot numbered above this one is of a log the node replaced (it
    // installed a leader's snapshot behind its own divergent tail): it must
    // go, durably, before the log restarts after this one, or a recovery
    // would read the log on top of the wrong state.
    let newer: Vec<&String> =
        names.iter().filter(|name| parse_snapshot_name(name).is_some_and(|other| other > index)).collect();
    for name in &newer {
        let path = dir.join(name);
        disk.remove(&path).map_err(io_error("remove the replaced snapshot", &path))?;
    }
    if !newer.is_empty() {
        disk.sync_dir(dir).map_err(io_error("sync directory", dir))?;
    }
    // The new snapshot is durable: what is left is only clutter, so a failure
    // here is worth a warning, not a failed snapshot.
    for stale in names.iter().filter(|stale| {
        let older = parse_snapshot_name(stale).is_some_and(|other| other < index);
        older || (stale.starts_with(SNAPSHOT_PREFIX) && stale.ends_with(TEMPORARY_SUFFIX))
    }) {
        let path = dir.join(stale);
        if let Err(error) = disk.remove(&path) {
            tracing::warn!(file = %path.display(), %error, "stale snapshot not removed");
        }
    }
    Ok(())
}

/// The newest snapshot, as `(index, body)`. If the newest is damaged this is
/// an error rather than a fall-back to an older one: the log below the newest
/// may already be compacted away.
pub fn latest_snapshot(disk: &dyn Disk, dir: &Path) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
    let names = match disk.list(dir) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    let Some(index) = names.iter().filter_map(|name| parse_snapshot_name(name)).max() else {
        return Ok(None);
    };
    let path = dir.join(snapshot_name(index));
    let data = disk.read(&path).map_err(io_error("read", &path))?;
    check_header(&data, &path, SNAPSHOT_MAGIC, SNAPSHOT_HEADER_LEN, SNAPSHOT_FORMAT_VERSION)?;
    let in_header = read_u64(&data, 12);
    if in_header != index {
        return Err(StorageError::corrupt(&path, 12, Damage::NameMismatch { in_header, in_name: index }));
    }
    let body = check_body(data, &path, SNAPSHOT_HEADER_LEN, 20, 28)?;
    Ok(Some((index, body)))
}

/// Replaces the metadata file `name` (letters, digits, '-' and '_') with
/// `body`, durably and atomically.
pub fn write_meta(disk: &dyn Disk, dir: &Path, name: &str, body: &[u8]) -> Result<(), StorageError> {
    check_meta_name(name)?;
    let mut file = Vec::with_capacity(META_HEADER_LEN + body.len());
    file.extend_from_slice(META_MAGIC);
    file.extend_from_slice(&META_FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32(&[body]).to_le_bytes());
    file.extend_from_slice(body);
    let final_name = format!("{name}{META_SUFFIX}");
    write_atomically(disk, dir, &final_name, &format!("{final_name}{TEMPORARY_SUFFIX}"), &file)
}

/// The body of the metadata file `name`, if it was ever written.
pub fn read_meta(disk: &dyn Disk, dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    check_meta_name(name)?;
    let path = dir.join(format!("{name}{META_SUFFIX}"));
    let data = match disk.read(&path) {
        Ok(data) => data,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", &path)(error)),
    };
    check_header(&data, &path, META_MAGIC, META_HEADER_LEN, META_FORMAT_VERSION)?;
    check_body(data, &path, META_HEADER_LEN, 12, 20).map(Some)
}

fn write_atomically(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    temporary: &str,
    bytes: &[u8],
) -> Result<(), StorageError> {
    disk.create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let (temporary, path): (PathBuf, PathBuf) = (dir.join(temporary), dir.join(name));
    let mut file = disk.create(&temporary).map_err(io_error("create", &temporary))?;
    file.append(bytes).map_err(io_error("write", &temporary))?;
    file.sync_data().map_err(io_error("sync", &temporary))?;
    disk.rename(&temporary, &path).map_err(io_error("rename", &temporary))?;
    disk.sync_dir(dir).map_err(io_error("sync directory", dir))
}

fn check_header(
    data: &[u8],
    path: &Path,
    magic: &[u8; 8],
    header_len: usize,
    version: u32,
) -> Result<(), StorageError> {
    if data.len() < 12 {
        return Err(StorageError::corrupt(path, 0, Damage::ShortHeader));
    }
    if &data[..8] != magic {
        return Err(StorageError::corrupt(path, 0, Damage::BadMagic));
    }
    let found = read_u32(data, 8);
    if found != version {
        return Err(StorageError::UnknownVersion { path: path.to_path_buf(), found, supported: version });
    }
    if data.len() < header_len {
        return Err(StorageError::corrupt(path, 0, Damage::ShortHeader));
    }
    Ok(())
}

/// Checks the length and CRC the header gives for the body, and returns it.
fn check_body(
    mut data: Vec<u8>,
    path: &Path,
    header_len: usize,
    length_at: usize,
    crc_at: usize,
) -> Result<Vec<u8>, StorageError> {
    let in_header = read_u64(&data, length_at);
    let in_file = (data.len() - header_len) as u64;
    if in_header != in_file {
        return Err(StorageError::corrupt(path, length_at, Damage::LengthMismatch { in_header, in_file }));
    }
    if crc32(&[&data[header_len..]]) != read_u32(&data, crc_at) {
        return Err(StorageError::corrupt(path, header_len, Damage::BadChecksum));
    }
    data.drain(..header_len);
    Ok(data)
}

fn check_meta_name(name: &str) -> Result<(), StorageError> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
    if name.is_empty() || !name.bytes().all(allowed) {
        return Err(StorageError::InvalidMetaName(name.to_owned()));
    }
    Ok(())
}

fn snapshot_name(index: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{index:020}{SNAPSHOT_SUFFIX}")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SNAPSHOT_PREFIX)?.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
