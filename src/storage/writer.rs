//! The group-commit writer: a thread of its own owns the [`Wal`], so fsyncs
//! never block the async runtime.
//!
//! Callers send requests through a [`StorageHandle`] without blocking. The
//! thread blocks for one request, takes every request already waiting, applies
//! them in order, syncs once for all of them, and publishes the index now
//! durable on a watch channel: everything queued behind a slow fsync rides the
//! next one. After a failure (a full disk, an I/O error) the published index
//! never moves again, the failure is published with it, and further requests
//! are refused, so the node can stop acknowledging and say why.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::watch;

use super::snapshot::write_snapshot;
use super::wal::Wal;
use super::{StorageError, io_error};

/// When the writer syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch: the published index survives a machine crash.
    Always,
    /// Never: the published index is what was handed to the operating
    /// system, which survives a crash of the process only.
    Never,
}

/// What the writer has made durable, as published on its watch channel.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    /// Every record up to here survives a crash, in the log or in a snapshot.
    /// It can go down, after a truncation of records that were durable.
    pub index: u64,
    /// Why the writer stopped, once it has: `index` will not move again.
    pub failure: Option<Arc<StorageError>>,
    /// `replace` requests done: `index` speaks of the replaced log only
    /// once this counts the caller's latest replacement.
    pub replacements: u64,
}

/// Counters for the node to export; `records_per_sync` shows group commit.
#[derive(Clone, Debug)]
pub struct WriterStats {
    pub syncs: u64,
    pub records_synced: u64,
    pub last_sync_duration: Option<Duration>,
    /// Durations of the syncs, in microseconds.
    pub sync_micros: Histogram<u64>,
}

impl WriterStats {
    fn new() -> Self {
        let sync_micros = Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid");
        WriterStats { syncs: 0, records_synced: 0, last_sync_duration: None, sync_micros }
    }

    pub fn records_per_sync(&self) -> f64 {
        if self.syncs == 0 { 0.0 } else { self.records_synced as f64 / self.syncs as f64 }
    }
}

enum Request {
    /// Records as `(index, payload)`, in index order.
    Append(Vec<(u64, Vec<u8>)>),
    TruncateFrom(u64),
    /// Writes a snapshot of the state through `index`, then drops the log
    /// it covers (all of it, when `index` is at or past the log's end).
    /// Skipped if the log was replaced since the caller took the state
    /// (`replacements` is how many replacements it had seen then).
    Snapshot {
        index: u64,
        body: Vec<u8>,
        replacements: u64,
    },
    /// Replaces the log with a snapshot through `index` (a leader's state,
    /// installed behind a log that diverged): the log beyond `index` goes,
    /// the snapshot is encoded here, off the caller's loop, and written.
    Replace {
        index: u64,
        encode: Box<dyn FnOnce() -> Vec<u8> + Send>,
    },
    Shutdown,
}

/// The way in to the writer: cheap to clone, never blocks.
#[derive(Clone)]
pub struct StorageHandle {
    requests: mpsc::Sender<Request>,
    persisted: watch::Receiver<Persisted>,
    stats: Arc<Mutex<WriterStats>>,
}

impl StorageHandle {
    /// Queues records `(index, payload)` in index order; an index at or below
    /// the log's last replaces the tail from there.
    pub fn append(&self, records: Vec<(u64, Vec<u8>)>) -> Result<(), StorageError> {
        self.send(Request::Append(records))
    }

    pub fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        self.send(Request::TruncateFrom(index))
    }

    /// Queues a snapshot of the state through `index`; once it is durable the
    /// log it covers is removed (all of it if `index` is at or past the end,
    /// and the log continues at `index + 1`). `replacements` is how many
    /// [`StorageHandle::replace`] calls the caller had made when it took the
    /// state: a snapshot encoded while the log was replaced is stale, and
    /// skipped.
    pub fn snapshot(&self, index: u64, body: Vec<u8>, replacements: u64) -> Result<(), StorageError> {
        self.send(Request::Snapshot { index, body, replacements })
    }

    /// Replaces the log with the snapshot `encode` makes, through `index`:
    /// the records beyond `index` are truncated first, then the snapshot is
    /// encoded on the writer's thread (in order with the other requests, so
    /// that the caller's loop never waits for a large encode) and written.
    pub fn replace(&self, index: u64, encode: Box<dyn FnOnce() -> Vec<u8> + Send>) -> Result<(), StorageError> {
        self.send(Request::Replace { index, encode })
    }

    /// The durable index and any failure, as they change.
    pub fn persisted(&self) -> watch::Receiver<Persisted> {
        self.persisted.clone()
    }

    /// Syncs so far and the records they carried, without copying the
    /// histogram: cheap enough for every status answer.
    pub fn sync_counts(&self) -> (u64, u64) {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        (stats.syncs, stats.records_synced)
    }

    pub fn stats(&self) -> WriterStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn send(&self, request: Request) -> Result<(), StorageError> {
        if let Some(failure) = &self.persisted.borrow().failure {
            return Err(StorageError::WriterFailed(failure.clone()));
        }
        self.requests.send(request).map_err(|_| StorageError::WriterStopped)
    }
}

/// The writer thread, to be shut down when the node stops.
pub struct StorageWriter {
    handle: StorageHandle,
    thread: JoinHandle<Wal>,
}

impl StorageWriter {
    /// Starts the thread; the published index starts at the log's last index
    /// (recovery made it durable).
    pub fn spawn(wal: Wal, policy: FsyncPolicy) -> Result<StorageWriter, StorageError> {
        let (requests, receiver) = mpsc::channel();
        let durable = wal.last_index();
        let (publisher, persisted) = watch::channel(Persisted { index: durable, failure: None, replacements: 0 });
        let stats = Arc::new(Mutex::new(WriterStats::new()));
        let dir = wal.dir().to_path_buf();
        let writer = WriterLoop {
            wal,
            policy,
            requests: receiver,
            publisher,
            stats: stats.clone(),
            durable,
            failure: None,
            replacements: 0,
        };
        let thread = std::thread::Builder::new()
            .name("gavel-storage".to_owned())
            .spawn(move || writer.run())
            .map_err(io_error("start the writer thread for", &dir))?;
        Ok(StorageWriter { handle: StorageHandle { requests, persisted, stats }, thread })
    }

    pub fn handle(&self) -> StorageHandle {
        self.handle.clone()
    }

    /// Stops the thread once every request queued before is done, and returns
    /// the log. It blocks on the last sync: call it off the async runtime.
    pub fn shutdown(self) -> Result<Wal, StorageError> {
        // Once the writer failed the handle refuses requests; send directly.
        let _ = self.handle.requests.send(Request::Shutdown);
        self.thread.join().map_err(|_| StorageError::WriterStopped)
    }
}

struct WriterLoop {
    wal: Wal,
    policy: FsyncPolicy,
    requests: mpsc::Receiver<Request>,
    publisher: watch::Sender<Persisted>,
    stats: Arc<Mutex<WriterStats>>,
    /// What is published: every record up to here is durable (under
    /// `FsyncPolicy::Never`, written).
    durable: u64,
    failure: Option<Arc<StorageError>>,
    /// `Replace` requests applied: a snapshot taken before the last one is stale.
    replacements: u64,
}

impl WriterLoop {
    fn run(mut self) -> Wal {
        while let Ok(first) = self.requests.recv() {
            let batch: Vec<Request> = std::iter::once(first).chain(self.requests.try_iter()).collect();
            let mut shutting_down = false;
            let mut appended = 0;
            for request in batch {
                match request {
                    Request::Shutdown => {
                        shutting_down = true;
                        break;
                    }
                    // Requests sent before the handles saw the failure.
                    _ if self.failure.is_some() => {}
                    request => {
                        if let Err(error) = self.apply(request, &mut appended) {
                            self.fail(error);
                        }
                    }
                }
            }
            if self.failure.is_none() {
                if let Err(error) = self.commit(appended) {
                    self.fail(error);
                }
            }
            self.publish();
            if shutting_down {
                break;
            }
        }
        self.wal
    }

    /// Applies one request without syncing (truncations and snapshots are
    /// durable by themselves), lowering `durable` past anything replaced.
    fn apply(&mut self, request: Request, appended: &mut u64) -> Result<(), StorageError> {
        match request {
            Request::Append(records) => {
                for (index, payload) in records {
                    if index <= self.wal.last_index() {
                        self.durable = self.durable.min(index.saturating_sub(1));
                    }
                    self.wal.append(index, &payload)?;
                    *appended += 1;
                }
            }
            Request::TruncateFrom(index) => {
                self.wal.truncate_from(index)?;
                self.durable = self.durable.min(self.wal.last_index());
            }
            Request::Snapshot { replacements, .. } if replacements != self.replacements => {
                tracing::debug!("a snapshot of a log since replaced skipped");
            }
            Request::Replace { index, encode } => {
                self.replacements += 1;
                if self.wal.last_index() > index {
                    self.wal.truncate_from(index + 1)?;
                    self.durable = self.durable.min(self.wal.last_index());
                }
                self.write_snapshot(index, &encode())?;
            }
            Request::Snapshot { index, body, .. } => self.write_snapshot(index, &body)?,
            Request::Shutdown => {}
        }
        Ok(())
    }

    /// Writes the snapshot through `index`, then drops the log it covers.
    fn write_snapshot(&mut self, index: u64, body: &[u8]) -> Result<(), StorageError> {
        write_snapshot(&**self.wal.disk(), self.wal.dir(), index, body)?;
        if index >= self.wal.last_index() {
            self.wal.restart_at(index + 1)?;
        } else {
            self.wal.compact_through(index)?;
        }
        // The snapshot holds every record through `index`, synced or not.
        self.durable = self.durable.max(index);
        Ok(())
    }

    /// Makes the batch durable (or, under `Never`, written), once.
    fn commit(&mut self, appended: u64) -> Result<(), StorageError> {
        match self.policy {
            FsyncPolicy::Always => {
                let started = Instant::now();
                self.wal.sync()?;
                if appended > 0 {
                    self.record_sync(appended, started.elapsed());
                }
            }
            FsyncPolicy::Never => self.wal.flush()?,
        }
        self.durable = self.wal.last_index();
        Ok(())
    }

    fn record_sync(&self, records: u64, duration: Duration) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.syncs += 1;
        stats.records_synced += records;
        stats.last_sync_duration = Some(duration);
        stats.sync_micros.saturating_record(duration.as_micros().try_into().unwrap_or(u64::MAX));
    }

    fn fail(&mut self, error: StorageError) {
        tracing::error!(%error, durable_index = self.durable, dir = %self.wal.dir().display(), "storage failed, durable index frozen");
        self.failure = Some(Arc::new(error));
    }

    fn publish(&self) {
        self.publisher.send_if_modified(|persisted| {
            let changed = persisted.index != self.durable
                || persisted.failure.is_some() != self.failure.is_some()
                || persisted.replacements != self.replacements;
            persisted.index = self.durable;
            persisted.failure = self.failure.clone();
            persisted.replacements = self.replacements;
            changed
        });
    }
}
