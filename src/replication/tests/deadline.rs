//! Deadline: the leader closes the auction at its deadline, and the deadline is
//! the same after a takeover.

use super::*;

#[test]
fn leader_closes_the_auction_on_the_first_tick_at_its_deadline() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2]);

    cluster.advance(4_999);
    assert_eq!(cluster.tick(), vec![]);
    assert!(!default_auction(cluster.leader.state()).closed);

    cluster.advance(1);
    let close_index = cluster.leader.state().last.index + 1;
    let actions = cluster.tick();
    let close = Entry {
        epoch: epoch_of(1),
        index: close_index,
        payload: Payload::Command(Command::Close {
            auction_id: DEFAULT_AUCTION.to_string(),
            at_unix_ms: cluster.start.unix_ms + 5_000,
            retain_ms: DEFAULT_RETAIN_CLOSED.as_millis() as u64,
        }),
    };
    assert_eq!(sends(&actions), vec![(NODE_2, &entries_message(vec![close]))]);

    // Closed once: later ticks append nothing.
    cluster.settle();
    cluster.advance(1_000);
    assert_eq!(cluster.tick(), vec![]);
    assert!(default_auction(cluster.backup(NODE_2).state()).closed);
}

#[test]
fn bids_at_or_after_the_deadline_fail() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2]);

    cluster.advance(4_999);
    let just_in_time = cluster.bid("alice", 10);
    // At the deadline, before any tick closed the auction.
    cluster.advance(1);
    let at_deadline = cluster.bid("bob", 20);
    cluster.tick();
    cluster.advance(1);
    let after_close = cluster.bid("carol", 30);
    cluster.settle();

    assert_eq!(cluster.outcome(just_in_time), &cluster.placed(success("alice", 10, true)));
    assert_eq!(cluster.outcome(at_deadline), &auction_over("alice", 10));
    assert_eq!(cluster.outcome(after_close), &auction_over("alice", 10));
    assert_eq!(default_auction(cluster.backup(NODE_2).state()).accepted_bids, 1);
}

#[test]
fn deadline_is_identical_after_a_takeover() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    let ends_at = cluster.start.unix_ms + 5_000;
    assert_eq!(default_auction(cluster.leader.state()).ends_at_unix_ms, ends_at);

    cluster.advance(1_000);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(default_auction(cluster.leader.state()).ends_at_unix_ms, ends_at);
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).ends_at_unix_ms, ends_at);

    // The new leader judges bids against the same deadline.
    cluster.advance(3_999);
    let in_time = cluster.bid("alice", 10);
    cluster.advance(1);
    let too_late = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.outcome(in_time), &cluster.placed(success("alice", 10, true)));
    assert_eq!(cluster.outcome(too_late), &auction_over("alice", 10));
}

#[test]
fn new_leader_with_a_slow_clock_never_stamps_a_time_earlier_than_the_log() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    cluster.advance(3_000);
    cluster.bid("alice", 10);
    cluster.settle();
    let latest_stamp = cluster.leader.state().clock_unix_ms;

    // node-2's wall clock is 10 s behind the old leader's.
    cluster.now.unix_ms -= 10_000;
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    cluster.settle();
    cluster.bid("bob", 20);

    let bob_index = cluster.leader.state().last.index;
    let Payload::Command(Command::Bid(bob)) = &cluster.sent_entries(bob_index..=bob_index)[0].payload else {
        panic!("bob's entry is a bid");
    };
    assert_eq!(bob.at_unix_ms, latest_stamp);
}
