//! Readers at scale, on real processes: every node serves watches from its
//! own committed state, and readers that never read cannot hurt the bids.

mod common;

use std::time::Duration;

use gavel::auction::{AuctionEvent, CreateAuction, EventKind, Verdict};
use gavel::tools::bench::ProcStat;
use gavel::transport::{AuctionConnection, TransportSettings};
use tokio_stream::StreamExt;

use common::{Seen, bids_of, client, eventually, spawn_watcher, start};

const SETTLE: Duration = Duration::from_secs(10);

/// Where a watch from now on started: the revision of its first event, a
/// progress notification.
async fn started(seen: &Seen) -> u64 {
    eventually("the watch to start", SETTLE, || {
        let first = seen.lock().unwrap().first().cloned();
        async move { first.filter(|event| event.kind == EventKind::Progress).map(|event| event.revision) }
    })
    .await
}

fn connection(address: &str) -> AuctionConnection {
    let settings = TransportSettings::default();
    AuctionConnection::new(&gavel::transport::Network::tcp(), address, &settings, Duration::from_secs(2))
        .expect("connection")
}

/// A backup serves a watch itself (it used to send every watcher to the
/// leader); a watcher on a backup and one on the dying leader each see
/// every committed bid exactly once, in order, across the leader's kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_watches_and_each_sees_the_committed_bids_once_across_a_leader_kill() {
    let mut cluster = start(86, 3, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    let backup = (0..3).rev().find(|node| *node != leader).expect("a backup");
    cluster.wait_until_settled(backup, SETTLE).await.expect("the backup follows");

    // Asked directly, with no client library to follow a hint elsewhere.
    let mut events =
        connection(&cluster.node_address(backup)).watch(None, 0).await.expect("the backup serves the watch itself");
    let first = tokio::time::timeout(SETTLE, events.next()).await.expect("an event in time");
    let first = first.expect("the stream goes on").expect("an event");
    assert_eq!(first.kind, EventKind::Progress, "a watch from now on starts by saying where now is");
    drop(events);

    let (on_backup, backup_task) = spawn_watcher(vec![cluster.node_address(backup)], 0);
    let (on_leader, leader_task) =
        spawn_watcher(vec![cluster.node_address(leader), cluster.node_address(backup), cluster.client_address()], 0);
    let backup_start = started(&on_backup).await;
    let leader_start = started(&on_leader).await;

    let mut acknowledged = Vec::new();
    for amount in 2..=40 {
        if amount == 20 {
            cluster.kill(leader).expect("kill the leader under the watchers");
        }
        let outcome = bidder.bid("", if amount % 2 == 0 { "bob" } else { "ann" }, amount).await.expect("bid");
        assert_eq!(outcome.verdict, Verdict::Success);
        acknowledged.push(amount);
    }
    let history = bidder.history("", 0, "").await.expect("history");
    let committed = |after: u64| -> Vec<(u64, String, u64)> {
        history
            .bids
            .iter()
            .filter(|bid| bid.revision > after)
            .map(|bid| (bid.revision, bid.bidder.clone(), bid.amount))
            .collect()
    };
    // The History, asked of a backup of the new leader itself (with no
    // client library to follow a hint elsewhere): the same bids, in order.
    let new_leader = eventually("a new leader", SETTLE, || {
        let found = cluster.wait_for_leader(Duration::from_millis(200));
        async move { found.await.ok().filter(|&found| found != leader) }
    })
    .await;
    let follower = (0..3).find(|&node| node != leader && node != new_leader).expect("the other node");
    cluster.wait_until_settled(follower, SETTLE).await.expect("it follows the new leader");
    let on_follower = connection(&cluster.node_address(follower))
        .history("", 0, "")
        .await
        .expect("the backup answers the History itself");
    let revisions = |bids: &[gavel::auction::AcceptedBid]| -> Vec<(u64, String, u64)> {
        bids.iter().map(|bid| (bid.revision, bid.bidder.clone(), bid.amount)).collect()
    };
    assert_eq!(revisions(&on_follower.bids), revisions(&history.bids), "the History on a backup");
    for (name, seen, start) in [("backup", &on_backup, backup_start), ("dying leader", &on_leader, leader_start)] {
        let expected = committed(start);
        assert!(expected.iter().map(|(_, _, amount)| *amount).eq(acknowledged.iter().copied()));
        let watched = eventually("the watcher to catch up", SETTLE, || {
            let bids = bids_of(&seen.lock().unwrap());
            let done = bids.len() >= expected.len();
            async move { done.then_some(bids) }
        })
        .await;
        assert_eq!(watched, expected, "the watcher on the {name}: every committed bid exactly once, in order");
    }
    backup_task.abort();
    leader_task.abort();
}

/// Reads /proc: the peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number");
    kib * 1024
}

/// A process's threads, by name; their CPU time summed.
fn threads_by_name(pid: u32) -> std::collections::HashMap<String, ProcStat> {
    let mut by_name = std::collections::HashMap::<String, ProcStat>::new();
    for thread in ProcStat::of_threads(pid) {
        match by_name.get_mut(&thread.name) {
            Some(named) => named.cpu_ticks += thread.cpu_ticks,
            None => {
                by_name.insert(thread.name.clone(), thread);
            }
        }
    }
    by_name
}

/// The CPU ticks the threads named `name` took between two readings.
fn ticks_taken(
    before: &std::collections::HashMap<String, ProcStat>,
    after: &std::collections::HashMap<String, ProcStat>,
    name: &str,
) -> u64 {
    let ticks =
        |threads: &std::collections::HashMap<String, ProcStat>| threads.get(name).map_or(0, |thread| thread.cpu_ticks);
    ticks(after) - ticks(before)
}

/// A node serves its readers on a thread of its own, beside the thread
/// that runs its replication: the watches of a backup's own port take
/// their CPU there, so that their work never queues before a bid's. (On
/// one thread, 10,000 watchers raised the bids' p50 from 0.5 ms to 10 ms;
/// BENCHMARKS.md, "Readers on a thread of their own".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_its_readers_on_a_thread_of_its_own() {
    const WATCHERS: usize = 200;
    const BIDS: u64 = 300;
    let cluster = start(96, 2, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    let backup = 1 - leader;
    cluster.wait_until_settled(backup, SETTLE).await.expect("the backup follows");
    let pid = cluster.pid(backup).expect("the backup runs");

    let address = cluster.node_address(backup);
    let connections: Vec<AuctionConnection> = (0..4).map(|_| connection(&address)).collect();
    let mut watchers = Vec::new();
    for watcher in 0..WATCHERS {
        let mut events = connections[watcher % 4].clone().watch(None, 1).await.expect("the backup serves watches");
        watchers.push(tokio::spawn(async move {
            let mut bids = 0;
            while bids < BIDS {
                match events.next().await {
                    Some(Ok(event)) if matches!(event.kind, EventKind::BidAccepted(_)) => bids += 1,
                    Some(Ok(_)) => {}
                    _ => return bids,
                }
            }
            bids
        }));
    }
    let before = threads_by_name(pid);
    for amount in 2..2 + BIDS {
        assert_eq!(bidder.bid("", "ann", amount).await.expect("bid").verdict, Verdict::Success);
    }
    for watcher in watchers {
        let seen = tokio::time::timeout(SETTLE, watcher).await.expect("every bid in time").expect("a watcher");
        assert_eq!(seen, BIDS);
    }
    let after = threads_by_name(pid);
    let took = |name: &str| ticks_taken(&before, &after, name);
    let (readers, replication) = (took("gavel-readers"), took("gavel"));
    assert!(
        readers > replication,
        "the readers' thread took {readers} ticks and the replication's {replication}: {after:?}"
    );
    // When both want a core, the scheduler favours the replication's.
    let nice = |name: &str| after.get(name).map(|thread| thread.nice).expect("the thread");
    assert_eq!(nice("gavel-readers"), (nice("gavel") + 10).min(19), "{after:?}");
}

/// After a failover, the new leader serves the rejoining backup's stream on
/// its replication thread: a backup joins without the replication preamble
/// only when a leader older than it broke the connection. (It used to try
/// without it after any failed join, and after a failover its first joins
/// fail: its stream then ran on the new leader's readers' thread, the nicer
/// one, for the whole term.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_new_leader_serves_the_backups_stream_beside_its_replication() {
    const BIDS: u64 = 1_500;
    let mut cluster = start(97, 3, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);
    let old_leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    cluster.kill(old_leader).expect("kill the leader");
    let leader = eventually("a new leader", SETTLE, || {
        let found = cluster.wait_for_leader(Duration::from_millis(200));
        async move { found.await.ok().filter(|&leader| leader != old_leader) }
    })
    .await;
    let backup = (0..3).find(|&node| node != old_leader && node != leader).expect("the other node");
    cluster.wait_until_settled(backup, SETTLE).await.expect("the backup follows the new leader");
    let pid = cluster.pid(leader).expect("the leader runs");

    let before = threads_by_name(pid);
    for amount in 2..2 + BIDS {
        assert_eq!(bidder.bid("", "ann", amount).await.expect("bid").verdict, Verdict::Success);
    }
    let after = threads_by_name(pid);
    let took = |name: &str| ticks_taken(&before, &after, name);
    let (readers, replication) = (took("gavel-readers"), took("gavel"));
    // Nobody reads: the readers' thread has nothing to do but probes.
    assert!(
        readers * 5 <= replication,
        "the readers' thread took {readers} ticks and the replication's {replication}: {after:?}"
    );
}

/// Watch streams after revision 1 that never read, over an auction house
/// with large descriptions: the leader's peak memory grows by a bounded
/// amount per stream (it used to materialise every event of the house for
/// each watcher, and queue a thousand of them), and the bids go on.
/// Scaled down from the benchmark: 2,000 auctions, 300 streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_never_read_leave_the_leaders_memory_and_the_bids_as_they_were() {
    const AUCTIONS: usize = 2_000;
    const STREAMS: usize = 300;
    const STREAMS_PER_CONNECTION: usize = 50;
    let cluster = start(87, 3, &["--max-creates-per-second", "1000000"]).await;
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    let address = cluster.node_address(leader);

    let creators: Vec<_> = (0..16)
        .map(|creator| {
            let mut connection = connection(&address);
            tokio::spawn(async move {
                for (request, number) in (creator..AUCTIONS).step_by(16).enumerate() {
                    let create = CreateAuction {
                        max_open_per_seller: 0,
                        name_digest: None,
                        seller: format!("seller{}", number % 100),
                        title: format!("lot {number}"),
                        description: "d".repeat(2048),
                        minimum_amount: 1,
                        duration_ms: 3_600_000,
                        ends_at_unix_ms: 0,
                        client_id: format!("creator{creator}"),
                        request_id: request as u64 + 1,
                        at_unix_ms: 0,
                        max_auctions: 0,
                    };
                    let created = connection.create_auction(&create, &[]).await.expect("created");
                    assert_eq!(created.verdict, Verdict::Success, "{created:?}");
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.expect("the creator");
    }
    let pid = cluster.pid(leader).expect("the leader runs");
    let before = peak_rss(pid);

    // The streams, never read: each connection's flow control fills, and
    // the leader's watches wait.
    let mut held = Vec::new();
    for _ in 0..STREAMS / STREAMS_PER_CONNECTION {
        let connection = connection(&address);
        for _ in 0..STREAMS_PER_CONNECTION {
            held.push(connection.clone().watch(None, 1).await.expect("the watch opens"));
        }
    }
    // One reader that reads the whole house (the leader served the
    // others' first pages too by the time it is through), then bids; all
    // within a minute, however the leader fares.
    let read_and_bid = async {
        let mut reader = connection(&address).watch(None, 1).await.expect("the reader's watch");
        let mut opened = 0;
        while opened < AUCTIONS {
            let event = tokio::time::timeout(SETTLE, reader.next()).await.expect("an event in time");
            if let Some(Ok(AuctionEvent { kind: EventKind::Opened(_), .. })) = event {
                opened += 1;
            }
        }
        let mut bidder = client(&cluster);
        for amount in 1..=200 {
            assert_eq!(bidder.bid("", "ann", amount).await.expect("bid").verdict, Verdict::Success);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_and_bid).await.expect("the reader and the bids in a minute");
    let grown = peak_rss(pid).saturating_sub(before);
    // About 70 KiB per never-reading stream at most, and the reader's pages.
    assert!(grown < 128 << 20, "{STREAMS} never-reading watchers grew the leader's peak memory by {} MiB", grown >> 20);
    drop(held);
}

/// A watch from now on, asked of a backup while nothing commits, sees the
/// next bid: it starts at what the backup had published when it was asked
/// (it used to start at the backup's first view, which came with that very
/// bid committed, and so skipped it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_now_on_an_idle_backup_sees_the_next_bid() {
    let cluster = start(88, 3, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    let backup = (0..3).rev().find(|node| *node != leader).expect("a backup");
    cluster.wait_until_settled(backup, SETTLE).await.expect("the backup follows");

    let mut events = connection(&cluster.node_address(backup)).watch(None, 0).await.expect("the watch");
    let mut next = async || {
        let event = tokio::time::timeout(SETTLE, events.next()).await.expect("an event in time");
        event.expect("the stream goes on").expect("an event")
    };
    let progress = next().await;
    assert_eq!(progress.kind, EventKind::Progress);
    assert_eq!(bidder.bid("", "bob", 2).await.expect("bid").verdict, Verdict::Success);
    // The backup's "now" may lag the leader's by a heartbeat, so ann's bid
    // may come first; bob's must come, after the progress.
    loop {
        let event = next().await;
        assert!(event.revision > progress.revision, "{event:?} is not after {progress:?}");
        if let EventKind::BidAccepted(bid) = event.kind
            && bid.bidder == "bob"
        {
            assert_eq!(bid.amount, 2);
            break;
        }
    }
}

/// One stream watches several auctions: their events, in revision order,
/// and no other auction's; a watch of more auctions than a stream may
/// name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_watches_several_auctions() {
    let cluster = start(89, 1, &[]).await;
    let mut seller = client(&cluster);
    let mut lots = Vec::new();
    for title in ["a lamp", "a vase", "a clock"] {
        let create = CreateAuction::lasting("sam", title, "", 1, Duration::from_secs(600));
        lots.push(seller.create_auction(create).await.expect("created").auction_id);
    }
    let watched = gavel::auction::EventScope::of([lots[0].as_str(), lots[2].as_str()]);
    let mut events = connection(&cluster.client_address()).watch_scope(&watched, 0).await.expect("the watch");
    let mut next = async || {
        let event = tokio::time::timeout(SETTLE, events.next()).await.expect("an event in time");
        event.expect("the stream goes on").expect("an event")
    };
    assert_eq!(next().await.kind, EventKind::Progress);
    let mut bidder = client(&cluster);
    for (lot, amount) in [(0, 5), (1, 6), (2, 7), (0, 8)] {
        assert_eq!(bidder.bid(&lots[lot], "bo", amount).await.expect("bid").verdict, Verdict::Success);
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = next().await;
        if let EventKind::BidAccepted(bid) = &event.kind {
            seen.push((event.auction_id.clone(), bid.amount));
        }
    }
    let expected = [(lots[0].clone(), 5), (lots[2].clone(), 7), (lots[0].clone(), 8)];
    assert_eq!(seen, expected, "the two auctions' bids in order, not the third's");

    let ids: Vec<String> = (0..=gavel::auction::MAX_WATCHED_AUCTIONS).map(|id| format!("a{id}")).collect();
    let too_many = gavel::auction::EventScope::of(ids.iter().map(String::as_str));
    match connection(&cluster.client_address()).watch_scope(&too_many, 0).await {
        Err(gavel::transport::CallError::Invalid { message, .. }) => {
            assert!(message.contains("at most 100 auctions"), "{message}")
        }
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, got a stream"),
    }
}

/// The leader, a backup that holds a first bid, a client of the cluster,
/// and a connection to that backup alone (it follows no leader hint).
async fn a_reader_of_a_settled_backup(
    cluster: &gavel::tools::cluster::LocalCluster,
) -> (usize, usize, gavel::client::Client, AuctionConnection) {
    let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
    let backup = (0..3).rev().find(|node| *node != leader).expect("a backup");
    let mut bidder = client(cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);
    cluster.wait_until_settled(backup, SETTLE).await.expect("the backup follows");
    (leader, backup, bidder, connection(&cluster.node_address(backup)))
}

/// A linearizable read on a backup, asked right after a bid was
/// acknowledged, sees it, and the backup answers it itself (it used to
/// send every read to the leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_backup_right_after_an_acknowledged_bid_sees_it() {
    let cluster = start(90, 3, &[]).await;
    let (_, backup, mut bidder, mut reader) = a_reader_of_a_settled_backup(&cluster).await;
    for amount in 2..=21 {
        assert_eq!(bidder.bid("", "bob", amount).await.expect("bid").verdict, Verdict::Success);
        let (view, answered_by) = reader.result("").await.expect("the backup answers the read");
        assert_eq!(answered_by, cluster.node_address(backup), "answered by the backup itself");
        assert_eq!((view.highest_bidder.as_str(), view.highest_amount), ("bob", amount), "the acknowledged bid");
        let info = reader.get_auction("").await.expect("the backup answers the read");
        assert_eq!(info.highest_amount, amount);
    }
}

/// A backup answers reads only while the membership record lists it: one
/// the record left out (a newer leadership dropped it, say) may follow a
/// deposed leader, so it sends the reader to its leader instead of
/// answering from its own state; listed again, it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_the_membership_record_does_not_list_refuses_to_answer_reads_itself() {
    use gavel::replication::MembershipRecord;
    use gavel::storage::{OsDisk, read_meta, write_meta};

    let cluster = start(94, 3, &[]).await;
    let (leader, backup, _, mut reader) = a_reader_of_a_settled_backup(&cluster).await;
    let (_, answered_by) = reader.result("").await.expect("the listed backup answers");
    assert_eq!(answered_by, cluster.node_address(backup), "answered by the backup itself");

    // The record, as a newer leadership that dropped the backup would have
    // stored it (the same version, so the leader's next write still fits).
    let dir = cluster.record_dir();
    let stored = read_meta(&OsDisk, dir, "membership").expect("readable").expect("a record");
    let listed: MembershipRecord = serde_json::from_slice(&stored).expect("a record");
    let mut dropped = listed.clone();
    dropped.members.retain(|member| member.node != cluster.node_address(backup));
    assert_eq!(dropped.members.len(), 2, "{listed:?}");
    write_meta(&OsDisk, dir, "membership", &serde_json::to_vec_pretty(&dropped).expect("json")).expect("stored");
    match reader.result("").await {
        Ok((_, answered_by)) => panic!("the unlisted backup answered a read, as {answered_by}"),
        Err(refusal) => {
            let said = refusal.to_string();
            assert!(said.contains(&cluster.node_address(leader)), "it names its leader: {said}");
        }
    }
    write_meta(&OsDisk, dir, "membership", &stored).expect("restored");
    let (_, answered_by) = reader.result("").await.expect("listed again, it answers");
    assert_eq!(answered_by, cluster.node_address(backup));
}
