//! The membership record: the in-sync set, kept where every future leader
//! must read it (the coordinator), not only in the nodes' memories.
//!
//! Invariant: every member the stored record lists holds every committed
//! entry. Only a listed member may lead, so no committed entry is lost. The
//! leader keeps it true by two rules: it commits without a member only once
//! the record without it is stored, and a member it adds gates every commit
//! from the moment the write that adds it starts.

use super::NodeId;

/// The incarnation of a member a new leader expects back but whose
/// incarnation no record told it (a cluster whose record was lost): the
/// first stream under its name says it, and the record is written again.
/// No node runs as it.
pub const UNKNOWN_INCARNATION: u64 = 0;

/// One copy of a node's state: the node, and the incarnation of its state.
///
/// A node with a data directory draws its incarnation once, when the
/// directory is created (a restart from the same disk is the same member; a
/// wiped disk is a new one); a node without one draws one per process. A
/// process that gives a member's name but not its incarnation is not that
/// member: a node that froze and resumed after its place was taken, or a
/// second process under the same name, cannot speak for it. Incarnations
/// never leave the peer protocol and the coordinator: probes and statuses
/// do not show them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub node: NodeId,
    pub incarnation: u64,
}

/// The members in leaderQueue order (the leader first), under a version
/// that every write raises by compare-and-set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipRecord {
    /// The cluster the members' state belongs to.
    pub cluster_id: String,
    /// Raised by every write, by compare-and-set.
    pub version: u64,
    /// The epoch number of the leadership that wrote it: a takeover write
    /// raises it above the stored one (and every epoch its writer has
    /// seen), and only one takeover can replace a given version, so two
    /// leaderships never share one.
    pub epoch: u64,
    pub members: Vec<Member>,
}

impl MembershipRecord {
    /// Whether `member` (this node, this incarnation) is listed.
    pub fn lists(&self, member: &Member) -> bool {
        self.members.contains(member)
    }

    /// The listed incarnation of `node`, if it is listed.
    pub fn incarnation_of(&self, node: &str) -> Option<u64> {
        self.members.iter().find(|member| member.node == node).map(|member| member.incarnation)
    }

    /// The listed nodes, leader first.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.members.iter().map(|member| member.node.clone()).collect()
    }
}
