//! The membership record: a backup removed while it was frozen (SIGSTOP)
//! wakes up after the leader and the other backup were killed, and finds
//! nobody. Its own view still counts it a member, but it lacks every bid
//! acknowledged since its removal: it must never lead, nor serve that stale
//! state. With data directories, the members that died come back from their
//! disks with every acknowledged bid. A data directory belongs to one node
//! and one process at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gavel::auction::Verdict;
use gavel::client::{Client, ClientConfig, node_status};
use gavel::tools::cluster::LocalCluster;
use gavel::tools::rogue::RogueStream;
use gavel::transport::Network;

use common::{accepted_amounts, client, eventually, member_remove, membership, spawn_bidders, spec};

const SETTLE: Duration = Duration::from_secs(15);
/// The finding's timeout: a backup that acks nothing for 1 s is removed.
const ACK_TIMEOUT: &[&str] = &["--ack-timeout", "1s"];
/// Long enough never to fire in a test: only an operator removes a backup.
const NO_ACK_TIMEOUT: &[&str] = &["--ack-timeout", "30s"];
/// How long bids go on without the frozen backup.
const BIDDING_WITHOUT_IT: Duration = Duration::from_millis(1500);
/// How long the client port is watched once the stale backup is thawed.
const WATCH_AFTER_THAW: Duration = Duration::from_secs(3);
/// What a node that finds itself removed says.
const NOT_IN_THE_RECORD: &str = "not in the membership record";

// The nodes: 0 leads, 1 is first in the leaderQueue (the one frozen), 2
// the other backup.
const LEADER: usize = 0;
const FROZEN: usize = 1;
const OTHER: usize = 2;

/// A data directory of the test's own, removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new(slot: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("gavel-record-{}-slot{slot}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(slot: u16, nodes: usize, server_args: &[&str], data: Option<&DataDir>) -> LocalCluster {
    let mut spec = spec(slot, nodes, server_args);
    spec.data_dir = data.map(|data| data.0.clone());
    LocalCluster::start(spec).await.expect("cluster starts")
}

fn log_says(log: &Path, words: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(words))
}

/// A second process under the frozen backup's name: it opens the
/// replication stream on the leader's node port, says Hello as `name`,
/// and acks whatever arrives until the stream ends. Returns the highest
/// index it acked (`None` if the leader would not open the stream).
fn spawn_impostor(leader: String, name: String) -> tokio::task::JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        let mut stream = RogueStream::open(&Network::tcp(), &leader, &name, Duration::from_secs(1)).await.ok()?;
        let mut acked = 0;
        while let Some(index) = stream.read().await {
            if index > acked {
                acked = index;
                if !stream.ack(index).await {
                    break;
                }
            }
        }
        Some(acked)
    })
}

/// How node 1 was taken out of the membership while it was frozen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// The leader removed it once it had acked nothing for `--ack-timeout`.
    AckTimeout,
    /// An operator asked the leader (`gavel member remove`).
    Operator,
}

/// What the scenario left: the cluster (nodes 0 and 2 killed, node 1
/// thawed) and the bids acknowledged before the kill, sorted.
struct AfterTheThaw {
    cluster: LocalCluster,
    acknowledged: Vec<u64>,
}

/// The finding: with 4 bidders at work, node 1 (first of the leaderQueue)
/// is frozen and removed; bids go on for 1.5 s with node 2 alone (an
/// impostor acking under node 1's name, if `impostor`); the leader and
/// node 2 are killed and node 1 is thawed. Then, for 3 s, the client port
/// must serve nothing stale and node 1 must not lead; node 1 must say it
/// is not in the membership record.
async fn a_removed_backup_wakes_up_alone(
    slot: u16,
    data: Option<&DataDir>,
    removal: Removal,
    impostor: bool,
) -> AfterTheThaw {
    let server_args = match removal {
        Removal::AckTimeout => ACK_TIMEOUT,
        Removal::Operator => NO_ACK_TIMEOUT,
    };
    let mut cluster = start(slot, 3, server_args, data).await;
    let addresses: Vec<String> = (0..3).map(|i| cluster.node_address(i)).collect();
    assert_eq!(membership(&cluster, LEADER).await, Some(addresses.clone()), "the leaderQueue is 1, 2");
    let frozen = cluster.node_address(FROZEN);

    let stop = Arc::new(AtomicBool::new(false));
    let bidders = spawn_bidders(cluster.network().clone(), cluster.client_address(), 4, Arc::clone(&stop));
    eventually("bids to be accepted by all three nodes", SETTLE, || {
        let mut reader = client(&cluster);
        async move { reader.result("").await.ok().filter(|(view, _)| view.accepted_bids >= 20) }
    })
    .await;

    // 1. Node 1 freezes and is removed; the leader goes on with node 2.
    cluster.freeze(FROZEN).expect("freeze node 1");
    if removal == Removal::Operator {
        let (removed, said) = member_remove(&cluster, &frozen, &[cluster.node_address(LEADER)], &[]);
        assert!(removed, "{said}");
    }
    eventually("the leader to drop node 1 from its membership", SETTLE, || {
        let (cluster, frozen) = (&cluster, frozen.clone());
        async move { membership(cluster, LEADER).await.filter(|members| !members.contains(&frozen)) }
    })
    .await;
    let (at_removal, _) = client(&cluster).result("").await.expect("result");
    let impostor = impostor.then(|| spawn_impostor(cluster.node_address(LEADER), frozen.clone()));

    // 2. Bids go on without node 1, then the leader and node 2 die.
    tokio::time::sleep(BIDDING_WITHOUT_IT).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = bidders.await.expect("bidders");
    let highest = acknowledged.last().copied().expect("some bids were acknowledged");
    assert!(
        highest > at_removal.highest_amount,
        "bids were acknowledged after node 1's removal (at {}): up to {highest}",
        at_removal.highest_amount
    );
    let members_at_kill = membership(&cluster, LEADER).await;
    cluster.kill(LEADER).expect("kill the leader");
    cluster.kill(OTHER).expect("kill node 2");
    let impostor_acked = match impostor {
        Some(task) => task.await.expect("impostor"),
        None => None,
    };

    // 3. Node 1 wakes up alone, holding only what it had when it froze.
    cluster.thaw(FROZEN).expect("thaw node 1");
    let seen = watch_the_client_port(&cluster, &acknowledged, WATCH_AFTER_THAW).await;
    assert!(
        seen.node_1_led_after.is_none() && seen.stale.is_none(),
        "{} bids acknowledged (the highest {highest}; {} accepted when node 1 was removed); after the thaw, node 1 \
         led: {:?}; stale read: {:?} ({} reads answered of {} polls; the leader's membership at the kill: {:?}; \
         the impostor acked up to {:?})",
        acknowledged.len(),
        at_removal.accepted_bids,
        seen.node_1_led_after,
        seen.stale,
        seen.reads,
        seen.polls,
        members_at_kill,
        impostor_acked,
    );
    let log = cluster.log_file(FROZEN).expect("log file");
    eventually("node 1 to say it is not in the membership record", SETTLE, || {
        let log = log.clone();
        async move { log_says(&log, NOT_IN_THE_RECORD).then_some(()) }
    })
    .await;
    AfterTheThaw { cluster, acknowledged }
}

/// A read of the client port that lacked acknowledged bids.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the assertion's message
struct StaleRead {
    after: Duration,
    highest_amount: u64,
    accepted_bids: u64,
    answered_by: String,
}

/// What the client port showed while it was watched.
struct Watched {
    polls: usize,
    reads: usize,
    /// When node 1 first held the client port as the leader.
    node_1_led_after: Option<Duration>,
    /// The first read that lacked acknowledged bids.
    stale: Option<StaleRead>,
}

/// Polls the client port for `window`: who leads there, and whether a
/// read answered there holds every acknowledged bid (they are all in the
/// default auction, so its highest amount and accepted count show it).
async fn watch_the_client_port(cluster: &LocalCluster, acknowledged: &[u64], window: Duration) -> Watched {
    let highest = acknowledged.last().copied().unwrap_or(0);
    let config = ClientConfig {
        servers: vec![cluster.client_address()],
        deadline: Duration::from_millis(300),
        attempt_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let mut reader = Client::new(config).expect("client");
    let mut seen = Watched { polls: 0, reads: 0, node_1_led_after: None, stale: None };
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    while started.elapsed() < window {
        ticks.tick().await;
        seen.polls += 1;
        if seen.node_1_led_after.is_none() && cluster.leader().await == Some(FROZEN) {
            seen.node_1_led_after = Some(started.elapsed());
        }
        if let Ok((view, answered_by)) = reader.result("").await {
            seen.reads += 1;
            let lacks_bids = view.highest_amount < highest || view.accepted_bids < acknowledged.len() as u64;
            if lacks_bids && seen.stale.is_none() {
                seen.stale = Some(StaleRead {
                    after: started.elapsed(),
                    highest_amount: view.highest_amount,
                    accepted_bids: view.accepted_bids,
                    answered_by,
                });
            }
        }
    }
    seen
}

/// Restarts the members that died from their disks: one of them leads,
/// not node 1, with every acknowledged bid.
async fn the_members_come_back_with_every_acknowledged_bid(after: AfterTheThaw) {
    let AfterTheThaw { mut cluster, acknowledged } = after;
    cluster.restart(LEADER).expect("restart node 0");
    cluster.restart(OTHER).expect("restart node 2");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader once the members are back");
    let accepted = accepted_amounts(&cluster).await;
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|amount| !accepted.contains(amount)).collect();
    assert!(
        leader != FROZEN && lost.is_empty(),
        "node {leader} leads; {} acknowledged bids lost of {} (the first: {:?})",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(20)]
    );
}

/// In memory: node 1, removed by the ack timeout while frozen, wakes up to
/// find the leader and node 2 dead; it neither leads nor serves its stale
/// state (the cluster simply has no leader), and says it is not in the
/// membership record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_removed_while_frozen_never_leads_when_it_wakes_up_alone() {
    let after = a_removed_backup_wakes_up_alone(60, None, Removal::AckTimeout, false).await;
    assert_eq!(after.cluster.leader().await, None, "nobody leads");
}

/// With data directories: the same, then nodes 0 and 2 restart from their
/// disks; one of them leads and every acknowledged bid is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_disks_the_members_that_died_come_back_with_every_bid_the_removed_backup_lacks() {
    let data = DataDir::new(61);
    let after = a_removed_backup_wakes_up_alone(61, Some(&data), Removal::AckTimeout, false).await;
    the_members_come_back_with_every_acknowledged_bid(after).await;
}

/// With data directories, node 1 removed by an operator (`gavel member
/// remove`) while frozen rather than by the ack timeout (30 s here, so it
/// never fires): node 1 never leads, and nodes 0 and 2 restarted from their
/// disks hold every acknowledged bid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_an_operator_removed_while_frozen_never_leads_and_the_members_keep_every_bid() {
    let data = DataDir::new(62);
    let after = a_removed_backup_wakes_up_alone(62, Some(&data), Removal::Operator, false).await;
    the_members_come_back_with_every_acknowledged_bid(after).await;
}

/// In memory: while node 1 is frozen and removed, a second process joins
/// under its name and acks everything; when node 1 wakes up alone, that
/// borrowed name does not make it a member: it never leads and nothing
/// stale is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_joining_under_a_frozen_backups_name_does_not_let_it_lead_when_it_wakes_up() {
    let after = a_removed_backup_wakes_up_alone(63, None, Removal::AckTimeout, true).await;
    assert_eq!(after.cluster.leader().await, None, "nobody leads");
}

/// With data directories, the impostor of the frozen node 1 as above; node
/// 1 never leads, and nodes 0 and 2 restarted from their disks hold every
/// acknowledged bid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_disks_an_impostor_of_a_frozen_backup_costs_no_acknowledged_bid() {
    let data = DataDir::new(64);
    let after = a_removed_backup_wakes_up_alone(64, Some(&data), Removal::AckTimeout, true).await;
    the_members_come_back_with_every_acknowledged_bid(after).await;
}

/// A `gavel server` started by hand, killed when the test ends; its stderr
/// goes to a file.
struct Server {
    child: Child,
    stderr: PathBuf,
}

impl Server {
    fn start(port: u16, cluster: &LocalCluster, data_dir: &Path, stderr: PathBuf) -> Self {
        let peers: Vec<String> = (0..cluster.len()).map(|i| cluster.node_address(i)).collect();
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["server", "--port", &port.to_string()])
            .args(["--client-port", &cluster.client_port().to_string()])
            .args(["--peers", &peers.join(",")])
            .args(ACK_TIMEOUT)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--record-dir")
            .arg(cluster.record_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("the server starts");
        Server { child, stderr }
    }

    /// Waits for the process to exit; returns its status and stderr.
    async fn exit(&mut self, what: &str, deadline: Duration) -> (ExitStatus, String) {
        let child = &mut self.child;
        let status = eventually(what, deadline, || {
            let exited = child.try_wait().ok().flatten();
            async move { exited }
        })
        .await;
        (status, std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second `gavel server` given the data directory of a running node
/// exits at once, saying the directory is in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_data_directory_in_use_exits_at_once() {
    let data = DataDir::new(65);
    let cluster = start(65, 2, ACK_TIMEOUT, Some(&data)).await;
    assert_eq!(client(&cluster).bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);

    let in_use = cluster.data_dir(LEADER).expect("data dir");
    let mut second = Server::start(common::ports(65).base + 2, &cluster, &in_use, data.0.join("second.log"));
    let (status, stderr) = second.exit("the second server to exit", Duration::from_secs(5)).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
}

/// The data directory of a dead node, given to a server on another port,
/// is refused: it was written by another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_written_by_one_node_does_not_start_another() {
    let data = DataDir::new(66);
    let mut cluster = start(66, 2, ACK_TIMEOUT, Some(&data)).await;
    assert_eq!(client(&cluster).bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    cluster.kill(1).expect("kill node 1");

    let written_by_node_1 = cluster.data_dir(1).expect("data dir");
    let mut other = Server::start(common::ports(66).base + 2, &cluster, &written_by_node_1, data.0.join("other.log"));
    let (status, stderr) = other.exit("the server to exit", Duration::from_secs(5)).await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(stderr.contains("was written by node"), "{stderr}");
}

/// A listed member that misses the successor's probe (frozen for a moment)
/// stays in the takeover record: it may hold every committed entry, and be
/// the one left to lead. The new leader waits for it; once it is back, it
/// leads with every bid when the new leader dies in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_misses_the_takeover_probe_stays_in_the_record_and_can_lead_next() {
    let mut cluster = start(67, 3, NO_ACK_TIMEOUT, None).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    let successor = FROZEN;
    let late = OTHER;
    cluster.freeze(late).expect("freeze the last backup");
    cluster.kill(LEADER).expect("kill the leader");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a new leader");
    assert_eq!(leader, successor);
    let status =
        node_status(&Network::tcp(), &cluster.node_address(successor), Duration::from_secs(1)).await.expect("status");
    let listed = status.record.expect("the new leader's record").members;
    assert!(listed.contains(&cluster.node_address(late)), "the frozen member stays listed: {listed:?}");

    // A bid waits for it; it commits once the member is back and acks.
    let bid = tokio::spawn(async move { bidder.bid("", "bo", 20).await });
    cluster.thaw(late).expect("thaw");
    let outcome = tokio::time::timeout(SETTLE, bid).await.expect("the bid is answered").expect("task");
    assert_eq!(outcome.expect("bid").verdict, Verdict::Success);

    cluster.kill(successor).expect("kill the new leader");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("a leader"), late);
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (20, "bo"));
}
