//! The backup's half of the protocol: apply the leader's entries in order.

use super::machine::StateMachine;
use super::state::{Entry, LogPosition, ReplicatedState, Snapshot};

/// Why a backup refused what a leader sent; the node drops the stream and
/// joins again, which repairs its log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("entry from epoch {got} but epoch {seen} was already seen")]
    StaleEpoch { got: u64, seen: u64 },
    #[error("entry {got} does not follow the last applied entry {last}")]
    Gap { got: u64, last: u64 },
    #[error("epoch {0:#x} could not have been issued")]
    ImpossibleEpoch(u64),
    #[error("the leader belongs to cluster {theirs:?}, this node to {ours:?}")]
    OtherCluster { ours: String, theirs: String },
}

/// A backup's state machine.
#[derive(Clone, Debug, Default)]
pub struct Backup<M> {
    /// The highest epoch seen: entries from an older leader are refused.
    epoch: u64,
    state: ReplicatedState<M>,
    /// The highest index a leader said it published.
    leader_published: u64,
    /// The index this backup last announced as published: what its
    /// readers may see.
    published: u64,
}

impl<M: StateMachine> Backup<M> {
    /// A backup holding `state` (empty for a node that just started).
    pub fn new(epoch: u64, state: ReplicatedState<M>) -> Self {
        Backup { epoch, state, leader_published: 0, published: 0 }
    }

    /// Notes the index up to which the leader published its log (every
    /// message carries it), and announces the index up to which this
    /// backup may publish its own, when that moved on: the leader's, as
    /// far as this backup holds it. Its log up to there is the leader's
    /// (it applies only the leader's stream, in order), and committed
    /// entries are never lost, so the index only grows, across leaders too.
    /// The backup's counterpart of the leader's [`Action::Publish`].
    ///
    /// [`Action::Publish`]: super::Action::Publish
    pub fn observe_published(&mut self, leader_published: u64) -> Option<u64> {
        self.leader_published = self.leader_published.max(leader_published);
        let publishable = self.leader_published.min(self.state.last.index);
        (publishable > self.published).then(|| {
            self.published = publishable;
            publishable
        })
    }

    /// The index this backup last announced as published.
    pub fn published(&self) -> u64 {
        self.published
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn state(&self) -> &ReplicatedState<M> {
        &self.state
    }

    pub fn last(&self) -> LogPosition {
        self.state.last
    }

    pub fn into_parts(self) -> (u64, ReplicatedState<M>) {
        (self.epoch, self.state)
    }

    /// Notes a leader's epoch, from a heartbeat or a message.
    pub fn observe_epoch(&mut self, epoch: u64) -> Result<(), ReplicationError> {
        if !super::is_possible_epoch(epoch) {
            return Err(ReplicationError::ImpossibleEpoch(epoch));
        }
        if epoch < self.epoch {
            return Err(ReplicationError::StaleEpoch { got: epoch, seen: self.epoch });
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Replaces the state with the leader's; returns the index to ack.
    /// A node never replaces its state with another cluster's.
    pub fn install(&mut self, snapshot: Snapshot<M>) -> Result<u64, ReplicationError> {
        let (ours, theirs) = (&self.state.cluster_id, &snapshot.state.cluster_id);
        if !ours.is_empty() && ours != theirs {
            return Err(ReplicationError::OtherCluster { ours: ours.clone(), theirs: theirs.clone() });
        }
        self.observe_epoch(snapshot.epoch)?;
        self.state = snapshot.state;
        Ok(self.state.last.index)
    }

    /// Applies entries in index order; returns the index to ack. Entries it
    /// already holds are skipped, so a repeated message is harmless.
    pub fn apply<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry<M::Command>>,
    ) -> Result<u64, ReplicationError> {
        for entry in entries {
            self.observe_epoch(entry.epoch)?;
            if entry.index <= self.state.last.index {
                continue;
            }
            if entry.index != self.state.last.index + 1 {
                return Err(ReplicationError::Gap { got: entry.index, last: self.state.last.index });
            }
            self.state.apply(entry);
        }
        Ok(self.state.last.index)
    }
}
