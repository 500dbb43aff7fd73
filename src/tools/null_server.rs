//! The null server: gavel's client API with no node behind it. Every bid is
//! a SUCCESS at once, with no state and no replication. It is served by
//! the transport's [`serve`] itself, so the services, the protobuf conversions and the
//! server's settings are a node's; `gavel bench --system null` measures it
//! as the ceiling that the host, the transport and the load generator allow.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use crate::auction::machine::Proposed;
use crate::auction::{
    Applied, AuctionBook, AuctionEvent, AuctionView, BidOutcome, Command, Placed, Query, QueryAnswer, QueryError,
    Verdict,
};
use crate::replication::{NodeId, NodeStatus};

use crate::transport::{
    Backend, BackupSession, Hello, Incoming, MAX_CLIENT_CONNECTIONS, MemberRemoval, ServiceError, Services,
    TransportSettings, limit_connections, serve,
};

/// A backend that does no work: what is left of a node's cost is the transport's.
struct NullBackend {
    /// The address it answers status probes with.
    node: NodeId,
    /// Counts the bids it answered, as a node's log would.
    revision: AtomicU64,
}

impl Backend<AuctionBook> for NullBackend {
    async fn propose(&self, command: Command) -> Result<Proposed, ServiceError> {
        let Command::Bid(bid) = command else {
            return Err(ServiceError::InvalidArgument("the null server keeps no auctions".into()));
        };
        // A node's SUCCESS names the new highest bid: the same bytes on the wire.
        let outcome = BidOutcome {
            verdict: Verdict::Success,
            reason: None,
            highest_amount: bid.amount,
            highest_bidder: bid.bidder,
            // A node's place of the bid: the same fields on the wire.
            placed: Some(Placed {
                revision: self.revision.fetch_add(1, Ordering::Relaxed) + 1,
                at_unix_ms: bid.at_unix_ms,
            }),
        };
        Ok(Proposed { index: None, output: Applied::Bid(outcome) })
    }

    async fn read(&self, query: Query) -> Result<(Result<QueryAnswer, QueryError>, NodeId), ServiceError> {
        let Query::View { auction_id } = query else {
            return Err(ServiceError::InvalidArgument("the null server keeps no auctions".into()));
        };
        let view = AuctionView {
            auction_id,
            over: false,
            highest_amount: 0,
            highest_bidder: String::new(),
            ends_at_unix_ms: 0,
            accepted_bids: 0,
            now_unix_ms: 0,
        };
        Ok((Ok(QueryAnswer::View(view)), self.node.clone()))
    }

    fn watch(
        &self,
        _scope: crate::auction::EventScope,
        _after_revision: u64,
    ) -> Result<crate::transport::WatchedEvents<AuctionEvent>, ServiceError> {
        Err(ServiceError::InvalidArgument("the null server keeps no auctions".into()))
    }

    fn status(&self) -> NodeStatus {
        NodeStatus::lone_leader(self.node.clone(), 0)
    }

    async fn backup_connected(&self, _hello: Hello) -> Result<BackupSession<AuctionBook>, ServiceError> {
        Err(ServiceError::InvalidArgument("the null server keeps no log to replicate".into()))
    }

    async fn backup_acked(&self, _node: &str, _connection: u64, _index: u64) {}

    async fn backup_lost(&self, _node: &str, _connection: u64) {}

    async fn remove_member(&self, _node: NodeId) -> Result<MemberRemoval, ServiceError> {
        Err(ServiceError::InvalidArgument("the null server has no members".into()))
    }
}

/// Serves the null client API as `node` on the connections of `incoming`
/// until `shutdown` is cancelled.
pub async fn serve_null(
    node: NodeId,
    incoming: Incoming,
    settings: TransportSettings,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // As a leader serves its client port: the client API only, under the
    // same connection cap.
    let incoming = limit_connections(incoming, MAX_CLIENT_CONNECTIONS);
    serve(
        std::sync::Arc::new(NullBackend { node, revision: AtomicU64::new(0) }),
        incoming,
        Services::Clients,
        settings,
        None,
        shutdown,
    )
    .await
}
