//! Ack timeout: a backup that owes acks for too long is removed; one that is
//! caught up never is.

use super::*;

#[test]
fn silent_backup_is_removed_after_the_ack_timeout_and_not_before() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    // node-3 holds everything sent to it and never acks.

    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
    assert!(!cluster.is_released(alice));

    cluster.advance(1);
    let node_3_connection = cluster.connection(NODE_3);
    let actions = cluster.tick();
    assert!(actions.contains(&Action::Disconnect { node: NODE_3.to_string(), connection: node_3_connection }));
    let removal = Payload::Remove { node: NODE_3.to_string() };
    assert!(
        sends(&actions).iter().any(|(to, message)| *to == NODE_2
            && matches!(message, Message::Entries(entries) if entries[0].payload == removal)),
        "the removal goes to node-2: {actions:?}"
    );
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));
    assert!(!cluster.is_released(alice), "node-2 does not hold the removal yet");

    cluster.settle();
    assert!(cluster.is_released(alice));
}

#[test]
fn caught_up_backup_is_never_timed_out_while_the_leader_is_idle() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();

    cluster.advance(10 * ACK_TIMEOUT_MS);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}

#[test]
fn ack_timeout_counts_from_the_oldest_entry_owed_so_a_backup_that_acks_a_little_is_removed() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);

    // node-3 is slow: its first ack arrives just before the timeout.
    cluster.advance(ACK_TIMEOUT_MS - 100);
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_next_ack(NODE_3);
    // Its second ack is lost: it made some progress, but bob's entry, which
    // it still owes, was appended a whole ack timeout ago.
    cluster.drop_acks(NODE_3);

    cluster.advance(99);
    assert_eq!(cluster.tick(), vec![], "not before the timeout");
    cluster.advance(1);
    let actions = cluster.tick();
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { node, .. } if node == NODE_3)));
}

#[test]
fn a_backup_that_acks_everything_it_owes_starts_its_deadline_afresh() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.advance(ACK_TIMEOUT_MS - 100);
    cluster.settle();

    // A new entry, owed from now: no timeout until a full ack timeout later.
    cluster.bid("bob", 20);
    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    cluster.advance(1);
    let actions = cluster.tick();
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { .. })), "{actions:?}");
}
