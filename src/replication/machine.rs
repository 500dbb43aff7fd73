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
    /// The node's settings for the machine, not replicated state: what the
    /// leader stamps into commands besides the time (each command carries
    /// what it used), and what a new cluster starts with.
    type Settings: Clone + Debug + Default + Send + Sync + 'static;

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

    /// The commands a new cluster starts with, at `at_unix_ms`: its leader
    /// proposes them first. None by default.
    fn genesis(_settings: &Self::Settings, _at_unix_ms: i64) -> Vec<Self::Command> {
        Vec::new()
    }

    /// Says in the operator's log what the commands that time called for
    /// (`due`, now applied) did. Nothing by default.
    fn log_due(&self, _due: &[Self::Command]) {}

    /// The per-principal rate limit a proposed command counts against, as
    /// `settings` set it; the leader checks it before sequencing. None by
    /// default (and for a command no limit applies to).
    fn rate_limit<'a>(_command: &'a Self::Command, _settings: &Self::Settings) -> Option<RateLimit<'a>> {
        None
    }
}

/// A limit on how many commands of a kind one principal may send a second,
/// with a burst of as many: the leader refuses those beyond it before they
/// are sequenced, never in apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit<'a> {
    /// The kind of command it limits (a name for messages and metrics).
    pub kind: &'static str,
    /// Whom the command acts for (a bidder's or seller's name).
    pub principal: &'a str,
    pub per_second: u32,
}

/// What a proposed command came to: its output, and the index it was
/// applied at (`None` for input refused before it was sequenced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed<Output> {
    pub index: Option<u64>,
    pub output: Output,
}

/// What watchers of a state machine see: the events of its committed
/// entries, each at a revision (the entry's log index).
pub trait EventSource: StateMachine {
    /// One thing that happened.
    type Event: Clone + Debug + Send + Sync + 'static;
    /// Which events a watcher asks for.
    type Scope: Clone + Debug + Send + Sync + 'static;
    /// What one event is about (for the auction house, its auction): a
    /// scope is a set of topics, or every one, so that an event wakes only
    /// the watches it is for.
    type Topic: Clone + Debug + Eq + std::hash::Hash + Send + Sync + 'static;

    /// Checks a watcher's scope before it is served: why it is malformed.
    fn check_scope(scope: &Self::Scope) -> Result<(), String>;

    /// The scope of every event.
    fn everything() -> Self::Scope;

    /// The topic of an event of a committed entry.
    fn topic(event: &Self::Event) -> Self::Topic;

    /// The topics `scope` covers; `None` for every one. An event is in a
    /// scope when its topic is.
    fn scope_topics(scope: &Self::Scope) -> Option<Vec<Self::Topic>>;

    /// The events in `scope` of the entries after `after` up to `upto`, in
    /// order, with `clock_unix_ms` the log's clock at `upto`.
    fn events(&self, scope: &Self::Scope, after: u64, upto: u64, clock_unix_ms: i64) -> Vec<Self::Event>;

    /// The revision an event belongs to.
    fn revision(event: &Self::Event) -> u64;

    /// About how many bytes an event holds: what bounds a watcher's pages.
    fn event_size(event: &Self::Event) -> usize;

    /// The event that tells a watcher where "now" is: no change, at
    /// `revision`.
    fn progress(revision: u64) -> Self::Event;

    /// The revision up to which events are forgotten: no watcher resumes
    /// before it.
    fn compacted(&self) -> u64;
}
