//! `GET /metrics` in Prometheus' text format. What the node itself knows
//! (role, epoch, log index, the leader's view of each member) is read
//! through status probes at scrape time, as any client could read it; what
//! the HTTP layer sees (requests, bids, event streams, takeovers observed)
//! is counted here. The format is written by hand: a few gauges and
//! counters, one place that writes them, and no registry to keep.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::client::node_status;
use crate::replication::{NodeStatus, Role, epoch_number};
use crate::transport::Network;

use super::Web;

/// How long one status probe of a scrape may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the node's epoch is read, to count takeovers between scrapes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How a bid through this node's HTTP API ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BidCount {
    Accepted,
    /// A valid bid that lost (FAIL).
    Refused,
    /// Malformed, or for an unknown auction (a 4xx other than 409).
    Invalid,
    /// No leader answered in time: its outcome is unknown.
    Unanswered,
}

const BID_OUTCOMES: [(BidCount, &str); 4] = [
    (BidCount::Accepted, "accepted"),
    (BidCount::Refused, "refused"),
    (BidCount::Invalid, "invalid"),
    (BidCount::Unanswered, "unanswered"),
];

/// What the HTTP layer of one node counts.
#[derive(Default)]
pub struct Metrics {
    /// Requests by (route template, status code): both sets are small and
    /// fixed, so the map stays bounded.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bids: [AtomicU64; 4],
    /// Takeovers this node observed: how often the epoch it reports rose.
    failovers: AtomicU64,
    /// The epoch number last read; 0 until the first reading, and until
    /// then the count of takeovers is not reported.
    observed_epoch: AtomicU64,
}

impl Metrics {
    pub fn count_bid(&self, outcome: BidCount) {
        let index = BID_OUTCOMES.iter().position(|(kind, _)| *kind == outcome).unwrap_or(0);
        self.bids[index].fetch_add(1, Ordering::Relaxed);
    }

    fn count_request(&self, route: &str, code: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route.to_string(), code)).or_default() += 1;
    }

    /// Reads this node's epoch until `shutdown`, counting each rise after
    /// the first reading: every takeover raises it.
    pub async fn watch_epochs(self: Arc<Self>, network: Network, node: String, shutdown: CancellationToken) {
        loop {
            if let Ok(status) = node_status(&network, &node, PROBE_TIMEOUT).await
                && status.epoch > 0
            {
                let epoch = epoch_number(status.epoch);
                let last = self.observed_epoch.swap(epoch, Ordering::Relaxed);
                if last > 0 && epoch > last {
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

/// Counts every answered request under its route template.
pub(super) async fn count_requests(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    web.metrics.count_request(&route, response.status().as_u16());
    response
}

/// The cluster as one node's HTTP layer reads it from status probes: its
/// own status, the leader's it names, and each member's in the leader's
/// membership (`None` where none came). `/metrics` and `/cluster` show it.
pub(super) struct ClusterRead {
    pub own: Option<NodeStatus>,
    pub leader: Option<NodeStatus>,
    pub members: Vec<(String, Option<NodeStatus>)>,
}

pub(super) async fn read_cluster(network: &Network, node_address: &str) -> ClusterRead {
    let own = node_status(network, node_address, PROBE_TIMEOUT).await.ok();
    let leader = match &own {
        Some(status) if status.role == Role::Leader => Some(status.clone()),
        Some(NodeStatus { leader: Some(leader), .. }) => node_status(network, leader, PROBE_TIMEOUT).await.ok(),
        _ => None,
    };
    let mut members = Vec::new();
    if let Some(leader) = &leader {
        for member in &leader.membership {
            // The two statuses read already are not read again.
            let known = own.as_ref().filter(|own| own.node == *member).or((leader.node == *member).then_some(leader));
            let status = match known {
                Some(status) => Some(status.clone()),
                None => node_status(network, member, PROBE_TIMEOUT).await.ok(),
            };
            members.push((member.clone(), status));
        }
    }
    ClusterRead { own, leader, members }
}

/// `GET /metrics`.
pub(super) async fn metrics(State(web): State<Arc<Web>>) -> impl IntoResponse {
    let ClusterRead { own, leader, members } = read_cluster(&web.cluster.config().network, &web.node_address).await;
    let text = render(&web, own.as_ref(), leader.as_ref(), &members);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

fn render(
    web: &Web,
    own: Option<&NodeStatus>,
    leader: Option<&NodeStatus>,
    members: &[(String, Option<NodeStatus>)],
) -> String {
    let node = escape(&web.node_address);
    let metrics = &web.metrics;
    let mut out = Output(String::new());
    out.family("gavel_up", "gauge", "Whether this node answered its own status probe during the scrape.");
    out.line(&format!("gavel_up{{node=\"{node}\"}} {}", u8::from(own.is_some())));
    if let Some(own) = own {
        out.family("gavel_role", "gauge", "1 for the role this node has now, 0 for the others.");
        for (role, name) in [(Role::Leader, "leader"), (Role::Backup, "backup"), (Role::Joining, "joining")] {
            out.line(&format!("gavel_role{{node=\"{node}\",role=\"{name}\"}} {}", u8::from(own.role == role)));
        }
        out.family("gavel_epoch", "gauge", "The highest epoch this node has seen.");
        out.line(&format!("gavel_epoch{{node=\"{node}\"}} {}", epoch_number(own.epoch)));
        out.family(
            "gavel_last_index",
            "gauge",
            "Index of the last log entry this node applied (each entry is one committed change once every backup \
             acked it).",
        );
        out.line(&format!("gavel_last_index{{node=\"{node}\"}} {}", own.last.index));
        if let Some(disk) = own.disk {
            out.family("gavel_fsyncs_total", "counter", "Syncs of this node's log (--data-dir, --fsync always).");
            out.line(&format!("gavel_fsyncs_total{{node=\"{node}\"}} {}", disk.fsyncs));
            out.family(
                "gavel_fsynced_entries_total",
                "counter",
                "Log entries those syncs made durable: divided by gavel_fsyncs_total, the entries one sync carried.",
            );
            out.line(&format!("gavel_fsynced_entries_total{{node=\"{node}\"}} {}", disk.fsynced_entries));
        }
    }
    if let Some(leader) = leader {
        out.family(
            "gavel_replication_lag_entries",
            "gauge",
            "How many entries a member's log is behind the leader's, from their status probes.",
        );
        for (member, status) in members {
            if let Some(status) = status {
                let lag = leader.last.index.saturating_sub(status.last.index);
                out.line(&format!("gavel_replication_lag_entries{{member=\"{}\"}} {lag}", escape(member)));
            }
        }
        out.family("gavel_members", "gauge", "Members of the leader's membership (its leaderQueue, leader first).");
        out.line(&format!("gavel_members {}", leader.membership.len()));
    }
    if metrics.observed_epoch.load(Ordering::Relaxed) > 0 {
        out.family(
            "gavel_failovers_total",
            "counter",
            "Takeovers this node observed since it started: rises of its epoch.",
        );
        out.line(&format!("gavel_failovers_total{{node=\"{node}\"}} {}", metrics.failovers.load(Ordering::Relaxed)));
    }
    out.family("gavel_http_bids_total", "counter", "Bids through this node's HTTP API, by outcome.");
    for (index, (_, name)) in BID_OUTCOMES.iter().enumerate() {
        out.line(&format!(
            "gavel_http_bids_total{{outcome=\"{name}\"}} {}",
            metrics.bids[index].load(Ordering::Relaxed)
        ));
    }
    out.family("gavel_http_event_streams", "gauge", "Server-sent event streams open on this node.");
    out.line(&format!("gavel_http_event_streams {}", web.open_streams()));
    out.family("gavel_http_requests_total", "counter", "HTTP requests this node answered, by route and status code.");
    let requests = metrics.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for ((route, code), count) in requests {
        out.line(&format!("gavel_http_requests_total{{route=\"{}\",code=\"{code}\"}} {count}", escape(&route)));
    }
    out.0
}

/// The text being written.
struct Output(String);

impl Output {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }
}

/// A label value as the text format needs it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
