//! The operator's commands: `gavel status` (who leads, the leaderQueue, the
//! membership record, each member) and `gavel member remove`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use gavel::node::{CoordinatorConfig, OperatorRemoval};
use gavel::replication::{Role, epoch_number};
use gavel::transport::Network;

use super::args::{DEFAULT_NODE_PORTS, Peer, Target};
use super::render::{StatusJson, json_line};

/// `gavel member remove`: tells every node that answers to remove
/// `member`, one line per answer; without a leader, changes the record.
pub async fn remove_member(
    network: &Network,
    member: &str,
    nodes: &[Peer],
    client_address: SocketAddr,
    record: &CoordinatorConfig,
) -> anyhow::Result<ExitCode> {
    if member.parse::<SocketAddr>().is_err() {
        println!("EXCEPTION: {member:?} is not a node address (IP:PORT)");
        return Ok(super::exit::refused());
    }
    let timeout = Duration::from_secs(3);
    let mut done = false;
    let mut led = false;
    for node in nodes {
        let address = node.address(IpAddr::from([127, 0, 0, 1]));
        if address.to_string() == member {
            continue;
        }
        match gavel::transport::remove_member(network, &address.to_string(), member, timeout).await {
            Ok(reply) => {
                println!("{address}: {}", reply.answer);
                led |= reply.removed_at.is_some();
                done = true;
            }
            Err(error) if error.is_retryable() => {}
            Err(error) => println!("{address}: {error}"),
        }
    }
    if !led {
        // No leader took it: change the record, as the leader would.
        match gavel::node::remove_without_leader(network, client_address, record, member).await {
            Ok(OperatorRemoval::Removed { version, members }) => {
                println!(
                    "membership record: {member} removed (version {version}, members {members:?}); no leader was running"
                );
                done = true;
            }
            Ok(OperatorRemoval::NotListed) => {}
            Ok(OperatorRemoval::LastHolder) => {
                println!(
                    "ERROR: no other member of the membership record runs or keeps its state: removing {member} \
                     would leave nobody who holds the cluster's state"
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(OperatorRemoval::PortHeld) => {
                println!(
                    "the client port {client_address} is held (a leader runs): the membership record is its to change"
                )
            }
            Err(error) => {
                println!("ERROR: the membership record did not change: {error}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if !done {
        println!("ERROR: no node took the removal of {member}");
    }
    Ok(if done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `gavel status`: asks the given servers who leads, then each member.
pub async fn cluster_status(target: &Target, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(1);
    let network = target.security.network(None)?;
    let mut leader = None;
    for server in &target.servers {
        if let Ok(status) = gavel::client::node_status(&network, server, timeout).await {
            let leads = status.role == Role::Leader;
            let named = status.leader.clone();
            leader = Some(status);
            if leads {
                break;
            }
            if let Some(address) = named
                && let Ok(status) = gavel::client::node_status(&network, &address, timeout).await
            {
                leader = Some(status);
                break;
            }
        }
    }
    let Some(leader) = leader.filter(|status| status.role == Role::Leader) else {
        println!("ERROR: no leader answered at {}", target.servers.join(", "));
        // What a cluster without a leader can say of itself.
        let waiting = waiting_nodes(target).await;
        if waiting.is_empty() {
            println!(
                "(nodes that wait say why: ask them by their own ports, e.g. `gavel status --server 5400,5401,5402`)"
            );
        } else {
            println!("waiting:\n{}", waiting.join("\n"));
        }
        return Ok(super::exit::unreachable());
    };
    let mut members = Vec::new();
    for member in &leader.membership {
        members.push((member.clone(), gavel::client::node_status(&network, member, timeout).await.ok()));
    }
    if json {
        println!("{}", json_line(&StatusJson::new(&leader, &members)));
    } else {
        println!("leader {} (epoch {}, log index {})", leader.node, epoch_number(leader.epoch), leader.last.index);
        println!("leaderQueue: [{}]", leader.membership.iter().skip(1).cloned().collect::<Vec<_>>().join(", "));
        // The in-sync set as the coordinator holds it: who may lead next.
        if let Some(record) = &leader.record {
            println!("membership record: version {}, members [{}]", record.version, record.members.join(", "));
        }
        for (member, status) in &members {
            match status {
                Some(status) => println!(
                    "  {member}  {:?}  epoch {}  log index {}  pid {}",
                    status.role,
                    epoch_number(status.epoch),
                    status.last.index,
                    status.pid
                ),
                None => println!("  {member}  not answering"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After "unreachable": says which nodes are up but wait (they stand
/// aside, or wait for members after a full restart), and why, so that a
/// refused connection comes with its reason.
pub async fn explain_unreachable(target: &Target) {
    let waiting = waiting_nodes(target).await;
    if !waiting.is_empty() {
        println!("no leader serves; these nodes wait:\n{}", waiting.join("\n"));
    }
}

/// The nodes that answer but wait, a line each with why: among the
/// servers given and, on each of their hosts, the node ports `member
/// remove` asks by default (the sequential ports of the README and the
/// demo).
async fn waiting_nodes(target: &Target) -> Vec<String> {
    let Ok(network) = target.security.network(None) else { return Vec::new() };
    let mut asked: Vec<String> = target.servers.clone();
    for server in &target.servers {
        if let Some((host, _)) = server.rsplit_once(':') {
            asked.extend(DEFAULT_NODE_PORTS.split(',').map(|port| format!("{host}:{port}")));
        }
    }
    asked.sort();
    asked.dedup();
    let mut statuses = tokio::task::JoinSet::new();
    for address in asked {
        let network = network.clone();
        statuses.spawn(
            async move { gavel::client::node_status(&network, &address, Duration::from_millis(500)).await.ok() },
        );
    }
    let mut waiting = Vec::new();
    while let Some(answer) = statuses.join_next().await {
        if let Ok(Some(status)) = answer
            && let Some(why) = status.waiting
        {
            waiting.push(format!("  {}: {why}", status.node));
        }
    }
    waiting.sort();
    waiting
}
