//! Takeover: a successor raises the epoch, sets the membership, and holds its
//! replies until the backups it expects have connected and acked.

use super::*;

#[test]
fn takeover_raises_the_epoch_and_its_entry_sets_the_membership() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();
    let old_epoch = cluster.leader.epoch();
    let old_last = cluster.leader.state().last;

    let actions = cluster.crash_leader_and_take_over(NODE_2);

    assert_eq!(actions, vec![], "nobody is connected yet");
    assert!(cluster.leader.epoch() > old_epoch);
    assert_eq!(cluster.leader.epoch(), epoch_of(2));
    assert_eq!(cluster.leader.state().last, LogPosition { epoch: epoch_of(2), index: old_last.index + 1 });
    assert_eq!(cluster.leader.state().membership, members(&[NODE_2, NODE_3]));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_3]));

    // node-3 catches up: the same membership, the new epoch.
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).epoch(), epoch_of(2));
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn takeover_epoch_is_above_every_epoch_the_successor_has_seen() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // A leader of epoch 3 came and went, leaving only its heartbeats behind:
    // both backups saw epoch 3, but their logs still end in epoch 1.
    for node in [NODE_2, NODE_3] {
        let backup = cluster.backups.get_mut(node).expect("the backup exists");
        backup.observe_epoch(epoch_of(3)).expect("a newer epoch is accepted");
        assert_eq!(backup.last().epoch, epoch_of(1));
    }

    cluster.crash_leader_and_take_over(NODE_2);
    assert_eq!(cluster.leader.epoch(), epoch_of(4));

    // So node-3 accepts what the new leader sends.
    cluster.connect(NODE_3);
    cluster.deliver(NODE_3).expect("node-3 accepts epoch 4");
    assert_eq!(cluster.backup(NODE_3).epoch(), epoch_of(4));
}

#[test]
fn new_leader_holds_replies_until_the_expected_backups_connect_and_ack() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.crash_leader_and_take_over(NODE_2);

    // A read, a bid and a read on the new leader: node-3 is expected but not
    // back. The first read waits too: the new leader's log may hold entries
    // of the old epoch that node-3 lacks.
    let first_read = cluster.read();
    let alice = cluster.bid("alice", 10);
    let read = cluster.read();
    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    // node-3 connects: still nothing until it acks.
    cluster.connect(NODE_3);
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());
    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![first_read, alice, read]);
    assert_eq!(cluster.view(first_read).accepted_bids, 0);
    assert_eq!(cluster.view(read).highest_bidder, "alice");
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn new_leader_removes_an_expected_backup_that_never_comes_back_after_the_ack_timeout() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.crash_leader_and_take_over(NODE_2);
    let alice = cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;

    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);

    // node-3 never had a stream to close: its removal is all, and the leader,
    // now alone, answers alice.
    cluster.advance(1);
    let actions = cluster.tick();
    assert_eq!(actions, vec![bid_replied(alice, alice_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.state().membership, members(&[NODE_2]));
}

#[test]
fn deadline_passed_during_failover_is_closed_by_the_first_tick_of_the_new_leader() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(alice));

    // The leader crashes; node-2 takes over at 6 s, past the 5 s deadline,
    // with no tick of the old leader in between.
    cluster.advance(6_000);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    let node_3_connection = cluster.connection(NODE_3);
    cluster.settle();
    assert!(!default_auction(cluster.leader.state()).closed);

    // Its first tick appends the close, stamped now.
    let close_index = cluster.leader.state().last.index + 1;
    let actions = cluster.tick();
    let close = Entry {
        epoch: epoch_of(2),
        index: close_index,
        payload: Payload::Command(Command::Close {
            auction_id: DEFAULT_AUCTION.to_string(),
            at_unix_ms: cluster.now.unix_ms,
            retain_ms: DEFAULT_RETAIN_CLOSED.as_millis() as u64,
        }),
    };
    assert_eq!(
        actions,
        vec![Action::Send {
            to: NODE_3.to_string(),
            connection: node_3_connection,
            message: entries_message(vec![close])
        }]
    );

    // A bid now fails, and the close is on node-3 too.
    let bob = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.outcome(bob), &auction_over("alice", 10));
    assert!(default_auction(cluster.backup(NODE_3).state()).closed);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}
