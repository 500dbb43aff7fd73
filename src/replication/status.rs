//! What a node reports about itself: used to redirect clients, to choose
//! who takes over, and by the demo's `status`.

use super::{LogPosition, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Backup,
    /// Looking for the leader, or taking over.
    Joining,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node: NodeId,
    pub role: Role,
    /// The highest epoch seen.
    pub epoch: u64,
    /// The leader it follows, or itself; `None` when it does not know.
    pub leader: Option<NodeId>,
    /// The membership in join order, leader first.
    pub membership: Vec<NodeId>,
    pub last: LogPosition,
    pub pid: u32,
    /// The cluster its state belongs to; empty for a node without state.
    pub cluster_id: String,
    /// What its disk did, if it keeps one.
    pub disk: Option<DiskCounts>,
    /// Where it serves the HTTP API (`--http-port`), if it does: the web
    /// page learns every node's address from it.
    pub http: Option<String>,
    /// The membership record as it last read or stored it, if it knows one.
    pub record: Option<RecordView>,
    /// Why it neither leads nor follows, while it waits: it stands aside,
    /// or waits for members after a restart from its disk.
    pub waiting: Option<String>,
}

impl NodeStatus {
    /// A node that leads alone at `epoch`, with an empty log and no disk:
    /// what a stand-in server (no replication behind it) reports.
    pub fn lone_leader(node: NodeId, epoch: u64) -> Self {
        NodeStatus {
            waiting: None,
            leader: Some(node.clone()),
            membership: vec![node.clone()],
            node,
            role: Role::Leader,
            epoch,
            last: LogPosition::default(),
            pid: std::process::id(),
            cluster_id: String::new(),
            disk: None,
            http: None,
            record: None,
        }
    }
}

/// The membership record as people are shown it: without incarnations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordView {
    pub version: u64,
    /// Leader first, then the leaderQueue.
    pub members: Vec<NodeId>,
}

/// A node's log syncs so far: how many, and how many entries they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounts {
    pub fsyncs: u64,
    pub fsynced_entries: u64,
}
