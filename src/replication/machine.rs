//! The seam between replication and what it replicates.
//!
//! The core sequences, replicates and commits opaque commands: it asks the
//! state machine only what this trait says, in the manner of raft-rs's
//! `propose(data)` and openraft's `AppData`/`AppDataResponse`. Every replica
//! applies the same commands in the same order, so the machine must be
//! deterministic: its output depends on its state and the command alone,
//! and the time it sees is the one the leader stamped into the command.

use std::fmt::Debug;

/// A deterministic state machine the core replicates.
pub trait StateMachine: Clone + Debug + Default + PartialEq + Eq + Send + Sync + 'static {
    /// A change, as the log carries it.
    type Command: Clone + Debug + PartialEq + Eq + Send + Sync + 'static;
    /// What applying a command yields: the proposer's answer.
    type Output: Clone + Debug + PartialEq + Eq + Send + 'static;
    /// A read, answered by the leader from everything sequenced so far and
    /// released once that is committed.
    type Query: Clone + Debug + Send + 'static;
    /// The answer to a read.
    type Answer: Clone + Debug + PartialEq + Eq + Send + 'static;
    /// What the leader stamps into commands besides the time (the node's
    /// settings, not replicated state: each command carries what it used).
    type Settings: Clone + Debug + Default + Send + 'static;

    /// Checks a proposed command before it is sequenced, and brings it to
    /// its one normal form (the log holds that). Malformed input changes
    /// nothing and its answer does not depend on the state, so it is
    /// refused here, with the output it gets.
    fn admit(command: &mut Self::Command) -> Result<(), Self::Output>;

    /// Checks a read before it is asked: why it is malformed.
    fn check_read(query: &Self::Query) -> Result<(), String>;

    /// Stamps a proposed command, before it is sequenced, with the leader's
    /// time (never earlier than the log's clock) and settings.
    fn stamp(command: &mut Self::Command, at_unix_ms: i64, settings: &Self::Settings);

    /// The time a command carries: the log's clock is the latest of them.
    fn command_time(command: &Self::Command) -> i64;

    /// Applies the command at log index `index`.
    fn apply(&mut self, index: u64, command: &Self::Command) -> Self::Output;

    /// Answers a read at the time `at_unix_ms`.
    fn read(&self, query: &Self::Query, at_unix_ms: i64) -> Self::Answer;

    /// The commands that time alone calls for at `at_unix_ms` (deadlines
    /// passed), stamped: the leader sequences them on a tick.
    fn due(&self, at_unix_ms: i64, settings: &Self::Settings) -> Vec<Self::Command>;
}
