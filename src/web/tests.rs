//! The REST answers to the service's refusals, by kind: the routes run
//! against a gRPC server whose backend refuses every read and watch in a
//! chosen way, so each kind reaches the HTTP layer as a real client sees it;
//! and against the same backend in process, which must answer the same.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auction::machine::Proposed;
use crate::auction::{AuctionBook, AuctionEvent, Command, Query, QueryAnswer, QueryError, ReadError};
use crate::replication::{NodeId, NodeStatus};
use crate::transport::{
    Backend, BackupSession, Connection, Hello, InProcessNode, Incoming, MemberRemoval, Network, ServiceError, Services,
    TransportSettings, serve,
};

use super::{WebConfig, router};

/// Refuses every read and watch: a read of one auction as unknown, any
/// other read as a bad page token, a watch as compacted.
struct Refusing {
    node: NodeId,
}

impl Backend<AuctionBook> for Refusing {
    async fn propose(&self, _command: Command) -> Result<Proposed, ServiceError> {
        Err(ServiceError::InvalidArgument("no writes here".into()))
    }

    async fn read(&self, query: Query) -> Result<(Result<QueryAnswer, QueryError>, NodeId), ServiceError> {
        match query {
            Query::Get { auction_id } | Query::View { auction_id } => {
                Ok((Err(QueryError::Read(ReadError::UnknownAuction(auction_id))), self.node.clone()))
            }
            Query::List { page_token, .. } | Query::History { page_token, .. } => {
                Ok((Err(QueryError::BadPageToken(page_token)), self.node.clone()))
            }
        }
    }

    fn watch(
        &self,
        _scope: crate::auction::EventScope,
        after_revision: u64,
    ) -> Result<crate::transport::WatchedEvents<AuctionEvent>, ServiceError> {
        let (events, receiver) = crate::transport::bounded_queue(1, 1);
        events.send_last(Err(ServiceError::Compacted { asked: after_revision, compacted: 9 }));
        Ok(receiver)
    }

    fn status(&self) -> NodeStatus {
        NodeStatus::lone_leader(self.node.clone(), 1)
    }

    async fn backup_connected(&self, _hello: Hello) -> Result<BackupSession<AuctionBook>, ServiceError> {
        Err(ServiceError::PeerRefused("no replication here".into()))
    }

    async fn backup_acked(&self, _node: &str, _connection: u64, _index: u64) {}

    async fn backup_lost(&self, _node: &str, _connection: u64) {}

    async fn remove_member(&self, _node: NodeId) -> Result<MemberRemoval, ServiceError> {
        Err(ServiceError::PeerRefused("no members here".into()))
    }
}

/// The API's router in front of a [`Refusing`] server on a port of its
/// own, or beside it in this process.
async fn refused_api(shutdown: &CancellationToken, beside: Beside) -> axum::Router {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let backend = Arc::new(Refusing { node: address.clone() });
    let in_process = match beside {
        Beside::OverTheNetwork => {
            let incoming: Incoming =
                Box::pin(TcpListenerStream::new(listener).map(|accepted| accepted.map(Connection::new)));
            tokio::spawn(serve(
                backend,
                incoming,
                Services::Clients,
                TransportSettings::default(),
                None,
                shutdown.clone(),
            ));
            None
        }
        // Nothing listens: only the in-process way can answer.
        Beside::InProcess => Some(InProcessNode::new(&address, backend)),
    };
    let config = WebConfig {
        node_address: address.clone(),
        servers: vec![address],
        in_process,
        limits: Default::default(),
        network: Network::tcp(),
    };
    router(&config, shutdown.clone()).expect("router")
}

/// How the API reaches the server.
#[derive(Clone, Copy, Debug)]
enum Beside {
    OverTheNetwork,
    InProcess,
}

/// The status and the body of `GET path`.
async fn get(api: &axum::Router, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = api.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_refusal_that_is_not_an_unknown_auction_is_not_reported_as_one() {
    assert_refusals_by_kind(Beside::OverTheNetwork).await;
}

/// The node beside the API answers in process exactly as over gRPC.
#[tokio::test]
async fn a_node_in_process_refuses_as_one_over_the_network() {
    assert_refusals_by_kind(Beside::InProcess).await;
}

async fn assert_refusals_by_kind(beside: Beside) {
    let shutdown = CancellationToken::new();
    let api = refused_api(&shutdown, beside).await;

    // The history's read is refused as a bad argument: a 400 saying so,
    // not a 404 for an auction nobody said was unknown.
    let (status, body) = get(&api, "/auctions/a1/history").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["error"], "invalid_argument", "{body}");
    assert!(body["message"].as_str().is_some_and(|message| message.starts_with("bad page token")), "{body}");

    // The list's likewise (it was a 502 "refused").
    let (status, body) = get(&api, "/auctions").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An unknown auction is still a 404 naming it.
    let (status, body) = get(&api, "/auctions/a1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (body["error"].as_str(), body["message"].as_str()),
        (Some("unknown_auction"), Some("unknown auction \"a1\""))
    );

    // A write the service refuses as malformed is the client's 400.
    let request = Request::post("/auctions/a1/bids")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"participant_id": "ann", "bid_price": 5}"#))
        .expect("request");
    let response = api.clone().oneshot(request).await.expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some("no writes here")), "{body}");

    // A compacted watch ends its stream with an error event that says so
    // (it was "watch_refused").
    let (status, body) = get(&api, "/events?after=2").await;
    assert_eq!(status, StatusCode::OK);
    let data = body
        .split("\n\n")
        .find(|event| event.lines().any(|line| line == "event: error"))
        .and_then(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .unwrap_or_else(|| panic!("no error event in {body:?}"));
    let data: serde_json::Value = serde_json::from_str(data).expect("json");
    assert_eq!(data["error"], "compacted", "{data}");
    assert!(data["message"].as_str().is_some_and(|message| message.starts_with("revision 2 is compacted")), "{data}");
    shutdown.cancel();
}
