//! The replicated state: the state machine's plus the membership, and the
//! log entries that change them.

use super::NodeId;
use super::machine::StateMachine;

/// Where a log ends: the epoch and index of its last entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub epoch: u64,
    pub index: u64,
}

/// What an entry does: a command of the state machine, or a change of
/// the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload<C> {
    Command(C),
    /// A backup joined: it goes to the end of the leaderQueue.
    Join {
        node: NodeId,
    },
    /// A backup was lost: the leader stops waiting for it.
    Remove {
        node: NodeId,
    },
    /// A new leader's first entry: it leads, and expects these backups back.
    /// The bootstrap's names the cluster; later ones repeat its name.
    Takeover {
        leader: NodeId,
        backups: Vec<NodeId>,
        cluster_id: String,
    },
}

/// One state change, in the order every replica applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<C> {
    pub epoch: u64,
    pub index: u64,
    pub payload: Payload<C>,
}

impl<C> Entry<C> {
    pub fn position(&self) -> LogPosition {
        LogPosition { epoch: self.epoch, index: self.index }
    }
}

/// Everything a replica holds, identical on every replica at the same index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicatedState<M> {
    /// Drawn at bootstrap: a node never takes entries or a snapshot from a
    /// leader of another cluster, nor replaces its state with theirs.
    pub cluster_id: String,
    /// The state machine's own state.
    pub machine: M,
    /// The leader first, then the backups in join order: the tail is the
    /// leaderQueue, the order in which backups take over.
    pub membership: Vec<NodeId>,
    /// The last entry applied.
    pub last: LogPosition,
    /// The latest time stamped into the log: a new leader never stamps an
    /// earlier one, so time in the log only moves forward.
    pub clock_unix_ms: i64,
}

impl<M: StateMachine> ReplicatedState<M> {
    /// Applies the next entry; a command's output, if it was one. The
    /// caller checks that it is the next one.
    pub fn apply(&mut self, entry: &Entry<M::Command>) -> Option<M::Output> {
        self.last = entry.position();
        match &entry.payload {
            Payload::Command(command) => {
                self.clock_unix_ms = self.clock_unix_ms.max(M::command_time(command));
                return Some(self.machine.apply(entry.index, command));
            }
            Payload::Join { node } => {
                if !self.membership.contains(node) {
                    self.membership.push(node.clone());
                }
            }
            Payload::Remove { node } => {
                self.membership.retain(|member| member != node);
            }
            Payload::Takeover { leader, backups, cluster_id } => {
                self.cluster_id.clone_from(cluster_id);
                self.membership = std::iter::once(leader.clone()).chain(backups.iter().cloned()).collect();
            }
        }
        None
    }

    /// The backups in takeover order.
    pub fn leader_queue(&self) -> &[NodeId] {
        self.membership.get(1..).unwrap_or(&[])
    }
}

/// The whole state at one index, sent to a joining backup whose log is not
/// a prefix of the leader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot<M> {
    /// The sending leader's epoch.
    pub epoch: u64,
    pub state: ReplicatedState<M>,
}
