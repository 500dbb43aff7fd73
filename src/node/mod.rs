//! The async driver of one server process.
//!
//! A node is always in one of three roles. *Joining*: it asks whoever holds
//! the client port to take it as a backup; if nobody answers it probes its
//! peers and, if it is the one to take over, binds the client port. *Backup*:
//! it applies the leader's stream until the stream ends or goes silent.
//! *Leader*: it drives the replication core from the client calls and the
//! backups' acks. This is the only layer that owns tasks and timers; the
//! protocol decisions live in [`crate::replication`].
//!
//! A node runs any state machine the transport can carry
//! ([`ClientApi`]): what it replicates, serves and shows watchers is the
//! machine's; the server chooses the auction book.

mod backend;
mod coordinator;
mod durable;
mod leader;
mod limits;
mod watchers;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::replication::{
    Backup, Member, MembershipRecord, NodeId, ReplicationError, Role, SelfView, StateMachine, Succession,
    UNKNOWN_INCARNATION, choose_successor, epoch_number, epoch_of_record, highest_credible_epoch,
    successor_epoch_floor, takeover_epoch_number,
};
use crate::transport::{
    self, Backend, CallError, ClientApi, Hello, Incoming, LeaderMessage, Network, Services, TransportSettings, Wire,
};

use backend::Shared;
use coordinator::{Coordinator, LocalCoordinator, Presence, RecordStore};
pub use coordinator::{CoordinatorConfig, OperatorRemoval, RecordError, remove_without_leader};
use durable::persisted_changed;
pub use durable::{NodeDisk, SNAPSHOT_EVERY, StorageConfig};
use watchers::Publisher;

/// Everything a node that replicates `M` needs to know at start.
#[derive(Clone, Debug)]
pub struct NodeConfig<M: StateMachine> {
    /// This node's own address: its identity, and where its listener is.
    pub node_address: SocketAddr,
    /// The well-known port clients dial, held by the leader alone.
    pub client_address: SocketAddr,
    /// Other nodes to ask before bootstrapping a new cluster.
    pub peers: Vec<String>,
    /// A backup that acks nothing for this long, while owing acks, is removed.
    pub ack_timeout: Duration,
    /// A leader silent for this long is taken for lost.
    pub leader_timeout: Duration,
    /// How often an idle leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// How long the chosen successor has to take over before the next one does.
    pub takeover_timeout: Duration,
    /// The state machine's settings (see [`StateMachine::Settings`]).
    pub machine: M::Settings,
    /// Where the node keeps its log and snapshots; `None` keeps state in
    /// memory only (replication is then all that keeps it).
    pub storage: Option<StorageConfig>,
    /// Where this node serves the HTTP API, if it does: its status says so,
    /// so that the web page finds every node.
    pub http_address: Option<String>,
    /// Where the cluster's membership record is kept (see
    /// [`CoordinatorConfig`]).
    pub coordinator: CoordinatorConfig,
    /// Start a new cluster even where the record lists members that may
    /// still hold state (their state is then lost): an operator's choice.
    pub new_cluster: bool,
    /// Where the node serves the connections of its own port other than
    /// its backups' replication (readers' above all), so that their work
    /// never queues before a bid's; `None`: beside the replication.
    pub readers: Option<tokio::runtime::Handle>,
}

impl<M: StateMachine> NodeConfig<M> {
    /// A configuration with the default timeouts.
    pub fn new(node_address: SocketAddr, client_address: SocketAddr) -> Self {
        NodeConfig {
            node_address,
            client_address,
            peers: Vec::new(),
            ack_timeout: Duration::from_millis(1000),
            leader_timeout: Duration::from_millis(1000),
            heartbeat_interval: Duration::from_millis(100),
            takeover_timeout: Duration::from_millis(1000),
            machine: M::Settings::default(),
            storage: None,
            http_address: None,
            coordinator: CoordinatorConfig::for_client_port(client_address),
            new_cluster: false,
            readers: None,
        }
    }

    fn transport(&self) -> TransportSettings {
        TransportSettings { heartbeat_interval: self.heartbeat_interval, ..TransportSettings::default() }
    }
}

/// How long a join may take before the node looks elsewhere.
const JOIN_TIMEOUT: Duration = Duration::from_millis(300);
/// Pauses between two rounds of looking for the leader: short at first, so
/// that the backups find a new leader within a few milliseconds of its
/// takeover (which waits for them before it commits anything), then
/// doubling, so that a node alone does not spin.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(15);

/// The most runtime threads a process may ask for: far more than a host has
/// cores, and few enough that a typo cannot exhaust the thread limit.
pub const MAX_WORKER_THREADS: usize = 256;

/// Parses a `--worker-threads` value: 0 (one per core) to
/// [`MAX_WORKER_THREADS`].
pub fn parse_worker_threads(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(threads) if threads <= MAX_WORKER_THREADS => Ok(threads),
        _ => Err(format!("expected a whole number from 0 (one per core) to {MAX_WORKER_THREADS}")),
    }
}

/// Runs a node until `shutdown` is cancelled. The network and the node's own
/// listener are passed in, so the same code runs over TCP and in simulation.
pub async fn run<M: ClientApi>(
    config: NodeConfig<M>,
    network: Network,
    node_listener: Incoming,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Node::new(config, network).run(node_listener, shutdown).await
}

/// A node, made but not yet running: what serves its client API can be
/// handed out first (see [`Node::backend`]).
pub struct Node<M: ClientApi> {
    config: NodeConfig<M>,
    shared: Arc<Shared<M>>,
}

impl<M: ClientApi> Node<M> {
    pub fn new(config: NodeConfig<M>, network: Network) -> Self {
        let shared = Arc::new(Shared::new(&config, network));
        Node { config, shared }
    }

    /// The network the node speaks over, with its TLS credentials: what
    /// a service beside it (the HTTP API) reaches the other nodes by.
    pub fn network(&self) -> &Network {
        self.shared.network()
    }

    /// What the node's client API calls: for a service in the same process
    /// (the HTTP API beside it), without the network.
    pub fn backend(&self) -> Arc<impl Backend<M> + use<M>> {
        Arc::clone(&self.shared)
    }

    /// Runs the node until `shutdown` is cancelled.
    pub async fn run(self, node_listener: Incoming, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Node { config, shared } = self;
        // Not serving the client API until it leads.
        shared.set_leader(None).await;
        // The backups' replication connections are served here, beside the
        // replication; every other connection of the node port (readers,
        // probes, operators) on the readers' runtime, if the node has one.
        let (replication, others) =
            transport::split_replication(transport::limit_connections(node_listener, MAX_NODE_CONNECTIONS));
        let serve = |incoming| {
            transport::serve(
                Arc::clone(&shared),
                incoming,
                Services::Node,
                config.transport(),
                shared.network().tls().cloned(),
                shutdown.clone(),
            )
        };
        let replication_server = tokio::spawn(serve(replication));
        let others_server = match &config.readers {
            Some(readers) => {
                readers.spawn(shared.shared_watchers().ring_bells(shutdown.clone()));
                readers.spawn(serve(others))
            }
            None => tokio::spawn(serve(others)),
        };
        let result = drive(&shared, &config, &shutdown).await;
        shutdown.cancel();
        let servers = async {
            let _ = replication_server.await;
            let _ = others_server.await;
        };
        if tokio::time::timeout(leader::SERVER_CLOSE_TIMEOUT, servers).await.is_err() {
            debug!("node port connections still open; closing them");
        }
        if tokio::time::timeout(leader::SERVER_CLOSE_TIMEOUT, shared.tasks_ended()).await.is_err() {
            debug!("watchers' tasks still running; leaving them");
        }
        result
    }
}

/// Connections a node's own port serves at once: its peers, and clients
/// that were given node addresses.
const MAX_NODE_CONNECTIONS: usize = 1024;

/// Why following a leader ended.
enum FollowEnd {
    /// The stream ended or went silent: the leader is presumably gone.
    LeaderLost(Option<NodeId>),
    /// The leader sent something this backup could not accept: join again.
    Rejoin,
    Shutdown,
    /// The disk failed: the node must not acknowledge anything more.
    DiskFailed(anyhow::Error),
}

async fn drive<M: ClientApi>(
    shared: &Arc<Shared<M>>,
    config: &NodeConfig<M>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let id = shared.id().to_string();
    let transport = config.transport();
    // `_data_dir_claim` holds the data directory's lock for the process's life.
    let (mut disk, mut backup, incarnation, _data_dir_claim) = match &config.storage {
        Some(storage) => {
            // Refused before anything is read: another process on this
            // directory, or another node's directory.
            let claimed = durable::claim_data_dir(storage, &id, || shared.network().random())?;
            let (disk, recovered) = NodeDisk::open(storage)?;
            shared.set_storage(disk.handle());
            (Some(disk), Backup::new(recovered.epoch, recovered.state), claimed.incarnation, Some(claimed))
        }
        None => {
            info!("no data directory: state lives in memory only, and is lost if every node stops");
            (None, Backup::default(), shared.network().random().max(1), None)
        }
    };
    let me = Member { node: id.clone(), incarnation };
    let coordinator = LocalCoordinator::open(
        shared.network().clone(),
        config.client_address,
        JOIN_TIMEOUT,
        config.coordinator.clone(),
        &me,
        config.storage.as_ref().map(|storage| storage.dir.as_path()),
    )?;
    refuse_another_clusters_record(&coordinator, &backup)?;
    // State from the disk, and no leader followed since: where no record
    // can say who holds every committed entry, this node leads after a
    // full restart only once every member it knows answered.
    let mut recovered = backup.last().index > 0;
    // What the node last said of its standing, so that it says it once.
    let mut said: Option<String> = None;
    let mut lost_leader: Option<NodeId> = None;
    // When each successor candidate was first waited for.
    let mut waiting_for: HashMap<NodeId, Instant> = HashMap::new();
    let mut passed_over: HashSet<NodeId> = HashSet::new();
    let mut retry_pause = FIRST_RETRY_PAUSE;
    // The last refusal logged, so that a node refused again and again (by a
    // leader of another cluster, say) says so once, not every few ms.
    let mut last_refusal: Option<String> = None;

    while !shutdown.is_cancelled() {
        shared.set_status(Role::Joining, backup.epoch(), None, backup.state());
        let hello =
            Hello { node: id.clone(), incarnation, last: backup.last(), cluster_id: backup.state().cluster_id.clone() };
        match join(&coordinator, shared.network(), &hello, &transport).await {
            Ok(link) => {
                waiting_for.clear();
                passed_over.clear();
                retry_pause = FIRST_RETRY_PAUSE;
                recovered = false;
                said = None;
                let followed = follow(shared, config, &mut backup, disk.as_mut(), link, shutdown).await;
                // Its watchers resume after what they got, here once it
                // follows or leads again, or at another node.
                shared.stop_watches();
                match followed {
                    FollowEnd::LeaderLost(leader) => {
                        info!(leader = leader.as_deref().unwrap_or("?"), "leader lost");
                        lost_leader = leader;
                        // A new succession: every candidate gets its chance again.
                        waiting_for.clear();
                        passed_over.clear();
                    }
                    FollowEnd::Rejoin => {}
                    FollowEnd::Shutdown => break,
                    FollowEnd::DiskFailed(error) => return Err(error),
                }
                continue;
            }
            Err(CallError::Rejected { message }) => {
                if last_refusal.as_ref() != Some(&message) {
                    warn!(%message, "the leader refused this node");
                    last_refusal = Some(message);
                }
            }
            Err(error) => debug!(%error, "no leader to join"),
        }

        let standing = match coordinator.load_record() {
            Ok(record) => standing(&coordinator, record, &me, &backup, config.new_cluster),
            Err(error) => Standing::Aside(format!("{error}: no node may lead until it can be read")),
        };
        shared.set_record(standing.record());
        if let Standing::Aside(why) = &standing {
            if said.as_ref() != Some(why) {
                warn!(reason = %why, "standing aside: this node may not lead");
                shared.set_waiting(Some(format!("standing aside: {why}")));
                said = Some(why.clone());
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(retry_pause) => {}
            }
            retry_pause = (retry_pause * 2).min(MAX_RETRY_PAUSE);
            continue;
        }

        // The members in leaderQueue order: the record's where there is
        // one, since a removal may be stored there and not yet in any log.
        let membership = match &standing {
            Standing::Listed(record) => record.nodes(),
            _ => backup.state().membership.clone(),
        };
        let answers = coordinator.survey(survey_targets(&id, config, &backup, &membership)).await;
        let released = shared.released();
        let me_view = SelfView {
            id: &id,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &membership,
            cluster_id: &backup.state().cluster_id,
            // A listed member holds every committed entry: it needs nobody's
            // word to lead.
            recovered: recovered && standing.unrecorded(),
            released: &released,
        };
        let decision = choose_successor(&me_view, lost_leader.as_deref(), &answers, &passed_over);
        if let Succession::AwaitMembers { missing } = &decision {
            let why = format!(
                "restarted from disk with no membership record of its cluster: waiting for these members before \
                 anyone may lead (a member whose disk is gone must be removed with `gavel member remove`): \
                 {missing:?}"
            );
            if said.as_ref() != Some(&why) {
                warn!(?missing, "{why}");
                shared.set_waiting(Some(why.clone()));
                said = Some(why);
            }
        } else {
            // Neither aside nor waiting: what it said no longer holds.
            shared.set_waiting(None);
        }
        match decision {
            Succession::TakeOver { live_backups } => {
                match coordinator.claim().await {
                    Ok(client_listener) => {
                        // Above every epoch a live member reports, and every
                        // candidate ahead of it.
                        let floor = successor_epoch_floor(
                            &me_view,
                            lost_leader.as_deref(),
                            highest_credible_epoch(&me_view, &answers),
                        );
                        let nonce = shared.network().random() as u32;
                        let takeover = Takeover {
                            me: &me,
                            live_backups: &live_backups,
                            highest_epoch: floor,
                            lost_leader: lost_leader.as_deref(),
                            new_cluster_id: format!("{:016x}", shared.network().random()),
                        };
                        match write_takeover_record(&coordinator, &standing, &backup, takeover) {
                            Ok(record) => {
                                if let Standing::Abandoned(old) = &standing {
                                    warn!(
                                        old_cluster = %old.cluster_id,
                                        old_members = ?old.nodes(),
                                        "no member of the last cluster on this client port runs or keeps its state: \
                                         starting a new cluster; the old state is lost"
                                    );
                                }
                                let epoch = epoch_of_record(record.epoch, nonce);
                                shared.set_record(Some(&record));
                                let (_, state) = std::mem::take(&mut backup).into_parts();
                                return leader::lead(
                                    shared,
                                    config,
                                    &coordinator,
                                    leader::Start { epoch, record, state, lost_leader, disk: disk.take() },
                                    client_listener,
                                    shutdown,
                                )
                                .await;
                            }
                            // The port goes back with the listener.
                            Err(error) => warn!(%error, "could not store the takeover record; not leading"),
                        }
                    }
                    Err(error) => debug!(%error, "client port taken; someone else leads"),
                }
            }
            Succession::Wait { for_node: Some(candidate) } => {
                // The network's clock, so that a simulation controls it.
                let now = shared.network().now().instant;
                let since = *waiting_for.entry(candidate.clone()).or_insert(now);
                if now.duration_since(since) > config.takeover_timeout {
                    warn!(candidate = %candidate, "successor did not take over in time; passing it over");
                    passed_over.insert(candidate);
                }
            }
            Succession::Wait { for_node: None } | Succession::AwaitMembers { .. } => {}
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(retry_pause) => {}
        }
        retry_pause = (retry_pause * 2).min(MAX_RETRY_PAUSE);
    }
    Ok(())
}

/// What the membership record lets this node do while nobody leads.
enum Standing {
    /// No record was ever stored (a cluster from before it, or a host whose
    /// temporary directory was cleared): the log's membership decides, and
    /// a node restarted from its disk waits for every member it knows.
    Unrecorded,
    /// The record lists this node, this incarnation: it holds every
    /// committed entry, and may lead.
    Listed(MembershipRecord),
    /// A node without state, where no listed member runs or keeps its state
    /// (or an operator said `--new-cluster`): it may start a new cluster,
    /// and the old state is lost.
    Abandoned(MembershipRecord),
    /// The record is another cluster's, and none of its members runs or
    /// keeps its state (a cluster that ran on this client port in between,
    /// and is gone): this node's own cluster has no record, as if
    /// [`Standing::Unrecorded`], and the takeover writes over it.
    Foreign(MembershipRecord),
    /// It may not lead, for this reason.
    Aside(String),
}

impl Standing {
    fn record(&self) -> Option<&MembershipRecord> {
        match self {
            Standing::Listed(record) | Standing::Abandoned(record) => Some(record),
            Standing::Unrecorded | Standing::Foreign(_) | Standing::Aside(_) => None,
        }
    }

    /// Whether this node's cluster has no record: its log's membership
    /// decides.
    fn unrecorded(&self) -> bool {
        matches!(self, Standing::Unrecorded | Standing::Foreign(_))
    }
}

/// Where `record` leaves this node.
fn standing<M: StateMachine>(
    coordinator: &impl RecordStore,
    record: Option<MembershipRecord>,
    me: &Member,
    backup: &Backup<M>,
    new_cluster: bool,
) -> Standing {
    let Some(record) = record else { return Standing::Unrecorded };
    if record.lists(me) {
        return Standing::Listed(record);
    }
    let has_state = backup.last().index > 0;
    let ours = &backup.state().cluster_id;
    if has_state && !ours.is_empty() && record.cluster_id != *ours {
        let holding = holding_state(coordinator, &record);
        if holding.is_empty() {
            return Standing::Foreign(record);
        }
        return Standing::Aside(format!(
            "the membership record on this client port is of cluster {:?}, not this node's {ours:?}, and its \
             members {holding:?} may still run or keep their state",
            record.cluster_id
        ));
    }
    if has_state {
        let why = match record.incarnation_of(&me.node) {
            Some(_) => "not in the membership record: it lists this node's name for another copy of its state \
                        (a process that froze and resumed after its place was taken, or one that lost its disk)"
                .to_string(),
            None => format!(
                "not in the membership record (version {}, members {:?}): this node was removed and may lack \
                 committed entries; it rejoins when a member leads",
                record.version,
                record.nodes()
            ),
        };
        return Standing::Aside(why);
    }
    if new_cluster {
        return Standing::Abandoned(record);
    }
    let holding = holding_state(coordinator, &record);
    if holding.is_empty() {
        return Standing::Abandoned(record);
    }
    Standing::Aside(format!(
        "this node has no state, and members of the record may still hold the cluster's ({holding:?}): it joins \
         when one of them leads (`--new-cluster` starts a new cluster, losing theirs)"
    ))
}

/// The members `record` lists that still run, or keep their state.
fn holding_state(coordinator: &impl RecordStore, record: &MembershipRecord) -> Vec<NodeId> {
    record
        .members
        .iter()
        .filter(|member| coordinator.presence(member) != Presence::Stopped { keeps_state: false })
        .map(|member| member.node.clone())
        .collect()
}

/// A node whose data directory holds another cluster's state than the
/// record's live cluster on this client port is started in the wrong place.
fn refuse_another_clusters_record<M: StateMachine>(
    coordinator: &impl RecordStore,
    backup: &Backup<M>,
) -> anyhow::Result<()> {
    let ours = &backup.state().cluster_id;
    let Ok(Some(record)) = coordinator.load_record() else { return Ok(()) };
    if ours.is_empty() || record.cluster_id == *ours {
        return Ok(());
    }
    anyhow::ensure!(
        holding_state(coordinator, &record).is_empty(),
        "this node's data directory holds the state of cluster {ours:?}, but the cluster on this client port is \
         {:?} (its members still run or keep their state): start it with its own cluster's client port, or \
         with another data directory",
        record.cluster_id
    );
    Ok(())
}

/// What a successor brings to its takeover write.
struct Takeover<'a> {
    me: &'a Member,
    /// The members that answered its probe: the backups it waits for where
    /// no record lists them.
    live_backups: &'a [NodeId],
    /// Its epoch goes above this one.
    highest_epoch: u64,
    lost_leader: Option<&'a str>,
    /// The name of the cluster it starts, if it has no state.
    new_cluster_id: String,
}

/// The node's first act as leader, once it holds the lock: it reads the
/// record again (it may have changed before the lock was taken), and
/// stores the takeover record: itself first, then the members it will wait
/// for (the record's, or where it has none the live backups), with an
/// epoch number above the record's and every epoch it has seen: the new
/// leadership's.
fn write_takeover_record<M: StateMachine>(
    coordinator: &impl RecordStore,
    standing: &Standing,
    backup: &Backup<M>,
    takeover: Takeover<'_>,
) -> Result<MembershipRecord, RecordError> {
    let Takeover { me, live_backups, highest_epoch, lost_leader, new_cluster_id } = takeover;
    let stored = coordinator.load_record()?;
    let expected = stored.as_ref().map(|record| record.version);
    let read = match standing {
        Standing::Foreign(foreign) => Some(foreign),
        _ => standing.record(),
    };
    let changed = || RecordError::Conflict { expected: read.map(|record| record.version), found: expected };
    let mut members = vec![me.clone()];
    // Where the record does not know this cluster: nobody said their
    // incarnations; each tells it on connecting, and the record is written
    // again.
    let unknown_incarnations = |members: &mut Vec<Member>| {
        let expected = live_backups.iter().filter(|node| Some(node.as_str()) != lost_leader);
        members.extend(expected.map(|node| Member { node: node.clone(), incarnation: UNKNOWN_INCARNATION }));
    };
    let cluster_id = match (standing, &stored) {
        (Standing::Listed(_), Some(stored)) if stored.lists(me) => {
            // Every listed member stays listed, answering or not: one that
            // missed a probe may hold every committed entry, and may be the
            // only one left to lead if this node fails in turn. One that is
            // really gone is dropped by the ack timeout, by a record written
            // without it.
            let expected = stored
                .members
                .iter()
                .filter(|member| member.node != me.node && Some(member.node.as_str()) != lost_leader);
            members.extend(expected.cloned());
            stored.cluster_id.clone()
        }
        (Standing::Unrecorded, None) => {
            unknown_incarnations(&mut members);
            backup.state().cluster_id.clone()
        }
        (Standing::Foreign(foreign), Some(stored)) if stored == foreign => {
            unknown_incarnations(&mut members);
            backup.state().cluster_id.clone()
        }
        (Standing::Abandoned(abandoned), Some(stored)) if stored == abandoned => String::new(),
        _ => return Err(changed()),
    };
    // A node without state starts a new cluster.
    let cluster_id = if backup.last().index == 0 { new_cluster_id } else { cluster_id };
    let epoch = takeover_epoch_number(stored.as_ref(), highest_epoch.max(backup.last().epoch));
    let version = stored.as_ref().map_or(1, |record| record.version + 1);
    let record = MembershipRecord { cluster_id, version, epoch, members };
    coordinator.store_record(expected, &record)?;
    Ok(record)
}

/// Finds the leader through the client port and opens the replication
/// stream on its node port.
async fn join<M: Wire>(
    lock: &impl Coordinator,
    network: &Network,
    hello: &Hello,
    transport: &TransportSettings,
) -> Result<transport::LeaderLink<M>, CallError> {
    let leader = lock.find_leader().await?;
    if leader == hello.node {
        return Err(CallError::Unavailable { message: "this node's own address leads".into(), leader_hint: None });
    }
    transport::open_replication(network, &leader, hello, transport, JOIN_TIMEOUT).await
}

/// The members (of the record and of the log) and configured peers to
/// probe when the leader is gone.
fn survey_targets<M: StateMachine>(
    id: &str,
    config: &NodeConfig<M>,
    backup: &Backup<M>,
    membership: &[NodeId],
) -> Vec<NodeId> {
    let mut targets: Vec<String> = backup.state().membership.clone();
    targets.extend(membership.iter().cloned());
    targets.extend(config.peers.iter().cloned());
    targets.sort();
    targets.dedup();
    targets.retain(|target| target != id);
    targets
}

/// Applies the leader's stream until it ends, goes silent or misbehaves.
/// With a disk, an entry is acked only once the disk holds it.
async fn follow<M: ClientApi>(
    shared: &Shared<M>,
    config: &NodeConfig<M>,
    backup: &mut Backup<M>,
    mut disk: Option<&mut NodeDisk<M>>,
    mut link: transport::LeaderLink<M>,
    shutdown: &CancellationToken,
) -> FollowEnd {
    let mut announced = false;
    let mut persisted = disk.as_ref().map(|disk| disk.persisted());
    let mut held = match (&disk, &persisted) {
        (Some(disk), Some(persisted)) => disk.holds(&persisted.borrow()).unwrap_or(0),
        _ => u64::MAX,
    };
    let mut applied = backup.last().index;
    let mut acked = 0;
    // What this backup publishes: the same as the leader's publisher, for
    // what the leader said it published.
    let mut publisher = Publisher::default();
    loop {
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => return FollowEnd::Shutdown,
            now_held = persisted_changed(&mut persisted) => {
                if let Some(failure) = now_held.failure {
                    return FollowEnd::DiskFailed(anyhow::anyhow!("the disk failed: {failure}; this node stops"));
                }
                // What it says of a log this node has since replaced does
                // not count.
                let Some(index) = disk.as_ref().and_then(|disk| disk.holds(&now_held)) else { continue };
                held = index;
                if applied.min(held) > acked {
                    acked = applied.min(held);
                    link.ack(acked);
                }
                continue;
            }
            next = tokio::time::timeout(config.leader_timeout, link.next()) => next,
            () = shared.watchers().view_requested() => {
                let published = backup.published();
                publisher.publish(shared.watchers(), backup.state(), (published > 0).then_some(published));
                continue;
            }
        };
        let leader = backup.state().membership.first().cloned();
        let message = match next {
            Err(_silent) => {
                warn!(timeout = ?config.leader_timeout, "leader silent");
                return FollowEnd::LeaderLost(leader);
            }
            Ok(Err(error)) => {
                debug!(%error, "replication stream failed");
                return FollowEnd::LeaderLost(leader);
            }
            Ok(Ok(None)) => return FollowEnd::LeaderLost(leader),
            Ok(Ok(Some(message))) => message,
        };
        // What the message says the leader published (a snapshot says nothing).
        let mut leader_published = 0;
        let outcome = match message {
            LeaderMessage::Snapshot(snapshot) => {
                let to_disk = disk.is_some().then(|| (*snapshot).clone());
                let installed = backup.install(*snapshot);
                if let (Ok(_), Some(snapshot), Some(disk)) = (&installed, to_disk, disk.as_deref_mut())
                    && let Err(error) = disk.install(snapshot)
                {
                    return FollowEnd::DiskFailed(anyhow::anyhow!("writing a snapshot failed: {error}"));
                }
                if disk.is_some() {
                    // What the disk held was another log: nothing counts
                    // until the writer says the snapshot is down.
                    held = 0;
                }
                installed.map(Some)
            }
            LeaderMessage::Entries { entries, published } => {
                let from = backup.last().index;
                let result = backup.apply(&entries).map(Some);
                if let Some(disk) = disk.as_deref_mut() {
                    // Only what was applied: entries it already held are
                    // skipped, and a gap stops the rest.
                    let applied_to = backup.last().index;
                    let fresh: Vec<_> = entries
                        .iter()
                        .filter(|entry| entry.index > from && entry.index <= applied_to)
                        .cloned()
                        .collect();
                    if let Err(error) = disk.append(&fresh) {
                        return FollowEnd::DiskFailed(anyhow::anyhow!("writing the log failed: {error}"));
                    }
                    if let Err(error) = disk.maybe_snapshot(backup.epoch(), backup.state()) {
                        return FollowEnd::DiskFailed(anyhow::anyhow!("writing a snapshot failed: {error}"));
                    }
                }
                leader_published = published;
                result
            }
            LeaderMessage::Heartbeat { epoch, published } => {
                leader_published = published;
                backup.observe_epoch(epoch).map(|()| None)
            }
            LeaderMessage::SnapshotPart => Ok(None),
        };
        if outcome.is_ok() {
            backup.observe_published(leader_published);
        }
        match outcome {
            Ok(Some(index)) => {
                applied = index;
                if applied.min(held) > acked {
                    acked = applied.min(held);
                    link.ack(acked);
                }
                let leader = backup.state().membership.first().map(String::as_str);
                if !announced {
                    info!(leader = leader.unwrap_or("?"), epoch = epoch_number(backup.epoch()), "joined as backup");
                    announced = true;
                }
                shared.set_status(Role::Backup, backup.epoch(), leader, backup.state());
            }
            Ok(None) => {}
            Err(error @ ReplicationError::OtherCluster { .. }) => {
                error!(%error, "refusing another cluster's state; this node keeps its own");
                return FollowEnd::Rejoin;
            }
            Err(error) => {
                warn!(%error, "refused the leader's stream; joining again");
                return FollowEnd::Rejoin;
            }
        }
        // On every message, heartbeats too: a watcher that arrives while
        // nothing commits gets its first view within a heartbeat. After the
        // acknowledgement, not before it: this node's one thread runs tasks
        // in the order they were woken, and a bid waits for the ack, where
        // the watches this wakes wait for nothing behind them.
        let published = backup.published();
        publisher.publish(shared.watchers(), backup.state(), (published > 0).then_some(published));
    }
}
