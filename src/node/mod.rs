//! The async driver of one server process.
//!
//! A node is always in one of three roles. *Joining*: it asks whoever holds
//! the client port to take it as a backup; if nobody answers it probes its
//! peers and, if it is the one to take over, binds the client port. *Backup*:
//! it applies the leader's stream until the stream ends or goes silent.
//! *Leader*: it drives the replication core from the client calls and the
//! backups' acks. This is the only layer that owns tasks and timers; the
//! protocol decisions live in [`crate::replication`].

mod backend;
mod durable;
mod leader;
mod leadership;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::replication::{
    Backup, NodeId, ReplicationError, Role, SelfView, Succession, choose_successor, epoch_number,
    highest_credible_epoch, successor_epoch_floor,
};
use crate::transport::{self, CallError, Hello, Incoming, LeaderMessage, Network, Services, TransportSettings};

use backend::Shared;
use durable::persisted_changed;
pub use durable::{NodeDisk, SNAPSHOT_EVERY, StorageConfig};
use leadership::{Leadership, PortLock};

/// Everything a node needs to know at start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
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
    /// How long the default auction runs, from the bootstrap.
    pub auction_duration: Duration,
    /// How long a closed auction and its history are kept.
    pub retain_closed: Duration,
    /// Where the node keeps its log and snapshots; `None` keeps state in
    /// memory only (replication is then all that keeps it).
    pub storage: Option<StorageConfig>,
    /// Where this node serves the HTTP API, if it does: its status says so,
    /// so that the web page finds every node.
    pub http_address: Option<String>,
}

impl NodeConfig {
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
            auction_duration: Duration::from_secs(120),
            retain_closed: crate::replication::DEFAULT_RETAIN_CLOSED,
            storage: None,
            http_address: None,
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
pub async fn run(
    config: NodeConfig,
    network: Network,
    node_listener: Incoming,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(config.clone(), network));
    // Not serving the client API until it leads.
    shared.set_leader(None).await;
    let server = tokio::spawn(transport::serve(
        Arc::clone(&shared),
        transport::limit_connections(node_listener, MAX_NODE_CONNECTIONS),
        Services::Node,
        config.transport(),
        shutdown.clone(),
    ));
    let result = drive(&shared, &config, &shutdown).await;
    shutdown.cancel();
    if tokio::time::timeout(leader::SERVER_CLOSE_TIMEOUT, server).await.is_err() {
        debug!("node port connections still open; closing them");
    }
    result
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

async fn drive(shared: &Arc<Shared>, config: &NodeConfig, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let id = shared.id().to_string();
    let lock = PortLock {
        network: shared.network().clone(),
        client_address: config.client_address,
        find_timeout: JOIN_TIMEOUT,
    };
    let transport = config.transport();
    let (mut disk, mut backup) = match &config.storage {
        Some(storage) => {
            let (disk, recovered) = NodeDisk::open(storage)?;
            shared.set_storage(disk.handle());
            (Some(disk), Backup::new(recovered.epoch, recovered.state))
        }
        None => {
            info!("no data directory: state lives in memory only, and is lost if every node stops");
            (None, Backup::default())
        }
    };
    // State from the disk, and no leader followed since: after a full
    // restart this node leads only once every member it knows answered.
    let mut recovered = backup.last().index > 0;
    // The members last waited for, so the wait is logged when it changes.
    let mut awaited: Vec<NodeId> = Vec::new();
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
        let hello = Hello { node: id.clone(), last: backup.last(), cluster_id: backup.state().cluster_id.clone() };
        match join(&lock, shared.network(), &hello, &transport).await {
            Ok(link) => {
                waiting_for.clear();
                passed_over.clear();
                retry_pause = FIRST_RETRY_PAUSE;
                recovered = false;
                match follow(shared, config, &mut backup, disk.as_mut(), link, shutdown).await {
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

        let answers = lock.survey(survey_targets(&id, config, &backup)).await;
        let released = shared.released();
        let me = SelfView {
            id: &id,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &backup.state().membership,
            cluster_id: &backup.state().cluster_id,
            recovered,
            released: &released,
        };
        let decision = choose_successor(&me, lost_leader.as_deref(), &answers, &passed_over);
        if let Succession::AwaitMembers { missing } = &decision {
            if *missing != awaited {
                warn!(
                    ?missing,
                    "restarted from disk: waiting for these members before anyone may lead (a member whose disk is \
                     gone must be removed with `gavel member remove`)"
                );
                awaited.clone_from(missing);
            }
        } else {
            awaited.clear();
        }
        match decision {
            Succession::TakeOver { live_backups } => {
                match lock.claim().await {
                    Ok(client_listener) => {
                        // Above every epoch a live member reports, too.
                        // Above every candidate ahead of it, too.
                        let epoch =
                            successor_epoch_floor(&me, lost_leader.as_deref(), highest_credible_epoch(&me, &answers));
                        let (_, state) = std::mem::take(&mut backup).into_parts();
                        return leader::lead(
                            shared,
                            config,
                            leader::Start { epoch, state, lost_leader, live_backups, disk: disk.take() },
                            client_listener,
                            shutdown,
                        )
                        .await;
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

/// Finds the leader through the client port and opens the replication
/// stream on its node port.
async fn join(
    lock: &impl Leadership,
    network: &Network,
    hello: &Hello,
    transport: &TransportSettings,
) -> Result<transport::LeaderLink, CallError> {
    let leader = lock.find_leader().await?;
    if leader == hello.node {
        return Err(CallError::Unavailable { message: "this node's own address leads".into(), leader_hint: None });
    }
    transport::open_replication(network, &leader, hello, transport, JOIN_TIMEOUT).await
}

/// The members and configured peers to probe when the leader is gone.
fn survey_targets(id: &str, config: &NodeConfig, backup: &Backup) -> Vec<NodeId> {
    let mut targets: Vec<String> = backup.state().membership.clone();
    targets.extend(config.peers.iter().cloned());
    targets.sort();
    targets.dedup();
    targets.retain(|target| target != id);
    targets
}

/// Applies the leader's stream until it ends, goes silent or misbehaves.
/// With a disk, an entry is acked only once the disk holds it.
async fn follow(
    shared: &Shared,
    config: &NodeConfig,
    backup: &mut Backup,
    mut disk: Option<&mut NodeDisk>,
    mut link: transport::LeaderLink,
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
            LeaderMessage::Entries(entries) => {
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
                result
            }
            LeaderMessage::Heartbeat { epoch } => backup.observe_epoch(epoch).map(|()| None),
            LeaderMessage::SnapshotPart => Ok(None),
        };
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
    }
}
