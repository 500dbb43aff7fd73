//! The web page at `/`, and `GET /cluster`, what its cluster panel shows
//! and where it learns every node's HTTP address (so that it can move to
//! another node when the one that served it dies).
//!
//! The page is plain HTML, CSS and a little JavaScript, embedded in the
//! binary: nothing to build, nothing to install.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::replication::Role;

use super::Web;
use super::metrics::{ClusterRead, read_cluster};

const PAGE: &str = include_str!("index.html");

pub(super) async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE)
}

/// The cluster as the page shows it.
#[derive(Serialize)]
pub(super) struct Cluster {
    /// The leader's node address; absent while there is none.
    leader: Option<String>,
    /// The backups in takeover order.
    leader_queue: Vec<String>,
    nodes: Vec<ClusterNode>,
}

#[derive(Serialize)]
pub(super) struct ClusterNode {
    node: String,
    /// `leader`, `backup`, `joining`, or `down` when it does not answer.
    role: &'static str,
    /// The base URL of its HTTP API, if it serves one.
    http: Option<String>,
}

/// `GET /cluster`: the leader, the leaderQueue and every member with its
/// role and HTTP address, read from the nodes' status.
pub(super) async fn cluster(State(web): State<Arc<Web>>) -> Json<Cluster> {
    let ClusterRead { own, leader, members } = read_cluster(&web.cluster.config().network, &web.node_address).await;
    let Some(leader) = leader.filter(|status| status.role == Role::Leader) else {
        let nodes = own.into_iter().map(|status| node_of(&status.node, Some(&status))).collect();
        return Json(Cluster { leader: None, leader_queue: Vec::new(), nodes });
    };
    let nodes = members.iter().map(|(member, status)| node_of(member, status.as_ref())).collect();
    Json(Cluster { leader: Some(leader.node.clone()), leader_queue: leader.membership[1..].to_vec(), nodes })
}

fn node_of(node: &str, status: Option<&crate::replication::NodeStatus>) -> ClusterNode {
    let role = match status.map(|status| status.role) {
        Some(Role::Leader) => "leader",
        Some(Role::Backup) => "backup",
        Some(Role::Joining) => "joining",
        None => "down",
    };
    let http = status.and_then(|status| status.http.as_ref()).map(|address| format!("http://{address}"));
    ClusterNode { node: node.to_string(), role, http }
}
