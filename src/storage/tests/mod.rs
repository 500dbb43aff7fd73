//! Unit tests of the storage layer, one file per topic, mostly over
//! [`SimDisk`] so that crashes, torn writes and full disks are a call away.
//! A few run over [`OsDisk`] in a temporary directory.

mod crash;
mod os_disk;
mod snapshot;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand::rngs::StdRng;

use super::*;

/// Records as `(index, payload)`, as appended or replayed.
type Records = Vec<(u64, Vec<u8>)>;

/// The data directory of every simulated test.
fn data_dir() -> PathBuf {
    PathBuf::from("node-1")
}

/// A few records per segment, so that tests cross segment boundaries.
fn small_segments() -> WalOptions {
    WalOptions { segment_bytes: 512 }
}

fn sim_disk() -> (SimDisk, Arc<dyn Disk>) {
    let sim = SimDisk::new();
    (sim.clone(), Arc::new(sim))
}

/// Opens the log and collects what it replays.
fn open_collecting(disk: &Arc<dyn Disk>, dir: &Path, options: WalOptions) -> Result<(Wal, Records), StorageError> {
    let mut records = Vec::new();
    let wal = Wal::open(disk.clone(), dir, options, |index, payload| {
        records.push((index, payload.to_vec()));
        Ok::<(), StorageError>(())
    })?;
    Ok((wal, records))
}

/// A payload that names its index, padded with random bytes to a random length.
fn payload(index: u64, rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = format!("record {index};").into_bytes();
    let padding = rng.random_range(0..120);
    bytes.extend((0..padding).map(|_| rng.random::<u8>()));
    bytes
}

/// Appends `count` records after the log's last, returning them.
fn append_records(wal: &mut Wal, count: u64, rng: &mut StdRng) -> Records {
    let first = wal.last_index() + 1;
    let records: Records = (first..first + count).map(|index| (index, payload(index, rng))).collect();
    for (index, payload) in &records {
        wal.append(*index, payload).expect("append");
    }
    records
}

/// The segment files in the directory, oldest first.
fn segment_paths(disk: &Arc<dyn Disk>, dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> =
        disk.list(dir).expect("list").into_iter().filter(|name| name.ends_with(".wal")).collect();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(purpose: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!("gavel-storage-{purpose}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
