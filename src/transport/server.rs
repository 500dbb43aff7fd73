//! The tonic services of a node: the client API and the replication stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::auction::{AuctionView, Bid, BidOutcome};
use crate::replication::{LogPosition, Message, NodeId, NodeStatus, Role};

use super::pb::replication as rpb;
use super::pb::replication::replication_server::{Replication, ReplicationServer};
use super::pb::{self, auction_server::Auction, auction_server::AuctionServer};
use super::{Incoming, LEADER_METADATA, MAX_CLIENT_MESSAGE, MAX_REPLICATION_MESSAGE, TransportSettings, convert};

/// Why a node could not serve a call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("this node is not the leader")]
    NotLeader { leader: Option<NodeId> },
    #[error("unknown auction {0:?}")]
    UnknownAuction(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the leader stopped before it could answer")]
    Stopped,
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::NotLeader { leader } => {
                let mut status = Status::unavailable(message);
                if let Some(value) = leader.and_then(|leader| leader.parse().ok()) {
                    status.metadata_mut().insert(LEADER_METADATA, value);
                }
                status
            }
            ServiceError::UnknownAuction(_) => Status::not_found(message),
            ServiceError::InvalidArgument(_) => Status::invalid_argument(message),
            ServiceError::Stopped => Status::unavailable(message),
        }
    }
}

/// A backup's stream, as the node hands it to the transport.
pub struct BackupSession {
    /// Tells this stream from the node's earlier ones.
    pub connection: u64,
    /// The leader's epoch, for heartbeats.
    pub epoch: u64,
    pub messages: mpsc::UnboundedReceiver<Message>,
}

/// What the services need from the node.
pub trait Backend: Send + Sync + 'static {
    fn bid(&self, bid: Bid) -> impl Future<Output = Result<BidOutcome, ServiceError>> + Send;
    /// A linearizable read, with the answering leader.
    fn result(&self, auction_id: String) -> impl Future<Output = Result<(AuctionView, NodeId), ServiceError>> + Send;
    fn status(&self) -> NodeStatus;
    fn backup_connected(&self, node: NodeId, last: LogPosition) -> Result<BackupSession, ServiceError>;
    fn backup_acked(&self, node: &str, connection: u64, index: u64);
    fn backup_lost(&self, node: &str, connection: u64);
}

struct AuctionService<B> {
    backend: Arc<B>,
}

#[tonic::async_trait]
impl<B: Backend> Auction for AuctionService<B> {
    async fn bid(&self, request: Request<pb::BidRequest>) -> Result<Response<pb::BidReply>, Status> {
        let bid = convert::bid_from_request(request.into_inner());
        let outcome = self.backend.bid(bid).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn result(&self, request: Request<pb::ResultRequest>) -> Result<Response<pb::ResultReply>, Status> {
        let (view, leader) = self.backend.result(request.into_inner().auction_id).await?;
        Ok(Response::new(convert::result_reply(view, leader)))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        let status = self.backend.status();
        Ok(Response::new(pb::StatusReply {
            node: status.node,
            role: match status.role {
                Role::Leader => pb::Role::Leader,
                Role::Backup => pb::Role::Backup,
                Role::Joining => pb::Role::Joining,
            } as i32,
            epoch: status.epoch,
            leader: status.leader.unwrap_or_default(),
            leader_queue: status.membership,
            last_index: status.last.index,
            last_epoch: status.last.epoch,
            pid: status.pid,
        }))
    }
}

struct ReplicationService<B> {
    backend: Arc<B>,
    settings: TransportSettings,
}

type FromLeaderStream = Pin<Box<dyn Stream<Item = Result<rpb::FromLeader, Status>> + Send>>;

#[tonic::async_trait]
impl<B: Backend> Replication for ReplicationService<B> {
    type ReplicateStream = FromLeaderStream;

    async fn replicate(
        &self,
        request: Request<Streaming<rpb::FromBackup>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(rpb::FromBackup { message: Some(rpb::from_backup::Message::Hello(hello)) }) => hello,
            _ => return Err(Status::invalid_argument("a replication stream starts with hello")),
        };
        if hello.node.is_empty() || hello.node.len() > 256 {
            return Err(Status::invalid_argument("hello needs the backup's node address"));
        }
        let node = hello.node;
        let last = LogPosition { epoch: hello.last_epoch, index: hello.last_index };
        let session = self.backend.backup_connected(node.clone(), last)?;
        let connection = session.connection;

        // One task reads the acks; any end of the stream means the backup is lost.
        let backend = Arc::clone(&self.backend);
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(rpb::FromBackup { message: Some(rpb::from_backup::Message::Ack(ack)) })) => {
                        backend.backup_acked(&node, connection, ack.index);
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
            backend.backup_lost(&node, connection);
        });

        // One task writes: it batches entries and sends heartbeats when idle.
        let (outbound, stream) = mpsc::channel(64);
        tokio::spawn(write_to_backup(session, outbound, self.settings.heartbeat_interval));
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

/// Most entries put in one message: big enough to amortise a message under
/// load, small enough to keep a message well under a megabyte.
const MAX_ENTRIES_PER_MESSAGE: usize = 2048;

async fn write_to_backup(
    mut session: BackupSession,
    outbound: mpsc::Sender<Result<rpb::FromLeader, Status>>,
    heartbeat_interval: std::time::Duration,
) {
    use rpb::from_leader::Message as M;
    let mut pending: Option<Message> = None;
    loop {
        let message = match pending.take() {
            Some(message) => message,
            None => match tokio::time::timeout(heartbeat_interval, session.messages.recv()).await {
                Ok(Some(message)) => message,
                // The node dropped the stream: the backup left the membership.
                Ok(None) => return,
                Err(_idle) => {
                    let heartbeat = M::Heartbeat(rpb::Heartbeat { epoch: session.epoch });
                    if outbound.send(Ok(rpb::FromLeader { message: Some(heartbeat) })).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
        };
        let message = match message {
            Message::Snapshot(snapshot) => M::Snapshot(rpb::Snapshot::from(snapshot.as_ref())),
            Message::Entries(entries) => {
                let mut batch: Vec<rpb::Entry> = entries.iter().map(rpb::Entry::from).collect();
                // Coalesce what else is already queued into the same message.
                while batch.len() < MAX_ENTRIES_PER_MESSAGE {
                    match session.messages.try_recv() {
                        Ok(Message::Entries(more)) => batch.extend(more.iter().map(rpb::Entry::from)),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                M::Entries(rpb::Entries { entries: batch })
            }
        };
        if outbound.send(Ok(rpb::FromLeader { message: Some(message) })).await.is_err() {
            return;
        }
    }
}

/// Serves the client API and the replication stream on the connections of
/// `incoming` until `shutdown` is cancelled.
pub async fn serve<B: Backend>(
    backend: Arc<B>,
    incoming: Incoming,
    settings: TransportSettings,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let auction = AuctionServer::new(AuctionService { backend: Arc::clone(&backend) })
        .max_decoding_message_size(MAX_CLIENT_MESSAGE);
    let replication = ReplicationServer::new(ReplicationService { backend, settings: settings.clone() })
        .max_decoding_message_size(MAX_REPLICATION_MESSAGE);
    Server::builder()
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout))
        .add_service(auction)
        .add_service(replication)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}
