//! The leadership seam: how a node finds the leader, learns what its peers
//! know when the leader is gone, and claims the leadership. Bootstrap,
//! takeover and handoff all go through it; the decisions (who may take over)
//! stay in `replication::takeover`.
//!
//! [`PortLock`] is the one implementation today: on one host the client port
//! is the lock (two processes cannot both bind it), the leader is whoever
//! answers on it, and peers are probed on their node ports. Releasing the
//! lock is dropping the claimed listener, which a graceful stop does and a
//! crash does too. A coordination service across hosts (etcd, for "Several
//! hosts") and the durable state's say in who may lead after a restart
//! (for "Durable") are further implementations or wrappers of this trait;
//! the node's role loop and the replication core do not change.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::replication::{NodeId, NodeStatus};
use crate::transport::{self, CallError, Incoming, Network, Port};

/// What the role loop needs of the leadership lock.
pub(super) trait Leadership: Send + Sync {
    /// The node address of the current leader, if one answers.
    fn find_leader(&self) -> impl Future<Output = Result<NodeId, CallError>> + Send;

    /// What each of `targets` that answers in time says of itself (the
    /// peer-only probe): the inputs of a takeover decision.
    fn survey(&self, targets: Vec<NodeId>) -> impl Future<Output = Vec<NodeStatus>> + Send;

    /// Takes the lock. On success this node leads, and serves clients on the
    /// returned listener until it drops it; on failure someone else holds it.
    fn claim(&self) -> impl Future<Output = io::Result<Incoming>> + Send;
}

/// How long a probe of a peer may take: a live peer on a LAN answers in
/// well under this; a frozen one never does.
const PROBE_TIMEOUT: Duration = Duration::from_millis(150);

/// The client port of one host as the leadership lock.
pub(super) struct PortLock {
    pub network: Network,
    pub client_address: SocketAddr,
    /// How long asking the client port who leads may take.
    pub find_timeout: Duration,
}

impl Leadership for PortLock {
    async fn find_leader(&self) -> Result<NodeId, CallError> {
        transport::find_leader(&self.network, &self.client_address.to_string(), self.find_timeout).await
    }

    async fn survey(&self, targets: Vec<NodeId>) -> Vec<NodeStatus> {
        let mut probes = tokio::task::JoinSet::new();
        for target in targets {
            let network = self.network.clone();
            probes.spawn(async move { transport::probe_peer(&network, &target, PROBE_TIMEOUT).await.ok() });
        }
        let mut answers = Vec::new();
        while let Some(answer) = probes.join_next().await {
            answers.extend(answer.ok().flatten());
        }
        answers
    }

    async fn claim(&self) -> io::Result<Incoming> {
        self.network.bind(self.client_address, Port::Client).await
    }
}
