//! Durability: the leader's own disk gates its commits, and replies and reads
//! are released in log order.

use super::*;

/// The entries of the `Persist` actions among `actions`.
fn persisted_entries(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Persist { entries } => Some(entries.iter().map(|entry| entry.index).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_durable_leader_persists_each_batch_and_commits_only_what_its_disk_holds() {
    let durable = LeaderSettings { durable: true, ..settings() };
    let mut cluster = Cluster::start(durable, AUCTION_MS, &[NODE_2]);
    let settled = cluster.leader.state().last.index;
    // Its disk holds everything so far; the backup acked it too.
    cluster.step(Event::Persisted { index: settled });
    assert_eq!(cluster.leader.commit_index(), settled);

    let (alice, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);
    let bid_index = cluster.leader.state().last.index;
    // The batch goes to the disk and to the backup at once.
    assert_eq!(persisted_entries(&actions), vec![bid_index]);
    assert_eq!(sends(&actions).len(), 1);

    // The backup acks it, but the leader's own disk does not hold it yet.
    cluster.deliver(NODE_2).expect("node-2 applies");
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    assert_eq!(cluster.leader.commit_index(), settled);
    assert!(!cluster.is_released(alice));

    let actions = cluster.step(Event::Persisted { index: bid_index });
    assert_eq!(actions, vec![bid_replied(alice, bid_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), bid_index);
}

#[test]
fn a_leader_without_a_disk_emits_no_persist_and_counts_every_entry_held() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);
    let (_, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);
    assert_eq!(persisted_entries(&actions), Vec::<u64>::new());
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn an_operator_removes_a_member_with_a_committed_entry_and_nobody_else() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let token = cluster.next_token();
    let actions = cluster.step(Event::RemoveMember { token, node: NODE_3.to_string() });
    let removed_at = cluster.leader.state().last.index;
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { node, .. } if node == NODE_3)));
    // Answered once node-2 holds the removal.
    assert!(!cluster.is_released(token));
    cluster.deliver(NODE_2).expect("node-2 applies");
    let actions = cluster.deliver_acks(NODE_2);
    assert_eq!(actions, vec![Action::Reply { token, reply: Reply::MemberRemoved(Some(removed_at)) }]);

    // Neither the leader itself nor a stranger is removed.
    let last = cluster.leader.state().last.index;
    for node in [LEADER, NODE_4, NODE_3] {
        let token = cluster.next_token();
        let actions = cluster.step(Event::RemoveMember { token, node: node.to_string() });
        assert_eq!(actions, vec![Action::Reply { token, reply: Reply::MemberRemoved(None) }], "{node}");
    }
    assert_eq!(cluster.leader.state().last.index, last);
}

#[test]
fn replies_are_released_in_index_order() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    let carol = cluster.bid("carol", 30);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");

    // node-2 has acked all three; node-3's acks arrive one by one.
    assert_eq!(cluster.deliver_latest_ack(NODE_2), vec![]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![alice]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![bob]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![carol]);

    assert_eq!(cluster.outcome(bob), &cluster.placed(success("bob", 20, true)));
    assert_eq!(cluster.outcome(carol), &cluster.placed(success("carol", 30, true)));
}

#[test]
fn read_waits_for_the_bids_sequenced_before_it_and_shows_only_those() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(alice));

    // bob's bid is sequenced but not acked; the read comes next, carol's bid
    // after it. Each step's entries travel as a message of their own.
    let bob = cluster.bid("bob", 20);
    let bob_index = cluster.leader.state().last.index;
    let read = cluster.read();
    let carol = cluster.bid("carol", 30);
    assert_eq!(cluster.in_flight(NODE_2), 2);

    // Alice's bid is committed, but the read waits for bob's, sequenced before it.
    assert!(!cluster.is_released(read));

    // Both backups apply and ack bob's entry only: bob and the read go out,
    // in that order, and carol's bid stays held.
    for node in [NODE_2, NODE_3] {
        assert!(cluster.deliver_one(node).expect("the backup applies bob's entry"));
        cluster.deliver_acks(node);
    }
    assert_eq!(cluster.leader.commit_index(), bob_index);
    assert_eq!(cluster.released_tokens(), vec![alice, bob, read]);

    // The view was taken when the read was sequenced: it shows bob's bid,
    // committed by the time it is released, and not carol's, which is not.
    let view = cluster.view(read);
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount, view.accepted_bids), ("bob", 20, 2));
    assert!(!view.over);

    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob, read, carol]);
}

#[test]
fn read_of_an_unknown_auction_keeps_its_place_in_line() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let alice = cluster.bid("alice", 10);
    let read = cluster.read_auction("no-such-auction");
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![alice, read]);
    let unknown = ReadError::UnknownAuction("no-such-auction".to_string());
    assert_eq!(cluster.reply(read), &Reply::Read(Err(QueryError::Read(unknown))));
}
