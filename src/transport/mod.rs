//! The gRPC edge: tonic services and channels, and the protobuf types.
//!
//! This is the only layer that names tonic or prost types. The services call
//! a [`Backend`] (the node) with domain types; the client-side helpers return
//! domain types and a [`CallError`] that says whether a retry can help. The
//! peer API serves any state machine with an encoding ([`Wire`]); the
//! client API is the machine's own ([`ClientApi`], the auction's in
//! `auction_service.rs`).
//! Every port also serves `grpc.health.v1` and server reflection ([`Health`]).

mod auction_service;
mod client;
mod convert;
mod health;
mod network;
mod server;
mod tls;
mod watch_route;
mod watched;

use std::time::Duration;

pub use client::{
    AuctionConnection, CallError, InProcessNode, InvalidCode, LeaderLink, LeaderMessage, MemberRemovalAnswer,
    PeerProbe, SharedEventStream, check_address, connector, endpoint, find_leader, open_replication, peer_endpoint,
    probe_peer, probe_status, remove_member,
};
pub use convert::{MalformedMessage, SNAPSHOT_CHUNK_ITEMS, SnapshotAssembler, SnapshotChunks, Wire, disk_format};
pub use health::{AUCTION_SERVICE, FILE_DESCRIPTOR_SET, Health};
pub use network::{
    BoxFuture, ByteStream, Connection, Incoming, Network, NetworkBackend, Port, REPLICATION_PREAMBLE,
    limit_connections, split_replication,
};
pub use server::{
    Backend, BackupSession, ClientApi, Hello, MemberRemoval, ServiceError, Services, SharedEvent, Watched, serve,
};
pub use tls::{Tls, peer_role};
pub use watched::{QueueReceiver, QueueSender, WatchSender, WatchedEvents, bounded_queue};

/// The generated protobuf code, in modules nested as its packages are
/// (the replication package names client types, such as `Reason`, by that
/// path); `pb` is the client API and `pb::replication` the peers'.
pub mod gavel {
    pub mod v1 {
        tonic::include_proto!("gavel.v1");

        pub use super::replication::v1 as replication;
    }

    pub mod replication {
        pub mod v1 {
            tonic::include_proto!("gavel.replication.v1");
        }
    }
}

pub use gavel::v1 as pb;

/// The metadata key a backup uses to tell a client where the leader is.
pub const LEADER_METADATA: &str = "x-gavel-leader";
/// The metadata key of a NOT_FOUND naming what was not found (an auction
/// id): binary, since an id may hold any bytes a header may not.
pub const NOT_FOUND_METADATA: &str = "x-gavel-not-found-bin";
/// The metadata keys of a compacted watch (OUT_OF_RANGE): the revision it
/// asked to watch after, and the revision up to which events are gone.
pub const ASKED_REVISION_METADATA: &str = "x-gavel-asked-revision";
pub const COMPACTED_REVISION_METADATA: &str = "x-gavel-compacted-revision";
/// The metadata key of a rate-limited write (RESOURCE_EXHAUSTED): how many
/// milliseconds until the principal may send another.
pub const RETRY_AFTER_METADATA: &str = "x-gavel-retry-after-ms";

/// The sessions of the HTTP API: an `Idempotency-Key` names one, as
/// `http:KEY`, or `http#DIGEST` for a long key. With authentication on, only
/// the HTTP API takes them (in process, or with its node's certificate), so
/// that nobody else can answer for a key first.
pub const HTTP_SESSION_PREFIXES: [&str; 2] = ["http:", "http#"];

/// Whether `client_id` names a session of the HTTP API.
pub fn is_http_session(client_id: &str) -> bool {
    HTTP_SESSION_PREFIXES.iter().any(|prefix| client_id.starts_with(prefix))
}

/// Connections a client port serves at once (a leader's, or the null
/// server's): past it, new ones wait in the kernel's backlog.
pub const MAX_CLIENT_CONNECTIONS: usize = 8 * 1024;

/// Largest client request accepted: far above any valid bid, far below what
/// could hurt a server.
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Largest message from the leader to a backup: a batch of entries or a
/// snapshot chunk, both bounded far below it. (What a backup sends the
/// leader is limited lower still.)
pub const MAX_REPLICATION_MESSAGE: usize = 8 * 1024 * 1024;

/// Timeouts of the transport.
#[derive(Clone, Debug)]
pub struct TransportSettings {
    /// An idle leader sends a heartbeat this often on each replication stream.
    pub heartbeat_interval: Duration,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval: notices a peer that vanished silently.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            heartbeat_interval: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(2),
        }
    }
}

/// A URI for an address given as `host:port` or as a URI; `https` when
/// the call goes over TLS (tonic applies TLS to `https` URIs only).
fn uri_for(address: &str, secure: bool) -> String {
    match (address.contains("://"), secure) {
        (true, _) => address.to_string(),
        (false, true) => format!("https://{address}"),
        (false, false) => format!("http://{address}"),
    }
}
