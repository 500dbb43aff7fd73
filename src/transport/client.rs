//! Client-side calls: the client API, status probes, and a backup's
//! replication stream to the leader.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status, Streaming};

use crate::auction::{AuctionView, Bid, BidOutcome};
use crate::replication::{Entry, LogPosition, NodeStatus, Role, Snapshot};

use super::pb::auction_client::AuctionClient;
use super::pb::replication as rpb;
use super::pb::replication::replication_client::ReplicationClient;
use super::{Connection, LEADER_METADATA, MAX_REPLICATION_MESSAGE, Network, TransportSettings, pb, uri_for};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer, or not the leader: retrying, perhaps elsewhere, can help.
    #[error("{message}")]
    Unavailable { message: String, leader_hint: Option<String> },
    /// The server refused the request: retrying will not help.
    #[error("{message}")]
    Rejected { message: String },
}

impl CallError {
    fn unavailable(message: impl Into<String>) -> Self {
        CallError::Unavailable { message: message.into(), leader_hint: None }
    }
}

impl From<Status> for CallError {
    fn from(status: Status) -> Self {
        match status.code() {
            Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal => CallError::Unavailable {
                message: status.message().to_string(),
                leader_hint: status
                    .metadata()
                    .get(LEADER_METADATA)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string),
            },
            _ => CallError::Rejected { message: status.message().to_string() },
        }
    }
}

fn endpoint(address: &str, settings: &TransportSettings) -> Result<Endpoint, CallError> {
    let endpoint = Endpoint::from_shared(uri_for(address))
        .map_err(|error| CallError::Rejected { message: format!("bad address {address:?}: {error}") })?;
    Ok(endpoint
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// Dials through `network`, so channels work over a simulated network too.
fn connector(
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

/// A connection to one server's client API. It connects lazily and
/// reconnects by itself after the server went away.
#[derive(Clone, Debug)]
pub struct AuctionConnection {
    address: String,
    client: AuctionClient<Channel>,
    request_timeout: Duration,
}

impl AuctionConnection {
    pub fn new(
        network: &Network,
        address: &str,
        settings: &TransportSettings,
        request_timeout: Duration,
    ) -> Result<Self, CallError> {
        let channel = endpoint(address, settings)?.connect_with_connector_lazy(connector(network.clone()));
        Ok(AuctionConnection { address: address.to_string(), client: AuctionClient::new(channel), request_timeout })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    async fn call<T, F>(&self, call: F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status.into()),
            Err(_) => Err(CallError::unavailable(format!("no answer from {} in time", self.address))),
        }
    }

    pub async fn bid(&mut self, bid: &Bid) -> Result<BidOutcome, CallError> {
        let request = pb::BidRequest {
            auction_id: bid.auction_id.clone(),
            bidder: bid.bidder.clone(),
            amount: bid.amount,
            client_id: bid.client_id.clone(),
            request_id: bid.request_id,
        };
        let mut client = self.client.clone();
        let reply = self.call(client.bid(request)).await?;
        BidOutcome::try_from(reply).map_err(|error| CallError::Rejected { message: error.to_string() })
    }

    /// The auction as the leader sees it, and the leader's address.
    pub async fn result(&mut self, auction_id: &str) -> Result<(AuctionView, String), CallError> {
        let mut client = self.client.clone();
        let reply = self.call(client.result(pb::ResultRequest { auction_id: auction_id.to_string() })).await?;
        let leader = reply.leader.clone();
        Ok((AuctionView::from(reply), leader))
    }

    pub async fn status(&mut self) -> Result<NodeStatus, CallError> {
        let mut client = self.client.clone();
        let reply = self.call(client.status(pb::StatusRequest {})).await?;
        Ok(status_from_reply(reply))
    }
}

fn status_from_reply(reply: pb::StatusReply) -> NodeStatus {
    NodeStatus {
        node: reply.node,
        role: match pb::Role::try_from(reply.role) {
            Ok(pb::Role::Leader) => Role::Leader,
            Ok(pb::Role::Backup) => Role::Backup,
            _ => Role::Joining,
        },
        epoch: reply.epoch,
        leader: (!reply.leader.is_empty()).then_some(reply.leader),
        membership: reply.leader_queue,
        last: LogPosition { epoch: reply.last_epoch, index: reply.last_index },
        pid: reply.pid,
    }
}

/// Asks the node at `address` about itself, within `timeout`.
pub async fn probe_status(network: &Network, address: &str, timeout: Duration) -> Result<NodeStatus, CallError> {
    let settings = TransportSettings { connect_timeout: timeout, ..TransportSettings::default() };
    let mut connection = AuctionConnection::new(network, address, &settings, timeout)?;
    connection.status().await
}

/// What the leader sends a backup, in domain types.
#[derive(Debug)]
pub enum LeaderMessage {
    Snapshot(Snapshot),
    Entries(Vec<Entry>),
    Heartbeat { epoch: u64 },
}

/// A backup's end of the replication stream.
pub struct LeaderLink {
    inbound: Streaming<rpb::FromLeader>,
    /// Acks are cumulative, so only the latest matters: a watch channel
    /// coalesces them and never blocks the backup.
    acks: watch::Sender<u64>,
}

/// Opens the replication stream to whoever serves `client_address`,
/// introducing this backup as `node` with a log ending at `last`.
pub async fn open_replication(
    network: &Network,
    client_address: &str,
    node: &str,
    last: LogPosition,
    settings: &TransportSettings,
    timeout: Duration,
) -> Result<LeaderLink, CallError> {
    let endpoint = endpoint(client_address, settings)?;
    let channel = tokio::time::timeout(timeout, endpoint.connect_with_connector(connector(network.clone())))
        .await
        .map_err(|_| CallError::unavailable("connect timed out"))?
        .map_err(|error| CallError::unavailable(format!("cannot connect to {client_address}: {error}")))?;
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_REPLICATION_MESSAGE);
    let hello = rpb::FromBackup {
        message: Some(rpb::from_backup::Message::Hello(rpb::Hello {
            node: node.to_string(),
            last_epoch: last.epoch,
            last_index: last.index,
        })),
    };
    let (acks, ack_values) = watch::channel(last.index);
    let ack_stream = WatchStream::from_changes(ack_values)
        .map(|index| rpb::FromBackup { message: Some(rpb::from_backup::Message::Ack(rpb::Ack { index })) });
    let outbound = tokio_stream::once(hello).chain(ack_stream);
    let response = tokio::time::timeout(timeout, client.replicate(outbound))
        .await
        .map_err(|_| CallError::unavailable("the leader did not answer the join in time"))??;
    Ok(LeaderLink { inbound: response.into_inner(), acks })
}

impl LeaderLink {
    /// The next message; `Ok(None)` when the leader ended the stream.
    pub async fn next(&mut self) -> Result<Option<LeaderMessage>, CallError> {
        use rpb::from_leader::Message as M;
        let Some(message) = self.inbound.message().await? else { return Ok(None) };
        let malformed = |error: super::MalformedMessage| CallError::Rejected { message: error.to_string() };
        match message.message {
            Some(M::Snapshot(snapshot)) => Ok(Some(LeaderMessage::Snapshot(snapshot.try_into().map_err(malformed)?))),
            Some(M::Entries(entries)) => {
                let entries = entries.entries.into_iter().map(Entry::try_from).collect::<Result<_, _>>();
                Ok(Some(LeaderMessage::Entries(entries.map_err(malformed)?)))
            }
            Some(M::Heartbeat(heartbeat)) => Ok(Some(LeaderMessage::Heartbeat { epoch: heartbeat.epoch })),
            None => Err(CallError::Rejected { message: "empty message from the leader".into() }),
        }
    }

    /// Tells the leader everything up to `index` is applied.
    pub fn ack(&self, index: u64) {
        self.acks.send_replace(index);
    }
}
