//! Exactly once: a retried bid gets its first outcome and counts once, across
//! takeovers too.

use super::*;

#[test]
fn retried_bid_returns_its_first_outcome_and_counts_once() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();

    // The client did not hear back and retries the same request.
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(retry), cluster.outcome(first));
    assert_eq!(cluster.outcome(first), &cluster.placed(success("alice", 10, true)));

    // Even once outbid, a retry gets the remembered outcome, not a new verdict.
    cluster.bid("bob", 20);
    let late_retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(late_retry), &cluster.placed(success("alice", 10, true)));

    for state in [cluster.leader.state(), cluster.backup(NODE_2).state(), cluster.backup(NODE_3).state()] {
        assert_eq!(default_auction(state).accepted_bids, 2, "alice once, bob once");
    }
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn retry_of_an_uncommitted_bid_is_released_after_the_first() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![first, retry]);
    assert_eq!(cluster.outcome(retry), cluster.outcome(first));
    assert_eq!(default_auction(cluster.backup(NODE_2).state()).accepted_bids, 1);
}

#[test]
fn retry_after_a_takeover_returns_the_acknowledged_first_outcome() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(first), &cluster.placed(success("alice", 10, true)));

    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();

    assert_eq!(cluster.outcome(retry), &cluster.placed(success("alice", 10, true)));
    assert_eq!(default_auction(cluster.leader.state()).accepted_bids, 1);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn retry_after_a_takeover_returns_the_outcome_of_a_first_execution_nobody_heard_of() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Alice's bid reaches node-2 only: her reply is never released.
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    assert!(!cluster.is_released(first));

    // node-2 takes over, and the client retries there.
    cluster.crash_leader_and_take_over(NODE_2);
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(cluster.outcome(retry), &cluster.placed(success("alice", 10, true)));
    assert_eq!(default_auction(cluster.leader.state()).accepted_bids, 1);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}
