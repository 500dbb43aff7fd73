//! What the node's gRPC services see: its status, and, while it leads, the
//! channel into the leader's event loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::replication::{
    DiskCounts, EventSource, LogPosition, MembershipRecord, Message, NodeId, NodeStatus, Proposed, RecordView,
    ReplicatedState, Reply, Role, StateMachine,
};
use crate::storage::StorageHandle;
use crate::transport::{
    Backend, BackupSession, ClientApi, Health, Hello, MemberRemoval, Network, PeerProbe, ServiceError, WatchedEvents,
};

use super::NodeConfig;
use super::coordinator::{CoordinatorConfig, read_record};
use super::limits::RateLimiter;
use super::watchers::Watchers;

/// Where the leader's loop sends a client its answer.
pub(super) type ReplySender<M> = oneshot::Sender<Result<Reply<M>, ServiceError>>;

/// An input to the leader's event loop.
pub(super) enum LeaderInput<M: StateMachine> {
    /// A client's command, admitted (see [`StateMachine::admit`]).
    Propose {
        command: M::Command,
        reply: ReplySender<M>,
    },
    /// A client's read.
    Read {
        query: M::Query,
        reply: ReplySender<M>,
    },
    BackupConnected {
        node: NodeId,
        incarnation: u64,
        last: LogPosition,
        stream: BackupStream<M>,
    },
    Ack {
        node: NodeId,
        connection: u64,
        index: u64,
    },
    BackupLost {
        node: NodeId,
        connection: u64,
    },
    RemoveMember {
        node: NodeId,
        reply: ReplySender<M>,
    },
}

/// The leader's end of one backup's stream. Dropping it (the backup was
/// removed, or the leader stopped) ends the stream's tasks, even one blocked
/// on a peer that never reads.
pub(super) struct BackupStream<M: StateMachine> {
    pub connection: u64,
    pub messages: mpsc::Sender<Message<M>>,
    pub closed: CancellationToken,
    /// Wakes the stream's writer when the leader published a new index.
    pub published_wake: Arc<Notify>,
}

impl<M: StateMachine> Drop for BackupStream<M> {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// How long a read on a backup may take before the reader is sent to the
/// leader instead.
const BACKUP_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A backup could not answer a read itself (see `Shared::read_on_backup`).
struct ReadRefused;

/// Inputs waiting for the leader's loop. Past this a client gets
/// `RESOURCE_EXHAUSTED` at once, and a peer's stream waits (its acks are
/// cumulative, so waiting loses nothing).
pub(super) const MAX_QUEUED_INPUTS: usize = 16 * 1024;
/// Messages queued for one backup: far more than a backup that keeps up
/// ever has queued; one that reaches it is removed, not buffered.
pub(super) const MAX_QUEUED_PER_BACKUP: usize = 1024;

/// The way into the leader's event loop, present while this node leads.
pub(super) struct LeaderHandle<M: StateMachine> {
    pub inputs: mpsc::Sender<LeaderInput<M>>,
    pub epoch: u64,
    pub cluster_id: String,
    /// Cleared when the leader stops: clients are turned away while the
    /// backups' acks still come in, so that what is in flight commits.
    pub serving_clients: Arc<AtomicBool>,
    /// The index the leader last published, for every backup's stream.
    pub published: watch::Sender<u64>,
    /// The per-principal rate limits, checked before a command is queued.
    pub limiter: Arc<RateLimiter<M>>,
}

// Derived, it would ask `M: Clone` of every machine for no reason.
impl<M: StateMachine> Clone for LeaderHandle<M> {
    fn clone(&self) -> Self {
        LeaderHandle {
            inputs: self.inputs.clone(),
            epoch: self.epoch,
            cluster_id: self.cluster_id.clone(),
            serving_clients: Arc::clone(&self.serving_clients),
            published: self.published.clone(),
            limiter: Arc::clone(&self.limiter),
        }
    }
}

/// State shared between the node's driver and its gRPC services.
pub(super) struct Shared<M: EventSource> {
    id: NodeId,
    network: Network,
    status: Mutex<NodeStatus>,
    leader: RwLock<Option<LeaderHandle<M>>>,
    /// Numbers replication streams, so events of a backup's old stream are
    /// told from those of its new one.
    next_connection: AtomicU64,
    /// What this node's watches read: the state up to its published index.
    watchers: Arc<Watchers<M>>,
    /// Where the membership record lives: a backup answers a read only
    /// while the record lists it.
    record: CoordinatorConfig,
    /// The connection a backup asks its leader's read index on.
    leader_probe: Mutex<Option<PeerProbe>>,
    /// Members an operator released from this node's wait after a restart
    /// from its disk (see `replication::takeover`).
    released: Mutex<Vec<NodeId>>,
    /// This node's storage writer, if it keeps a disk: status reports its syncs.
    storage: Mutex<Option<StorageHandle>>,
    /// What `grpc.health.v1` reports: the client API serves while this
    /// node leads.
    health: Health,
    /// The watchers' tasks: a stopping node waits for them to end.
    tasks: TaskTracker,
}

impl<M: ClientApi> Shared<M> {
    pub fn new(config: &NodeConfig<M>, network: Network) -> Self {
        let id = config.node_address.to_string();
        Shared {
            status: Mutex::new(NodeStatus {
                waiting: None,
                node: id.clone(),
                role: Role::Joining,
                epoch: 0,
                leader: None,
                membership: Vec::new(),
                last: LogPosition::default(),
                pid: std::process::id(),
                cluster_id: String::new(),
                disk: None,
                http: config.http_address.clone(),
                record: None,
            }),
            id,
            network,
            leader: RwLock::new(None),
            next_connection: AtomicU64::new(1),
            watchers: Arc::new(Watchers::default()),
            record: config.coordinator.clone(),
            leader_probe: Mutex::new(None),
            released: Mutex::new(Vec::new()),
            storage: Mutex::new(None),
            health: Health::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Reports this storage writer's syncs in status answers.
    pub fn set_storage(&self, storage: StorageHandle) {
        *self.storage.lock().unwrap_or_else(PoisonError::into_inner) = Some(storage);
    }

    /// The members an operator released from this node's wait.
    pub fn released(&self) -> Vec<NodeId> {
        self.released.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What this node's watches read (see [`Publisher`]).
    pub fn watchers(&self) -> &Watchers<M> {
        &self.watchers
    }

    pub fn shared_watchers(&self) -> Arc<Watchers<M>> {
        Arc::clone(&self.watchers)
    }

    /// Ends the watches this node serves: it stopped leading or following.
    pub fn stop_watches(&self) {
        self.watchers.stop();
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the tasks this node spawned for its watchers to end (each
    /// ends once this node stops leading, or its watcher goes).
    pub async fn tasks_ended(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Publishes what a status probe answers. Called on every round of the
    /// leader and every message of a backup, so it allocates only when the
    /// leader or the membership changed.
    pub fn set_status(&self, role: Role, epoch: u64, leader: Option<&str>, state: &ReplicatedState<M>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.role = role;
        if role != Role::Joining {
            status.waiting = None;
        }
        status.epoch = epoch;
        if status.leader.as_deref() != leader {
            status.leader = leader.map(str::to_string);
        }
        status.last = state.last;
        if status.membership != state.membership {
            status.membership = state.membership.clone();
        }
        if status.cluster_id != state.cluster_id {
            status.cluster_id = state.cluster_id.clone();
        }
    }

    /// Publishes why this node waits instead of leading or following (it
    /// stands aside, or waits for members), for clients that ask.
    pub fn set_waiting(&self, why: Option<String>) {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).waiting = why;
    }

    /// Publishes the membership record this node last read or stored.
    pub fn set_record(&self, record: Option<&MembershipRecord>) {
        let view = record.map(|record| RecordView { version: record.version, members: record.nodes() });
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.record != view {
            status.record = view;
        }
    }

    /// Opens or closes the way into the leader's loop, and reports the
    /// client API's health to match.
    pub async fn set_leader(&self, handle: Option<LeaderHandle<M>>) {
        let leading = handle.is_some();
        *self.leader.write().unwrap_or_else(PoisonError::into_inner) = handle;
        self.health.set_leading(leading).await;
    }

    fn leader_handle(&self) -> Result<LeaderHandle<M>, ServiceError> {
        let handle = self.leader.read().unwrap_or_else(PoisonError::into_inner).clone();
        handle.ok_or_else(|| {
            let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            ServiceError::NotLeader { leader: status.leader.clone() }
        })
    }

    /// Queues a client's request, or refuses it at once when the leader is
    /// overloaded.
    fn send_request(&self, input: LeaderInput<M>) -> Result<(), ServiceError> {
        let handle = self.leader_handle()?;
        if !handle.serving_clients.load(Ordering::Relaxed) {
            return Err(ServiceError::NotLeader { leader: None });
        }
        if let LeaderInput::Propose { command, .. } = &input {
            handle.limiter.admit(command, Instant::now())?;
        }
        handle.inputs.try_send(input).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ServiceError::Overloaded(MAX_QUEUED_INPUTS),
            mpsc::error::TrySendError::Closed(_) => ServiceError::Stopped,
        })
    }

    /// Queues a client's request and waits for the leader's answer: the
    /// one path of every command and read.
    async fn submit(&self, input: impl FnOnce(ReplySender<M>) -> LeaderInput<M>) -> Result<Reply<M>, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.send_request(input(reply))?;
        // A dropped sender: the leader stopped before it answered.
        answer.await.unwrap_or(Err(ServiceError::Stopped))
    }

    /// A linearizable read on a backup (etcd's read index): its leader's
    /// last sequenced index, asked now, holds every write acknowledged
    /// before the read; the answer comes from this node's state once it
    /// holds that index, and is released once what it shows is published,
    /// as the leader releases its own. Only while the membership record
    /// lists this node: one the leader dropped may follow a deposed leader
    /// and miss what a newer one committed without it.
    async fn read_on_backup(&self, query: M::Query, leader: &str, epoch: u64) -> Result<M::Answer, ReadRefused> {
        let deadline = tokio::time::Instant::now() + BACKUP_READ_TIMEOUT;
        match read_record(&self.record) {
            Ok(Some(record)) if !record.nodes().contains(&self.id) => return Err(ReadRefused),
            Ok(_) => {}
            Err(_) => return Err(ReadRefused),
        }
        let probe = {
            let mut kept = self.leader_probe.lock().unwrap_or_else(PoisonError::into_inner);
            match kept.as_ref().filter(|probe| probe.address() == leader) {
                Some(probe) => probe.clone(),
                None => {
                    let probe = PeerProbe::new(&self.network, leader, BACKUP_READ_TIMEOUT).map_err(|_| ReadRefused)?;
                    *kept = Some(probe.clone());
                    probe
                }
            }
        };
        let said = probe.probe().await.map_err(|_| ReadRefused)?;
        if said.role != Role::Leader || said.epoch != epoch {
            return Err(ReadRefused);
        }
        let view = self.watchers.view_holding(said.last.index, deadline).await.ok_or(ReadRefused)?;
        let answer = view.machine.read(&query, view.clock_unix_ms);
        if !self.watchers.published_at_least(view.log_end, deadline).await {
            return Err(ReadRefused);
        }
        Ok(answer)
    }

    /// Queues a peer's event, waiting while the leader is busy.
    async fn send_peer_event(&self, input: LeaderInput<M>) {
        if let Ok(handle) = self.leader_handle() {
            let _ = handle.inputs.send(input).await;
        }
    }
}

impl<M: ClientApi> Backend<M> for Shared<M> {
    /// With TLS on, names are the principals' own: a node with
    /// certificates authenticates them.
    fn authenticates_names(&self) -> bool {
        self.network().tls().is_some()
    }

    async fn propose(&self, mut command: M::Command) -> Result<Proposed<M::Output>, ServiceError> {
        if let Err(output) = M::admit(&mut command) {
            return Ok(Proposed { index: None, output });
        }
        match self.submit(|reply| LeaderInput::Propose { command, reply }).await? {
            Reply::Applied { index, output } => Ok(Proposed { index: Some(index), output }),
            Reply::Read(_) | Reply::MemberRemoved(_) => Err(ServiceError::Stopped),
        }
    }

    async fn read(&self, query: M::Query) -> Result<(M::Answer, NodeId), ServiceError> {
        M::check_read(&query).map_err(ServiceError::InvalidArgument)?;
        let (role, leader, epoch) = {
            let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            (status.role, status.leader.clone(), status.epoch)
        };
        if role == Role::Backup
            && let Some(leader) = leader
        {
            // Anything that stops it here sends the reader to the leader.
            return match self.read_on_backup(query, &leader, epoch).await {
                Ok(answer) => Ok((answer, self.id.clone())),
                Err(ReadRefused) => Err(ServiceError::NotLeader { leader: Some(leader) }),
            };
        }
        match self.submit(|reply| LeaderInput::Read { query, reply }).await? {
            Reply::Read(answer) => Ok((answer, self.id.clone())),
            Reply::Applied { .. } | Reply::MemberRemoved(_) => Err(ServiceError::Stopped),
        }
    }

    fn watch(&self, scope: M::Scope, after_revision: u64) -> Result<WatchedEvents<M::Event>, ServiceError> {
        M::check_scope(&scope).map_err(ServiceError::InvalidArgument)?;
        // Leaders and backups serve watches from their own state; a node
        // that follows no leader sends the watcher to the one it knows.
        let log_end = {
            let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if status.role == Role::Joining {
                return Err(ServiceError::NotLeader { leader: status.leader.clone() });
            }
            status.last.index
        };
        let (watch, events) = self.watchers.open(scope, after_revision, log_end)?;
        self.tasks.spawn(watch.run(Arc::clone(&self.watchers)));
        Ok(events)
    }

    fn status(&self) -> NodeStatus {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(storage) = self.storage.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let (fsyncs, fsynced_entries) = storage.sync_counts();
            status.disk = Some(DiskCounts { fsyncs, fsynced_entries });
        }
        status
    }

    async fn backup_connected(&self, hello: Hello) -> Result<BackupSession<M>, ServiceError> {
        let handle = self.leader_handle()?;
        if !hello.cluster_id.is_empty() && hello.cluster_id != handle.cluster_id {
            return Err(ServiceError::PeerRefused(format!(
                "{} holds the state of cluster {:?}; this is cluster {:?}, and a node never replaces its state \
                 with another cluster's",
                hello.node, hello.cluster_id, handle.cluster_id
            )));
        }
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (messages_to_backup, messages) = mpsc::channel(MAX_QUEUED_PER_BACKUP);
        let closed = CancellationToken::new();
        let published_wake = Arc::new(Notify::new());
        let stream = BackupStream {
            connection,
            messages: messages_to_backup,
            closed: closed.clone(),
            published_wake: Arc::clone(&published_wake),
        };
        let connected =
            LeaderInput::BackupConnected { node: hello.node, incarnation: hello.incarnation, last: hello.last, stream };
        handle.inputs.send(connected).await.map_err(|_| ServiceError::Stopped)?;
        let published = handle.published.subscribe();
        Ok(BackupSession { connection, epoch: handle.epoch, messages, published, published_wake, closed })
    }

    async fn backup_acked(&self, node: &str, connection: u64, index: u64) {
        self.send_peer_event(LeaderInput::Ack { node: node.to_string(), connection, index }).await;
    }

    async fn backup_lost(&self, node: &str, connection: u64) {
        self.send_peer_event(LeaderInput::BackupLost { node: node.to_string(), connection }).await;
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.clone())
    }

    async fn remove_member(&self, node: NodeId) -> Result<MemberRemoval, ServiceError> {
        let status = self.status();
        match status.role {
            Role::Leader => {
                let (reply, answer) = oneshot::channel();
                let handle = self.leader_handle()?;
                handle
                    .inputs
                    .send(LeaderInput::RemoveMember { node, reply })
                    .await
                    .map_err(|_| ServiceError::Stopped)?;
                match answer.await {
                    Ok(Ok(Reply::MemberRemoved(Some(at)))) => Ok(MemberRemoval::Removed { at }),
                    Ok(Ok(Reply::MemberRemoved(None))) => Ok(MemberRemoval::NotAMember),
                    Ok(Err(error)) => Err(error),
                    Ok(Ok(_)) | Err(_) => Err(ServiceError::Stopped),
                }
            }
            // No leader to ask: a node waiting after a restart from its
            // disk stops waiting for it.
            Role::Joining => {
                if !status.membership.contains(&node) || node == self.id {
                    return Ok(MemberRemoval::NotAMember);
                }
                let mut released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
                if !released.contains(&node) {
                    released.push(node);
                }
                Ok(MemberRemoval::Released)
            }
            Role::Backup => Err(ServiceError::NotLeader { leader: status.leader }),
        }
    }
}
