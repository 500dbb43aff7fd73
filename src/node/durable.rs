//! A node's own disk, when it has a data directory: the state it recovers
//! at start, and the log and snapshots it keeps while it runs.
//!
//! Every entry the node applies goes to the storage writer, which syncs in
//! groups on a thread of its own (in a simulation, on the node's thread: see
//! [`WriterMode`]); the node counts an entry (a leader) or acks it (a
//! backup) only once the writer says the disk holds it. A snapshot of the
//! state is taken every [`SNAPSHOT_EVERY`] entries, so that recovery replays
//! a bounded log and the disk holds a bounded one.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::info;

use crate::replication::{Entry, ReplicatedState, Snapshot};
use crate::storage::{
    Disk, FsyncPolicy, Persisted, StorageError, StorageHandle, StorageWriter, Wal, WalOptions, WriterMode, WriterStats,
    latest_snapshot,
};
use crate::transport::{Wire, disk_format};

/// Entries between two snapshots of a node's state, by default: recovery
/// replays at most this many records on top of the latest snapshot.
pub const SNAPSHOT_EVERY: u64 = 100_000;

/// Where and how a node keeps its state.
#[derive(Clone)]
pub struct StorageConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// The real file system, or a simulated one in tests.
    pub disk: Arc<dyn Disk>,
    /// Entries between two snapshots; 0 never takes one (the log grows
    /// without bound: for measuring recovery from a long log).
    pub snapshot_every: u64,
    /// `Thread` for a real server, always; `Inline` in a simulation, where
    /// a writer thread would run outside simulated time and break
    /// determinism.
    pub writer: WriterMode,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("dir", &self.dir)
            .field("fsync", &self.fsync)
            .field("snapshot_every", &self.snapshot_every)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

/// The metadata file that names a data directory's owner.
const IDENTITY: &str = "identity";
/// Held by the process that runs on a data directory, for its life.
const DATA_DIR_LOCK: &str = "lock";

/// Whose a data directory is: the node that writes it, and the incarnation
/// of the state in it (drawn once, when the directory is created).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Identity {
    node: String,
    incarnation: u64,
}

/// A data directory this process holds: nobody else runs on it while the
/// lock lasts.
pub struct ClaimedDataDir {
    pub incarnation: u64,
    _lock: crate::storage::FileLock,
}

/// Takes `config.dir` for node `node`: refuses a directory another process
/// runs on, or one another node wrote; draws the incarnation of a new one.
pub fn claim_data_dir(
    config: &StorageConfig,
    node: &str,
    draw: impl FnOnce() -> u64,
) -> anyhow::Result<ClaimedDataDir> {
    let disk = &*config.disk;
    let dir = &config.dir;
    disk.create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    let lock = disk
        .try_lock(&dir.join(DATA_DIR_LOCK))
        .with_context(|| format!("locking the data directory {}", dir.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the data directory {} is in use by another process: each node needs a data directory of its own",
                dir.display()
            )
        })?;
    let incarnation = match crate::storage::read_meta(disk, dir, IDENTITY)? {
        Some(body) => {
            let identity: Identity = serde_json::from_slice(&body)
                .with_context(|| format!("reading the identity of the data directory {}", dir.display()))?;
            anyhow::ensure!(
                identity.node == node,
                "the data directory {} was written by node {}; this is node {node} (give each node its own)",
                dir.display(),
                identity.node
            );
            identity.incarnation
        }
        None => {
            // A new directory, or one from before identities: its state,
            // if any, becomes this incarnation's.
            let incarnation = draw().max(1);
            let identity = Identity { node: node.to_string(), incarnation };
            crate::storage::write_meta(disk, dir, IDENTITY, &serde_json::to_vec(&identity)?)?;
            incarnation
        }
    };
    Ok(ClaimedDataDir { incarnation, _lock: lock })
}

/// The incarnation of the state in the data directory `dir` on this host's
/// disk, if it has one: what tells whether a stopped member keeps its state.
pub fn incarnation_in(dir: &std::path::Path) -> Option<u64> {
    let body = crate::storage::read_meta(&crate::storage::OsDisk, dir, IDENTITY).ok()??;
    serde_json::from_slice::<Identity>(&body).ok().map(|identity| identity.incarnation)
}

/// What a node found on its disk.
pub struct Recovered<M: Wire> {
    pub state: ReplicatedState<M>,
    /// The highest epoch in its snapshot and log.
    pub epoch: u64,
    /// Log records replayed on top of the snapshot.
    pub replayed: u64,
}

/// The node's side of its storage writer, for a node that replicates `M`.
pub struct NodeDisk<M: Wire> {
    writer: Option<StorageWriter>,
    handle: StorageHandle,
    persisted: watch::Receiver<Persisted>,
    /// The last index handed to the writer: what a truncation is measured from.
    written: u64,
    /// Entries handed over since the last snapshot.
    since_snapshot: u64,
    snapshot_every: u64,
    /// Times the log was replaced by a leader's snapshot: a snapshot of this
    /// node's own state taken before the last one is stale.
    replacements: u64,
    /// A snapshot is being encoded on a thread of its own: one at a time.
    encoding: Arc<AtomicBool>,
    /// Whether the writer works on the node's thread: then everything handed
    /// over is written already.
    inline: bool,
    machine: PhantomData<fn() -> M>,
}

impl<M: Wire> NodeDisk<M> {
    /// Recovers the state in `config.dir` (an empty state if there is none)
    /// and starts the writer. Damage other than a torn tail is an error that
    /// names the file and the offset: the node must not start on it.
    pub fn open(config: &StorageConfig) -> anyhow::Result<(NodeDisk<M>, Recovered<M>)> {
        let dir = &config.dir;
        let snapshot = latest_snapshot(&*config.disk, dir)
            .with_context(|| format!("reading the latest snapshot in {}", dir.display()))?;
        let (mut state, mut epoch) = match snapshot {
            Some((index, body)) => {
                let snapshot = disk_format::decode_snapshot::<M>(&body)
                    .with_context(|| format!("decoding the snapshot at index {index} in {}", dir.display()))?;
                anyhow::ensure!(
                    snapshot.state.last.index == index,
                    "the snapshot file at index {index} holds the state at index {}",
                    snapshot.state.last.index
                );
                (snapshot.state, snapshot.epoch)
            }
            None => (ReplicatedState::default(), 0),
        };
        let mut replayed = 0;
        let wal =
            Wal::open::<anyhow::Error>(config.disk.clone(), dir.clone(), WalOptions::default(), |index, record| {
                if index <= state.last.index {
                    return Ok(());
                }
                let entry = disk_format::decode_entry::<M>(record)
                    .with_context(|| format!("decoding log record {index} in {}", dir.display()))?;
                anyhow::ensure!(
                    entry.index == index && index == state.last.index + 1,
                    "log record {index} in {} holds entry {} after entry {}",
                    dir.display(),
                    entry.index,
                    state.last.index
                );
                epoch = epoch.max(entry.epoch);
                state.apply(&entry);
                replayed += 1;
                Ok(())
            })?;
        // A crash while the log restarted after a snapshot leaves it behind
        // the snapshot (the old log, or an empty one), or empty and past it
        // (the snapshot was older than the one it replaced): it goes on from
        // the snapshot.
        let mut wal = wal;
        let log_is_empty = wal.first_index() > wal.last_index();
        if wal.last_index() < state.last.index || (log_is_empty && wal.first_index() != state.last.index + 1) {
            wal.restart_at(state.last.index + 1)?;
        }
        anyhow::ensure!(
            wal.first_index() <= state.last.index + 1,
            "the log in {} starts at index {} but the snapshot ends at {}: records are missing",
            dir.display(),
            wal.first_index(),
            state.last.index
        );
        let written = state.last.index;
        let writer = match config.writer {
            WriterMode::Thread => StorageWriter::spawn(wal, config.fsync)?,
            WriterMode::Inline { sync_latency } => StorageWriter::inline(wal, config.fsync, sync_latency),
        };
        let handle = writer.handle();
        let persisted = handle.persisted();
        let disk = NodeDisk {
            writer: Some(writer),
            handle,
            persisted,
            written,
            since_snapshot: replayed,
            snapshot_every: config.snapshot_every,
            replacements: 0,
            encoding: Arc::new(AtomicBool::new(false)),
            inline: matches!(config.writer, WriterMode::Inline { .. }),
            machine: PhantomData,
        };
        info!(dir = %dir.display(), last_index = written, replayed, fsync = ?config.fsync, "recovered state from disk");
        Ok((disk, Recovered { state, epoch, replayed }))
    }

    /// Hands entries to the writer, in index order; an entry at or below the
    /// last one written replaces the log from there.
    pub fn append(&mut self, entries: &[Entry<M::Command>]) -> Result<(), StorageError> {
        let Some(last) = entries.last() else { return Ok(()) };
        let records = entries.iter().map(|entry| (entry.index, disk_format::encode_entry::<M>(entry))).collect();
        self.handle.append(records)?;
        self.written = last.index;
        self.since_snapshot += entries.len() as u64;
        Ok(())
    }

    /// Replaces the state on disk with a leader's snapshot: the log beyond
    /// it goes first (entries there were never committed: the leader holds
    /// every committed one, and its log ends at the snapshot), then the
    /// snapshot replaces the rest.
    /// The snapshot is encoded on the writer's thread, in order with the
    /// entries that follow it: a large state never stalls the node's loop
    /// (which must keep reading the leader's stream), and the node acks
    /// nothing of it until the writer says it is down.
    pub fn install(&mut self, snapshot: Snapshot<M>) -> Result<(), StorageError> {
        let index = snapshot.state.last.index;
        self.handle.replace(index, Box::new(move || disk_format::encode_snapshot(snapshot)))?;
        self.replacements += 1;
        self.written = index;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Takes a snapshot of `state` (this node's, at its last entry) once
    /// enough entries went by since the last one. It is encoded on a thread
    /// of its own (a large state takes seconds; the persistent maps make
    /// the copy free) and handed to the writer, which skips it if the log
    /// was replaced meanwhile; the entries since go on being written.
    pub fn maybe_snapshot(&mut self, epoch: u64, state: &ReplicatedState<M>) -> Result<(), StorageError> {
        let due = self.snapshot_every > 0 && self.since_snapshot >= self.snapshot_every;
        if !due || state.last.index != self.written || self.encoding.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.since_snapshot = 0;
        let (handle, encoding, replacements) = (self.handle.clone(), Arc::clone(&self.encoding), self.replacements);
        let snapshot = Snapshot { epoch, state: state.clone() };
        let index = snapshot.state.last.index;
        if self.inline {
            // A simulation: no thread outside simulated time.
            self.encoding.store(false, Ordering::Release);
            return self.handle.snapshot(index, disk_format::encode_snapshot(snapshot), replacements);
        }
        std::thread::spawn(move || {
            let body = disk_format::encode_snapshot(snapshot);
            // A failure shows on the writer's watch, where the node sees it.
            let _ = handle.snapshot(index, body, replacements);
            encoding.store(false, Ordering::Release);
        });
        Ok(())
    }

    /// What the disk holds by the writer's word `persisted`: nothing yet
    /// if the writer still speaks of a log this node has since replaced.
    pub fn holds(&self, persisted: &Persisted) -> Option<u64> {
        (persisted.replacements >= self.replacements).then_some(persisted.index)
    }

    /// What the disk holds, as it changes.
    pub fn persisted(&self) -> watch::Receiver<Persisted> {
        self.persisted.clone()
    }

    pub fn stats(&self) -> WriterStats {
        self.handle.stats()
    }

    /// The writer's handle, for status answers.
    pub fn handle(&self) -> StorageHandle {
        self.handle.clone()
    }
}

impl<M: Wire> Drop for NodeDisk<M> {
    /// Lets the writer finish what it was handed (the node stops, or hands
    /// its role over): a crash needs none of this, a clean stop loses nothing
    /// it wrote.
    fn drop(&mut self) {
        match self.writer.take() {
            // Written, and synced once its sync task runs, if the runtime
            // outlives the node; a simulated crash drops the task with the
            // node, and must find the write as a real crash would: unsynced.
            Some(writer) if self.inline => drop(writer),
            Some(writer) => {
                let _ = std::thread::spawn(move || writer.shutdown());
            }
            None => {}
        }
    }
}

/// Waits until the disk holds more, or fails; `None` forever without a disk.
pub async fn persisted_changed(persisted: &mut Option<watch::Receiver<Persisted>>) -> Persisted {
    match persisted {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => receiver.borrow_and_update().clone(),
            Err(_) => {
                let failure = Arc::new(StorageError::WriterStopped);
                Persisted { failure: Some(failure), ..receiver.borrow().clone() }
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auction::AuctionBook;
    use crate::auction::machine::{Entry, Payload, ReplicatedState, Snapshot};
    use crate::replication::LogPosition;
    use crate::storage::{SimDisk, write_snapshot};

    fn config(disk: &SimDisk) -> StorageConfig {
        StorageConfig {
            dir: PathBuf::from("data"),
            fsync: FsyncPolicy::Always,
            disk: Arc::new(disk.clone()),
            snapshot_every: SNAPSHOT_EVERY,
            writer: WriterMode::Inline { sync_latency: std::time::Duration::ZERO },
        }
    }

    /// A leader's snapshot: a state whose last entry is at `epoch`, `index`.
    fn snapshot(epoch: u64, index: u64) -> Snapshot {
        let state = ReplicatedState {
            cluster_id: "cluster".into(),
            last: LogPosition { epoch, index },
            ..ReplicatedState::default()
        };
        Snapshot { epoch, state }
    }

    fn entries(epoch: u64, indices: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indices.map(|index| Entry { epoch, index, payload: Payload::Join { node: format!("node-{index}") } }).collect()
    }

    /// A backup caught up by a snapshot that holds entries its leader never
    /// committed; the leader dies, and the next one, which never had them,
    /// sends a snapshot of its own, older than the first. It replaces the
    /// log and the older-numbered state alike.
    #[test]
    fn a_snapshot_older_than_the_nodes_own_replaces_it() {
        let disk = SimDisk::new();
        let (mut node_disk, _) = NodeDisk::<AuctionBook>::open(&config(&disk)).unwrap();
        node_disk.install(snapshot(1, 60)).unwrap();
        node_disk.append(&entries(1, 61..=65)).unwrap();

        node_disk.install(snapshot(2, 56)).unwrap();
        assert_eq!(node_disk.persisted().borrow().index, 56);
        node_disk.append(&entries(2, 57..=58)).unwrap();
        assert_eq!(node_disk.persisted().borrow().index, 58);
        drop(node_disk);

        disk.crash_losing_unsynced();
        let (_, recovered) = NodeDisk::<AuctionBook>::open(&config(&disk)).unwrap();
        assert_eq!(recovered.state.last, LogPosition { epoch: 2, index: 58 });
        assert_eq!(recovered.replayed, 2);
    }

    /// A crash in the middle of that install, once the older snapshot is
    /// down and before the log starts over after it, leaves an empty log
    /// that starts past the snapshot: nothing is missing, and the node
    /// starts from the snapshot.
    #[test]
    fn an_empty_log_past_the_snapshot_starts_over_after_it() {
        let disk = SimDisk::new();
        let (mut node_disk, _) = NodeDisk::<AuctionBook>::open(&config(&disk)).unwrap();
        node_disk.install(snapshot(1, 60)).unwrap();
        drop(node_disk);
        // The log is empty and starts at 61; the state at 60 is replaced.
        let body = disk_format::encode_snapshot::<AuctionBook>(snapshot(2, 56));
        write_snapshot(&disk, Path::new("data"), 56, &body).unwrap();

        disk.crash_losing_unsynced();
        let (mut node_disk, recovered) = NodeDisk::<AuctionBook>::open(&config(&disk)).unwrap();
        assert_eq!(recovered.state.last, LogPosition { epoch: 2, index: 56 });
        node_disk.append(&entries(2, 57..=57)).unwrap();
        assert_eq!(node_disk.persisted().borrow().index, 57);
    }
}
