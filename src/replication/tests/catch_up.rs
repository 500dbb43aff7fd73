//! Join and catch-up: a joining or lagging backup gets a snapshot, or only the
//! suffix of the log it lacks.

use super::*;

#[test]
fn fresh_backup_gets_a_snapshot_and_joins_once_it_acks_it() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);
    let alice = cluster.bid("alice", 10);
    assert!(cluster.is_released(alice));
    let state_before = cluster.leader.state().clone();

    // A fresh node connects with an empty log. It gets a snapshot of the
    // state so far (smaller than the whole log, which this leader still
    // holds), and nothing else yet: it is not a member until it holds it.
    let actions = cluster.connect(NODE_2);
    let [(NODE_2, catch_up)] = sends(&actions)[..] else {
        panic!("expected only the catch-up, to node-2: {actions:?}");
    };
    assert_eq!(catch_up, &Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(1), state: state_before.clone() })));
    assert_eq!(cluster.leader.state().membership, members(&[LEADER]));

    // A learner gates nothing: bob's bid commits without it, and is not
    // streamed to it before it acks its catch-up.
    let bob = cluster.bid("bob", 20);
    assert!(cluster.is_released(bob));
    assert_eq!(cluster.in_flight(NODE_2), 1, "only the catch-up");

    // Its ack of the catch-up starts the stream with what it missed: bob's
    // entry. It joins once it holds every committed entry.
    cluster.deliver(NODE_2).expect("node-2 installs");
    let actions = cluster.deliver_acks(NODE_2);
    let bob_entry = cluster.sent_entries(state_before.last.index + 1..=state_before.last.index + 1);
    assert_eq!(sends(&actions), vec![(NODE_2, &entries_message(bob_entry))]);
    assert_eq!(cluster.leader.state().membership, members(&[LEADER]), "it lacks bob's committed entry");
    cluster.deliver(NODE_2).expect("node-2 applies bob's entry");
    let actions = cluster.deliver_acks(NODE_2);
    let join_index = state_before.last.index + 2;
    let join = Entry { epoch: epoch_of(1), index: join_index, payload: Payload::Join { node: NODE_2.to_string() } };
    assert!(sends(&actions).contains(&(NODE_2, &entries_message(vec![join]))), "{actions:?}");
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));

    let carol = cluster.bid("carol", 30);
    assert!(!cluster.is_released(carol));
    cluster.settle();
    assert!(cluster.is_released(carol));

    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn fresh_backup_gets_a_snapshot_once_the_log_outgrew_the_tail() {
    let short_tail = LeaderSettings { tail_capacity: 2, ..settings() };
    let mut cluster = Cluster::start(short_tail, AUCTION_MS, &[]);
    cluster.bid("alice", 10);
    cluster.bid("bob", 20);
    let state_before = cluster.leader.state().clone();

    let actions = cluster.connect(NODE_2);

    let snapshot = Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(1), state: state_before }));
    assert_eq!(sends(&actions)[0], (NODE_2, &snapshot));
    cluster.settle();
    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn fresh_backup_joining_a_new_leader_gets_a_snapshot() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    cluster.bid("alice", 10);
    cluster.settle();
    cluster.crash_leader_and_take_over(NODE_2);
    let state_before = cluster.leader.state().clone();

    let actions = cluster.connect(NODE_3);

    let snapshot = Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(2), state: state_before }));
    assert_eq!(sends(&actions)[0], (NODE_3, &snapshot));
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn entries_sequenced_in_the_round_of_a_join_reach_the_joiner_once_through_its_catch_up() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let bid_index = cluster.leader.state().last.index + 1;

    // A bid and node-3's connection handled in one round.
    let (_, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    cluster.handle(event);
    let connection = cluster.next_connection;
    cluster
        .streams
        .insert(NODE_3.to_string(), Stream { connection, in_flight: VecDeque::new(), acks: VecDeque::new() });
    cluster.backups.insert(NODE_3.to_string(), Backup::default());
    cluster.handle(Event::BackupConnected {
        node: NODE_3.to_string(),
        incarnation: INCARNATION,
        connection,
        last: LogPosition::default(),
    });
    let actions = cluster.take_actions();

    // node-2 gets the bid first; node-3 gets it in its catch-up, once.
    let bid_entry = cluster.sent_entries(bid_index..=bid_index);
    let sent = sends(&actions);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], (NODE_2, &entries_message(bid_entry)));
    let (NODE_3, catch_up) = sent[1] else { panic!("node-3's catch-up second: {sent:?}") };
    assert_eq!(state_after_catch_up(catch_up).last.index, bid_index);

    // Once node-3 acks its catch-up, both get its join.
    cluster.deliver(NODE_3).expect("node-3 installs");
    let actions = cluster.deliver_acks(NODE_3);
    let join = cluster.sent_entries(bid_index + 1..=bid_index + 1);
    assert_eq!(join[0].payload, Payload::Join { node: NODE_3.to_string() });
    assert_eq!(sends(&actions), [(NODE_2, &entries_message(join.clone())), (NODE_3, &entries_message(join))]);

    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn backup_whose_log_is_a_prefix_of_the_tail_gets_only_the_suffix() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();

    // node-3's stream ends; it keeps its log while bidding goes on.
    cluster.lose_stream(NODE_3);
    cluster.bid("bob", 20);
    cluster.bid("carol", 30);
    cluster.settle();
    let node_3_last = cluster.backup(NODE_3).last();
    let leader_last = cluster.leader.state().last;

    let actions = cluster.connect(NODE_3);

    // It gets what it lacks (its removal and the two bids); once it acks
    // them, its join.
    let suffix = cluster.sent_entries(node_3_last.index + 1..=leader_last.index);
    assert_eq!(suffix[0].payload, Payload::Remove { node: NODE_3.to_string() });
    assert_eq!(sends(&actions), [(NODE_3, &entries_message(suffix))]);
    cluster.deliver(NODE_3).expect("node-3 applies the suffix");
    let actions = cluster.deliver_acks(NODE_3);
    let join = entries_message(cluster.sent_entries(leader_last.index + 1..=leader_last.index + 1));
    assert_eq!(sends(&actions), [(NODE_2, &join), (NODE_3, &join)]);

    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}

#[test]
fn backup_behind_the_tail_gets_a_snapshot() {
    let tail_capacity = LeaderSettings { tail_capacity: 3, ..settings() };
    let mut cluster = Cluster::start(tail_capacity, AUCTION_MS, &[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    // More entries than the tail holds: the removal and three bids.
    for (bidder, amount) in [("alice", 10), ("bob", 20), ("carol", 30)] {
        cluster.bid(bidder, amount);
    }
    cluster.settle();

    let actions = cluster.connect(NODE_3);

    let sent = sends(&actions);
    assert!(matches!(sent[0], (NODE_3, Message::Snapshot(_))), "got {sent:?}");
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn backup_whose_last_entry_has_another_epoch_at_the_same_index_gets_a_snapshot() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Alice's bid reaches node-3 only; the leader crashes and node-2 takes
    // over: its takeover entry takes the same index in epoch 2.
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_3).expect("node-3 applies");
    let divergent = cluster.backup(NODE_3).last();
    cluster.crash_leader_and_take_over(NODE_2);
    assert_eq!(cluster.leader.state().last, LogPosition { epoch: epoch_of(2), index: divergent.index });

    let actions = cluster.connect(NODE_3);

    let snapshot = Snapshot { epoch: epoch_of(2), state: cluster.leader.state().clone() };
    assert_eq!(sends(&actions), vec![(NODE_3, &Message::Snapshot(Box::new(snapshot)))]);
    cluster.settle();
    // The bid nobody acknowledged is gone from node-3 too.
    assert!(!cluster.is_released(alice));
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).accepted_bids, 0);
}

#[test]
fn backup_that_holds_the_new_leaders_log_up_to_the_takeover_gets_a_suffix() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).last(), cluster.backup(NODE_2).last());

    // node-3 holds exactly node-2's log: a prefix of node-2's log once it leads.
    cluster.crash_leader_and_take_over(NODE_2);
    let actions = cluster.connect(NODE_3);

    let sent = sends(&actions);
    assert!(
        matches!(sent[..], [(NODE_3, Message::Entries(_))]),
        "ARCHITECTURE.md: unless its log is a prefix of the leader's, it gets a snapshot; got {sent:?}"
    );
}

#[test]
fn reordered_entries_are_refused_as_a_gap_and_a_new_stream_repairs_the_log() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    let bob_index = cluster.leader.state().last.index;

    cluster.reverse_in_flight(NODE_3);
    let refusal = cluster.deliver(NODE_3).expect_err("bob's entry arrives before alice's");
    assert_eq!(refusal, ReplicationError::Gap { got: bob_index, last: bob_index - 2 });

    // As the node does on a refusal: drop the stream and connect again.
    cluster.lose_stream(NODE_3);
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![alice, bob]);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}
