//! Pipelining and batching: entries go out before acks come back, as one
//! message per backup per flush, and one cumulative ack releases them all.

use super::*;

#[test]
fn bids_are_sent_before_any_ack_and_one_cumulative_ack_releases_them_all() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Three bids, each sent as soon as it is sequenced: nothing waits for acks.
    let tokens = [cluster.bid("alice", 10), cluster.bid("bob", 20), cluster.bid("carol", 30)];
    assert_eq!(cluster.in_flight(NODE_2), 3);
    assert_eq!(cluster.in_flight(NODE_3), 3);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");

    // node-2's three acks arrive; of node-3's only the last gets through,
    // and that one ack releases the three replies, in order.
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    let actions = cluster.deliver_latest_ack(NODE_3);

    assert_eq!(replies(&actions), tokens.to_vec());
    assert_eq!(actions.len(), 3);
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn entries_of_several_events_are_flushed_as_one_message_per_backup() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.leader.state().last.index + 1;

    // Three bids handled in one round, before the node performs any action.
    for (bidder, amount) in [("alice", 10), ("bob", 20), ("carol", 30)] {
        let (_, event) = cluster.bid_event(bid(bidder, amount, bidder, 1));
        cluster.handle(event);
    }
    let actions = cluster.take_actions();

    // One message per backup, the same shared list of the three entries.
    let sent = sends(&actions);
    assert_eq!(actions.len(), 2, "no reply before any ack: {actions:?}");
    let [(NODE_2, Message::Entries(to_node_2)), (NODE_3, Message::Entries(to_node_3))] = sent[..] else {
        panic!("expected one Entries message to each backup, got {sent:?}");
    };
    assert!(Arc::ptr_eq(to_node_2, to_node_3));
    let indexes: Vec<u64> = to_node_2.iter().map(|entry| entry.index).collect();
    assert_eq!(indexes, vec![first, first + 1, first + 2]);

    cluster.settle();
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).accepted_bids, 3);
}

#[test]
fn an_ack_arriving_after_a_higher_one_changes_nothing() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_2);

    // node-3's acks are reordered: the higher one arrives first.
    cluster.reverse_acks(NODE_3);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![alice, bob]);
    let commit_index = cluster.leader.commit_index();

    assert_eq!(cluster.deliver_next_ack(NODE_3), vec![]);
    assert_eq!(cluster.leader.commit_index(), commit_index);

    // And the late ack did not lower node-3's progress: the next bid needs
    // only its next ack.
    let carol = cluster.bid("carol", 30);
    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob, carol]);
}
