//! Client-side calls: the client API, status probes, and a backup's
//! replication stream to the leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status, Streaming};

use crate::auction::{
    AcceptedBid, AuctionBook, AuctionEvent, AuctionInfo, AuctionPage, AuctionView, Bid, BidOutcome, CancelAuction,
    CancelOutcome, CreateAuction, CreateOutcome, EventScope, HistoryPage,
};
use crate::replication::{Entry, NodeStatus, Role, Snapshot};
use crate::security::node_dns_name;

use super::auction_service::{AuctionEventStream, AuctionService, EventPageStream};
use super::pb::auction_client::AuctionClient;
use super::pb::auction_server::Auction;
use super::pb::replication as rpb;
use super::pb::replication::replication_client::ReplicationClient;
use super::{
    ASKED_REVISION_METADATA, Backend, COMPACTED_REVISION_METADATA, Connection, Hello, LEADER_METADATA,
    MAX_REPLICATION_MESSAGE, NOT_FOUND_METADATA, Network, REPLICATION_PREAMBLE, RETRY_AFTER_METADATA, ServiceError,
    TransportSettings, Watched, WatchedEvents, Wire, convert, pb, uri_for,
};

/// Why a call failed, by the kind of its gRPC code: the client library and
/// the edges above it branch on the kind, never on the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer, or not the leader: retrying, perhaps elsewhere, can help.
    #[error("{message}")]
    Unavailable { message: String, leader_hint: Option<String> },
    /// RESOURCE_EXHAUSTED: the leader has too much to do; retrying shortly
    /// can help.
    #[error("{message}")]
    Overloaded { message: String },
    /// RESOURCE_EXHAUSTED naming a wait: the principal is past its rate,
    /// and the request was not sequenced. Sending it again after
    /// `retry_after` can help; sooner, it is refused again.
    #[error("{message}")]
    RateLimited { retry_after: Duration, message: String },
    /// NOT_FOUND: `what` (an auction id, when the server names it) does not
    /// exist.
    #[error("{message}")]
    NotFound { what: Option<String>, message: String },
    /// INVALID_ARGUMENT or OUT_OF_RANGE: the request itself is wrong.
    #[error("{message}")]
    Invalid { code: InvalidCode, message: String },
    /// A watch after revision `asked`, whose events up to `compacted` were
    /// forgotten (OUT_OF_RANGE naming both): read afresh, then watch after
    /// what was read.
    #[error("{message}")]
    Compacted { asked: u64, compacted: u64, message: String },
    /// Any other refusal (FAILED_PRECONDITION, a malformed reply, a bad
    /// address): retrying will not help.
    #[error("{message}")]
    Rejected { message: String },
}

/// The gRPC code of an argument the service refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidCode {
    /// INVALID_ARGUMENT: wrong whatever the service's state.
    InvalidArgument,
    /// OUT_OF_RANGE: past what the service holds.
    OutOfRange,
}

impl CallError {
    fn unavailable(message: impl Into<String>) -> Self {
        CallError::Unavailable { message: message.into(), leader_hint: None }
    }

    /// Whether trying again, perhaps elsewhere, can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Unavailable { .. } | CallError::Overloaded { .. })
    }

    /// The error of a peer call: a peer's refusal of any kind is one thing
    /// to a node (`Rejected`: the leader refused it), whatever its code.
    fn from_peer(status: Status) -> Self {
        match CallError::from(status) {
            retryable if retryable.is_retryable() => retryable,
            refusal => CallError::Rejected { message: refusal.to_string() },
        }
    }
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        let message = status.message().to_string();
        let metadata = status.metadata();
        let revision = |key: &str| metadata.get(key).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        match status.code() {
            Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal => {
                let leader_hint =
                    metadata.get(LEADER_METADATA).and_then(|value| value.to_str().ok()).map(str::to_string);
                CallError::Unavailable { message, leader_hint }
            }
            Code::ResourceExhausted => match revision(RETRY_AFTER_METADATA) {
                Some(millis) => CallError::RateLimited { retry_after: Duration::from_millis(millis), message },
                None => CallError::Overloaded { message },
            },
            Code::NotFound => {
                let what = metadata
                    .get_bin(NOT_FOUND_METADATA)
                    .and_then(|value| value.to_bytes().ok())
                    .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
                CallError::NotFound { what, message }
            }
            Code::InvalidArgument => CallError::Invalid { code: InvalidCode::InvalidArgument, message },
            Code::OutOfRange => match (revision(ASKED_REVISION_METADATA), revision(COMPACTED_REVISION_METADATA)) {
                (Some(asked), Some(compacted)) => CallError::Compacted { asked, compacted, message },
                _ => CallError::Invalid { code: InvalidCode::OutOfRange, message },
            },
            _ => CallError::Rejected { message },
        }
    }
}

/// The endpoint of `address` with the transport's timeouts and keepalives;
/// over TLS when `network` has credentials, and then the server's
/// certificate must name the host dialed.
pub fn endpoint(network: &Network, address: &str, settings: &TransportSettings) -> Result<Endpoint, CallError> {
    secured_endpoint(network, address, settings, None)
}

/// The endpoint of the node `node`'s own port: over TLS, the server's
/// certificate must be that node's (see [`node_dns_name`]), so that what
/// answers is the peer asked, not any holder of a node certificate.
pub fn peer_endpoint(network: &Network, node: &str, settings: &TransportSettings) -> Result<Endpoint, CallError> {
    secured_endpoint(network, node, settings, Some(node_dns_name(node)))
}

fn secured_endpoint(
    network: &Network,
    address: &str,
    settings: &TransportSettings,
    server_name: Option<String>,
) -> Result<Endpoint, CallError> {
    let bad_address =
        |error: &dyn std::fmt::Display| CallError::Rejected { message: format!("bad address {address:?}: {error}") };
    let tls = network.tls();
    let mut endpoint = Endpoint::from_shared(uri_for(address, tls.is_some())).map_err(|error| bad_address(&error))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.client_config(server_name)).map_err(|error| bad_address(&error))?;
    }
    Ok(endpoint
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// Dials through `network`, so channels work over a simulated network too.
pub fn connector(
    network: Network,
) -> impl tower::Service<Uri, Response = TokioIo<Connection>, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    tower::service_fn(move |uri: Uri| {
        let network = network.clone();
        async move {
            let authority = uri.authority().map(|authority| authority.to_string()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no host:port in {uri}"))
            })?;
            network.connect(authority).await.map(TokioIo::new)
        }
    })
}

/// Dials as [`connector`] does, then (with `preamble`) opens with the
/// replication preamble: the leader serves the connection on its
/// replication thread. `reached` is set once the connection is open and
/// the preamble sent.
fn replication_connector(
    network: Network,
    preamble: bool,
    reached: Arc<AtomicBool>,
) -> impl tower::Service<Uri, Response = TokioIo<Connection>, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    let mut dial = connector(network);
    tower::service_fn(move |uri: Uri| {
        let connected = tower::Service::call(&mut dial, uri);
        let reached = Arc::clone(&reached);
        async move {
            use tokio::io::AsyncWriteExt;
            let mut connection = connected.await?.into_inner();
            if preamble {
                connection.write_all(REPLICATION_PREAMBLE).await?;
            }
            reached.store(true, Ordering::Relaxed);
            Ok(TokioIo::new(connection))
        }
    })
}

/// A connection to one server's client API. It connects lazily and
/// reconnects by itself after the server went away.
#[derive(Clone, Debug)]
pub struct AuctionConnection {
    address: String,
    target: Target,
    request_timeout: Duration,
}

/// Where a connection's calls go.
#[derive(Clone, Debug)]
enum Target {
    /// Over gRPC.
    Remote(AuctionClient<Channel>),
    /// To the service of a node in this process, without the network: the
    /// same service, conversions and errors, less the encoding and the hop.
    InProcess(InProcessNode),
}

/// The client API of a node that runs in this process (see
/// [`AuctionConnection::in_process`]), under the node's own address.
#[derive(Clone)]
pub struct InProcessNode {
    address: String,
    service: Arc<dyn Auction<WatchStream = AuctionEventStream, WatchPagesStream = EventPageStream>>,
    /// The node's own watches: their events as the node shares them, with
    /// no copy and no conversion.
    watches: Arc<OpenWatch>,
}

/// Opens a watch of a node's committed events.
type OpenWatch = dyn Fn(&EventScope, u64) -> Result<WatchedEvents<AuctionEvent>, ServiceError> + Send + Sync;

impl InProcessNode {
    /// The client API over `backend`, the node at `address`.
    pub fn new<B: Backend<AuctionBook>>(address: &str, backend: Arc<B>) -> Self {
        let service = Arc::new(AuctionService::new(Arc::clone(&backend)));
        let watches = Arc::new(move |scope: &EventScope, after: u64| backend.watch(scope.clone(), after));
        InProcessNode { address: address.to_string(), service, watches }
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for InProcessNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessNode").field("address", &self.address).finish_non_exhaustive()
    }
}

/// The events of a watch, each as its node shares it.
pub type SharedEventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Watched<AuctionEvent>, CallError>> + Send>>;

/// A remote watch's events as the wire has them.
type RemoteEvents = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuctionEvent, Status>> + Send>>;

/// A `WatchPages` stream, an event at a time.
struct PagedEvents {
    pages: Streaming<pb::EventPage>,
    /// What is left of the page being read.
    page: std::vec::IntoIter<pb::AuctionEvent>,
}

impl tokio_stream::Stream for PagedEvents {
    type Item = Result<pb::AuctionEvent, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.page.next() {
                return std::task::Poll::Ready(Some(Ok(event)));
            }
            match std::task::ready!(std::pin::Pin::new(&mut self.pages).poll_next(context)) {
                Some(Ok(page)) => self.page = page.events.into_iter(),
                Some(Err(status)) => return std::task::Poll::Ready(Some(Err(status))),
                None => return std::task::Poll::Ready(None),
            }
        }
    }
}

/// Marks a request a service in the same process made (the HTTP API beside
/// its node): it comes from no connection, so it shows no certificate.
#[derive(Clone, Copy, Debug)]
pub(super) struct InProcessCall;

/// Calls `$method` with `$request` on whichever target `$connection` has.
macro_rules! rpc {
    ($connection:expr, $method:ident, $request:expr) => {
        match &$connection.target {
            Target::Remote(client) => $connection.call(client.clone().$method($request)).await,
            Target::InProcess(node) => {
                let mut request = Request::new($request);
                request.extensions_mut().insert(InProcessCall);
                $connection.call(node.service.$method(request)).await
            }
        }
    };
}

impl AuctionConnection {
    pub fn new(
        network: &Network,
        address: &str,
        settings: &TransportSettings,
        request_timeout: Duration,
    ) -> Result<Self, CallError> {
        let channel = endpoint(network, address, settings)?.connect_with_connector_lazy(connector(network.clone()));
        let target = Target::Remote(AuctionClient::new(channel));
        Ok(AuctionConnection { address: address.to_string(), target, request_timeout })
    }

    /// A connection to a node in this process, under its address.
    pub fn in_process(node: &InProcessNode, request_timeout: Duration) -> Self {
        AuctionConnection { address: node.address.clone(), target: Target::InProcess(node.clone()), request_timeout }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    async fn call<T, F>(&self, call: F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let answer = tokio::time::timeout(self.request_timeout, call).await;
        self.answer(answer)
    }

    /// Like [`AuctionConnection::call`], for a method a node of an older
    /// version may not have: `None` if it has not.
    async fn call_if_known<T, F>(&self, call: F) -> Result<Option<T>, CallError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(None),
            answer => self.answer(answer).map(Some),
        }
    }

    fn answer<T>(
        &self,
        answer: Result<Result<tonic::Response<T>, Status>, tokio::time::error::Elapsed>,
    ) -> Result<T, CallError> {
        match answer {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status.into()),
            Err(_) => Err(CallError::unavailable(format!("no answer from {} in time", self.address))),
        }
    }

    /// Bids, with the bidder's name's secret if it has one (see
    /// [`crate::auction::NameDigest`]; empty for none).
    pub async fn bid(&mut self, bid: &Bid, secret: &[u8]) -> Result<BidOutcome, CallError> {
        let request = pb::BidRequest {
            auction_id: bid.auction_id.clone(),
            bidder: bid.bidder.clone(),
            amount: bid.amount,
            client_id: bid.client_id.clone(),
            request_id: bid.request_id,
            secret: secret.to_vec(),
        };
        let reply = rpc!(self, bid, request)?;
        BidOutcome::try_from(reply).map_err(|error| CallError::Rejected { message: error.to_string() })
    }

    /// The auction as the leader sees it, and the leader's address.
    pub async fn result(&mut self, auction_id: &str) -> Result<(AuctionView, String), CallError> {
        let reply = rpc!(self, result, pb::ResultRequest { auction_id: auction_id.to_string() })?;
        let leader = reply.leader.clone();
        Ok((AuctionView::from(reply), leader))
    }

    /// A seller's new auction (exactly-once through its client and request
    /// ids), with the seller's name's secret if it has one.
    pub async fn create_auction(&mut self, create: &CreateAuction, secret: &[u8]) -> Result<CreateOutcome, CallError> {
        let request = pb::CreateAuctionRequest {
            seller: create.seller.clone(),
            title: create.title.clone(),
            description: create.description.clone(),
            minimum_amount: create.minimum_amount,
            duration_ms: create.duration_ms,
            client_id: create.client_id.clone(),
            request_id: create.request_id,
            ends_at_unix_ms: if create.duration_ms > 0 { 0 } else { create.ends_at_unix_ms },
            secret: secret.to_vec(),
        };
        let reply = rpc!(self, create_auction, request)?;
        let outcome = pb::Outcome::try_from(reply.outcome)
            .map_err(|_| CallError::Rejected { message: format!("unknown outcome {}", reply.outcome) })?;
        let verdict = crate::auction::Verdict::try_from(outcome)
            .map_err(|error| CallError::Rejected { message: error.to_string() })?;
        let reason = convert::reason_from_pb(reply.typed_reason)
            .map_err(|error| CallError::Rejected { message: error.to_string() })?;
        Ok(CreateOutcome { verdict, reason, auction_id: reply.auction_id })
    }

    /// A seller's cancel (exactly-once through its client and request
    /// ids), with the seller's name's secret if it has one.
    pub async fn cancel_auction(&mut self, cancel: &CancelAuction, secret: &[u8]) -> Result<CancelOutcome, CallError> {
        let request = pb::CancelAuctionRequest {
            auction_id: cancel.auction_id.clone(),
            seller: cancel.seller.clone(),
            client_id: cancel.client_id.clone(),
            request_id: cancel.request_id,
            secret: secret.to_vec(),
        };
        let reply = rpc!(self, cancel_auction, request)?;
        let outcome = pb::Outcome::try_from(reply.outcome)
            .map_err(|_| CallError::Rejected { message: format!("unknown outcome {}", reply.outcome) })?;
        let verdict = crate::auction::Verdict::try_from(outcome)
            .map_err(|error| CallError::Rejected { message: error.to_string() })?;
        let reason = convert::reason_from_pb(reply.typed_reason)
            .map_err(|error| CallError::Rejected { message: error.to_string() })?;
        Ok(CancelOutcome { verdict, reason })
    }

    /// A page of the catalogue, in creation order.
    pub async fn list_auctions(
        &mut self,
        open_only: bool,
        limit: u32,
        page_token: &str,
    ) -> Result<AuctionPage, CallError> {
        let request = pb::ListAuctionsRequest { open_only, limit, page_token: page_token.to_string() };
        let reply = rpc!(self, list_auctions, request)?;
        Ok(AuctionPage {
            auctions: reply.auctions.into_iter().map(AuctionInfo::from).collect(),
            next_page_token: reply.next_page_token,
        })
    }

    /// The committed events after `after_revision` (0: from now on), of one
    /// auction or all, from the node's own committed state (any leader or
    /// backup serves watches); the stream ends, with an error or without,
    /// when the node stops serving: resume with the last revision seen.
    pub async fn watch(
        &mut self,
        auction_id: Option<&str>,
        after_revision: u64,
    ) -> Result<impl tokio_stream::Stream<Item = Result<AuctionEvent, CallError>> + use<>, CallError> {
        self.watch_scope(&EventScope::of(auction_id), after_revision).await
    }

    /// [`AuctionConnection::watch`] of the auctions `scope` names (or all).
    pub async fn watch_scope(
        &mut self,
        scope: &EventScope,
        after_revision: u64,
    ) -> Result<impl tokio_stream::Stream<Item = Result<AuctionEvent, CallError>> + use<>, CallError> {
        let events = self.watch_shared(scope, after_revision).await?;
        Ok(events.map(|event| event.map(Watched::into_event)))
    }

    /// Like [`AuctionConnection::watch_scope`], each event as the node
    /// shares it: in process, the node's own events, shared by all its
    /// watches (and their HTTP frames, made once), with no conversion;
    /// over the network, each as decoded.
    pub async fn watch_shared(
        &mut self,
        scope: &EventScope,
        after_revision: u64,
    ) -> Result<SharedEventStream, CallError> {
        let mut client = match &self.target {
            Target::Remote(client) => client.clone(),
            Target::InProcess(node) => {
                let refused = |error: ServiceError| CallError::from(Status::from(error));
                let events = (node.watches)(scope, after_revision).map_err(refused)?;
                return Ok(Box::pin(events.map(move |event| event.map_err(refused))));
            }
        };
        // One auction in the field every version reads; more beside it.
        let mut ids = match scope {
            EventScope::All => Vec::new(),
            EventScope::Auctions(ids) => ids.iter().cloned().collect(),
        };
        let auction_id = if ids.is_empty() { String::new() } else { ids.remove(0) };
        let request = pb::WatchRequest { auction_id, after_revision, auction_ids: ids };
        // Only opening the stream is bounded by the request timeout. Pages
        // of events; from a node older than `WatchPages`, an event each.
        let events: RemoteEvents = match self.call_if_known(client.watch_pages(request.clone())).await? {
            Some(pages) => Box::pin(PagedEvents { pages, page: Vec::new().into_iter() }),
            None => Box::pin(self.call(client.watch(request)).await?),
        };
        Ok(Box::pin(events.map(|event| {
            match event {
                Ok(event) => AuctionEvent::try_from(event)
                    .map(Watched::Own)
                    .map_err(|error| CallError::Rejected { message: error.to_string() }),
                Err(status) => Err(CallError::from(status)),
            }
        })))
    }

    /// A page of an auction's accepted bids, oldest first.
    pub async fn history(&mut self, auction_id: &str, limit: u32, page_token: &str) -> Result<HistoryPage, CallError> {
        let request =
            pb::HistoryRequest { auction_id: auction_id.to_string(), limit, page_token: page_token.to_string() };
        let reply = rpc!(self, history, request)?;
        Ok(HistoryPage {
            auction_id: reply.auction_id,
            bids: reply.bids.into_iter().map(AcceptedBid::from).collect(),
            next_page_token: reply.next_page_token,
        })
    }

    pub async fn get_auction(&mut self, auction_id: &str) -> Result<AuctionInfo, CallError> {
        let reply = rpc!(self, get_auction, pb::GetAuctionRequest { auction_id: auction_id.to_string() })?;
        Ok(AuctionInfo::from(reply))
    }

    pub async fn status(&mut self) -> Result<NodeStatus, CallError> {
        let reply = rpc!(self, status, pb::StatusRequest {})?;
        Ok(convert::status_from_reply(reply))
    }
}

/// Asks the node at `address` about itself, within `timeout`: the client
/// API's `Status`, which any node answers.
pub async fn probe_status(network: &Network, address: &str, timeout: Duration) -> Result<NodeStatus, CallError> {
    let settings = TransportSettings { connect_timeout: timeout, ..TransportSettings::default() };
    let mut connection = AuctionConnection::new(network, address, &settings, timeout)?;
    connection.status().await
}

/// The peer-only probe of a takeover, on a node's own port.
pub async fn probe_peer(network: &Network, address: &str, timeout: Duration) -> Result<NodeStatus, CallError> {
    PeerProbe::new(network, address, timeout)?.probe().await
}

/// The peer-only probe of one node over a connection kept for it: for
/// asking the same node often (a backup asks its leader for a read index).
#[derive(Clone, Debug)]
pub struct PeerProbe {
    address: String,
    client: ReplicationClient<tonic::transport::Channel>,
    timeout: Duration,
}

impl PeerProbe {
    pub fn new(network: &Network, address: &str, timeout: Duration) -> Result<Self, CallError> {
        let settings = TransportSettings { connect_timeout: timeout, ..TransportSettings::default() };
        let channel =
            peer_endpoint(network, address, &settings)?.connect_with_connector_lazy(connector(network.clone()));
        Ok(PeerProbe { address: address.to_string(), client: ReplicationClient::new(channel), timeout })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// What the node says of itself, within the timeout.
    pub async fn probe(&self) -> Result<NodeStatus, CallError> {
        let reply = tokio::time::timeout(self.timeout, self.client.clone().probe(rpb::ProbeRequest {}))
            .await
            .map_err(|_| CallError::unavailable(format!("no answer from {} in time", self.address)))??;
        Ok(convert::status_from_probe(reply.into_inner()))
    }
}

/// Asks the node at `address` (its own port) to remove `member` for good:
/// the leader commits the removal, a node waiting after a restart from its
/// disk stops waiting for it. Returns the node's answer in words.
pub async fn remove_member(
    network: &Network,
    address: &str,
    member: &str,
    timeout: Duration,
) -> Result<MemberRemovalAnswer, CallError> {
    let settings = TransportSettings { connect_timeout: timeout, ..TransportSettings::default() };
    let channel = endpoint(network, address, &settings)?.connect_with_connector_lazy(connector(network.clone()));
    let mut client = ReplicationClient::new(channel);
    let request = rpb::RemoveMemberRequest { node: member.to_string() };
    let reply = tokio::time::timeout(timeout, client.remove_member(request))
        .await
        .map_err(|_| CallError::unavailable(format!("no answer from {address} in time")))??
        .into_inner();
    Ok(MemberRemovalAnswer { answer: reply.answer, removed_at: (reply.removed_at > 0).then_some(reply.removed_at) })
}

/// A node's answer to a removal.
#[derive(Clone, Debug)]
pub struct MemberRemovalAnswer {
    /// What it did, in words.
    pub answer: String,
    /// The index of the removal entry, when a leader committed one.
    pub removed_at: Option<u64>,
}

/// The node address of whoever leads on `client_address`.
pub async fn find_leader(network: &Network, client_address: &str, timeout: Duration) -> Result<String, CallError> {
    let status = probe_status(network, client_address, timeout).await?;
    if status.role != Role::Leader {
        return Err(CallError::unavailable(format!("{} answers on the client port but does not lead", status.node)));
    }
    Ok(status.node)
}

/// Checks that `address` is `host:port` (or a URI with both), so that a
/// typo is reported at once rather than after a deadline of retries.
pub fn check_address(address: &str) -> Result<(), CallError> {
    let bad = |why: &str| CallError::Rejected { message: format!("bad address {address:?}: {why}") };
    let uri: Uri = uri_for(address, false).parse().map_err(|_| bad("expected host:port"))?;
    let authority = uri.authority().ok_or_else(|| bad("expected host:port"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    match authority.port_u16() {
        Some(port) if port > 0 => Ok(()),
        _ => Err(bad("no port (1-65535)")),
    }
}

/// What the leader sends a backup, in domain types.
#[derive(Debug)]
pub enum LeaderMessage<M: Wire> {
    Snapshot(Box<Snapshot<M>>),
    /// A chunk of a snapshot still coming: the leader is alive, nothing to
    /// apply or ack yet.
    SnapshotPart,
    /// Entries, and the index up to which the leader's log is published.
    Entries {
        entries: Vec<Entry<M::Command>>,
        published: u64,
    },
    Heartbeat {
        epoch: u64,
        published: u64,
    },
}

/// A backup's end of the replication stream.
pub struct LeaderLink<M: Wire> {
    inbound: Streaming<rpb::FromLeader>,
    snapshot: M::SnapshotAssembler,
    /// Acks are cumulative, so only the latest matters: a watch channel
    /// coalesces them and never blocks the backup.
    acks: watch::Sender<u64>,
}

/// Opens the replication stream to the leader's node port, introducing
/// this backup with `hello`, on a connection that opens with
/// [`REPLICATION_PREAMBLE`]. A leader older than the preamble takes it for
/// a broken connection and closes it before it says anything in gRPC: on
/// that evidence alone (a refusal in gRPC, a silence or no connection at
/// all is none) the join is tried once more without it, and the stream is
/// served on that leader's one thread.
pub async fn open_replication<M: Wire>(
    network: &Network,
    leader: &str,
    hello: &Hello,
    settings: &TransportSettings,
    timeout: Duration,
) -> Result<LeaderLink<M>, CallError> {
    match open_replication_once(network, leader, hello, settings, timeout, true).await {
        Err(JoinFailure { error, before_grpc: true }) => {
            tracing::info!(%leader, %error, "joining again without the replication preamble, which this leader may predate");
            open_replication_once(network, leader, hello, settings, timeout, false)
                .await
                .map_err(|failure| failure.error)
        }
        joined => joined.map_err(|failure| failure.error),
    }
}

/// Why a join failed, and whether the leader's side broke the connection
/// after it opened and before any answer in gRPC.
struct JoinFailure {
    error: CallError,
    before_grpc: bool,
}

async fn open_replication_once<M: Wire>(
    network: &Network,
    leader: &str,
    hello: &Hello,
    settings: &TransportSettings,
    timeout: Duration,
    preamble: bool,
) -> Result<LeaderLink<M>, JoinFailure> {
    let reached = Arc::new(AtomicBool::new(false));
    let opened = || reached.load(Ordering::Relaxed);
    let endpoint =
        peer_endpoint(network, leader, settings).map_err(|error| JoinFailure { error, before_grpc: false })?;
    let connect = replication_connector(network.clone(), preamble, Arc::clone(&reached));
    let channel = tokio::time::timeout(timeout, endpoint.connect_with_connector(connect))
        .await
        .map_err(|_| JoinFailure { error: CallError::unavailable("connect timed out"), before_grpc: false })?
        .map_err(|error| JoinFailure {
            error: CallError::unavailable(format!("cannot connect to {leader}: {error}")),
            // Open, then broken in its TLS handshake.
            before_grpc: opened(),
        })?;
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_REPLICATION_MESSAGE);
    let last = hello.last;
    let hello = rpb::FromBackup {
        message: Some(rpb::from_backup::Message::Hello(rpb::Hello {
            node: hello.node.clone(),
            last_epoch: last.epoch,
            last_index: last.index,
            cluster_id: hello.cluster_id.clone(),
            incarnation: hello.incarnation,
        })),
    };
    let (acks, ack_values) = watch::channel(last.index);
    let ack_stream = WatchStream::from_changes(ack_values)
        .map(|index| rpb::FromBackup { message: Some(rpb::from_backup::Message::Ack(rpb::Ack { index })) });
    let outbound = tokio_stream::once(hello).chain(ack_stream);
    let response = tokio::time::timeout(timeout, client.replicate(outbound))
        .await
        .map_err(|_| JoinFailure {
            error: CallError::unavailable("the leader did not answer the join in time"),
            before_grpc: false,
        })?
        .map_err(|status| {
            // A status the leader sent has no source; one made of a broken
            // connection (HTTP/2, TLS, the socket) has.
            let before_grpc = opened() && std::error::Error::source(&status).is_some();
            JoinFailure { error: CallError::from_peer(status), before_grpc }
        })?;
    Ok(LeaderLink { inbound: response.into_inner(), snapshot: M::SnapshotAssembler::default(), acks })
}

impl<M: Wire> LeaderLink<M> {
    /// The next message; `Ok(None)` when the leader ended the stream.
    pub async fn next(&mut self) -> Result<Option<LeaderMessage<M>>, CallError> {
        use rpb::from_leader::Message;
        let Some(message) = self.inbound.message().await.map_err(CallError::from_peer)? else { return Ok(None) };
        let malformed = |error: super::MalformedMessage| CallError::Rejected { message: error.to_string() };
        match message.message {
            Some(Message::Snapshot(chunk)) => {
                match M::add_snapshot_chunk(&mut self.snapshot, chunk).map_err(malformed)? {
                    Some(snapshot) => Ok(Some(LeaderMessage::Snapshot(Box::new(snapshot)))),
                    None => Ok(Some(LeaderMessage::SnapshotPart)),
                }
            }
            Some(Message::Entries(rpb::Entries { entries, published })) => {
                let entries = entries.into_iter().map(M::entry_from_wire).collect::<Result<_, _>>();
                Ok(Some(LeaderMessage::Entries { entries: entries.map_err(malformed)?, published }))
            }
            Some(Message::Heartbeat(rpb::Heartbeat { epoch, published })) => {
                Ok(Some(LeaderMessage::Heartbeat { epoch, published }))
            }
            None => Err(CallError::Rejected { message: "empty message from the leader".into() }),
        }
    }

    /// Tells the leader everything up to `index` is applied.
    pub fn ack(&self, index: u64) {
        self.acks.send_replace(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method an older node does not have (`UNIMPLEMENTED`) is `None`, so
    /// that the caller falls back (a watch to `Watch`, an event a
    /// message); any other refusal stays an error.
    #[tokio::test]
    async fn a_method_an_older_node_lacks_is_none_and_other_refusals_stay_errors() {
        let connection = AuctionConnection::new(
            &Network::tcp(),
            "127.0.0.1:9",
            &TransportSettings::default(),
            Duration::from_secs(1),
        )
        .expect("a lazy connection");
        let lacking = async { Err::<tonic::Response<()>, _>(Status::unimplemented("unknown method WatchPages")) };
        assert!(connection.call_if_known(lacking).await.expect("no error").is_none());
        let refused = async { Err::<tonic::Response<()>, _>(Status::resource_exhausted("too many watches")) };
        assert!(connection.call_if_known(refused).await.is_err());
        let answered = async { Ok(tonic::Response::new(7)) };
        assert_eq!(connection.call_if_known(answered).await.expect("an answer"), Some(7));
    }

    /// A leader's replication service: it takes a backup's stream, or
    /// refuses it in gRPC.
    struct TestLeader {
        refuses: bool,
    }

    #[tonic::async_trait]
    impl rpb::replication_server::Replication for TestLeader {
        type ReplicateStream =
            std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<rpb::FromLeader, tonic::Status>> + Send>>;

        async fn replicate(
            &self,
            _: tonic::Request<tonic::Streaming<rpb::FromBackup>>,
        ) -> Result<tonic::Response<Self::ReplicateStream>, tonic::Status> {
            if self.refuses {
                return Err(tonic::Status::unavailable("not the leader"));
            }
            Ok(tonic::Response::new(Box::pin(tokio_stream::pending())))
        }

        async fn probe(
            &self,
            _: tonic::Request<rpb::ProbeRequest>,
        ) -> Result<tonic::Response<rpb::ProbeReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("not here"))
        }

        async fn remove_member(
            &self,
            _: tonic::Request<rpb::RemoveMemberRequest>,
        ) -> Result<tonic::Response<rpb::RemoveMemberReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("not here"))
        }
    }

    fn hello() -> Hello {
        Hello {
            node: "127.0.0.1:1".into(),
            incarnation: 1,
            last: crate::replication::LogPosition::default(),
            cluster_id: String::new(),
        }
    }

    async fn join(leader: &str) -> Result<LeaderLink<crate::auction::AuctionBook>, CallError> {
        let (network, settings) = (Network::tcp(), TransportSettings::default());
        open_replication(&network, leader, &hello(), &settings, Duration::from_secs(5)).await
    }

    /// A leader older than the preamble serves every connection as HTTP/2
    /// from the first byte, and breaks one that opens with the preamble: the
    /// backup joins it without.
    #[tokio::test]
    async fn a_leader_older_than_the_preamble_is_joined_without_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leader = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(rpb::replication_server::ReplicationServer::new(TestLeader { refuses: false }))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        assert!(join(&leader).await.is_ok(), "the older leader serves the stream without the preamble");
        server.abort();
    }

    /// A leader that reads the preamble and refuses the join in gRPC (it no
    /// longer leads, say) is not taken for an older one: the backup does
    /// not try it again without the preamble, which would put its stream
    /// on that leader's readers' thread for the leader's whole term.
    #[tokio::test]
    async fn a_refusal_in_grpc_is_not_taken_for_an_older_leader() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let leader = listener.local_addr().unwrap().to_string();
        let incoming: crate::transport::Incoming = Box::pin(
            tokio_stream::wrappers::TcpListenerStream::new(listener)
                .map(|accepted| Ok(crate::transport::Connection::new(accepted?))),
        );
        let (replication, mut others) = crate::transport::split_replication(incoming);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(rpb::replication_server::ReplicationServer::new(TestLeader { refuses: true }))
                .serve_with_incoming(replication),
        );
        let refused = join(&leader).await;
        assert!(matches!(refused, Err(CallError::Unavailable { .. })), "{:?}", refused.err());
        // A second attempt without the preamble would have been classified
        // by now: it waits for an answer the test never gives.
        let unclassified = tokio::time::timeout(Duration::ZERO, others.next()).await;
        assert!(unclassified.is_err(), "joined again without the preamble");
        server.abort();
    }
}
