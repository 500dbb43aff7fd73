//! The coordinator seam: how a node finds the leader, learns what its peers
//! know when the leader is gone, claims the leadership, and reads and
//! writes the membership record (the in-sync set, see
//! [`crate::replication::MembershipRecord`]) that every future leader must
//! read. Bootstrap, takeover and handoff all go through it; the decisions
//! (who may take over) stay in `replication::takeover` and [`standing`].
//!
//! [`LocalCoordinator`] is the one implementation today, for one host:
//!
//! - the client port is the leadership lock (two processes cannot both bind
//!   it), the leader is whoever answers on it, and peers are probed on their
//!   node ports. Releasing the lock is dropping the claimed listener, which a
//!   graceful stop does and a crash does too. It needs no lease: the port
//!   never expires while its holder lives, and a frozen holder keeps it (the
//!   service pauses);
//! - the record is a small file in a directory every node of the cluster on
//!   the host shares (derived from the client port by default), replaced
//!   atomically (write, fsync, rename, fsync of the directory) by the holder
//!   of the port alone, by compare-and-set of its version under a lock on
//!   the directory;
//! - beside it, each node keeps a lock for its process's life (released by
//!   the kernel at death, kept while frozen), and each incarnation a lock
//!   of its own and a note of where its data directory is, never
//!   overwritten by a later incarnation: what tells whether a listed member
//!   (node and incarnation) still lives, or still keeps its state.
//!
//! Across hosts (the Several-hosts issue) the same seam is backed by etcd:
//! a lease instead of the port, a guarded transaction instead of the rename,
//! and the lease's key instead of the file lock.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::replication::{Member, MembershipRecord, NodeId, NodeStatus, UNKNOWN_INCARNATION};
use crate::storage::{Disk, FileLock, StorageError, read_meta, write_meta};
use crate::transport::{self, CallError, Incoming, Network, Port};

/// What the role loop needs of the coordinator: the leadership, and the
/// record.
pub(super) trait Coordinator: RecordStore {
    /// The node address of the current leader, if one answers.
    fn find_leader(&self) -> impl Future<Output = Result<NodeId, CallError>> + Send;

    /// What each of `targets` that answers in time says of itself (the
    /// peer-only probe): the inputs of a takeover decision.
    fn survey(&self, targets: Vec<NodeId>) -> impl Future<Output = Vec<NodeStatus>> + Send;

    /// Takes the lock. On success this node leads, and serves clients on the
    /// returned listener until it drops it; on failure someone else holds it.
    fn claim(&self) -> impl Future<Output = io::Result<Incoming>> + Send;
}

/// Where the membership record is kept: what the leader's loop needs to
/// store it, and a waiting node to read it.
pub(super) trait RecordStore: Send + Sync {
    /// The stored membership record, if one was ever written.
    fn load_record(&self) -> Result<Option<MembershipRecord>, RecordError>;

    /// Stores `record` if the stored one still has version `expected`
    /// (`None`: there is none). Only the holder of the lock calls it.
    fn store_record(&self, expected: Option<u64>, record: &MembershipRecord) -> Result<(), RecordError>;

    /// Whether a listed member's process still runs, or else still keeps
    /// its state somewhere it can be restarted from.
    fn presence(&self, member: &Member) -> Presence;
}

/// What is known of a listed member's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Presence {
    Running,
    /// Its process is gone; its state may be on its data directory.
    Stopped {
        keeps_state: bool,
    },
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the membership record in {dir} cannot be read: {reason}")]
    Unreadable { dir: PathBuf, reason: String },
    #[error("the membership record changed under this node: version {found:?} where {expected:?} was expected")]
    Conflict { expected: Option<u64>, found: Option<u64> },
    #[error("another process is writing the membership record in {dir}")]
    Busy { dir: PathBuf },
    #[error("taking a lock in {dir}: {source}")]
    Lock {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the cluster's record lives on this host, and on what disk.
#[derive(Clone)]
pub struct CoordinatorConfig {
    pub dir: PathBuf,
    /// The real file system, or a simulated one shared by simulated hosts.
    pub disk: Arc<dyn Disk>,
}

impl CoordinatorConfig {
    /// The default directory of the cluster on `client_address`: one per
    /// client port, in the system's temporary directory, shared by every
    /// node of that cluster on this host.
    pub fn for_client_port(client_address: SocketAddr) -> Self {
        let name = format!("gavel-cluster-{}", file_safe(&client_address.to_string()));
        CoordinatorConfig { dir: std::env::temp_dir().join(name), disk: Arc::new(crate::storage::OsDisk) }
    }
}

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorConfig").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// How long a probe of a peer may take: a live peer on a LAN answers in
/// well under this; a frozen one never does.
const PROBE_TIMEOUT: Duration = Duration::from_millis(150);

/// The record's metadata file.
const RECORD_NAME: &str = "membership";
/// Held while the record is read, compared and replaced.
const RECORD_LOCK: &str = "membership.lock";

/// What an incarnation says of itself beside the record: where it keeps
/// its state.
#[derive(Debug, Serialize, Deserialize)]
struct NodeNote {
    incarnation: u64,
    data_dir: Option<PathBuf>,
}

/// The coordinator of the nodes of one host.
pub(super) struct LocalCoordinator {
    network: Network,
    client_address: SocketAddr,
    /// How long asking the client port who leads may take.
    find_timeout: Duration,
    config: CoordinatorConfig,
    /// This node's life, and this incarnation's, as others see them: held
    /// until the process ends.
    _alive: [FileLock; 2],
}

/// How long joining the directory waits for a lock that a peer's presence
/// check holds for an instant.
const LOCK_ATTEMPTS: u32 = 50;
const LOCK_RETRY: Duration = Duration::from_millis(2);

impl LocalCoordinator {
    /// Joins the cluster's directory as `me`: takes this node's life lock
    /// and notes its incarnation and data directory beside the record.
    pub fn open(
        network: Network,
        client_address: SocketAddr,
        find_timeout: Duration,
        config: CoordinatorConfig,
        me: &Member,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let disk = &*config.disk;
        let dir = &config.dir;
        disk.create_dir_all(dir).map_err(|error| anyhow::anyhow!("creating {}: {error}", dir.display()))?;
        let node_lock = dir.join(format!("{}.lock", node_file(&me.node)));
        let incarnation_lock = dir.join(format!("{}.lock", incarnation_file(me)));
        let mut alive = Vec::new();
        for path in [node_lock, incarnation_lock] {
            let lock = lock_soon(disk, &path)
                .map_err(|error| anyhow::anyhow!("locking {}: {error}", path.display()))?
                .ok_or_else(|| {
                    anyhow::anyhow!("another process runs as node {} in this cluster ({})", me.node, path.display())
                })?;
            alive.push(lock);
        }
        let data_dir = data_dir.map(|dir| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()));
        let note = NodeNote { incarnation: me.incarnation, data_dir };
        write_meta(disk, dir, &incarnation_file(me), &serde_json::to_vec(&note)?)?;
        let coordinator = LocalCoordinator {
            network,
            client_address,
            find_timeout,
            config,
            _alive: alive.try_into().map_err(|_| anyhow::anyhow!("two locks expected"))?,
        };
        coordinator.forget_unlisted_incarnations(me);
        Ok(coordinator)
    }

    /// Removes the notes and locks of this node's earlier incarnations that
    /// the record does not list and that keep no state: nobody asks about
    /// those again. (One whose data directory still holds its state keeps
    /// its note: a record written meanwhile may list it.)
    fn forget_unlisted_incarnations(&self, me: &Member) {
        let (disk, dir) = (&*self.config.disk, &self.config.dir);
        let Ok(record) = self.read_record() else { return };
        let Ok(names) = disk.list(dir) else { return };
        let prefix = format!("{}-i", node_file(&me.node));
        for name in names {
            let Some(incarnation) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('.').next())
                .and_then(|digits| digits.parse::<u64>().ok())
            else {
                continue;
            };
            let member = Member { node: me.node.clone(), incarnation };
            let listed = record.as_ref().is_some_and(|record| record.lists(&member));
            let stateless = matches!(read_note(&self.config, &member), Ok(None))
                || matches!(read_note(&self.config, &member), Ok(Some(note)) if !keeps_state(&note, &member));
            if incarnation != me.incarnation && !listed && stateless {
                let _ = disk.remove(&dir.join(&name));
            }
        }
    }

    fn read_record(&self) -> Result<Option<MembershipRecord>, RecordError> {
        read_record(&self.config)
    }
}

/// The stored membership record, read afresh.
pub(super) fn read_record(config: &CoordinatorConfig) -> Result<Option<MembershipRecord>, RecordError> {
    let Some(body) = read_meta(&*config.disk, &config.dir, RECORD_NAME)? else { return Ok(None) };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|error| RecordError::Unreadable { dir: config.dir.clone(), reason: error.to_string() })
}

/// Stores `record` if the stored one still has version `expected`. Only the
/// holder of the leadership calls it.
fn store_record(
    config: &CoordinatorConfig,
    expected: Option<u64>,
    record: &MembershipRecord,
) -> Result<(), RecordError> {
    let (dir, disk) = (&config.dir, &*config.disk);
    // Only the port's holder writes; the lock guards against a holder that
    // lost the port while frozen mid-write, and against an operator's tool.
    let _writing = disk
        .try_lock(&dir.join(RECORD_LOCK))
        .map_err(|source| RecordError::Lock { dir: dir.clone(), source })?
        .ok_or_else(|| RecordError::Busy { dir: dir.clone() })?;
    let found = read_record(config)?.map(|stored| stored.version);
    if found != expected {
        return Err(RecordError::Conflict { expected, found });
    }
    let body = serde_json::to_vec_pretty(record)
        .map_err(|error| RecordError::Unreadable { dir: dir.clone(), reason: error.to_string() })?;
    write_meta(disk, dir, RECORD_NAME, &body)?;
    Ok(())
}

/// What an operator's removal did while no leader ran.
#[derive(Debug, PartialEq, Eq)]
pub enum OperatorRemoval {
    /// The record without the member is stored, at this version.
    Removed { version: u64, members: Vec<NodeId> },
    /// The record does not list it (or there is none).
    NotListed,
    /// No member the record would still list runs or keeps its state:
    /// removing it would leave nobody who holds the cluster's.
    LastHolder,
    /// The client port is held: a leader runs (perhaps frozen), and only it
    /// writes the record.
    PortHeld,
}

/// `gavel member remove` when no leader answers: an operator's change of
/// the record. It takes the leadership first (the client port), so that
/// it is the one writer, writes the record without `node` by
/// compare-and-set, and lets the port go. Every member left listed still
/// holds every committed entry, so the next leader needs nothing of the
/// removed one.
pub async fn remove_without_leader(
    network: &Network,
    client_address: SocketAddr,
    config: &CoordinatorConfig,
    node: &str,
) -> Result<OperatorRemoval, RecordError> {
    let _leadership = match network.bind(client_address, Port::Client).await {
        Ok(listener) => listener,
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => return Ok(OperatorRemoval::PortHeld),
        Err(source) => return Err(RecordError::Lock { dir: config.dir.clone(), source }),
    };
    let Some(stored) = read_record(config)? else { return Ok(OperatorRemoval::NotListed) };
    if !stored.members.iter().any(|member| member.node == node) {
        return Ok(OperatorRemoval::NotListed);
    }
    let members: Vec<Member> = stored.members.iter().filter(|member| member.node != node).cloned().collect();
    if members.iter().all(|member| presence(config, member) == Presence::Stopped { keeps_state: false }) {
        return Ok(OperatorRemoval::LastHolder);
    }
    let record = MembershipRecord { version: stored.version + 1, members, ..stored.clone() };
    store_record(config, Some(stored.version), &record)?;
    Ok(OperatorRemoval::Removed { version: record.version, members: record.nodes() })
}

impl Coordinator for LocalCoordinator {
    async fn find_leader(&self) -> Result<NodeId, CallError> {
        transport::find_leader(&self.network, &self.client_address.to_string(), self.find_timeout).await
    }

    async fn survey(&self, targets: Vec<NodeId>) -> Vec<NodeStatus> {
        let mut probes = tokio::task::JoinSet::new();
        for target in targets {
            let network = self.network.clone();
            probes.spawn(async move { transport::probe_peer(&network, &target, PROBE_TIMEOUT).await.ok() });
        }
        let mut answers = Vec::new();
        while let Some(answer) = probes.join_next().await {
            answers.extend(answer.ok().flatten());
        }
        answers
    }

    async fn claim(&self) -> io::Result<Incoming> {
        self.network.bind(self.client_address, Port::Client).await
    }
}

impl RecordStore for LocalCoordinator {
    fn load_record(&self) -> Result<Option<MembershipRecord>, RecordError> {
        self.read_record()
    }

    fn store_record(&self, expected: Option<u64>, record: &MembershipRecord) -> Result<(), RecordError> {
        store_record(&self.config, expected, record)
    }

    fn presence(&self, member: &Member) -> Presence {
        presence(&self.config, member)
    }
}

/// What the files beside the record say of `member`. Where they cannot
/// tell, the answer is the safe one: it may still run, or keep its state.
fn presence(config: &CoordinatorConfig, member: &Member) -> Presence {
    let (disk, dir) = (&*config.disk, &config.dir);
    if member.incarnation == UNKNOWN_INCARNATION {
        // Listed by a takeover that knew no incarnations: nothing says
        // where its state is, only whether a process of that node runs.
        return match disk.try_lock(&dir.join(format!("{}.lock", node_file(&member.node)))) {
            Ok(Some(_free)) => Presence::Stopped { keeps_state: true },
            Ok(None) | Err(_) => Presence::Running,
        };
    }
    let note = match read_note(config, member) {
        Ok(Some(note)) => note,
        // Never noted on this host (or forgotten, being unlisted and
        // stateless): no process of it runs here, nor kept its state.
        Ok(None) => return Presence::Stopped { keeps_state: false },
        Err(_) => return Presence::Running,
    };
    match disk.try_lock(&dir.join(format!("{}.lock", incarnation_file(member)))) {
        Ok(None) | Err(_) => return Presence::Running,
        Ok(Some(_free)) => {}
    }
    Presence::Stopped { keeps_state: keeps_state(&note, member) }
}

/// The note `member` left beside the record, if any.
fn read_note(config: &CoordinatorConfig, member: &Member) -> Result<Option<NodeNote>, RecordError> {
    let Some(body) = read_meta(&*config.disk, &config.dir, &incarnation_file(member))? else { return Ok(None) };
    let note: NodeNote = serde_json::from_slice(&body)
        .map_err(|error| RecordError::Unreadable { dir: config.dir.clone(), reason: error.to_string() })?;
    Ok((note.incarnation == member.incarnation).then_some(note))
}

/// Whether `member`'s data directory still holds its state.
fn keeps_state(note: &NodeNote, member: &Member) -> bool {
    note.data_dir.as_deref().is_some_and(|dir| {
        super::durable::incarnation_in(dir).is_some_and(|incarnation| incarnation == member.incarnation)
    })
}

/// A name safe in a file name: letters and digits kept, the rest '-'.
fn file_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn node_file(node: &str) -> String {
    format!("node-{}", file_safe(node))
}

/// The name of one incarnation's note and lock.
fn incarnation_file(member: &Member) -> String {
    format!("{}-i{}", node_file(&member.node), member.incarnation)
}

/// Takes the lock at `path`, waiting a moment if it is held: a peer checking
/// whether this node runs holds it for an instant. This runs once, as the
/// node starts, so a short blocking wait is fine.
fn lock_soon(disk: &dyn Disk, path: &Path) -> io::Result<Option<FileLock>> {
    for _ in 1..LOCK_ATTEMPTS {
        if let Some(lock) = disk.try_lock(path)? {
            return Ok(Some(lock));
        }
        std::thread::sleep(LOCK_RETRY);
    }
    disk.try_lock(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimDisk;

    /// A peer's presence check holds a node's lock for an instant: the node
    /// starting then waits for it, instead of taking the peer for another
    /// process of its own.
    #[test]
    fn joining_waits_out_a_lock_held_for_an_instant() {
        let disk = SimDisk::new();
        let path = Path::new("/cluster/node-a.lock");
        let held = disk.try_lock(path).unwrap().expect("free at first");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            drop(held);
        });
        assert!(lock_soon(&disk, path).unwrap().is_some());
        release.join().unwrap();
    }

    /// A lock held for the life of another process is not taken.
    #[test]
    fn joining_gives_up_on_a_lock_held_for_good() {
        let disk = SimDisk::new();
        let path = Path::new("/cluster/node-a.lock");
        let _held = disk.try_lock(path).unwrap().expect("free at first");
        assert!(lock_soon(&disk, path).unwrap().is_none());
    }

    fn config() -> CoordinatorConfig {
        CoordinatorConfig { dir: PathBuf::from("/cluster"), disk: Arc::new(SimDisk::new()) }
    }

    /// Where the files cannot tell, a member may still run or keep its
    /// state: never a reason to start over without it.
    #[test]
    fn presence_that_cannot_be_told_is_the_safe_answer() {
        let config = config();
        config.disk.create_dir_all(&config.dir).unwrap();
        // Never noted: it never ran here.
        let never = Member { node: "127.0.0.1:1".into(), incarnation: 5 };
        assert_eq!(presence(&config, &never), Presence::Stopped { keeps_state: false });
        // A note that cannot be read.
        let garbled = Member { node: "127.0.0.1:2".into(), incarnation: 6 };
        write_meta(&*config.disk, &config.dir, &incarnation_file(&garbled), b"not json").unwrap();
        assert_eq!(presence(&config, &garbled), Presence::Running);
        // Listed without an incarnation: nothing says where its state is.
        let unknown = Member { node: "127.0.0.1:3".into(), incarnation: UNKNOWN_INCARNATION };
        assert_eq!(presence(&config, &unknown), Presence::Stopped { keeps_state: true });
        let _alive = config.disk.try_lock(&config.dir.join(format!("{}.lock", node_file(&unknown.node)))).unwrap();
        assert_eq!(presence(&config, &unknown), Presence::Running);
    }
}
