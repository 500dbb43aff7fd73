//! The cluster against hostile clients and operator mistakes, on real
//! `gavel server` processes: each test is a finding of an adversarial review
//! (issue "Hold the line"), reproduced with dishonest protocol messages.

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gavel::auction::{Bid, Verdict};
use gavel::client::node_status;
use gavel::replication::{Role, epoch_number};
use gavel::transport::pb::replication::replication_client::ReplicationClient;
use gavel::transport::pb::replication::replication_server::{Replication, ReplicationServer};
use gavel::transport::pb::replication::{
    Ack, FromBackup, FromLeader, Hello, PeerRole, ProbeReply, ProbeRequest, RemoveMemberReply, RemoveMemberRequest,
    from_backup,
};
use gavel::transport::{AuctionConnection, Network, TransportSettings};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use common::{accepted_more_than, client, eventually, is_alive, ports, start};

const SETTLE: Duration = Duration::from_secs(10);

fn hello(node: &str) -> FromBackup {
    FromBackup { message: Some(from_backup::Message::Hello(Hello { node: node.to_string(), ..Hello::default() })) }
}

fn ack(index: u64) -> FromBackup {
    FromBackup { message: Some(from_backup::Message::Ack(Ack { index })) }
}

/// Opens a replication stream at `address`, says Hello as `node` and acks
/// `index` at once, without reading anything. Returns the stream's handle
/// (dropping it ends the stream).
async fn lying_backup(address: &str, node: &str, index: u64) -> Result<Streaming<FromLeader>, Status> {
    let mut replication = ReplicationClient::connect(format!("http://{address}"))
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let messages = tokio_stream::iter(vec![hello(node), ack(index)]).chain(tokio_stream::pending());
    Ok(replication.replicate(messages).await?.into_inner())
}

use tokio_stream::StreamExt;

/// Bids increasing amounts from `first_amount` until `stop`; returns the
/// acknowledged ones and how many went unanswered.
async fn bid_until(server: String, first_amount: u64, stop: Arc<AtomicBool>) -> (Vec<u64>, usize) {
    let next_amount = Arc::new(AtomicU64::new(first_amount));
    let config = gavel::client::ClientConfig { servers: vec![server], ..Default::default() };
    let mut bidder = gavel::client::Client::new(config).expect("client");
    let (mut successes, mut unanswered) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let amount = next_amount.fetch_add(1, Ordering::Relaxed);
        match bidder.bid("", "alice", amount).await {
            Ok(outcome) if outcome.verdict == Verdict::Success => successes.push(amount),
            Ok(_) => {}
            Err(_) => unanswered += 1,
        }
    }
    (successes, unanswered)
}

/// Finding 1: a client that says Hello under a frozen backup's name and
/// acks 2^64-1 must not keep it in the membership, nor count for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_of_a_frozen_backup_cannot_make_the_leader_lose_acknowledged_bids() {
    let mut cluster = start(30, 3, &["--ack-timeout", "500ms", "--leader-timeout", "500ms"]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "alice", 1).await.expect("bid").verdict, Verdict::Success);

    // The client port serves clients only: no replication there.
    let refused = lying_backup(&cluster.client_address(), &cluster.node_address(2), u64::MAX).await;
    assert_eq!(refused.err().map(|status| status.code()), Some(tonic::Code::Unimplemented));

    // On the leader's own port, the impostor of the frozen node 2.
    cluster.freeze(2).expect("freeze");
    let _impostor = lying_backup(&cluster.node_address(0), &cluster.node_address(2), u64::MAX).await;
    let mut acknowledged = 1;
    for amount in 2..=40 {
        assert_eq!(bidder.bid("", "alice", amount).await.expect("bid").verdict, Verdict::Success);
        acknowledged += 1;
    }
    let status = node_status(&Network::tcp(), &cluster.node_address(0), Duration::from_secs(1)).await.expect("status");
    assert!(!status.membership.contains(&cluster.node_address(2)), "the frozen node is out: {:?}", status.membership);

    // The leader dies; whoever takes over holds every acknowledged bid.
    cluster.kill(0).expect("kill leader");
    let new_leader = cluster.wait_for_leader(SETTLE).await.expect("takeover");
    assert_eq!(new_leader, 1, "the stale frozen node does not lead");
    let (view, _) = bidder.result("").await.expect("result");
    assert_eq!((view.highest_amount, view.accepted_bids), (40, acknowledged));
    cluster.thaw(2).expect("thaw");
}

/// A peer that answers every takeover probe as the leader, and with an
/// epoch no leader could have issued.
struct RoguePeer {
    node: String,
    epoch: u64,
    role: PeerRole,
}

type FromLeaderStream = Pin<Box<dyn Stream<Item = Result<FromLeader, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for RoguePeer {
    type ReplicateStream = FromLeaderStream;

    async fn replicate(&self, _: Request<Streaming<FromBackup>>) -> Result<Response<Self::ReplicateStream>, Status> {
        Err(Status::unimplemented("rogue"))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeReply>, Status> {
        Ok(Response::new(ProbeReply {
            node: self.node.clone(),
            role: self.role as i32,
            epoch: self.epoch,
            leader: self.node.clone(),
            membership: vec![self.node.clone()],
            last_epoch: self.epoch,
            last_index: u64::MAX,
            cluster_id: String::new(),
        }))
    }

    async fn remove_member(&self, _: Request<RemoveMemberRequest>) -> Result<Response<RemoveMemberReply>, Status> {
        Err(Status::unimplemented("rogue"))
    }
}

/// Serves a rogue peer on `address` until the returned task is aborted.
fn serve_rogue(address: SocketAddr, rogue: RoguePeer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder().add_service(ReplicationServer::new(rogue)).serve(address).await;
    })
}

/// Findings 2 and 3: a client that joins under an invented name and answers
/// probes as LEADER, with epoch 2^64-1, neither becomes a member nor stops
/// the takeover, and the successor's epoch does not wrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_that_claims_to_lead_with_an_absurd_epoch_neither_joins_nor_stops_the_takeover() {
    let mut cluster = start(31, 3, &["--leader-timeout", "500ms"]).await;
    let mut bidder = client(&cluster);
    for amount in 1..=20 {
        assert_eq!(bidder.bid("", "bob", amount).await.expect("bid").verdict, Verdict::Success);
    }
    // The rogue listens among the nodes' default peers (their ports +-8).
    let rogue_address: SocketAddr = format!("127.0.0.1:{}", ports(31).base + 5).parse().unwrap();
    let rogue = RoguePeer { node: rogue_address.to_string(), epoch: u64::MAX, role: PeerRole::PeerLeader };
    let rogue_server = serve_rogue(rogue_address, rogue);
    let stream = lying_backup(&cluster.node_address(0), &rogue_address.to_string(), u64::MAX).await;
    let status = node_status(&Network::tcp(), &cluster.node_address(0), Duration::from_secs(1)).await.expect("status");
    assert!(!status.membership.contains(&rogue_address.to_string()), "{:?}", status.membership);
    drop(stream);

    let epoch_before = status.epoch;
    cluster.kill(0).expect("kill leader");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("takeover despite the rogue"), 1);
    let (view, _) = bidder.result("").await.expect("result");
    assert_eq!((view.highest_amount, view.accepted_bids), (20, 20));

    // Node 2 follows the new leader: the epoch rose by one and did not wrap.
    let leader = cluster.node_address(1);
    let follower = cluster.node_address(2);
    let status = eventually("node 2 to rejoin the new leader", SETTLE, || {
        let (leader, follower) = (leader.clone(), follower.clone());
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_secs(1)).await.ok()?;
            status.membership.contains(&follower).then_some(status)
        }
    })
    .await;
    assert_eq!(epoch_number(status.epoch), epoch_number(epoch_before) + 1);
    rogue_server.abort();
}

/// Kills a `gavel server` started by hand when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finding 4: `--peers` given as bare ports is understood, and a fresh
/// node that finds the cluster's backups alive never bootstraps a new,
/// empty cluster when the frozen leader dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_given_bare_peer_ports_never_wipes_the_auction() {
    let mut cluster = start(32, 2, &["--leader-timeout", "500ms"]).await;
    let mut bidder = client(&cluster);
    for amount in 1..=30 {
        assert_eq!(bidder.bid("", "carol", amount).await.expect("bid").verdict, Verdict::Success);
    }
    cluster.freeze(0).expect("freeze leader");
    let ports = ports(32);
    let peers = format!("{},{}", ports.base, ports.base + 1);
    let fresh_port = ports.base + 2;
    let fresh_log = cluster.log_file(0).expect("the cluster's log").with_file_name("fresh-node.log");
    let fresh = Server(
        Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["server", "--port", &fresh_port.to_string(), "--client-port", &ports.client.to_string()])
            .args(["--peers", &peers, "--leader-timeout", "500ms"])
            .arg("--record-dir")
            .arg(cluster.record_dir())
            .env("RUST_LOG", "info,gavel=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&fresh_log).expect("the fresh node's log"))
            .spawn()
            .expect("fresh node starts"),
    );
    // It looks around while the leader is frozen (its attempt to join fails
    // and it takes its standing), then the leader dies.
    let fresh_address = format!("127.0.0.1:{fresh_port}");
    eventually("the fresh node to answer", SETTLE, || {
        let address = fresh_address.clone();
        async move { node_status(&Network::tcp(), &address, Duration::from_millis(200)).await.ok() }
    })
    .await;
    eventually("the fresh node to find no leader to join", SETTLE, || {
        let said = std::fs::read_to_string(&fresh_log).unwrap_or_default();
        async move { (said.contains("no leader to join") || said.contains("standing aside")).then_some(()) }
    })
    .await;
    cluster.kill(0).expect("kill leader");

    let (view, leader) = bidder.result("").await.expect("result");
    assert_eq!((view.highest_amount, view.accepted_bids), (30, 30), "answered by {leader}");
    assert_eq!(leader, cluster.node_address(1));
    let status = eventually("the fresh node to join as a backup", SETTLE, || {
        let address = fresh_address.clone();
        async move {
            node_status(&Network::tcp(), &address, Duration::from_millis(500))
                .await
                .ok()
                .filter(|s| s.role == Role::Backup)
        }
    })
    .await;
    assert_eq!(status.leader.as_deref(), Some(cluster.node_address(1).as_str()));
    drop(fresh);
    // Passed: its log goes with the cluster's.
    let _ = std::fs::remove_file(&fresh_log);
}

/// Finding 12: SIGTERM on a leader hands leadership to the first of the
/// leaderQueue and exits; bidding clients see no error. SIGTERM on a backup
/// makes it leave the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_over_and_on_a_backup_leaves() {
    let cluster = start(33, 3, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let bidding = tokio::spawn(bid_until(cluster.client_address(), 1, Arc::clone(&stop)));
    let accepted_before_the_stop = accepted_more_than(&cluster, SETTLE, 10).await;

    let pid = cluster.pid(0).expect("leader pid");
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    eventually("node 1 to lead", SETTLE, || {
        let address = cluster.node_address(1);
        async move {
            node_status(&Network::tcp(), &address, Duration::from_millis(500))
                .await
                .ok()
                .filter(|s| s.role == Role::Leader)
        }
    })
    .await;
    eventually("the old leader to exit", SETTLE, || async move { (!is_alive(pid)).then_some(()) }).await;
    // Bidding goes on under the new leader, then stops.
    accepted_more_than(&cluster, SETTLE, accepted_before_the_stop + 10).await;
    stop.store(true, Ordering::Relaxed);
    let (successes, unanswered) = bidding.await.expect("bidder");
    assert_eq!(unanswered, 0, "every bid was answered across the handover");
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!(view.accepted_bids, successes.len() as u64);

    // A backup told to stop leaves the membership.
    let backup_pid = cluster.pid(2).expect("backup pid");
    unsafe { libc::kill(backup_pid as libc::pid_t, libc::SIGTERM) };
    let leaving = cluster.node_address(2);
    eventually("the backup to leave", SETTLE, || {
        let (leader, leaving) = (cluster.node_address(1), leaving.clone());
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_millis(500)).await.ok()?;
            (!status.membership.contains(&leaving)).then_some(())
        }
    })
    .await;
    eventually("the backup to exit", SETTLE, || async move { (!is_alive(backup_pid)).then_some(()) }).await;
}

/// Findings 9 and 10 over the wire: an oversized Hello is refused before it
/// is read; a request id reused by someone else is not told SUCCESS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hello_is_refused_and_a_reused_request_id_gets_an_error() {
    let cluster = start(34, 2, &[]).await;
    let huge = "x".repeat(4 * 1024 * 1024);
    let refused = lying_backup(&cluster.node_address(0), &huge, 0).await;
    assert!(refused.is_err(), "a 4 MiB hello must be refused");

    let settings = TransportSettings::default();
    let mut connection =
        AuctionConnection::new(&Network::tcp(), &cluster.client_address(), &settings, Duration::from_secs(2))
            .expect("connection");
    let bid = |bidder: &str, amount| Bid {
        name_digest: None,
        auction_id: String::new(),
        bidder: bidder.into(),
        amount,
        client_id: "alice-session".into(),
        request_id: 1,
        at_unix_ms: 0,
    };
    assert_eq!(connection.bid(&bid("alice", 10), &[]).await.expect("bid").verdict, Verdict::Success);
    let mallory = connection.bid(&bid("mallory", 11), &[]).await.expect("answered");
    assert_eq!(mallory.verdict, Verdict::Exception, "{mallory:?}");
    let look_alike = connection.bid(&Bid { request_id: 2, ..bid("\u{202e}ecila", 12) }, &[]).await.expect("answered");
    assert_eq!(look_alike.verdict, Verdict::Exception, "{look_alike:?}");
    match connection.result("").await {
        Ok((view, _)) => assert_eq!((view.highest_bidder.as_str(), view.accepted_bids), ("alice", 1)),
        Err(error) => panic!("{error}"),
    }
}

/// Finding 13: flag mistakes are refused at once, with a clear message.
#[test]
fn flag_mistakes_get_a_clear_error_at_once() {
    let gavel = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_gavel")).args(args).output().expect("run gavel");

    let same_port = gavel(&["server", "--port", "5000", "--client-port", "5000"]);
    assert!(!same_port.status.success());
    assert!(String::from_utf8_lossy(&same_port.stderr).contains("client port"), "{same_port:?}");

    let no_duration = gavel(&["server", "--port", "5400", "--duration", "0s"]);
    assert_eq!(no_duration.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_duration.stderr).contains("longer than 0"), "{no_duration:?}");

    let bad_peers = gavel(&["server", "--port", "5400", "--peers", "5401,localhost"]);
    assert_eq!(bad_peers.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_peers.stderr).contains("expected a port or IP:PORT"), "{bad_peers:?}");

    // Given a deadline of 10 s, the client still says at once that the
    // address is bad, rather than "no server answered".
    let bad_server = gavel(&["result", "--server", "not an address", "--timeout", "10s"]);
    assert!(!bad_server.status.success());
    let said =
        format!("{}{}", String::from_utf8_lossy(&bad_server.stdout), String::from_utf8_lossy(&bad_server.stderr));
    assert!(said.contains("bad address"), "{said}");
}

/// Finding 7, scaled down: after thousands of distinct bidders and sessions
/// (a snapshot of many chunks), a backup restarted empty rejoins while
/// bidding goes on, and no bid goes unanswered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_rejoins_a_large_state_while_bidding_goes_on() {
    const BIDDERS: u64 = 6_000;
    const TASKS: u64 = 8;
    let mut cluster = start(35, 3, &[]).await;
    let server = cluster.client_address();
    // Each bid from its own session and bidder.
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let settings = TransportSettings::default();
            let mut connection = AuctionConnection::new(&Network::tcp(), &server, &settings, Duration::from_secs(2))
                .expect("connection");
            for n in (task..BIDDERS).step_by(TASKS as usize) {
                let bid = Bid {
                    name_digest: None,
                    auction_id: String::new(),
                    bidder: format!("bidder-{n}"),
                    amount: n + 1,
                    client_id: format!("session-{n}"),
                    request_id: 1,
                    at_unix_ms: 0,
                };
                connection.bid(&bid, &[]).await.expect("answered");
            }
        }));
    }
    for task in tasks {
        task.await.expect("bidders");
    }

    cluster.kill(2).expect("kill backup");
    cluster.restart(2).expect("restart empty");
    let stop = Arc::new(AtomicBool::new(false));
    let bidding = tokio::spawn(bid_until(server.clone(), BIDDERS + 1, Arc::clone(&stop)));
    let (leader, rejoining) = (cluster.node_address(0), cluster.node_address(2));
    eventually("the restarted backup to rejoin as a member", SETTLE, || {
        let (leader, rejoining) = (leader.clone(), rejoining.clone());
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_secs(1)).await.ok()?;
            let backup = node_status(&Network::tcp(), &rejoining, Duration::from_secs(1)).await.ok()?;
            (status.membership.contains(&rejoining) && backup.role == Role::Backup).then_some(())
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (successes, unanswered) = bidding.await.expect("bidder");
    assert_eq!(unanswered, 0);
    assert!(!successes.is_empty(), "bids were acknowledged during the rejoin");

    // The rejoined node holds the whole state: it can take over with it.
    let (before, _) = client(&cluster).result("").await.expect("result");
    cluster.kill(0).expect("kill leader");
    cluster.kill(1).expect("kill the other backup");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("takeover"), 2);
    let (after, _) = client(&cluster).result("").await.expect("result");
    assert_eq!(
        (after.highest_amount, after.accepted_bids),
        (before.highest_amount, before.accepted_bids),
        "the rejoined node took over with every acknowledged bid"
    );
}

/// A client whose first request went unanswered does not know whether the
/// service holds its session; its next request starts a new one rather
/// than be refused as coming from an expired session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_first_request_went_unanswered_starts_a_new_session() {
    let ports = ports(36);
    let config = gavel::client::ClientConfig {
        servers: vec![format!("127.0.0.1:{}", ports.client)],
        deadline: Duration::from_millis(300),
        ..Default::default()
    };
    let mut bidder = gavel::client::Client::new(config).expect("client");
    assert!(bidder.bid("", "dora", 5).await.is_err(), "nobody serves yet");

    let _cluster = start(36, 2, &[]).await;
    let outcome = bidder.bid("", "dora", 6).await.expect("answered by the cluster now up");
    assert_eq!(outcome.verdict, Verdict::Success, "{outcome:?}");
}

/// A client whose first request was refused (it never opened a session)
/// goes on bidding: its next request starts a new session rather than being
/// refused as coming from an expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_first_request_was_refused_goes_on_bidding() {
    let cluster = start(39, 2, &[]).await;
    let mut bidder = client(&cluster);
    let refused = bidder.bid("no-such-auction", "eve", 5).await.expect("answered");
    assert_eq!(refused.verdict, Verdict::Exception);
    let next = bidder.bid("", "eve", 5).await.expect("answered");
    assert_eq!(next.verdict, Verdict::Success, "{next:?}");
}

/// Finding 12, the drain: a bid in flight when the leader is told to stop
/// is answered by that leader once it commits, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_answers_the_bid_in_flight() {
    let mut cluster = start(40, 3, &["--ack-timeout", "3s"]).await;
    let settings = TransportSettings::default();
    let mut connection =
        AuctionConnection::new(&Network::tcp(), &cluster.client_address(), &settings, Duration::from_secs(8))
            .expect("connection");
    assert_eq!(
        connection.bid(&Bid { request_id: 1, ..drain_bid(1) }, &[]).await.expect("bid").verdict,
        Verdict::Success
    );

    // A frozen backup holds the next bid's commit.
    cluster.freeze(2).expect("freeze");
    let leader_address = cluster.node_address(0);
    let last_before =
        node_status(&Network::tcp(), &leader_address, Duration::from_secs(1)).await.expect("status").last.index;
    let in_flight = tokio::spawn(async move { connection.bid(&Bid { request_id: 2, ..drain_bid(2) }, &[]).await });
    eventually("the leader to append the bid", SETTLE, || {
        let leader_address = leader_address.clone();
        async move {
            let status = node_status(&Network::tcp(), &leader_address, Duration::from_secs(1)).await.ok()?;
            (status.last.index > last_before).then_some(())
        }
    })
    .await;
    assert!(!in_flight.is_finished(), "the bid waits for the frozen backup");
    let pid = cluster.pid(0).expect("leader pid");
    let leader_log = cluster.log_file(0).expect("the leader's log");
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    eventually("the leader to start stopping", SETTLE, || {
        let said = std::fs::read_to_string(&leader_log).unwrap_or_default();
        async move { said.contains("stopping: handing leadership over").then_some(()) }
    })
    .await;
    cluster.thaw(2).expect("thaw");

    // One attempt, no retry: the stopping leader itself answered.
    let outcome = in_flight.await.expect("task").expect("answered by the stopping leader");
    assert_eq!(outcome.verdict, Verdict::Success);
}

fn drain_bid(amount: u64) -> Bid {
    Bid {
        name_digest: None,
        auction_id: String::new(),
        bidder: "dana".into(),
        amount,
        client_id: "drain".into(),
        request_id: 0,
        at_unix_ms: 0,
    }
}
