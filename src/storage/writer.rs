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
//!
//! A simulation cannot have the thread: it runs on the real clock, scheduled
//! by the operating system, so when its syncs land would differ between two
//! runs of one seed. [`WriterMode::Inline`] writes each request on the
//! caller's thread instead, and syncs on the caller's async runtime, whose
//! clock the simulation drives: the node code above is the same in both
//! modes, and so is what a crash can find on the disk (records written and
//! not yet synced, or torn).

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

/// Where the writer applies requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterMode {
    /// On a thread of its own ([`StorageWriter::spawn`]): a slow fsync never
    /// blocks the async runtime, and what queues behind it shares the next
    /// one. The real server always uses it.
    Thread,
    /// On the caller's thread ([`StorageWriter::inline`]). For simulations,
    /// where a thread of its own would run outside the simulated time and
    /// break determinism; its writes and syncs block the async runtime, so
    /// it is no mode for a real disk.
    Inline {
        /// How long after a write the sync takes effect, on the tokio clock
        /// of the caller's runtime: the time a crash has to catch the write
        /// unsynced. Writes made meanwhile share the sync. Zero syncs before
        /// the call returns (and needs no runtime).
        sync_latency: Duration,
    },
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
    /// it covers (all of it, when `index` is at or past the log's end, or
    /// the log is empty). Skipped if the log was replaced since the caller
    /// took the state (`replacements` is how many replacements it had seen).
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

/// The way in to the writer: cheap to clone; it never blocks with the
/// writer thread, and blocks for the write itself inline.
#[derive(Clone)]
pub struct StorageHandle {
    route: Route,
    persisted: watch::Receiver<Persisted>,
    stats: Arc<Mutex<WriterStats>>,
}

/// How a request reaches the log.
#[derive(Clone)]
enum Route {
    /// Queued for the writer thread.
    Queue(mpsc::Sender<Request>),
    /// Written by the caller.
    Inline(Arc<Mutex<InlineWriter>>),
}

impl StorageHandle {
    /// Queues records `(index, payload)` in index order; an index at or below
    /// the log's last replaces the tail from there.
    pub fn append(&self, records: Vec<(u64, Vec<u8>)>) -> Result<(), StorageError> {
        self.send(Request::Append(records))
    }

    /// Queues the removal of every record from `index` on. Records below
    /// the log's first are in the snapshot it goes on from: then the whole
    /// log goes, and the durable index drops to `index - 1` all the same,
    /// for the snapshot that replaces the old one next (a node installing a
    /// leader's snapshot older than its own).
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
    /// encoded by the writer (in order with the other requests, so that the
    /// caller's loop never waits for a large encode) and written.
    pub fn replace(&self, index: u64, encode: Box<dyn FnOnce() -> Vec<u8> + Send>) -> Result<(), StorageError> {
        self.send(Request::Replace { index, encode })
    }

    /// Syncs so far and the records they carried, without copying the
    /// histogram: cheap enough for every status answer.
    pub fn sync_counts(&self) -> (u64, u64) {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        (stats.syncs, stats.records_synced)
    }

    /// The durable index and any failure, as they change.
    pub fn persisted(&self) -> watch::Receiver<Persisted> {
        self.persisted.clone()
    }

    pub fn stats(&self) -> WriterStats {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn send(&self, request: Request) -> Result<(), StorageError> {
        // Cloned out, so that the watch is not borrowed while an inline
        // write publishes on it.
        let failure = self.persisted.borrow().failure.clone();
        if let Some(failure) = failure {
            return Err(StorageError::WriterFailed(failure));
        }
        match &self.route {
            Route::Queue(requests) => requests.send(request).map_err(|_| StorageError::WriterStopped),
            Route::Inline(writer) => InlineWriter::write(writer, request),
        }
    }
}

/// The writer, to be shut down when the node stops.
pub struct StorageWriter {
    handle: StorageHandle,
    worker: Worker,
}

/// Who applies the requests.
enum Worker {
    Thread {
        requests: mpsc::Sender<Request>,
        thread: JoinHandle<Wal>,
    },
    /// The handles, each on its caller's thread.
    Inline(Arc<Mutex<InlineWriter>>),
}

impl StorageWriter {
    /// Starts the writer thread; the published index starts at the log's
    /// last index (recovery made it durable).
    pub fn spawn(wal: Wal, policy: FsyncPolicy) -> Result<StorageWriter, StorageError> {
        let (requests, receiver) = mpsc::channel();
        let dir = wal.dir().to_path_buf();
        let (committer, persisted, stats) = Committer::new(wal, policy);
        let thread = std::thread::Builder::new()
            .name("gavel-storage".to_owned())
            .spawn(move || committer.run(receiver))
            .map_err(io_error("start the writer thread for", &dir))?;
        let handle = StorageHandle { route: Route::Queue(requests.clone()), persisted, stats };
        Ok(StorageWriter { handle, worker: Worker::Thread { requests, thread } })
    }

    /// A writer without a thread ([`WriterMode::Inline`]): each request is
    /// written by the call that makes it, and synced `sync_latency` later by
    /// a task on the caller's tokio runtime (at once if zero).
    pub fn inline(wal: Wal, policy: FsyncPolicy, sync_latency: Duration) -> StorageWriter {
        let (committer, persisted, stats) = Committer::new(wal, policy);
        let writer = InlineWriter { committer: Some(committer), sync_latency, sync_scheduled: false };
        let writer = Arc::new(Mutex::new(writer));
        let handle = StorageHandle { route: Route::Inline(writer.clone()), persisted, stats };
        StorageWriter { handle, worker: Worker::Inline(writer) }
    }

    pub fn handle(&self) -> StorageHandle {
        self.handle.clone()
    }

    /// Stops the writer once every request made before is done, and returns
    /// the log. With the thread it blocks on the last sync: call it off the
    /// async runtime.
    pub fn shutdown(self) -> Result<Wal, StorageError> {
        match self.worker {
            Worker::Thread { requests, thread } => {
                // Once the writer failed the handle refuses requests; send directly.
                let _ = requests.send(Request::Shutdown);
                thread.join().map_err(|_| StorageError::WriterStopped)
            }
            Worker::Inline(writer) => {
                let committer = writer.lock().unwrap_or_else(PoisonError::into_inner).committer.take();
                let mut committer = committer.ok_or(StorageError::WriterStopped)?;
                // What is written but not synced yet, as the thread's last batch.
                committer.commit_and_publish();
                Ok(committer.wal)
            }
        }
    }
}

/// The writer of [`WriterMode::Inline`], shared by the handles.
struct InlineWriter {
    /// `None` once the writer was shut down.
    committer: Option<Committer>,
    sync_latency: Duration,
    /// Whether a task is due to sync what was written since the last sync.
    sync_scheduled: bool,
}

impl InlineWriter {
    /// Applies `request` and writes it; syncs it now, or has a task sync it
    /// (with whatever else is written by then) once the latency is over.
    fn write(writer: &Arc<Mutex<InlineWriter>>, request: Request) -> Result<(), StorageError> {
        let mut locked = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let InlineWriter { committer, sync_latency, sync_scheduled } = &mut *locked;
        let committer = committer.as_mut().ok_or(StorageError::WriterStopped)?;
        committer.apply_batch(vec![request]);
        let sync_later = committer.policy == FsyncPolicy::Always && !sync_latency.is_zero();
        if !sync_later {
            committer.commit_and_publish();
        } else if committer.failure.is_none() {
            // On the disk but not synced, until the task runs: a crash
            // meanwhile loses the write, or tears it.
            match committer.wal.flush() {
                Ok(()) if !*sync_scheduled => {
                    *sync_scheduled = true;
                    // Not tracked: a stop takes the committer, syncing what
                    // was written, and the task then finds nothing to do.
                    tokio::spawn(InlineWriter::sync_after(Arc::clone(writer), *sync_latency));
                }
                Ok(()) => {}
                Err(error) => committer.fail(error),
            }
            // A replacement or a snapshot may have moved the durable index.
            committer.publish();
        }
        // The thread's caller learns of a failure from the watch alone;
        // this one can be told at once.
        match &committer.failure {
            Some(failure) => Err(StorageError::WriterFailed(failure.clone())),
            None => Ok(()),
        }
    }

    async fn sync_after(writer: Arc<Mutex<InlineWriter>>, latency: Duration) {
        tokio::time::sleep(latency).await;
        let mut locked = writer.lock().unwrap_or_else(PoisonError::into_inner);
        locked.sync_scheduled = false;
        if let Some(committer) = &mut locked.committer {
            committer.commit_and_publish();
        }
    }
}

/// Owns the log and applies batches of requests to it, on the writer thread
/// or on the caller's.
struct Committer {
    wal: Wal,
    policy: FsyncPolicy,
    publisher: watch::Sender<Persisted>,
    stats: Arc<Mutex<WriterStats>>,
    /// What is published: every record up to here is durable (under
    /// `FsyncPolicy::Never`, written).
    durable: u64,
    /// Records appended since the last sync, for the statistics.
    unsynced_records: u64,
    failure: Option<Arc<StorageError>>,
    /// `Replace` requests applied: a snapshot taken before the last one is stale.
    replacements: u64,
}

impl Committer {
    fn new(wal: Wal, policy: FsyncPolicy) -> (Committer, watch::Receiver<Persisted>, Arc<Mutex<WriterStats>>) {
        let durable = wal.last_index();
        let (publisher, persisted) = watch::channel(Persisted { index: durable, failure: None, replacements: 0 });
        let stats = Arc::new(Mutex::new(WriterStats::new()));
        let committer = Committer {
            wal,
            policy,
            publisher,
            stats: stats.clone(),
            durable,
            unsynced_records: 0,
            failure: None,
            replacements: 0,
        };
        (committer, persisted, stats)
    }

    /// The writer thread: one batch at a time, every request already waiting.
    fn run(mut self, requests: mpsc::Receiver<Request>) -> Wal {
        while let Ok(first) = requests.recv() {
            let batch: Vec<Request> = std::iter::once(first).chain(requests.try_iter()).collect();
            if self.write_batch(batch) {
                break;
            }
        }
        self.wal
    }

    /// Applies `batch` in order, syncs once and publishes; true if it asked
    /// the writer to stop.
    fn write_batch(&mut self, batch: Vec<Request>) -> bool {
        let shutting_down = self.apply_batch(batch);
        self.commit_and_publish();
        shutting_down
    }

    /// Applies the requests in order, without syncing, up to a shutdown;
    /// true if there was one.
    fn apply_batch(&mut self, batch: Vec<Request>) -> bool {
        for request in batch {
            match request {
                Request::Shutdown => return true,
                // Requests sent before the handles saw the failure.
                _ if self.failure.is_some() => {}
                request => {
                    if let Err(error) = self.apply(request) {
                        self.fail(error);
                    }
                }
            }
        }
        false
    }

    fn commit_and_publish(&mut self) {
        if self.failure.is_none() {
            if let Err(error) = self.commit() {
                self.fail(error);
            }
        }
        self.publish();
    }

    /// Applies one request without syncing (truncations and snapshots are
    /// durable by themselves), lowering `durable` past anything replaced.
    fn apply(&mut self, request: Request) -> Result<(), StorageError> {
        match request {
            Request::Append(records) => {
                for (index, payload) in records {
                    if index <= self.wal.last_index() {
                        self.durable = self.durable.min(index.saturating_sub(1));
                    }
                    self.wal.append(index, &payload)?;
                    self.unsynced_records += 1;
                }
            }
            Request::TruncateFrom(index) => {
                // Below the log's first record is the snapshot the log goes
                // on from: the whole log goes, and the snapshot stays until
                // the next one replaces it.
                self.wal.truncate_from(index.max(self.wal.first_index()))?;
                self.durable = self.durable.min(index.saturating_sub(1));
            }
            Request::Snapshot { replacements, .. } if replacements != self.replacements => {
                tracing::debug!("a snapshot of a log since replaced skipped");
            }
            Request::Snapshot { index, body, .. } => self.write_snapshot(index, &body)?,
            Request::Replace { index, encode } => {
                self.replacements += 1;
                if self.wal.last_index() > index {
                    // Below the log's first record is the snapshot the log
                    // goes on from: then the whole log goes.
                    self.wal.truncate_from((index + 1).max(self.wal.first_index()))?;
                    self.durable = self.durable.min(index);
                }
                self.write_snapshot(index, &encode())?;
            }
            Request::Shutdown => {}
        }
        Ok(())
    }

    /// Writes the snapshot through `index`, then drops the log it covers.
    fn write_snapshot(&mut self, index: u64, body: &[u8]) -> Result<(), StorageError> {
        write_snapshot(&**self.wal.disk(), self.wal.dir(), index, body)?;
        let log_is_empty = self.wal.first_index() > self.wal.last_index();
        if index >= self.wal.last_index() || log_is_empty {
            self.wal.restart_at(index + 1)?;
        } else {
            self.wal.compact_through(index)?;
        }
        // The snapshot holds every record through `index`, synced or not.
        self.durable = self.durable.max(index);
        Ok(())
    }

    /// Makes what was applied durable (or, under `Never`, written), once.
    fn commit(&mut self) -> Result<(), StorageError> {
        match self.policy {
            FsyncPolicy::Always => {
                let started = Instant::now();
                self.wal.sync()?;
                if self.unsynced_records > 0 {
                    self.record_sync(self.unsynced_records, started.elapsed());
                }
            }
            FsyncPolicy::Never => self.wal.flush()?,
        }
        self.unsynced_records = 0;
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
