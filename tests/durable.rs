//! Durability: nodes with a data directory keep every acknowledged bid
//! through the SIGKILL of every node, restarted in any order; a node that
//! may lack committed entries never leads; a torn log tail is recovered and
//! a damaged record in the middle of the log stops the node with a clear
//! message.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gavel::auction::Verdict;
use gavel::client::{Client, node_status};
use gavel::replication::Role;
use gavel::tools::cluster::LocalCluster;
use gavel::transport::Network;

use common::{accepted_amounts, client, eventually, member_remove, spawn_bidders_counted, spec};

/// How long a bid is retried: the bidders go on through the kill of every
/// node and their restart.
const FULL_RESTART_DEADLINE: Duration = Duration::from_secs(60);

const SETTLE: Duration = Duration::from_secs(15);

/// A data directory of the test's own, removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new(slot: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("gavel-durable-{}-slot{slot}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_durable(slot: u16, nodes: usize, data: &DataDir) -> LocalCluster {
    let mut spec = spec(slot, nodes, &["--ack-timeout", "500ms", "--leader-timeout", "500ms"]);
    spec.data_dir = Some(data.0.clone());
    LocalCluster::start(spec).await.expect("cluster starts")
}

fn kill_all(cluster: &mut LocalCluster) {
    cluster.kill_all().expect("kill every node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_bid_survives_the_kill_of_every_node_restarted_in_any_order() {
    let data = DataDir::new(43);
    let mut cluster = start_durable(43, 3, &data).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged_count = Arc::new(AtomicU64::new(0));
    let bidders = spawn_bidders_counted(
        Network::tcp(),
        cluster.client_address(),
        4,
        Arc::clone(&stop),
        FULL_RESTART_DEADLINE,
        Arc::clone(&acknowledged_count),
    );

    let mut accepted_before = 0;
    for order in [[2, 0, 1], [1, 2, 0], [0, 1, 2]] {
        // Bids flow (more since the last restart), then every node dies at
        // once, mid-stream.
        let (view, _) = eventually("bids to be accepted", SETTLE, || {
            let mut reader = client(&cluster);
            async move { reader.result("").await.ok().filter(|(view, _)| view.accepted_bids > accepted_before + 20) }
        })
        .await;
        accepted_before = view.accepted_bids;
        kill_all(&mut cluster);
        for i in order {
            cluster.restart(i).expect("restart");
        }
        cluster.wait_for_leader(SETTLE).await.expect("a leader after the restart");
    }
    // The bidders carry on through every restart: more bids are acknowledged
    // after the last one (over 60 in all), then they stop.
    let acknowledged_by_the_last_restart = acknowledged_count.load(Ordering::Relaxed);
    eventually("more than 60 bids acknowledged, some after the last restart", SETTLE, || {
        let acknowledged = acknowledged_count.load(Ordering::Relaxed);
        let enough = acknowledged > acknowledged_by_the_last_restart.max(60);
        async move { enough.then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = bidders.await.expect("bidders");
    assert!(!acknowledged.is_empty(), "some bids were acknowledged");

    assert!(acknowledged.len() > 60, "bids were acknowledged in every round: {}", acknowledged.len());
    let accepted = accepted_amounts(&cluster).await;
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|amount| !accepted.contains(amount)).collect();
    assert!(lost.is_empty(), "acknowledged bids lost: {lost:?} of {}", acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_before_the_others_died_and_restarted_first_does_not_lead() {
    let data = DataDir::new(44);
    let mut cluster = start_durable(44, 3, &data).await;
    let mut bidder = client(&cluster);
    bidder.bid("", "ann", 10).await.expect("bid");
    // Node 2 dies and is removed; bids go on without it.
    cluster.kill(2).expect("kill node 2");
    let survivors = [cluster.node_address(0), cluster.node_address(1)];
    eventually("node 2 to be removed", SETTLE, || {
        let leader = cluster.node_address(0);
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_millis(500)).await.ok()?;
            (status.membership.len() == 2).then_some(())
        }
    })
    .await;
    let late = bidder.bid("", "bea", 20).await.expect("bid");
    assert_eq!(late.verdict, Verdict::Success);
    kill_all(&mut cluster);

    // Node 2 comes back first, alone: its log says it is a member, but it
    // may lack committed entries (bea's bid), so it must not lead. The
    // membership record, stored before bea's bid committed, does not list
    // it: it says so, and stands aside.
    cluster.restart(2).expect("restart node 2");
    let log = cluster.log_file(2).expect("log file");
    eventually("node 2 to say it is not in the record", SETTLE, || {
        let log = log.clone();
        async move { log_says(&log, "not in the membership record").then_some(()) }
    })
    .await;
    let status =
        node_status(&Network::tcp(), &cluster.node_address(2), Duration::from_secs(1)).await.expect("node 2 answers");
    assert_ne!(status.role, Role::Leader);

    // The members return: one of them leads, and bea's bid is there.
    cluster.restart(1).expect("restart node 1");
    cluster.restart(0).expect("restart node 0");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader");
    assert!(survivors.contains(&cluster.node_address(leader)), "a survivor leads, not node 2");
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (20, "bea"));
}

/// The segments of a node's log, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .collect();
    segments.sort();
    segments
}

fn log_says(log: &Path, words: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(words))
}

/// A two-node cluster with 20 bids, whose backup is then killed: returns
/// the cluster, a bidder, and the backup's last log segment, as it was
/// when it died.
async fn twenty_bids_then_the_backup_dies(slot: u16, data: &DataDir) -> (LocalCluster, Client, PathBuf) {
    let mut cluster = start_durable(slot, 2, data).await;
    let mut bidder = client(&cluster);
    for amount in 1..=20 {
        bidder.bid("", "ann", amount).await.expect("bid");
    }
    cluster.kill(1).expect("kill the backup");
    let dir = cluster.data_dir(1).expect("data dir");
    let last = segments(&dir).pop().expect("a segment");
    (cluster, bidder, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_tail_is_cut_away_and_the_node_rejoins() {
    let data = DataDir::new(45);
    let (mut cluster, mut bidder, last) = twenty_bids_then_the_backup_dies(45, &data).await;
    // A write cut short by the crash: half a record's header at the end.
    let mut bytes = std::fs::read(&last).expect("segment");
    bytes.extend_from_slice(&[0x2a, 0, 0, 0, 0x99, 0x88]);
    std::fs::write(&last, bytes).expect("tear the tail");

    cluster.restart(1).expect("restart");
    cluster.wait_until_settled(1, SETTLE).await.expect("the node rejoins");
    let log = cluster.log_file(1).expect("log");
    assert!(log_says(&log, "torn"), "the node says it cut a torn tail");
    assert_eq!(bidder.bid("", "ann", 21).await.expect("bid").verdict, Verdict::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_the_middle_of_the_log_stops_the_node_with_a_clear_message() {
    let data = DataDir::new(46);
    let (cluster, _bidder, last) = twenty_bids_then_the_backup_dies(46, &data).await;
    // Flip a byte in the middle of the log: records follow it, so this is
    // damage, not a torn write.
    let dir = last.parent().expect("data dir").to_path_buf();
    let mut bytes = std::fs::read(&last).expect("segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&last, bytes).expect("damage the log");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["server", "--port", &(common::ports(46).base + 1).to_string()])
        .args(["--client-port", &common::ports(46).client.to_string()])
        .args(["--peers", &cluster.node_address(0)])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--record-dir")
        .arg(cluster.record_dir())
        .output()
        .expect("the server runs");
    assert!(!output.status.success(), "it refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = last.file_name().expect("name").to_string_lossy().to_string();
    assert!(stderr.contains(&file) && stderr.contains("corrupt at byte"), "{stderr}");
}

/// The record lists the members that hold every committed entry: after a
/// full restart they lead at once, without waiting for a member whose disk
/// is gone (it comes back, if ever, as a new member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_restart_the_listed_members_lead_without_waiting_for_one_whose_disk_is_gone() {
    let data = DataDir::new(58);
    let mut cluster = start_durable(58, 3, &data).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    kill_all(&mut cluster);
    std::fs::remove_dir_all(cluster.data_dir(2).expect("data dir")).expect("wipe node 2");
    cluster.restart(0).expect("restart node 0");
    cluster.restart(1).expect("restart node 1");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader without node 2");
    assert!(leader < 2);
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (10, "ann"));
    let status =
        node_status(&Network::tcp(), &cluster.node_address(leader), Duration::from_secs(1)).await.expect("status");
    assert!(!status.membership.contains(&cluster.node_address(2)), "{:?}", status.membership);
    // The leader's status shows the record it stored: the members that
    // gate commits, the same as its view once a change is stored.
    let leader_address = cluster.node_address(leader);
    eventually("the leader to show a record listing its view", SETTLE, || {
        let leader_address = leader_address.clone();
        async move {
            let status = node_status(&Network::tcp(), &leader_address, Duration::from_millis(500)).await.ok()?;
            (status.record?.members == status.membership).then_some(())
        }
    })
    .await;
}

/// Another cluster ran on the client port while this one was down, and is
/// gone: its record names none of this cluster's members, and none of its
/// own runs or keeps state. The durable cluster comes back with its bids
/// (it stood aside for good before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_cluster_comes_back_over_the_record_of_a_cluster_that_ran_in_between_and_is_gone() {
    let data = DataDir::new(59);
    let mut cluster = start_durable(59, 3, &data).await;
    assert_eq!(client(&cluster).bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    kill_all(&mut cluster);

    // Its node has no state, and the record lists members that keep
    // theirs: only an operator's word starts another cluster here.
    let mut between = spec(59, 1, &["--new-cluster"]);
    between.base_port += 5;
    between.record_dir = Some(cluster.record_dir().to_path_buf());
    let between = LocalCluster::start(between).await.expect("the other cluster starts");
    assert_eq!(client(&between).bid("", "bo", 99).await.expect("bid").verdict, Verdict::Success);
    drop(between);

    for i in 0..3 {
        cluster.restart(i).expect("restart");
    }
    cluster.wait_for_leader(SETTLE).await.expect("a leader of the durable cluster");
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (10, "ann"));
}

/// A process killed and reaped when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The only listed member, restarted by mistake without its data
/// directory, does not start a new cluster over its own state (which its
/// note beside the record still points to): it stands aside, and the node
/// restarted from its disk leads with every bid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_listed_member_restarted_without_its_disk_does_not_start_over() {
    let data = DataDir::new(56);
    let mut cluster = start_durable(56, 2, &data).await;
    let mut bidder = client(&cluster);
    cluster.kill(1).expect("kill the backup");
    eventually("the backup to be removed", SETTLE, || {
        let leader = cluster.node_address(0);
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_millis(500)).await.ok()?;
            (status.record?.members.len() == 1).then_some(())
        }
    })
    .await;
    assert_eq!(bidder.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    kill_all(&mut cluster);

    let log = data.0.join("without-disk.log");
    let without_disk = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["server", "--port", &common::ports(56).base.to_string()])
            .args(["--client-port", &common::ports(56).client.to_string()])
            .args(["--peers", &cluster.node_address(1)])
            .arg("--record-dir")
            .arg(cluster.record_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the server starts"),
    );
    eventually("the node without its disk to stand aside", SETTLE, || {
        let log = log.clone();
        async move { log_says(&log, "members of the record may still hold").then_some(()) }
    })
    .await;
    let status =
        node_status(&Network::tcp(), &cluster.node_address(0), Duration::from_secs(1)).await.expect("it answers");
    assert_ne!(status.role, Role::Leader, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    drop(without_disk);

    cluster.restart(0).expect("restart node 0 from its disk");
    cluster.wait_for_leader(SETTLE).await.expect("a leader");
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (10, "ann"));
}

/// With no leader running, `gavel member remove` changes the record
/// itself (taking the client port while it writes): the next leader does
/// not wait for the removed member. It refuses a removal that would leave
/// no listed member that keeps its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_leader_an_operator_removes_a_member_from_the_record() {
    let data = DataDir::new(57);
    let mut cluster = start_durable(57, 3, &data).await;
    assert_eq!(client(&cluster).bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    kill_all(&mut cluster);
    std::fs::remove_dir_all(cluster.data_dir(0).expect("data dir")).expect("wipe node 0");

    let nodes: Vec<String> = (0..3).map(|i| cluster.node_address(i)).collect();
    let remove = |member: &str| member_remove(&cluster, member, &nodes, &[]);
    let (removed, said) = remove(&nodes[1]);
    assert!(removed && said.contains("membership record"), "{said}");
    // Node 0's disk is gone: node 2 is the last listed member with state.
    let (removed, said) = remove(&nodes[2]);
    assert!(!removed && said.contains("nobody who holds"), "{said}");

    cluster.restart(2).expect("restart node 2");
    assert_eq!(cluster.wait_for_leader(SETTLE).await.expect("a leader"), 2, "the listed member with state leads");
    let status = node_status(&Network::tcp(), &nodes[2], Duration::from_secs(1)).await.expect("status");
    let listed = status.record.expect("a record").members;
    assert!(!listed.contains(&nodes[1]), "the removed member is not expected: {listed:?}");
    // Node 1 comes back as a learner, and is listed again once caught up.
    cluster.restart(1).expect("restart node 1");
    eventually("node 1 to be listed again", SETTLE, || {
        let (leader, node_1) = (nodes[2].clone(), nodes[1].clone());
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_millis(500)).await.ok()?;
            status.record?.members.contains(&node_1).then_some(())
        }
    })
    .await;
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (10, "ann"));
}

/// Where no record can be read while data directories exist (a host whose
/// temporary directory was cleared), a recovered node keeps the wait for
/// every member it knows, until an operator removes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_restart_a_member_whose_disk_is_gone_is_waited_for_until_an_operator_removes_it() {
    let data = DataDir::new(47);
    let mut cluster = start_durable(47, 3, &data).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    kill_all(&mut cluster);
    // Node 2's disk is gone for good, and so is the record.
    std::fs::remove_dir_all(cluster.data_dir(2).expect("data dir")).expect("wipe node 2");
    std::fs::remove_dir_all(cluster.record_dir()).expect("clear the record's directory");
    cluster.restart(0).expect("restart node 0");
    cluster.restart(1).expect("restart node 1");
    let log = cluster.log_file(0).expect("log");
    let gone = cluster.node_address(2);
    eventually("node 0 to say it waits for node 2", SETTLE, || {
        let (log, gone) = (log.clone(), gone.clone());
        async move {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines().any(|line| line.contains("waiting for these members") && line.contains(&gone)).then_some(())
        }
    })
    .await;
    assert_eq!(cluster.leader().await, None, "nobody leads while a member may hold what the others lack");
    // A client asking the nodes learns which wait, and why.
    let status = node_status(&Network::tcp(), &cluster.node_address(0), Duration::from_secs(1)).await.expect("status");
    let why = status.waiting.expect("node 0 says it waits");
    assert!(why.contains("waiting for these members") && why.contains(&gone), "{why}");
    let servers = format!("{},{}", cluster.node_address(0), cluster.node_address(1));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["status", "--server", &servers])
        .output()
        .expect("gavel status runs");
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(3), "no leader: unreachable, {said}");
    assert!(said.contains("waiting:") && said.contains(&gone), "{said}");
    // So does a client command that finds no leader: unreachable, and why.
    let servers = format!("127.0.0.1:{},{servers}", common::ports(47).client);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["bid", "5", "--id", "ann", "--timeout", "1s", "--server", &servers])
        .output()
        .expect("gavel bid runs");
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(3), "no leader: unreachable, {said}");
    assert!(said.contains("these nodes wait") && said.contains(&gone), "{said}");

    let survivors = [cluster.node_address(0), cluster.node_address(1)];
    let (removed, said) = member_remove(&cluster, &gone, &survivors, &[]);
    assert!(removed, "{said}");
    assert!(said.contains("no longer waits"), "{said}");
    let leader = cluster.wait_for_leader(SETTLE).await.expect("a leader once released");
    assert!(leader < 2);
    let (view, _) = client(&cluster).result("").await.expect("result");
    assert_eq!((view.highest_amount, view.highest_bidder.as_str()), (10, "ann"));

    // The new leader does not count the released node as a member.
    let status =
        node_status(&Network::tcp(), &cluster.node_address(leader), Duration::from_secs(1)).await.expect("status");
    assert!(!status.membership.contains(&gone), "{:?}", status.membership);
    assert_eq!(status.waiting, None, "a leader waits for nobody");
    // With a leader, a removal is an entry of the log, answered once
    // committed; a node that is no member is said to be none.
    let other = cluster.node_address(1 - leader);
    eventually("the other survivor to be a member", SETTLE, || {
        let (leader, other) = (cluster.node_address(leader), other.clone());
        async move {
            let status = node_status(&Network::tcp(), &leader, Duration::from_millis(500)).await.ok()?;
            status.membership.contains(&other).then_some(())
        }
    })
    .await;
    let (removed, said) = member_remove(&cluster, &other, &[cluster.node_address(leader)], &[]);
    assert!(removed && said.contains("removed from the membership at index"), "{said}");
    let (_, said) = member_remove(&cluster, &gone, &[cluster.node_address(leader)], &[]);
    assert!(said.contains("is not a member"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_snapshot_often_recover_from_snapshot_and_log_and_rejoin() {
    let data = DataDir::new(15);
    let mut spec = spec(15, 3, &["--ack-timeout", "500ms", "--leader-timeout", "500ms", "--snapshot-every", "40"]);
    spec.data_dir = Some(data.0.clone());
    let mut cluster = LocalCluster::start(spec).await.expect("cluster starts");
    let stop = Arc::new(AtomicBool::new(false));
    let bidders = spawn_bidders_counted(
        Network::tcp(),
        cluster.client_address(),
        4,
        Arc::clone(&stop),
        FULL_RESTART_DEADLINE,
        Arc::default(),
    );
    let accepted_at_least = |cluster: &LocalCluster, count: u64| {
        let mut reader = client(cluster);
        async move { reader.result("").await.ok().filter(|(view, _)| view.accepted_bids >= count) }
    };
    eventually("bids past a few snapshots", SETTLE, || accepted_at_least(&cluster, 200)).await;
    // A backup away for a while comes back from its snapshot and log, and
    // rejoins by the suffix it lacks.
    cluster.kill(2).expect("kill a backup");
    eventually("more bids without it", SETTLE, || accepted_at_least(&cluster, 400)).await;
    cluster.restart(2).expect("restart it");
    cluster.wait_until_settled(2, SETTLE).await.expect("it rejoins");
    eventually("more bids with it", SETTLE, || accepted_at_least(&cluster, 600)).await;
    // Then every node dies and comes back from snapshot and log.
    kill_all(&mut cluster);
    for i in [1, 2, 0] {
        cluster.restart(i).expect("restart");
    }
    cluster.wait_for_leader(SETTLE).await.expect("a leader");
    eventually("bids after the restart", SETTLE, || accepted_at_least(&cluster, 700)).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = bidders.await.expect("bidders");

    for i in 0..3 {
        let dir = cluster.data_dir(i).expect("data dir");
        // A snapshot being written sits beside the one it replaces until
        // that one is removed: once the writes settle, one is kept.
        eventually(&format!("node {i} to keep only its latest snapshot"), SETTLE, || {
            let snapshots = std::fs::read_dir(&dir).expect("data dir").filter_map(Result::ok);
            let snapshots = snapshots.filter(|entry| entry.file_name().to_string_lossy().ends_with(".snap")).count();
            async move { (snapshots == 1).then_some(()) }
        })
        .await;
        let log = cluster.log_file(i).expect("log");
        assert!(log_says(&log, "recovered state from disk"), "node {i}");
    }
    let accepted = accepted_amounts(&cluster).await;
    let lost: Vec<u64> = acknowledged.iter().copied().filter(|amount| !accepted.contains(amount)).collect();
    assert!(lost.is_empty(), "acknowledged bids lost: {lost:?} of {}", acknowledged.len());
}

/// Copies a directory tree (the fixtures hold files and folders only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// tests/fixtures/data-before-placement was written by the commit before
/// bid outcomes carried their revision: one node (port 24500, slot 75),
/// snapshot every 4 entries, nine bids from sessions `fixture-<bidder>`
/// (a snapshot of format 0 at index 8, the log after it). This gavel
/// recovers it whole: the bids in the snapshot and in the log, in order.
/// (Its sessions have long expired in log time, so retries are not replayed
/// here; reading a format-0 dedup table is tested in transport::convert.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_written_before_outcomes_carried_their_place_recovers() {
    let data = DataDir::new(75);
    copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-before-placement"), &data.0);
    let mut spec = spec(75, 1, &["--duration", "3650d"]);
    spec.data_dir = Some(data.0.clone());
    let cluster = LocalCluster::start(spec).await.expect("cluster starts");
    cluster.wait_for_leader(SETTLE).await.expect("the node leads again");

    let mut reader = client(&cluster);
    let (view, _) = reader.result("").await.expect("result");
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount, view.accepted_bids), ("ann", 70, 7));

    // Every accepted bid, from the snapshot and from the log, in order,
    // with the revision and stamp it was applied with.
    let history = reader.history("", 100, "").await.expect("history");
    let amounts: Vec<u64> = history.bids.iter().map(|bid| bid.amount).collect();
    assert_eq!(amounts, [10, 20, 30, 40, 50, 60, 70]);
    assert!(
        history
            .bids
            .windows(2)
            .all(|pair| pair[0].revision < pair[1].revision && pair[0].at_unix_ms <= pair[1].at_unix_ms)
    );
    assert_eq!(history.bids.last().map(|bid| bid.revision), Some(10), "ann's 70 was entry 10 of the log");
    let (view, _) = reader.result("").await.expect("result");
    assert_eq!(view.accepted_bids, 7, "nothing was applied twice on recovery");
}
