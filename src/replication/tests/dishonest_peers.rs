//! Dishonest peers: what a connection that says Hello can and cannot do.

use super::*;

#[test]
fn a_hello_that_never_acks_holds_up_no_commit() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    rogue_hello(&mut cluster, ROGUE, LogPosition::default());

    // It is a learner: bids commit on the members' acks alone, again and again.
    for amount in 1..=5 {
        let token = cluster.bid("alice", amount);
        cluster.settle();
        assert!(cluster.is_released(token), "bid {amount} waits for a learner");
    }
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));

    // Past the learner timeout it is dropped, still without a removal entry.
    let last = cluster.leader.state().last;
    cluster.advance(LEARNER_TIMEOUT_MS);
    let actions = cluster.tick();
    assert!(actions.contains(&Action::Disconnect { node: ROGUE.to_string(), connection: ROGUE_CONNECTION }));
    assert_eq!(cluster.leader.state().last, last, "a learner leaves no entry behind");
}

#[test]
fn an_ack_beyond_what_was_sent_on_the_stream_is_a_lie_and_ends_the_stream() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    rogue_hello(&mut cluster, ROGUE, LogPosition::default());

    let actions = cluster.step(Event::Ack { node: ROGUE.to_string(), connection: ROGUE_CONNECTION, index: u64::MAX });

    assert!(actions.contains(&Action::Disconnect { node: ROGUE.to_string(), connection: ROGUE_CONNECTION }));
    assert!(!cluster.leader.state().membership.contains(&ROGUE.to_string()), "it never joins");
    let token = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(token));
}

#[test]
fn a_second_hello_under_a_members_name_is_refused_and_its_acks_do_not_count() {
    // node-3 is a member, frozen: it holds alice's entry but acks nothing.
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    assert!(!cluster.is_released(alice));

    // An impostor says Hello as node-3 (it cannot know node-3's
    // incarnation) and acks everything there could be: refused, node-3
    // stays, and the lie counts for nothing.
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]), "node-3 stays a member");
    let lie = Event::Ack { node: NODE_3.to_string(), connection: ROGUE_CONNECTION, index: u64::MAX };
    cluster.step(lie);
    cluster.take_actions();
    assert!(!cluster.is_released(alice), "an impostor's ack released a bid");

    // The frozen node-3 is removed by the ack timeout alone; alice commits
    // once node-2 holds its removal: node-3, which lacks what follows, is
    // now stale in node-2's eyes.
    cluster.advance(ACK_TIMEOUT_MS);
    cluster.tick();
    cluster.settle();
    assert!(cluster.is_released(alice));
    let node_2 = cluster.status(NODE_2);
    assert!(!node_2.membership.contains(&NODE_3.to_string()));
    assert!(more_advanced(node_2.last, cluster.backup(NODE_3).last()));
}

#[test]
fn epochs_never_wrap_and_an_impossible_one_is_refused() {
    assert!(epoch_number(next_epoch(u64::MAX, 7)) < MAX_EPOCH_NUMBER);
    assert!(next_epoch(u64::MAX, 7) > next_epoch(epoch_of(5), 7));
    let (mut backup, _) = backup_with_three_entries(2);
    assert_eq!(backup.observe_epoch(u64::MAX), Err(ReplicationError::ImpossibleEpoch(u64::MAX)));
    assert_eq!(backup.epoch(), epoch_of(2));
}

#[test]
fn a_takeover_ignores_a_leader_claim_from_a_non_member_and_an_absurd_epoch() {
    let membership = members(&[LEADER, NODE_2, NODE_3]);
    let last = LogPosition { epoch: epoch_of(1), index: 10 };
    let me = SelfView {
        id: NODE_2,
        epoch: epoch_of(1),
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    let rogue_leader = NodeStatus {
        waiting: None,
        node: ROGUE.to_string(),
        role: Role::Leader,
        epoch: epoch_of(1),
        leader: Some(ROGUE.to_string()),
        membership: vec![ROGUE.to_string()],
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let poisoned_member = NodeStatus {
        waiting: None,
        node: NODE_3.to_string(),
        role: Role::Joining,
        epoch: u64::MAX,
        leader: None,
        membership: membership.clone(),
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let answers = [rogue_leader, poisoned_member];
    assert_eq!(
        choose_successor(&me, Some(LEADER), &answers, &HashSet::new()),
        Succession::TakeOver { live_backups: vec![] },
        "neither answer is credible: node-2 leads, expecting nobody"
    );
    assert_eq!(highest_credible_epoch(&me, &answers), epoch_of(1));
}

#[test]
fn a_node_never_installs_another_clusters_snapshot() {
    let (mut backup, _) = backup_with_three_entries(1);
    let state = backup.state().clone();
    let other = ReplicatedState { cluster_id: "another".to_string(), ..ReplicatedState::default() };

    let refusal = backup.install(Snapshot { epoch: epoch_of(2), state: other });

    assert!(matches!(refusal, Err(ReplicationError::OtherCluster { .. })), "{refusal:?}");
    assert_eq!(backup.state(), &state);
}

#[test]
fn an_answer_from_another_cluster_or_with_an_impossible_log_cannot_make_a_member_stale() {
    let membership = members(&[LEADER, NODE_2, NODE_3]);
    let last = LogPosition { epoch: epoch_of(1), index: 10 };
    let me = SelfView {
        id: NODE_2,
        epoch: epoch_of(1),
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    let ahead_without_me = |cluster_id: &str, last_epoch: u64| NodeStatus {
        waiting: None,
        node: ROGUE.to_string(),
        role: Role::Joining,
        epoch: epoch_of(1),
        leader: None,
        membership: vec![ROGUE.to_string()],
        last: LogPosition { epoch: last_epoch, index: 1_000 },
        pid: 0,
        cluster_id: cluster_id.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let not_credible = [
        ahead_without_me("another-cluster", epoch_of(1)),
        ahead_without_me("", epoch_of(1)),
        ahead_without_me(CLUSTER_ID, epoch_of(7)),
    ];
    for answer in not_credible {
        assert_eq!(
            choose_successor(&me, Some(LEADER), std::slice::from_ref(&answer), &HashSet::new()),
            Succession::TakeOver { live_backups: vec![] },
            "{answer:?} must not stop node-2"
        );
    }
    // A node of this cluster that counts itself a member and is ahead is
    // evidence, as a joiner after node-2's removal would be. (Telling such
    // a node from an impostor needs authenticated peers.)
    let evidence = ahead_without_me(CLUSTER_ID, epoch_of(1));
    assert_eq!(choose_successor(&me, Some(LEADER), &[evidence], &HashSet::new()), Succession::Wait { for_node: None });
}
