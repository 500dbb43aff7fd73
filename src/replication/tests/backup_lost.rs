//! Backup lost: a backup whose stream ends is removed, and bidding goes on
//! without it.

use super::*;

#[test]
fn backup_lost_by_stream_end_is_removed_and_bidding_goes_on() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let remove_index = cluster.leader.state().last.index + 1;

    // node-2 acks alice's bid; node-3's stream ends before it does.
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    let node_3_connection = cluster.connection(NODE_3);
    let actions = cluster.lose_stream(NODE_3);

    // The leader closes the stream and sends the removal to node-2 alone.
    let removal =
        Entry { epoch: epoch_of(1), index: remove_index, payload: Payload::Remove { node: NODE_3.to_string() } };
    assert_eq!(
        actions,
        vec![
            Action::Disconnect { node: NODE_3.to_string(), connection: node_3_connection },
            Action::Send {
                to: NODE_2.to_string(),
                connection: cluster.connection(NODE_2),
                message: entries_message(vec![removal]),
            },
        ]
    );
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));

    // Alice's reply waits for node-2 to hold the removal, not for node-3: had
    // it gone out on node-2's ack alone, node-3 (perhaps alive) could still
    // take over without her bid.
    cluster.deliver(NODE_2).expect("node-2 applies the removal");
    assert_eq!(replies(&cluster.deliver_acks(NODE_2)), vec![alice]);
    assert_eq!(cluster.leader.commit_index(), remove_index);
    assert_eq!(cluster.outcome(alice), &cluster.placed(success("alice", 10, true)));

    // Bidding goes on with node-2 alone.
    let bob = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob]);
    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn removal_of_a_backup_that_acked_an_entry_does_not_hold_that_entry_back() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);

    // node-3 acks alice's bid, then its stream ends; node-2 has not acked yet.
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_3);
    cluster.lose_stream(NODE_3);

    // node-2's ack of alice's entry alone releases her reply: node-3 held it.
    assert!(cluster.deliver_one(NODE_2).expect("node-2 applies alice's entry"));
    assert_eq!(replies(&cluster.deliver_acks(NODE_2)), vec![alice]);
    assert_eq!(cluster.in_flight(NODE_2), 1, "the removal is still on its way");
}

#[test]
fn backup_lost_with_a_stale_connection_is_ignored() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let old_connection = cluster.connection(NODE_3);

    // node-3 reconnects before the leader noticed its old stream's end. A
    // second stream under a name that has one ends that name's membership
    // (it may be an impostor): the old stream is closed, node-3 is removed,
    // and the newcomer catches up as a learner.
    let actions = cluster.connect(NODE_3);
    let new_connection = cluster.connection(NODE_3);
    assert!(actions.contains(&Action::Disconnect { node: NODE_3.to_string(), connection: old_connection }));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));
    assert!(
        sends(&actions).iter().any(|(to, message)| *to == NODE_3 && matches!(message, Message::Entries(_))),
        "the catch-up goes to the new stream ({new_connection}): {actions:?}"
    );
    cluster.settle();

    // The old stream's end arrives late: no removal.
    let state = cluster.leader.state().clone();
    let lost = cluster.step(Event::BackupLost { node: NODE_3.to_string(), connection: old_connection });
    assert_eq!(lost, vec![]);
    assert_eq!(cluster.leader.state(), &state);

    // An ack on the old stream does not count either.
    let alice = cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    let stale_ack = Event::Ack { node: NODE_3.to_string(), connection: old_connection, index: alice_index };
    assert_eq!(cluster.step(stale_ack), vec![]);
    assert!(!cluster.is_released(alice));

    cluster.settle();
    assert!(cluster.is_released(alice));
}
