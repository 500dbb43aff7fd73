//! Failover after the loss of a lagging backup: an acknowledged bid survives,
//! and a node that missed commits never leads.

use super::*;

#[test]
fn acknowledged_bid_survives_the_removal_of_a_lagging_backup_and_then_the_leaders_crash() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // node-2, first in the leaderQueue, freezes: it applies nothing more.
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_3);

    // After the ack timeout the leader removes node-2; the removal is on its
    // way to node-3 when the leader crashes.
    cluster.advance(ACK_TIMEOUT_MS);
    cluster.tick();
    cluster.drop_in_flight(NODE_3);

    // node-2 wakes up, alive, with its old log. Each survivor decides.
    let survivors = [NODE_2, NODE_3];
    let mut successors = Vec::new();
    for me in survivors {
        let backup = cluster.backup(me);
        let view = SelfView {
            id: me,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &backup.state().membership,
            cluster_id: &backup.state().cluster_id,
            recovered: false,
            released: &[],
        };
        let answers: Vec<NodeStatus> =
            survivors.iter().filter(|peer| **peer != me).map(|peer| cluster.status(peer)).collect();
        if let Succession::TakeOver { .. } = choose_successor(&view, Some(LEADER), &answers, &HashSet::new()) {
            successors.push(me);
        }
    }
    assert_eq!(successors.len(), 1, "exactly one survivor takes over: {successors:?}");
    cluster.crash_leader_and_take_over(successors[0]);

    // A bid acknowledged to its client survives the failover. (The leader
    // may not have answered alice yet: node-3 had not applied node-2's
    // removal when it crashed.)
    if cluster.is_released(alice) {
        let remembered = cluster.leader.state().machine.remembered("client-a", 1);
        assert_eq!(
            remembered,
            Some(&cluster.placed(success("alice", 10, true))),
            "alice was told SUCCESS, but {} took over without her bid",
            successors[0]
        );
    }
}

#[test]
fn a_backup_that_rejoined_but_has_not_acked_its_catch_up_never_takes_over() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // node-2, first in the leaderQueue, is cut off and removed; alice's bid
    // commits with node-3 alone.
    cluster.lose_stream(NODE_2);
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert!(cluster.is_released(alice));

    // node-2 comes back with its old log and gets the suffix; node-3 applies
    // whatever the leader sent it; the leader crashes before node-2 applies
    // its suffix.
    cluster.connect(NODE_2);
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.drop_in_flight(NODE_2);

    // node-2 is not a member again until it acks its catch-up, so it is
    // stale in node-3's eyes: it waits, and node-3 takes over with alice's bid.
    let decide = |me: &str, peer: &str| {
        let backup = cluster.backup(me);
        let view = SelfView {
            id: me,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &backup.state().membership,
            cluster_id: &backup.state().cluster_id,
            recovered: false,
            released: &[],
        };
        choose_successor(&view, Some(LEADER), &[cluster.status(peer)], &HashSet::new())
    };
    assert!(matches!(decide(NODE_2, NODE_3), Succession::Wait { .. }));
    assert!(matches!(decide(NODE_3, NODE_2), Succession::TakeOver { .. }));
    cluster.crash_leader_and_take_over(NODE_3);
    assert_eq!(
        cluster.leader.state().machine.remembered("client-a", 1),
        Some(&cluster.placed(success("alice", 10, true)))
    );
}

#[test]
fn successor_never_reuses_the_epoch_of_a_short_lived_leader() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3, NODE_4]);

    // node-1 crashes. node-2 takes over in epoch 2, expecting node-3 and
    // node-4; node-4 catches up and applies alice's bid, node-3 is slow to
    // come back, so nothing commits.
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_4);
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_4).expect("node-4 applies");
    cluster.deliver_acks(NODE_4);
    assert!(!cluster.is_released(alice));

    // node-2 crashes too. node-3, first in its leaderQueue, takes over; it
    // never saw epoch 2, node-4 did.
    let node_3 = cluster.status(NODE_3);
    let node_4 = cluster.status(NODE_4);
    let view_of = |status: &NodeStatus| (status.last, status.membership.clone());
    let (node_3_last, node_3_members) = view_of(&node_3);
    let (node_4_last, node_4_members) = view_of(&node_4);
    let by_node_3 = choose_successor(
        &SelfView {
            id: NODE_3,
            epoch: node_3_last.epoch,
            last: node_3_last,
            membership: &node_3_members,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(LEADER),
        std::slice::from_ref(&node_4),
        &HashSet::new(),
    );
    let by_node_4 = choose_successor(
        &SelfView {
            id: NODE_4,
            epoch: node_4_last.epoch,
            last: node_4_last,
            membership: &node_4_members,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(NODE_2),
        std::slice::from_ref(&node_3),
        &HashSet::new(),
    );
    assert_eq!(by_node_3, take_over(&[NODE_4]));
    assert_eq!(by_node_4, wait_for(NODE_3));
    cluster.take_over_as(NODE_3, LEADER, &members(&[NODE_4]));

    // bob bids on node-3 before node-4 is back; then node-4 connects.
    let bob = cluster.send_bid(bid("bob", 20, "client-b", 1));
    cluster.connect(NODE_4);
    cluster.settle();

    // bob was told SUCCESS: node-4 must hold his bid, and the leader's state.
    assert_eq!(cluster.outcome(bob), &cluster.placed(success("bob", 20, true)));
    assert_eq!(
        cluster.backup(NODE_4).state().machine.remembered("client-b", 1),
        Some(&cluster.placed(success("bob", 20, true))),
        "node-4 kept node-2's epoch-2 entries and acked bob's index without his bid"
    );
    assert_eq!(cluster.backup(NODE_4).state(), cluster.leader.state());
}
