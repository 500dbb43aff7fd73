//! Hostile peers beside the bench's honest load, to measure what they cost:
//! the findings of "Hold the line" as a workload.
//!
//! - *Silent*: says Hello under an invented name, reads everything, never
//!   acks; when its stream ends it connects again at once. Before learners,
//!   each such connection held every commit for the ack timeout.
//! - *Greedy*: says Hello, acks the leader's log position every 100 ms (so it
//!   joins as a member), and never reads: its queue on the leader fills.
//!   Before the queues were bounded, the leader's memory grew without end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::tools::rogue::RogueStream;
use crate::transport::{Network, find_leader, probe_status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostileKind {
    Silent,
    Greedy,
}

/// How often the hostile peers got in: each new stream the leader accepted.
#[derive(Default)]
pub(crate) struct HostileCounts {
    pub streams: AtomicU64,
}

const TIMEOUT: Duration = Duration::from_millis(500);
/// A greedy peer starts over this often, in case the leader dropped it.
const GREEDY_ROUND: Duration = Duration::from_secs(5);

/// Starts one hostile peer of `kind`, named `127.0.0.1:<name_port>`, until
/// `stop` is cancelled.
pub(crate) fn spawn(
    client_address: String,
    kind: HostileKind,
    name_port: u16,
    counts: Arc<HostileCounts>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let network = Network::tcp();
        let name = format!("127.0.0.1:{name_port}");
        while !stop.is_cancelled() {
            let Ok(leader) = find_leader(&network, &client_address, TIMEOUT).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(mut stream) = RogueStream::open(&network, &leader, &name, TIMEOUT).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            counts.streams.fetch_add(1, Ordering::Relaxed);
            let round = async {
                match kind {
                    HostileKind::Silent => while stream.read().await.is_some() {},
                    HostileKind::Greedy => {
                        let until = tokio::time::Instant::now() + GREEDY_ROUND;
                        while tokio::time::Instant::now() < until {
                            let Ok(status) = probe_status(&network, &leader, TIMEOUT).await else { break };
                            if !stream.ack(status.last.index).await {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = round => {}
            }
        }
    })
}
