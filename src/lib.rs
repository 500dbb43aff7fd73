//! gavel: a replicated auction service that keeps every acknowledged bid
//! through the crash of any node but one.
//!
//! Layout, from the bottom up:
//!
//! - [`auction`]: the auction rules, pure and deterministic, and the auction
//!   book as replication's state machine.
//! - [`replication`]: the primary-backup core, sans I/O (events in, actions
//!   out), generic over the state machine it replicates.
//! - [`storage`]: the write-ahead log and snapshots on disk, and the
//!   group-commit thread that syncs them.
//! - [`security`]: who may speak for whom: the roles certificates carry,
//!   `gavel cert`'s certificates, and the secrets of names.
//! - [`transport`]: tonic services and channels, TLS, protobuf conversions,
//!   gRPC health and reflection; the peer API generic over the state
//!   machine's encoding, the auction's client API beside it.
//! - [`node`]: the async driver of one server process: roles, timers,
//!   takeover, and the leadership seam (today the client port as the lock),
//!   generic over the state machine it runs.
//! - [`client`]: the client library: failover and retries with the same request id.
//! - [`web`]: the HTTP/JSON API, server-sent events and metrics each node
//!   serves, on top of the client library.
//!
//! Those are the service: what a server needs, and none of them imports what
//! follows. The operator's and tester's tools sit on top, in [`tools`]:
//!
//! - [`tools::prompt`]: what the bidding prompt understands and the one-line answers it prints.
//! - [`tools::cluster`]: local clusters of server processes, for the demo and the tools.
//! - [`tools::chaos`]: fault injection, histories and the linearizability checker.
//! - [`tools::bench`]: the load generator, against gavel, etcd or the null server.
//! - [`tools::tour`]: the scripted crash tour whose log is `log.txt`.
//! - [`tools::null_server`]: the client API with no node behind it, the bench's ceiling.
//! - [`tools::rogue`]: a dishonest replication peer, for the hostile clients.
//!
//! The `gavel` binary's command line (`src/cli/`) is a module of the binary,
//! not of this library.

pub mod auction;
pub mod client;
pub mod node;
pub mod replication;
pub mod security;
pub mod storage;
pub mod tools;
pub mod transport;
pub mod web;
