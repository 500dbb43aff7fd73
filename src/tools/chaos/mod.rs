//! Chaos runs: a local cluster under concurrent clients while a fault
//! injector kills, freezes and restarts nodes; the history of operations is
//! then checked for linearizability, durability and exactly-once.

pub mod checker;
pub mod history;
mod hostile;
mod runner;

pub use runner::{ChaosConfig, ChaosReport, FaultKind, run};
