//! Chaos runs: a local cluster under concurrent clients while a fault
//! injector kills, freezes and restarts nodes; the history of operations is
//! then checked for linearizability, durability and exactly-once.
//!
//! Layout: `runner` runs the cluster, the fair clients and the faults and
//! checks at the end; `hostile` is the hostile client beside them; both
//! record into `recorder`; `history` is what they record and `checker`
//! what reads it.

pub mod checker;
pub mod history;
mod hostile;
mod recorder;
mod runner;

pub use runner::{ChaosConfig, ChaosReport, FaultKind, run};
