//! What the node's gRPC services see: its status, and, while it leads, the
//! channel into the leader's event loop.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auction::{
    self, AuctionView, Bid, BidOutcome, CreateAuction, CreateOutcome, Query, QueryAnswer, QueryError, ReadError,
};
use crate::replication::{LogPosition, Message, NodeId, NodeStatus, ReplicatedState, Reply, Role};
use crate::transport::{Backend, BackupSession, Hello, Network, ServiceError};

use super::NodeConfig;

/// Where the leader's loop sends a client its answer.
pub(super) type ReplySender = oneshot::Sender<Result<Reply, ServiceError>>;

/// An input to the leader's event loop.
pub(super) enum LeaderInput {
    Bid { bid: Bid, reply: ReplySender },
    Read { auction_id: String, reply: ReplySender },
    Create { create: CreateAuction, reply: ReplySender },
    Query { query: Query, reply: ReplySender },
    BackupConnected { node: NodeId, last: LogPosition, stream: BackupStream },
    Ack { node: NodeId, connection: u64, index: u64 },
    BackupLost { node: NodeId, connection: u64 },
}

/// The leader's end of one backup's stream. Dropping it (the backup was
/// removed, or the leader stopped) ends the stream's tasks, even one blocked
/// on a peer that never reads.
pub(super) struct BackupStream {
    pub connection: u64,
    pub messages: mpsc::Sender<Message>,
    pub closed: CancellationToken,
}

impl Drop for BackupStream {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Inputs waiting for the leader's loop. Past this a client gets
/// `RESOURCE_EXHAUSTED` at once, and a peer's stream waits (its acks are
/// cumulative, so waiting loses nothing).
pub(super) const MAX_QUEUED_INPUTS: usize = 16 * 1024;
/// Messages queued for one backup: far more than a backup that keeps up
/// ever has queued; one that reaches it is removed, not buffered.
pub(super) const MAX_QUEUED_PER_BACKUP: usize = 1024;

/// The way into the leader's event loop, present while this node leads.
#[derive(Clone)]
pub(super) struct LeaderHandle {
    pub inputs: mpsc::Sender<LeaderInput>,
    pub epoch: u64,
    pub cluster_id: String,
    /// Cleared when the leader stops: clients are turned away while the
    /// backups' acks still come in, so that what is in flight commits.
    pub serving_clients: Arc<AtomicBool>,
}

/// State shared between the node's driver and its gRPC services.
pub(super) struct Shared {
    id: NodeId,
    network: Network,
    status: Mutex<NodeStatus>,
    leader: RwLock<Option<LeaderHandle>>,
    /// Numbers replication streams, so events of a backup's old stream are
    /// told from those of its new one.
    next_connection: AtomicU64,
}

impl Shared {
    pub fn new(config: NodeConfig, network: Network) -> Self {
        let id = config.node_address.to_string();
        Shared {
            status: Mutex::new(NodeStatus {
                node: id.clone(),
                role: Role::Joining,
                epoch: 0,
                leader: None,
                membership: Vec::new(),
                last: LogPosition::default(),
                pid: std::process::id(),
                cluster_id: String::new(),
            }),
            id,
            network,
            leader: RwLock::new(None),
            next_connection: AtomicU64::new(1),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Publishes what a status probe answers. Called on every round of the
    /// leader and every message of a backup, so it allocates only when the
    /// leader or the membership changed.
    pub fn set_status(&self, role: Role, epoch: u64, leader: Option<&str>, state: &ReplicatedState) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.role = role;
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

    pub fn set_leader(&self, handle: Option<LeaderHandle>) {
        *self.leader.write().unwrap_or_else(PoisonError::into_inner) = handle;
    }

    fn leader_handle(&self) -> Result<LeaderHandle, ServiceError> {
        let handle = self.leader.read().unwrap_or_else(PoisonError::into_inner).clone();
        handle.ok_or_else(|| {
            let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            ServiceError::NotLeader { leader: status.leader.clone() }
        })
    }

    /// Queues a client's request, or refuses it at once when the leader is
    /// overloaded.
    fn send_request(&self, input: LeaderInput) -> Result<(), ServiceError> {
        let handle = self.leader_handle()?;
        if !handle.serving_clients.load(Ordering::Relaxed) {
            return Err(ServiceError::NotLeader { leader: None });
        }
        handle.inputs.try_send(input).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ServiceError::Overloaded(MAX_QUEUED_INPUTS),
            mpsc::error::TrySendError::Closed(_) => ServiceError::Stopped,
        })
    }

    /// Queues a peer's event, waiting while the leader is busy.
    async fn send_peer_event(&self, input: LeaderInput) {
        if let Ok(handle) = self.leader_handle() {
            let _ = handle.inputs.send(input).await;
        }
    }
}

impl Backend for Shared {
    async fn bid(&self, mut bid: Bid) -> Result<BidOutcome, ServiceError> {
        // Malformed input is refused here, before it is sequenced: it
        // changes nothing and its answer does not depend on the state. The
        // log holds the one normal spelling of the bidder's name.
        match auction::normalize_bidder(&bid.bidder) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => bid.bidder = normal,
            Err(reason) => return Ok(BidOutcome::exception(reason)),
        }
        if let Err(reason) = auction::validate_bid(&bid.auction_id, &bid.bidder, bid.amount, &bid.client_id) {
            return Ok(BidOutcome::exception(reason));
        }
        let (reply, answer) = oneshot::channel();
        self.send_request(LeaderInput::Bid { bid, reply })?;
        match answer.await {
            Ok(Ok(Reply::Bid(outcome))) => Ok(outcome),
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(ServiceError::Stopped),
        }
    }

    async fn result(&self, auction_id: String) -> Result<(AuctionView, NodeId), ServiceError> {
        if auction_id.len() > auction::MAX_AUCTION_ID_LEN {
            return Err(ServiceError::InvalidArgument(format!(
                "auction id is longer than {} bytes",
                auction::MAX_AUCTION_ID_LEN
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.send_request(LeaderInput::Read { auction_id, reply })?;
        match answer.await {
            Ok(Ok(Reply::Result(Ok(view)))) => Ok((view, self.id.clone())),
            Ok(Ok(Reply::Result(Err(ReadError::UnknownAuction(id))))) => Err(ServiceError::UnknownAuction(id)),
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(ServiceError::Stopped),
        }
    }

    async fn create_auction(&self, mut create: CreateAuction) -> Result<CreateOutcome, ServiceError> {
        // As for bids: malformed input is refused before it is sequenced
        // (the end is checked once the leader has set it), and the log
        // holds the seller's name in normal form.
        match auction::normalize_bidder(&create.seller) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => create.seller = normal,
            Err(reason) => return Ok(CreateOutcome::exception(reason.replace("bidder", "seller"))),
        }
        if let Err(reason) = auction::validate_create_fields(&create) {
            return Ok(CreateOutcome::exception(reason));
        }
        let (reply, answer) = oneshot::channel();
        self.send_request(LeaderInput::Create { create, reply })?;
        match answer.await {
            Ok(Ok(Reply::Created(outcome))) => Ok(outcome),
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(ServiceError::Stopped),
        }
    }

    async fn query(&self, query: Query) -> Result<QueryAnswer, ServiceError> {
        if let Query::Get { auction_id } | Query::History { auction_id, .. } = &query
            && auction_id.len() > auction::MAX_AUCTION_ID_LEN
        {
            return Err(ServiceError::InvalidArgument(format!(
                "auction id is longer than {} bytes",
                auction::MAX_AUCTION_ID_LEN
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.send_request(LeaderInput::Query { query, reply })?;
        match answer.await {
            Ok(Ok(Reply::Query(Ok(answer)))) => Ok(answer),
            Ok(Ok(Reply::Query(Err(QueryError::Read(ReadError::UnknownAuction(id)))))) => {
                Err(ServiceError::UnknownAuction(id))
            }
            Ok(Ok(Reply::Query(Err(error @ QueryError::BadPageToken(_))))) => {
                Err(ServiceError::InvalidArgument(error.to_string()))
            }
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Err(ServiceError::Stopped),
        }
    }

    fn status(&self) -> NodeStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn backup_connected(&self, hello: Hello) -> Result<BackupSession, ServiceError> {
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
        let stream = BackupStream { connection, messages: messages_to_backup, closed: closed.clone() };
        let connected = LeaderInput::BackupConnected { node: hello.node, last: hello.last, stream };
        handle.inputs.send(connected).await.map_err(|_| ServiceError::Stopped)?;
        Ok(BackupSession { connection, epoch: handle.epoch, messages, closed })
    }

    async fn backup_acked(&self, node: &str, connection: u64, index: u64) {
        self.send_peer_event(LeaderInput::Ack { node: node.to_string(), connection, index }).await;
    }

    async fn backup_lost(&self, node: &str, connection: u64) {
        self.send_peer_event(LeaderInput::BackupLost { node: node.to_string(), connection }).await;
    }
}
