//! Normal operation: a bid is answered once every backup holds it, and commits
//! are announced as they move.

use super::*;

#[test]
fn lone_leader_answers_a_bid_at_once() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);

    let (alice, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);

    let index = cluster.leader.state().last.index;
    assert_eq!(actions, vec![bid_replied(alice, index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn the_published_index_is_announced_as_commits_move_and_a_new_leader_announces_none_before_its_takeover_commits() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.published.clear();
    cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;
    assert_eq!(cluster.published, Vec::<u64>::new(), "nothing new is committed yet");
    cluster.settle();
    assert_eq!(cluster.published, vec![alice_index]);
    assert_eq!(cluster.leader.published_index(), Some(alice_index));
    cluster.tick();
    assert_eq!(cluster.published, vec![alice_index], "announced once, not again while it stays");

    // node-2 takes over with an entry nobody else holds: what it inherited
    // is published only once its takeover commits, with node-3 holding it.
    cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.published.clear();
    let takeover_index = cluster.leader.state().last.index;
    cluster.tick();
    assert_eq!(cluster.published, Vec::<u64>::new());
    assert_eq!(cluster.leader.published_index(), None);
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.published, vec![takeover_index]);
    assert_eq!(cluster.backup(NODE_3).state().last.index, takeover_index);
}

#[test]
fn bid_reply_waits_for_every_backup_to_ack() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bid_index = cluster.leader.state().last.index;

    // Both backups apply the entry, but only node-2's ack has arrived.
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    assert_eq!(cluster.leader.commit_index(), bid_index - 1);
    assert!(!cluster.is_released(alice));

    // node-3's ack commits the entry and releases exactly alice's reply.
    let actions = cluster.deliver_acks(NODE_3);
    assert_eq!(actions, vec![bid_replied(alice, bid_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), bid_index);
}
