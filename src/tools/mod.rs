//! The operator's and tester's tools, on top of the service: nothing in
//! `auction`, `replication`, `storage`, `transport`, `node`, `client` or
//! `web` imports them, so the service library is what a server needs.
//!
//! - [`prompt`]: what the bidding prompt understands and the one-line answers
//!   it prints (its loop is the command line's).
//! - [`cluster`]: local clusters of server processes, for the demo, the
//!   tools and the integration tests.
//! - [`chaos`]: fault injection, histories and the linearizability checker.
//! - [`bench`](mod@bench): the load generator, against gavel, etcd or the null server.
//! - [`tour`]: the scripted crash tour whose log is `log.txt`.
//! - [`null_server`]: gavel's client API with no node behind it, the
//!   bench's ceiling (`gavel null-server`).
//! - [`rogue`]: a dishonest replication peer, for the hostile clients of
//!   the bench and the chaos runs.

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod null_server;
pub mod prompt;
pub mod rogue;
pub mod tour;
