//! The file-system seam: the few operations the log and snapshots need, on
//! the real disk ([`OsDisk`]) or in memory with a crash model ([`SimDisk`]).
//!
//! Every method says when its effect becomes durable, and the log relies on
//! nothing more: file contents after [`AppendFile::sync_data`], names
//! (creations, renames, removals) after [`Disk::sync_dir`] of their directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;

/// File operations by path. Shared between threads as an `Arc<dyn Disk>`.
pub trait Disk: Send + Sync + 'static {
    /// Creates `dir` and its parents if they are missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// A file's whole content, synced or not.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates an empty file (emptying one already there), open for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Cuts a file to `len` bytes; the whole file is durable when it returns.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames atomically, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock named `path` (creating the file if needed)
    /// without waiting: `None` if another holder has it. The lock lasts as
    /// long as the returned value and dies with its process, never before
    /// (a frozen holder keeps it).
    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>>;
}

/// A held lock from [`Disk::try_lock`], released when dropped.
pub struct FileLock {
    _held: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileLock")
    }
}

/// An open file that only grows at its end, like a log segment.
pub trait AppendFile: Send {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The real file system, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsDisk;

/// A file opened in append mode, so that writes land at the end even after
/// [`Disk::truncate`] shortened it through another handle.
struct OsFile(File);

impl AppendFile for OsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for OsDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            // A name that is not UTF-8 is none of ours.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        // std refuses append together with truncate, hence the set_len.
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        file.set_len(0)?;
        Ok(Box::new(OsFile(file)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(OsFile(OpenOptions::new().append(true).open(path)?)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        // flock(2), not File::try_lock: the crate's rust-version predates it.
        // SAFETY: the descriptor is open for the whole call; flock has no
        // memory effects.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result == 0 {
            return Ok(Some(FileLock { _held: Box::new(file) }));
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(error) }
    }
}

/// An in-memory disk that can crash.
///
/// The model: each file keeps the bytes that were synced and the bytes
/// appended since. Names form two maps: the one every call sees, and the one a
/// crash leaves, which takes the state of a directory's entries at each
/// [`Disk::sync_dir`]. So a file created, renamed or removed since its
/// directory was last synced is back as it was after a crash, whatever its
/// contents. [`SimDisk::crash`] keeps only synced bytes, except that the file
/// written last may keep a prefix of its unsynced tail, as it is or zeroed
/// (a torn write). Simplifications: truncation (and the emptying by
/// [`Disk::create`]) is durable at once, and no other file tears.
///
/// It can also refuse writes like a full disk, hold syncs to play a slow disk,
/// and damage a byte in place.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
    /// Separate from `state` so that a held sync blocks only its caller.
    sync_gate: Arc<(Mutex<SyncGate>, Condvar)>,
}

#[derive(Default)]
struct SimState {
    files: HashMap<u64, SimFile>,
    next_file_id: u64,
    /// The names as every call sees them.
    names: BTreeMap<PathBuf, u64>,
    /// The names as a crash would leave them.
    durable_names: BTreeMap<PathBuf, u64>,
    /// The file whose unsynced tail a crash may tear rather than drop.
    last_written: Option<u64>,
    /// Counts crashes: handles opened before the last one refuse to work.
    generation: u64,
    fail_writes: bool,
    /// Writes allowed before every write fails, when set.
    writes_before_failure: Option<u64>,
    /// The locks held (see [`Disk::try_lock`]): held by a guard, which the
    /// tasks of a crashed host drop with it, as a kernel releases a dead
    /// process's locks.
    locks: std::collections::HashSet<PathBuf>,
}

#[derive(Default)]
struct SimFile {
    synced: Vec<u8>,
    unsynced: Vec<u8>,
}

#[derive(Default)]
struct SyncGate {
    held: bool,
    waiting: usize,
}

impl SimDisk {
    pub fn new() -> Self {
        SimDisk::default()
    }

    /// Makes every later write, sync, creation, rename and removal fail as on a
    /// full disk (or succeed again with `false`).
    pub fn fail_writes(&self, failing: bool) {
        let mut state = self.lock();
        state.fail_writes = failing;
        state.writes_before_failure = None;
    }

    /// Lets `count` more writing operations succeed, then fails every one.
    pub fn fail_writes_after(&self, count: u64) {
        self.lock().writes_before_failure = Some(count);
    }

    /// Makes syncs block until released, as on a slow disk.
    pub fn hold_syncs(&self, held: bool) {
        let (gate, changed) = &*self.sync_gate;
        gate.lock().unwrap_or_else(PoisonError::into_inner).held = held;
        changed.notify_all();
    }

    /// Waits until some sync is blocked by [`SimDisk::hold_syncs`]; false if
    /// none was within `timeout`.
    pub fn wait_for_held_sync(&self, timeout: Duration) -> bool {
        let (gate, changed) = &*self.sync_gate;
        let gate = gate.lock().unwrap_or_else(PoisonError::into_inner);
        let (gate, _) =
            changed.wait_timeout_while(gate, timeout, |gate| gate.waiting == 0).unwrap_or_else(PoisonError::into_inner);
        gate.waiting > 0
    }

    /// Flips every bit of the byte at `offset`, synced or not: damage in place.
    pub fn corrupt_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let mut state = self.lock();
        let id = state.id_of(path)?;
        let file = state.file(id)?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let synced_len = file.synced.len();
        let byte =
            if offset < synced_len { file.synced.get_mut(offset) } else { file.unsynced.get_mut(offset - synced_len) };
        let byte = byte.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset past the end"))?;
        *byte = !*byte;
        Ok(())
    }

    /// A crash: unsynced bytes and names are lost, except that the file
    /// written last keeps a random prefix of its unsynced tail, zeroed one
    /// time in four.
    pub fn crash(&self, rng: &mut impl Rng) {
        let mut state = self.lock();
        if let Some(id) = state.last_written {
            if let Some(file) = state.files.get_mut(&id) {
                let kept = rng.random_range(0..=file.unsynced.len());
                if rng.random_bool(0.25) {
                    file.synced.resize(file.synced.len() + kept, 0);
                } else {
                    file.synced.extend_from_slice(&file.unsynced[..kept]);
                }
            }
        }
        state.restart();
    }

    /// A crash that drops every unsynced byte, none torn.
    pub fn crash_losing_unsynced(&self) {
        self.lock().restart();
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a writing operation, failing it if the disk is "full".
    fn check_write(state: &mut SimState) -> io::Result<()> {
        let exhausted = match &mut state.writes_before_failure {
            Some(0) => true,
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        };
        if state.fail_writes || exhausted {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated full disk"));
        }
        Ok(())
    }

    fn handle(&self, id: u64, generation: u64) -> Box<dyn AppendFile> {
        Box::new(SimFileHandle { disk: self.clone(), id, generation })
    }
}

impl SimState {
    fn id_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn file(&mut self, id: u64) -> io::Result<&mut SimFile> {
        self.files.get_mut(&id).ok_or_else(|| io::Error::other("simulated file vanished"))
    }

    /// What is left after a crash once the surviving bytes are chosen.
    fn restart(&mut self) {
        for file in self.files.values_mut() {
            file.unsynced.clear();
        }
        self.names = self.durable_names.clone();
        let named: std::collections::HashSet<u64> = self.names.values().copied().collect();
        self.files.retain(|id, _| named.contains(id));
        self.last_written = None;
        self.generation += 1;
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such simulated file: {}", path.display()))
}

/// An open file of a [`SimDisk`]; it refers to the file, not the name, as a
/// file descriptor does.
struct SimFileHandle {
    disk: SimDisk,
    id: u64,
    /// The disk's generation when opened: a handle does not survive a crash.
    generation: u64,
}

impl SimFileHandle {
    fn state(&self) -> io::Result<MutexGuard<'_, SimState>> {
        let state = self.disk.lock();
        if state.generation != self.generation {
            return Err(io::Error::other("simulated file handle from before a crash"));
        }
        Ok(state)
    }
}

impl AppendFile for SimFileHandle {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state()?;
        SimDisk::check_write(&mut state)?;
        state.file(self.id)?.unsynced.extend_from_slice(bytes);
        state.last_written = Some(self.id);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        {
            let (gate, changed) = &*self.disk.sync_gate;
            let mut gate = gate.lock().unwrap_or_else(PoisonError::into_inner);
            gate.waiting += 1;
            changed.notify_all();
            let mut gate = changed.wait_while(gate, |gate| gate.held).unwrap_or_else(PoisonError::into_inner);
            gate.waiting -= 1;
        }
        let mut state = self.state()?;
        SimDisk::check_write(&mut state)?;
        let file = state.file(self.id)?;
        let unsynced = std::mem::take(&mut file.unsynced);
        file.synced.extend_from_slice(&unsynced);
        Ok(())
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implied by the names of the files in them.
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        let names = state.names.keys().filter(|path| path.parent() == Some(dir));
        Ok(names.filter_map(|path| path.file_name()?.to_str().map(str::to_owned)).collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        let id = state.id_of(path)?;
        let file = state.file(id)?;
        Ok([file.synced.as_slice(), file.unsynced.as_slice()].concat())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut state = self.lock();
        Self::check_write(&mut state)?;
        let id = match state.names.get(path) {
            Some(&id) => {
                *state.file(id)? = SimFile::default();
                id
            }
            None => {
                let id = state.next_file_id;
                state.next_file_id += 1;
                state.files.insert(id, SimFile::default());
                state.names.insert(path.to_path_buf(), id);
                id
            }
        };
        Ok(self.handle(id, state.generation))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let state = self.lock();
        Ok(self.handle(state.id_of(path)?, state.generation))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        Self::check_write(&mut state)?;
        let id = state.id_of(path)?;
        let file = state.file(id)?;
        let unsynced = std::mem::take(&mut file.unsynced);
        file.synced.extend_from_slice(&unsynced);
        file.synced.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        Self::check_write(&mut state)?;
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        Self::check_write(&mut state)?;
        state.names.remove(path).map(drop).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        Self::check_write(&mut state)?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        state.durable_names.retain(|path, _| !in_dir(path));
        let current: Vec<(PathBuf, u64)> =
            state.names.iter().filter(|(path, _)| in_dir(path)).map(|(path, id)| (path.clone(), *id)).collect();
        state.durable_names.extend(current);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        let mut state = self.lock();
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        let held = SimLock { state: Arc::clone(&self.state), path: path.to_path_buf() };
        Ok(Some(FileLock { _held: Box::new(held) }))
    }
}

/// A lock held on a [`SimDisk`]: released when dropped.
struct SimLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).locks.remove(&self.path);
    }
}
