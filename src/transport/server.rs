//! The tonic services of a node: the client API on the client port and on
//! the node's own port, and the peer API (the replication stream and the
//! takeover probe) on the node's own port only. The peer API is generic
//! over the replicated state machine; the client API is the machine's own
//! ([`ClientApi`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::metadata::MetadataValue;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use super::{Tls, WatchedEvents, peer_role};
use crate::replication::{EventSource, LogPosition, Message, NodeId, NodeStatus, Proposed};
use crate::security::Role;

use super::health::{Health, advertised, reflection};
use super::pb::replication as rpb;
use super::pb::replication::replication_server::{Replication, ReplicationServer};
use super::{
    ASKED_REVISION_METADATA, COMPACTED_REVISION_METADATA, Incoming, LEADER_METADATA, MAX_REPLICATION_MESSAGE,
    NOT_FOUND_METADATA, RETRY_AFTER_METADATA, TransportSettings, Wire, convert,
};

/// Why a node could not serve a call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Names the leader when this node knows it, in the message as well as
    /// in the `x-gavel-leader` metadata, for tools that show only the text.
    #[error("this node is not the leader{}", leader.as_ref().map(|leader| format!("; the leader is {leader}")).unwrap_or_default())]
    NotLeader { leader: Option<NodeId> },
    #[error("unknown auction {0:?}")]
    UnknownAuction(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the leader stopped before it could answer")]
    Stopped,
    #[error("the leader is overloaded: {0} requests wait already; retry shortly")]
    Overloaded(usize),
    #[error("{0}")]
    PeerRefused(String),
    /// A watch whose node stopped serving (it stepped down, or lost its
    /// leader): it resumes with `after_revision` = the last revision it saw.
    #[error("{0}")]
    WatchInterrupted(String),
    /// This node serves as many watch streams as its memory for readers
    /// allows: watch through another node.
    #[error(
        "this node serves {streams} watch streams already, as many as its memory for readers ({mib} MiB) \
         allows; watch through another node, or later"
    )]
    TooManyWatches { streams: usize, mib: usize },
    /// A watch after a revision the log has not reached: it would wait
    /// for ever for a revision nobody wrote.
    #[error("revision {asked} is ahead of the log, which is published up to revision {published}")]
    AheadOfLog { asked: u64, published: u64 },
    /// A principal past its rate: the command was not sequenced; it may be
    /// sent again after `retry_after`.
    #[error("{principal:?} sends more than {per_second} {kind} a second; retry in {}ms", retry_after.as_millis().max(1))]
    RateLimited { kind: &'static str, principal: String, per_second: u32, retry_after: std::time::Duration },
    /// The events after this revision were forgotten with expired auctions.
    #[error(
        "revision {asked} is compacted: events up to revision {compacted} went with expired auctions; \
         read the auctions afresh and watch after their revisions"
    )]
    Compacted { asked: u64, compacted: u64 },
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
            ServiceError::UnknownAuction(auction_id) => {
                let mut status = Status::not_found(message);
                let value = MetadataValue::from_bytes(auction_id.as_bytes());
                status.metadata_mut().insert_bin(NOT_FOUND_METADATA, value);
                status
            }
            ServiceError::InvalidArgument(_) => Status::invalid_argument(message),
            ServiceError::Stopped => Status::unavailable(message),
            ServiceError::Overloaded(_) => Status::resource_exhausted(message),
            ServiceError::PeerRefused(_) => Status::failed_precondition(message),
            ServiceError::WatchInterrupted(_) | ServiceError::TooManyWatches { .. } => Status::unavailable(message),
            ServiceError::AheadOfLog { .. } => Status::out_of_range(message),
            ServiceError::RateLimited { retry_after, .. } => {
                let mut status = Status::resource_exhausted(message);
                let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
                status.metadata_mut().insert(RETRY_AFTER_METADATA, MetadataValue::from(millis));
                status
            }
            // Where to resume, for a client to read rather than parse.
            ServiceError::Compacted { asked, compacted } => {
                let mut status = Status::out_of_range(message);
                status.metadata_mut().insert(ASKED_REVISION_METADATA, MetadataValue::from(asked));
                status.metadata_mut().insert(COMPACTED_REVISION_METADATA, MetadataValue::from(compacted));
                status
            }
        }
    }
}

/// A backup's stream, as the node hands it to the transport.
pub struct BackupSession<M: Wire> {
    /// Tells this stream from the node's earlier ones.
    pub connection: u64,
    /// The leader's epoch, for heartbeats.
    pub epoch: u64,
    /// Bounded: a backup that cannot keep up is removed, not buffered.
    pub messages: mpsc::Receiver<Message<M>>,
    /// The leader's published index, as it moves: every message the
    /// backup gets carries the latest (see [`Action::Publish`]).
    ///
    /// [`Action::Publish`]: crate::replication::Action::Publish
    pub published: watch::Receiver<u64>,
    /// Woken when the leader published a new index. (Not the watch's own
    /// `changed`: a watch wakes its receivers in an order a random number
    /// picks, which a simulation cannot replay.)
    pub published_wake: Arc<Notify>,
    /// Cancelled when the leader drops the stream: its tasks end, even one
    /// blocked on a peer that never reads.
    pub closed: CancellationToken,
}

/// How a backup introduces itself on a replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node: NodeId,
    /// The copy of the node's state it speaks for.
    pub incarnation: u64,
    pub last: LogPosition,
    /// The cluster its state belongs to; empty for a node without state.
    pub cluster_id: String,
}

/// What the services need from the node, which replicates `M`.
pub trait Backend<M: Wire + EventSource>: Send + Sync + 'static {
    /// A command, checked and sequenced, answered once committed: the one
    /// path of every write.
    fn propose(&self, command: M::Command) -> impl Future<Output = Result<Proposed<M::Output>, ServiceError>> + Send;
    /// A linearizable read, with the node that answered.
    fn read(&self, query: M::Query) -> impl Future<Output = Result<(M::Answer, NodeId), ServiceError>> + Send;
    /// The committed events in `scope` after `after_revision` (0: from now
    /// on), as they commit; ends with an error the client can resume from.
    fn watch(&self, scope: M::Scope, after_revision: u64) -> Result<WatchedEvents<M::Event>, ServiceError>;
    fn status(&self) -> NodeStatus;
    fn backup_connected(&self, hello: Hello) -> impl Future<Output = Result<BackupSession<M>, ServiceError>> + Send;
    /// Waits while the leader is busy: a flood of acks slows its sender only.
    fn backup_acked(&self, node: &str, connection: u64, index: u64) -> impl Future<Output = ()> + Send;
    fn backup_lost(&self, node: &str, connection: u64) -> impl Future<Output = ()> + Send;
    /// An operator's removal of a member for good: what happened, and the
    /// index of the committed removal if this node leads.
    fn remove_member(&self, node: NodeId) -> impl Future<Output = Result<MemberRemoval, ServiceError>> + Send;
    /// Whether names are authenticated: the node runs with TLS, so a name
    /// bound to a secret needs it (see [`crate::auction::NameDigest`]).
    /// Off, secrets are ignored and names are anyone's, as they were.
    fn authenticates_names(&self) -> bool {
        false
    }
    /// What the health service reports; `None` for a backend that always
    /// serves (the null server).
    fn health(&self) -> Option<Health> {
        None
    }
}

/// A state machine's own client API: the gRPC service that turns its
/// requests into commands, reads and watches of a [`Backend`].
pub trait ClientApi: Wire + EventSource {
    /// The client API's services over `backend`.
    fn client_routes<B: Backend<Self>>(backend: Arc<B>) -> Routes;

    /// `event` with its encoding as a watch streams it, made once for
    /// every watch of the node.
    fn share_event(event: Self::Event) -> SharedEvent<Self::Event>;
}

/// A committed event with its wire encoding, made once and shared by
/// every watch of a node that streams it.
#[derive(Debug)]
pub struct SharedEvent<E> {
    pub event: E,
    encoded: prost::bytes::Bytes,
    /// Its frame as the HTTP event stream writes it, made by the first
    /// such stream that carries it and shared by the others.
    framed: std::sync::OnceLock<prost::bytes::Bytes>,
}

impl<E> SharedEvent<E> {
    /// `event`, encoded as the watch stream carries it.
    pub(super) fn new(event: E, encoded: prost::bytes::Bytes) -> Self {
        SharedEvent { event, encoded, framed: std::sync::OnceLock::new() }
    }

    pub(super) fn encoded(&self) -> prost::bytes::Bytes {
        self.encoded.clone()
    }
}

/// An event as a watch delivers it: one shared by every watch of the node
/// (from its ring of latest events), or one made for this watch alone (a
/// page it catches up with, a progress notification).
#[derive(Debug)]
pub enum Watched<E> {
    Shared(Arc<SharedEvent<E>>),
    Own(E),
}

impl<E: Clone> Watched<E> {
    pub fn event(&self) -> &E {
        match self {
            Watched::Shared(shared) => &shared.event,
            Watched::Own(event) => event,
        }
    }

    pub fn into_event(self) -> E {
        match self {
            Watched::Shared(shared) => shared.event.clone(),
            Watched::Own(event) => event,
        }
    }

    /// The event framed by `frame` (the HTTP event stream's encoding): once
    /// for a shared event, whatever the streams that carry it.
    pub fn framed(&self, frame: impl FnOnce(&E) -> prost::bytes::Bytes) -> prost::bytes::Bytes {
        match self {
            Watched::Shared(shared) => shared.framed.get_or_init(|| frame(&shared.event)).clone(),
            Watched::Own(event) => frame(event),
        }
    }
}

/// What a node did with an operator's removal of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRemoval {
    /// The leader committed its removal at this index.
    Removed { at: u64 },
    /// It was not a member: nothing to do.
    NotAMember,
    /// A node restarted from its disk no longer waits for it.
    Released,
}

/// How long a peer has to say Hello once its stream is open.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest message a peer may send to the leader: Hello and Ack are tiny.
const MAX_FROM_BACKUP_MESSAGE: usize = 1024;
/// Streams one HTTP/2 connection may hold open at once: a client has one
/// request in flight, a backup one stream.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

struct ReplicationService<M, B> {
    backend: Arc<B>,
    settings: TransportSettings,
    /// Whether callers must prove their role with a certificate: the server
    /// speaks TLS with the cluster's CA.
    authenticate: bool,
    /// Each stream's reader and writer: [`serve`] waits for them to end.
    tasks: TaskTracker,
    machine: PhantomData<fn() -> M>,
}

type FromLeaderStream = Pin<Box<dyn Stream<Item = Result<rpb::FromLeader, Status>> + Send>>;

#[tonic::async_trait]
impl<M: Wire + EventSource, B: Backend<M>> Replication for ReplicationService<M, B> {
    type ReplicateStream = FromLeaderStream;

    async fn replicate(
        &self,
        request: Request<Streaming<rpb::FromBackup>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        // Before any message is read: only a node may replicate, and only
        // under its own name (checked against the Hello below).
        let certified = self.require(&request, "replicate", |role| matches!(role, Role::Node(_)))?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello in time"))??;
        let hello = match first {
            Some(rpb::FromBackup { message: Some(rpb::from_backup::Message::Hello(hello)) }) => hello,
            _ => return Err(Status::invalid_argument("a replication stream starts with hello")),
        };
        let hello = convert::hello_from_message(hello).map_err(|error| Status::invalid_argument(error.to_string()))?;
        if let Some(role) = certified
            && role != Role::Node(hello.node.clone())
        {
            return Err(Status::permission_denied(format!("{role} may not replicate as node {}", hello.node)));
        }
        let node = hello.node.clone();
        let session = self.backend.backup_connected(hello).await?;
        let connection = session.connection;

        // One task reads the acks; any end of the stream means the backup is
        // lost. Acks are cumulative, so only one above the last counts: a
        // flood of repeated acks costs its sender, not the leader's queue.
        let backend = Arc::clone(&self.backend);
        let closed = session.closed.clone();
        self.tasks.spawn(async move {
            let mut highest = 0;
            loop {
                let message = tokio::select! {
                    () = closed.cancelled() => break,
                    message = inbound.message() => message,
                };
                // A second Hello, or an empty message, is not the protocol:
                // it ends the stream like an error does.
                let Ok(Some(rpb::FromBackup { message: Some(rpb::from_backup::Message::Ack(ack)) })) = message else {
                    break;
                };
                if ack.index > highest {
                    highest = ack.index;
                    backend.backup_acked(&node, connection, ack.index).await;
                }
            }
            backend.backup_lost(&node, connection).await;
        });

        // One task writes: it batches entries and sends heartbeats when idle.
        let (outbound, stream) = mpsc::channel(64);
        self.tasks.spawn(write_to_backup(session, outbound, self.settings.heartbeat_interval));
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }

    async fn probe(&self, request: Request<rpb::ProbeRequest>) -> Result<Response<rpb::ProbeReply>, Status> {
        self.require(&request, "probe", |role| matches!(role, Role::Node(_)))?;
        Ok(Response::new(convert::probe_reply(self.backend.status())))
    }

    async fn remove_member(
        &self,
        request: Request<rpb::RemoveMemberRequest>,
    ) -> Result<Response<rpb::RemoveMemberReply>, Status> {
        self.require(&request, "change the membership", |role| matches!(role, Role::Operator(_)))?;
        let node = request.into_inner().node;
        if node.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!("{node:?} is not a node address (IP:PORT)")));
        }
        let removal = self.backend.remove_member(node.clone()).await?;
        let (answer, removed_at) = match removal {
            MemberRemoval::Removed { at } => (format!("{node} removed from the membership at index {at}"), at),
            MemberRemoval::NotAMember => (format!("{node} is not a member"), 0),
            MemberRemoval::Released => {
                (format!("this node no longer waits for {node} before anyone may lead (unclean: see the README)"), 0)
            }
        };
        Ok(Response::new(rpb::RemoveMemberReply { answer, removed_at }))
    }
}

impl<M, B> ReplicationService<M, B> {
    /// The caller's role, if callers must prove one and it is `allowed` to
    /// `act`; `Ok(None)` when nothing is authenticated (no TLS).
    fn require<T>(&self, request: &Request<T>, act: &str, allowed: fn(&Role) -> bool) -> Result<Option<Role>, Status> {
        if !self.authenticate {
            return Ok(None);
        }
        match peer_role(request) {
            Some(role) if allowed(&role) => Ok(Some(role)),
            Some(role) => Err(Status::permission_denied(format!("{role} may not {act}"))),
            None => Err(Status::unauthenticated(format!(
                "to {act} a caller needs a certificate of this cluster's CA naming its role"
            ))),
        }
    }
}

/// Most entries put in one message: big enough to amortise a message under
/// load, small enough to keep a message well under a megabyte.
const MAX_ENTRIES_PER_MESSAGE: usize = 2048;

async fn write_to_backup<M: Wire>(
    session: BackupSession<M>,
    outbound: mpsc::Sender<Result<rpb::FromLeader, Status>>,
    heartbeat_interval: std::time::Duration,
) {
    let closed = session.closed.clone();
    tokio::select! {
        () = closed.cancelled() => {}
        () = write_until_closed(session, outbound, heartbeat_interval) => {}
    }
}

/// How long a newly published index waits for entries to carry it before
/// it goes out in a heartbeat of its own.
const PUBLISH_COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

async fn write_until_closed<M: Wire>(
    mut session: BackupSession<M>,
    outbound: mpsc::Sender<Result<rpb::FromLeader, Status>>,
    heartbeat_interval: std::time::Duration,
) {
    use rpb::from_leader::Message as Wired;
    let mut pending: Option<Message<M>> = None;
    // The published index the last message carried: a newer one goes out
    // soon, on the next entries or a heartbeat of its own, so that the
    // backup's watchers see a commit about when the leader's do.
    let mut sent_published = 0;
    loop {
        let message = match pending.take() {
            Some(message) => message,
            None => {
                let unsent = *session.published.borrow() > sent_published;
                let wait = if unsent { PUBLISH_COALESCE } else { heartbeat_interval };
                let next = tokio::select! {
                    biased;
                    next = tokio::time::timeout(wait, session.messages.recv()) => next,
                    // Only while the last message carried the latest.
                    () = session.published_wake.notified(), if !unsent => continue,
                };
                match next {
                    Ok(Some(message)) => message,
                    // The node dropped the stream: the backup left the membership.
                    Ok(None) => return,
                    Err(_idle) => {
                        let published = *session.published.borrow_and_update();
                        sent_published = published;
                        let heartbeat = Wired::Heartbeat(rpb::Heartbeat { epoch: session.epoch, published });
                        if outbound.send(Ok(rpb::FromLeader { message: Some(heartbeat) })).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let message = match message {
            Message::Snapshot(snapshot) => {
                // In bounded chunks, made one at a time from the consistent
                // state the leader handed over; between two, the leader's
                // loop and the other streams run.
                for chunk in M::snapshot_chunks(*snapshot) {
                    if outbound.send(Ok(rpb::FromLeader { message: Some(Wired::Snapshot(chunk)) })).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Message::Entries(entries) => {
                let mut batch: Vec<rpb::Entry> = entries.iter().map(M::entry_to_wire).collect();
                // Coalesce what else is already queued into the same message.
                while batch.len() < MAX_ENTRIES_PER_MESSAGE {
                    match session.messages.try_recv() {
                        Ok(Message::Entries(more)) => batch.extend(more.iter().map(M::entry_to_wire)),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // Read after the batch: it never claims less than the
                // leader had published when the entries left.
                let published = *session.published.borrow_and_update();
                sent_published = published;
                Wired::Entries(rpb::Entries { entries: batch, published })
            }
        };
        if outbound.send(Ok(rpb::FromLeader { message: Some(message) })).await.is_err() {
            return;
        }
    }
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Services {
    /// The client API only: the well-known client port.
    Clients,
    /// The client API (answered or redirected) and the peer API: a node's
    /// own port.
    Node,
}

/// Serves `services` on the connections of `incoming` until `shutdown` is
/// cancelled, with the health and reflection services beside them; over
/// TLS with `tls`, and then the peer API asks callers for their role.
pub async fn serve<M: ClientApi, B: Backend<M>>(
    backend: Arc<B>,
    incoming: Incoming,
    services: Services,
    settings: TransportSettings,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let tls_config = tls.as_deref().and_then(Tls::server_config);
    let health = match backend.health() {
        Some(health) => health,
        None => {
            let health = Health::default();
            health.set_leading(true).await;
            health
        }
    };
    let advertised = advertised(services == Services::Node);
    // Built from descriptors compiled into the binary: a failure is a bug
    // of the build, and the API is served without reflection rather than not at all.
    let (reflection_v1, reflection_v1alpha) = match reflection(&advertised) {
        Ok((v1, v1alpha)) => (Some(v1), Some(v1alpha)),
        Err(error) => {
            tracing::error!(%error, "server reflection unavailable");
            (None, None)
        }
    };
    let client_api = M::client_routes(Arc::clone(&backend));
    let tasks = TaskTracker::new();
    let peers = (services == Services::Node).then(|| {
        let authenticate = tls_config.is_some();
        let service = ReplicationService {
            backend,
            settings: settings.clone(),
            authenticate,
            tasks: tasks.clone(),
            machine: PhantomData,
        };
        ReplicationServer::new(service)
            .max_decoding_message_size(MAX_FROM_BACKUP_MESSAGE)
            .max_encoding_message_size(MAX_REPLICATION_MESSAGE)
    });
    let mut server = server_builder(&settings);
    if let Some(config) = tls_config {
        server = server.tls_config(config)?;
    }
    server
        .add_routes(client_api)
        .add_optional_service(peers)
        .add_service(health.service())
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    // The streams' tasks end once their backend closes them (a leader that
    // stops drops every stream) or their peer goes.
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// The HTTP/2 settings of every gavel server.
pub(super) fn server_builder(settings: &TransportSettings) -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as SharedEntries;

    use super::*;
    use crate::auction::AuctionBook;
    use crate::auction::machine::{Entry, Payload};

    /// A commit the leader publishes while no entries follow reaches the
    /// backup about at once, not a heartbeat interval later: its watchers
    /// see it about when the leader's do.
    #[tokio::test(start_paused = true)]
    async fn a_newly_published_index_goes_out_without_waiting_for_a_heartbeat() {
        let (_to_backup, messages) = mpsc::channel::<Message<AuctionBook>>(8);
        let (published_index, published) = watch::channel(0);
        let closed = CancellationToken::new();
        let published_wake = Arc::new(Notify::new());
        let wake = Arc::clone(&published_wake);
        let session =
            BackupSession::<AuctionBook> { connection: 1, epoch: 7, messages, published, published_wake, closed };
        let (outbound, mut wire) = mpsc::channel(8);
        let heartbeat_interval = Duration::from_secs(60);
        let _writer = tokio::spawn(write_to_backup(session, outbound, heartbeat_interval));

        let asked = tokio::time::Instant::now();
        published_index.send_replace(4);
        wake.notify_one();
        match next_message(&mut wire, Duration::from_secs(120)).await {
            Some(rpb::from_leader::Message::Heartbeat(heartbeat)) => assert_eq!(heartbeat.published, 4),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
        assert!(asked.elapsed() < Duration::from_secs(1), "it waited {:?}", asked.elapsed());
    }

    /// Every message a backup gets carries the leader's published index as
    /// it was when the message left: entries and heartbeats alike.
    #[tokio::test]
    async fn every_message_to_a_backup_carries_the_published_index() {
        let (to_backup, messages) = mpsc::channel(8);
        let (published_index, published) = watch::channel(0);
        let closed = CancellationToken::new();
        let published_wake = Arc::new(Notify::new());
        let session =
            BackupSession::<AuctionBook> { connection: 1, epoch: 7, messages, published, published_wake, closed };
        let (outbound, mut wire) = mpsc::channel(8);
        let heartbeat_interval = Duration::from_millis(20);
        let writer = tokio::spawn(write_to_backup(session, outbound, heartbeat_interval));

        published_index.send_replace(3);
        let entry = Entry { epoch: 7, index: 5, payload: Payload::Join { node: "127.0.0.1:2".into() } };
        to_backup.send(Message::Entries(SharedEntries::new(vec![entry]))).await.expect("queued");
        let deadline = Duration::from_secs(5);
        match next_message(&mut wire, deadline).await {
            Some(rpb::from_leader::Message::Entries(entries)) => {
                assert_eq!((entries.entries.len(), entries.published), (1, 3))
            }
            other => panic!("expected entries, got {other:?}"),
        }

        // Idle: a heartbeat, with what was published since.
        published_index.send_replace(5);
        match next_message(&mut wire, deadline).await {
            Some(rpb::from_leader::Message::Heartbeat(heartbeat)) => {
                assert_eq!((heartbeat.epoch, heartbeat.published), (7, 5))
            }
            other => panic!("expected a heartbeat, got {other:?}"),
        }
        drop(to_backup);
        tokio::time::timeout(deadline, writer).await.expect("the writer ends with its queue").expect("no panic");
    }

    async fn next_message(
        wire: &mut mpsc::Receiver<Result<rpb::FromLeader, Status>>,
        deadline: Duration,
    ) -> Option<rpb::from_leader::Message> {
        let received = tokio::time::timeout(deadline, wire.recv()).await.expect("in time");
        received.expect("open").expect("a message").message
    }
}
