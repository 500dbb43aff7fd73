//! The membership record: the in-sync set the coordinator holds.

use super::*;

/// The leader commits without a member only once the record without it is
/// stored: until then the removed member may lead after the leader dies,
/// and it lacks what the others acked.
#[test]
fn a_removed_member_gates_commits_until_the_record_without_it_is_stored() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let listed = cluster.leader.record().nodes();
    assert_eq!(listed, vec![LEADER.to_string(), NODE_2.to_string(), NODE_3.to_string()]);

    // node-3 goes silent; the coordinator is slow to store its removal.
    cluster.hold_records = true;
    cluster.lose_stream(NODE_3);
    let token = cluster.bid("alice", 10);
    cluster.settle();
    assert!(!cluster.is_released(token), "a bid committed while the record still lists node-3");
    let pending = cluster.records.last().expect("a record write was asked for");
    assert_eq!(pending.nodes(), vec![LEADER.to_string(), NODE_2.to_string()]);

    // Stored: the bid commits on node-2's ack alone.
    cluster.release_records();
    cluster.settle();
    assert!(cluster.is_released(token), "the bid waits although the record no longer lists node-3");
    assert_eq!(cluster.outcome(token).verdict, Verdict::Success);
}

/// A stream under a member's name with another incarnation (the node
/// restarted without its disk, once its old stream ended) is not that
/// member: the member's removal is stored before anything commits without
/// it, and the newcomer starts as a learner, listed only once caught up.
#[test]
fn a_hello_under_a_members_name_with_another_incarnation_ends_that_membership_in_the_record() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    cluster.incarnations.insert(NODE_3.to_string(), 2);
    cluster.connect(NODE_3);
    cluster.settle();
    let record = cluster.leader.record().clone();
    let listed = record.members.iter().find(|member| member.node == NODE_3).expect("node-3 listed again");
    assert_eq!(listed.incarnation, 2, "the record lists the new copy, not the old one");
    let removal_stored =
        cluster.records.iter().any(|record| record.nodes() == vec![LEADER.to_string(), NODE_2.to_string()]);
    assert!(removal_stored, "the old copy's removal was stored first: {:?}", cluster.records);
}

/// Each takeover's epoch number is the one its record stores, above the
/// record's before it: two leaderships never share one. Membership writes
/// keep it.
#[test]
fn a_takeover_epoch_is_above_the_record_before_it() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let before = cluster.leader.record().clone();
    assert_eq!(before.epoch, 1, "joins keep the leadership's epoch number");
    cluster.crash_leader_and_take_over(NODE_2);
    let after = cluster.leader.record();
    assert!(after.version > before.version && after.epoch > before.epoch);
    assert_eq!(epoch_number(cluster.leader.epoch()), after.epoch);
}

/// While a member's own stream is live, a Hello under its name with
/// another incarnation (an impostor: the member cannot restart while its
/// process holds its port) is refused: the member stays, and its acks go
/// on committing bids.
#[test]
fn a_hello_under_a_connected_members_name_with_another_incarnation_is_refused() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let connection = cluster.connection(NODE_3);
    let record = cluster.leader.record().clone();
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    cluster.settle();
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(connection), "the member's own stream stays");
    assert_eq!(cluster.leader.record(), &record, "the record is unchanged");
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
    let token = cluster.bid("alice", 7);
    cluster.settle();
    assert!(cluster.is_released(token));
    assert_eq!(cluster.outcome(token).verdict, Verdict::Success);
}

/// After a takeover where no record knew the members' incarnations, an
/// expected member that comes back with less than what is committed (it
/// lost its state) is not listed as a member: it starts over as a learner,
/// and the record lists it only once it has caught up.
#[test]
fn an_expected_member_of_unknown_incarnation_that_lost_its_state_starts_as_a_learner() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    for amount in 1..=3 {
        let token = cluster.bid("alice", amount);
        cluster.settle();
        assert!(cluster.is_released(token));
    }
    cluster.incarnations.insert(NODE_3.to_string(), UNKNOWN_INCARNATION);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.release_records();
    let committed = cluster.leader.state().last.index;
    // Node 3 restarted without its disk: an empty log, a new incarnation.
    cluster.backups.insert(NODE_3.to_string(), Backup::default());
    cluster.incarnations.insert(NODE_3.to_string(), 9);
    cluster.hold_records = true;
    cluster.connect(NODE_3);
    cluster.take_actions();
    let the_new_copy = |member: &Member| member.node == NODE_3 && member.incarnation == 9;
    assert!(
        !cluster.records.iter().any(|record| record.members.iter().any(the_new_copy)),
        "a copy with less than index {committed} was listed: {:?}",
        cluster.records
    );
    // Once it has caught up it is admitted and listed.
    cluster.hold_records = false;
    cluster.release_records();
    cluster.settle();
    assert!(cluster.leader.record().members.iter().any(the_new_copy), "{:?}", cluster.leader.record());
}

/// The same takeover without incarnations: an expected member whose log
/// is merely short (an entry in flight when every node died) is caught up
/// as a member, not started over.
#[test]
fn an_expected_member_of_unknown_incarnation_whose_log_is_short_stays_a_member() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let token = cluster.bid("alice", 1);
    cluster.settle();
    assert!(cluster.is_released(token));
    // A bid reaches node-2 only; then the leader dies.
    cluster.bid("bob", 2);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.incarnations.insert(NODE_3.to_string(), UNKNOWN_INCARNATION);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.release_records();
    assert!(cluster.backup(NODE_3).last().index < cluster.leader.state().last.index, "node-3 is short");
    cluster.incarnations.insert(NODE_3.to_string(), 4);
    let written = cluster.records.len();
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_3]), "node-3 stays a member");
    let dropped = cluster.records[written..].iter().any(|record| !record.nodes().contains(&NODE_3.to_string()));
    assert!(!dropped, "node-3 was removed on the way: {:?}", &cluster.records[written..]);
    let listed = cluster.leader.record().members.iter().any(|member| member.node == NODE_3 && member.incarnation == 4);
    assert!(listed, "{:?}", cluster.leader.record());
}

/// An impostor that said Hello under a member's name while the member was
/// between streams holds only a learner's place: the real node, coming
/// back, takes it over instead of being refused.
#[test]
fn an_impostor_in_a_learners_place_does_not_keep_the_real_node_out() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(ROGUE_CONNECTION), "the impostor is a learner");
    cluster.connect(NODE_3);
    let real = cluster.connection(NODE_3);
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(real), "the real node took its place back");
    cluster.settle();
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}
