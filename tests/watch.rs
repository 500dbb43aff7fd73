//! Watching the auction house on real processes: committed events as they
//! happen, resumed across a leader's crash with no gap and no duplicate.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gavel::auction::{EventKind, Verdict};
use gavel::client::InvalidCode;
use gavel::transport::pb;

use common::{bids_of, client, eventually, spawn_watcher, start};

const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_committed_event_once_across_a_leader_crash() {
    let mut cluster = start(41, 3, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);

    // From now on: the first event is a progress notification naming where it starts.
    let (seen, task) = spawn_watcher(vec![cluster.client_address()], 0);
    let start_revision = eventually("the watch to start", SETTLE, || {
        let first = seen.lock().unwrap().first().cloned();
        async move { first.filter(|event| event.kind == EventKind::Progress).map(|event| event.revision) }
    })
    .await;

    let mut acknowledged = Vec::new();
    for amount in 2..=40 {
        if amount == 20 {
            let leader = cluster.wait_for_leader(SETTLE).await.expect("leader");
            cluster.kill(leader).expect("kill the leader under the watcher");
        }
        let outcome = bidder.bid("", if amount % 2 == 0 { "bob" } else { "ann" }, amount).await.expect("bid");
        assert_eq!(outcome.verdict, Verdict::Success);
        acknowledged.push(amount);
    }

    // The committed history, read from the new leader.
    let history = bidder.history("", 0, "").await.expect("history");
    let committed: Vec<(u64, String, u64)> = history
        .bids
        .iter()
        .filter(|bid| bid.revision > start_revision)
        .map(|bid| (bid.revision, bid.bidder.clone(), bid.amount))
        .collect();
    assert_eq!(committed.iter().map(|(_, _, amount)| *amount).collect::<Vec<_>>(), acknowledged);

    let watched = eventually("the watcher to catch up", SETTLE, || {
        let bids = bids_of(&seen.lock().unwrap());
        let done = bids.len() >= committed.len();
        async move { done.then_some(bids) }
    })
    .await;
    assert_eq!(watched, committed, "every committed bid exactly once, in order, across the crash");
    task.abort();

    // A watcher resuming after a revision gets exactly what followed it.
    let middle = committed[committed.len() / 2].0;
    let (resumed, task) = spawn_watcher(vec![cluster.client_address()], middle);
    let expected: Vec<_> = committed.iter().filter(|(revision, _, _)| *revision > middle).cloned().collect();
    let got = eventually("the resumed watcher to catch up", SETTLE, || {
        let bids = bids_of(&resumed.lock().unwrap());
        let done = bids.len() >= expected.len();
        async move { done.then_some(bids) }
    })
    .await;
    assert_eq!(got, expected);
    task.abort();
}

/// A watch after a revision the log has not reached is refused at once,
/// saying where the log is, rather than waiting for ever (a resume after a
/// revision it saw is never ahead: a leader publishes every committed entry
/// before it serves a watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_after_a_revision_nobody_wrote_is_refused() {
    let cluster = start(76, 1, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 1).await.expect("bid").verdict, Verdict::Success);

    let mut reader = client(&cluster);
    let refused = tokio::time::timeout(SETTLE, reader.watch(None, u64::MAX, |_| true)).await.expect("answered");
    match refused {
        Err(gavel::client::ClientError::Invalid { code: InvalidCode::OutOfRange, message }) => {
            assert!(message.contains(&format!("revision {} is ahead of the log", u64::MAX)), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Where the log is still works: from its last revision on.
    let last = bidder.history("", 0, "").await.expect("history").bids.last().expect("a bid").revision;
    let (seen, task) = spawn_watcher(vec![cluster.client_address()], last);
    assert_eq!(bidder.bid("", "bob", 2).await.expect("bid").verdict, Verdict::Success);
    eventually("the bid after it", SETTLE, || {
        let bids = bids_of(&seen.lock().unwrap());
        async move { bids.iter().any(|(_, bidder, amount)| bidder == "bob" && *amount == 2).then_some(()) }
    })
    .await;
    task.abort();
}

/// "From now on" means now: after a watcher came and went, three bids are
/// made with nobody watching; a watch from now on then starts after them
/// (it replayed them, from the stale view the leader last published while
/// someone watched) and sees the next bid first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_now_on_starts_after_what_was_published_when_it_was_asked() {
    let cluster = start(85, 1, &[]).await;
    let mut bidder = client(&cluster);
    assert_eq!(bidder.bid("", "ann", 10).await.expect("bid").verdict, Verdict::Success);
    let (earlier, task) = spawn_watcher(vec![cluster.client_address()], 0);
    eventually("the earlier watcher to start", SETTLE, || {
        let earlier = Arc::clone(&earlier);
        async move { (!earlier.lock().unwrap().is_empty()).then_some(()) }
    })
    .await;
    task.abort();
    let _ = task.await;
    for amount in [20, 30, 40] {
        assert_eq!(bidder.bid("", "bo", amount).await.expect("bid").verdict, Verdict::Success);
    }
    let (seen, task) = spawn_watcher(vec![cluster.client_address()], 0);
    eventually("the new watcher to start", SETTLE, || {
        let seen = Arc::clone(&seen);
        async move { (!seen.lock().unwrap().is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(bidder.bid("", "cy", 50).await.expect("bid").verdict, Verdict::Success);
    let bids = eventually("the next bid to reach the watcher", SETTLE, || {
        let seen = Arc::clone(&seen);
        async move { Some(bids_of(&seen.lock().unwrap())).filter(|bids| !bids.is_empty()) }
    })
    .await;
    task.abort();
    assert_eq!(bids.iter().map(|(_, bidder, amount)| (bidder.as_str(), *amount)).collect::<Vec<_>>(), [("cy", 50)]);
}

/// Clients watch in pages (`WatchPages`, several events a message); a
/// client that knows only `Watch`, an event a message, is served as before,
/// with the same events in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_in_pages_carries_the_same_events_as_one_an_event_a_message() {
    let cluster = start(95, 1, &[]).await;
    let mut bidder = client(&cluster);
    const BIDS: u64 = 60;
    for amount in 1..=BIDS {
        assert_eq!(bidder.bid("", "ann", amount).await.expect("bid").verdict, Verdict::Success);
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.client_address()))
        .expect("an address")
        .connect()
        .await
        .expect("connected");
    let mut raw = pb::auction_client::AuctionClient::new(channel);
    let request = pb::WatchRequest { auction_id: String::new(), after_revision: 1, auction_ids: Vec::new() };
    let is_bid = |event: &pb::AuctionEvent| matches!(event.kind, Some(pb::auction_event::Kind::BidAccepted(_)));

    let mut pages = raw.watch_pages(request.clone()).await.expect("a watch in pages").into_inner();
    let (mut paged, mut page_count) = (Vec::new(), 0);
    while paged.iter().filter(|event| is_bid(event)).count() < BIDS as usize {
        let page = tokio::time::timeout(SETTLE, pages.message()).await.expect("in time").expect("a page");
        paged.extend(page.expect("not the end").events);
        page_count += 1;
    }
    assert!(page_count < paged.len(), "{} events came in {page_count} pages: several a page", paged.len());

    let mut events = raw.watch(request).await.expect("a watch").into_inner();
    let mut one_by_one = Vec::new();
    while one_by_one.len() < paged.len() {
        let event = tokio::time::timeout(SETTLE, events.message()).await.expect("in time").expect("an event");
        one_by_one.push(event.expect("not the end"));
    }
    assert_eq!(paged, one_by_one);
}
