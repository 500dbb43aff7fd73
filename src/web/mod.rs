//! The HTTP/JSON API every node serves with `gavel server --http-port P`:
//! REST routes over auctions and bids in the shapes of the ZooKeeper-based
//! system gavel is compared with, server-sent events, Prometheus metrics and
//! an OpenAPI document.
//!
//! It is a layer on top of the cluster, not inside the node: each request
//! goes through the client library ([`crate::client::Client`]) configured
//! with the client port and every node's address, so any node answers any
//! request (a backup's request reaches the leader; across a failover the
//! client retries with the same request id), and the node knows nothing of
//! HTTP.
//!
//! - `connections`: the server's connections, bounded in number and time.
//! - `routes`: the REST routes.
//! - `json`: the JSON shapes and their conversions, whole-number amounts.
//! - `error`: refusals and failures as status codes and JSON errors.
//! - `pool`: the clients lent to requests, and `Idempotency-Key` sessions.
//! - `events`: `GET /events`, server-sent events.
//! - `metrics`: `GET /metrics`, Prometheus' text format.
//! - `page`: the web page at `/` (`index.html`) and `GET /cluster`.
//! - `openapi.json`: the API's description, served at `/openapi.json`.

mod connections;
mod error;
mod events;
pub mod json;
mod metrics;
mod page;
mod pool;
mod routes;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{Any, CorsLayer};

use crate::client::{ClientConfig, ClientError};
use crate::transport::{InProcessNode, Network};

pub use connections::{ConnectionLimits, HEADER_READ_TIMEOUT, MAX_HTTP_CONNECTIONS};
pub use error::ApiError;
pub use events::MAX_EVENT_STREAMS;
pub use pool::{IDEMPOTENCY_KEY, MAX_REQUESTS_IN_FLIGHT};
pub use routes::{MAX_BODY, MAX_LISTED};

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How long a stopping server gives its open requests and streams.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What one node's HTTP server needs to know.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// This node's own address: `/metrics` reads its status there.
    pub node_address: String,
    /// Where requests go: the client port first, then every node, so that
    /// a request finds the leader while it changes.
    pub servers: Vec<String>,
    /// The node beside this API in the same process, if there is one:
    /// requests go to it first, without the network, and from it to the
    /// leader it names (while it leads, a request takes no second hop).
    pub in_process: Option<InProcessNode>,
    /// How many connections it holds, and how long a request's headers
    /// may take.
    pub limits: ConnectionLimits,
    /// How it reaches the nodes (over TLS in a secure cluster).
    pub network: Network,
}

/// The state the routes share.
pub(crate) struct Web {
    cluster: pool::ClientPool,
    metrics: Arc<metrics::Metrics>,
    /// One permit per open event stream.
    streams: Arc<Semaphore>,
    /// The event streams' watch tasks.
    tasks: TaskTracker,
    shutdown: CancellationToken,
    node_address: String,
}

impl Web {
    fn open_streams(&self) -> usize {
        MAX_EVENT_STREAMS - self.streams.available_permits()
    }
}

/// The API's router, with its state, CORS and limits: what [`serve`]
/// serves, and what a test drives without a socket.
pub fn router(config: &WebConfig, shutdown: CancellationToken) -> Result<Router, ClientError> {
    Ok(build(state(config, shutdown)?))
}

fn state(config: &WebConfig, shutdown: CancellationToken) -> Result<Arc<Web>, ClientError> {
    let mut servers = config.servers.clone();
    if let Some(node) = &config.in_process {
        servers.retain(|server| server != node.address());
        servers.insert(0, node.address().to_string());
    }
    let client_config = ClientConfig {
        servers,
        in_process: config.in_process.clone(),
        network: config.network.clone(),
        ..ClientConfig::default()
    };
    Ok(Arc::new(Web {
        cluster: pool::ClientPool::new(client_config)?,
        metrics: Arc::default(),
        streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        tasks: TaskTracker::new(),
        shutdown,
        node_address: config.node_address.clone(),
    }))
}

fn build(web: Arc<Web>) -> Router {
    // The page one node serves calls the others: any origin may read.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(IDEMPOTENCY_KEY),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER]);
    Router::new()
        .route("/auctions", get(routes::list_auctions).post(routes::create_auction))
        .route("/auctions/{id}", get(routes::get_auction))
        .route("/auctions/{id}/bids", axum::routing::post(routes::place_bid))
        .route("/auctions/{id}/status", get(routes::auction_status))
        .route("/auctions/{id}/history", get(routes::auction_history))
        .route("/events", get(events::events))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route("/", get(page::page))
        .route("/cluster", get(page::cluster))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::no_method)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&web), metrics::count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .with_state(web)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, config: WebConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let web = state(&config, shutdown.clone())?;
    web.tasks.spawn(Arc::clone(&web.metrics).watch_epochs(
        config.network.clone(),
        config.node_address.clone(),
        shutdown.clone(),
    ));
    connections::serve(listener, build(Arc::clone(&web)), config.limits, shutdown, CLOSE_TIMEOUT).await;
    // The event streams' tasks and the epoch watcher end with `shutdown`.
    web.tasks.close();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, web.tasks.wait()).await;
    Ok(())
}
