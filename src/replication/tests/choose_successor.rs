//! `choose_successor`: which survivor takes over after the loss of the leader,
//! and who waits for whom.

use super::*;

const QUEUE: [&str; 4] = [LEADER, NODE_2, NODE_3, NODE_4];

fn position(epoch: u64, index: u64) -> LogPosition {
    LogPosition { epoch, index }
}

fn answer(node: &str, last: LogPosition, membership: &[&str]) -> NodeStatus {
    NodeStatus {
        waiting: None,
        node: node.to_string(),
        role: Role::Joining,
        epoch: last.epoch,
        leader: None,
        membership: members(membership),
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    }
}

/// The decision of `me`, whose log ends at `last`, after the loss of `LEADER`.
fn decide(me: &str, last: LogPosition, membership: &[&str], answers: &[NodeStatus]) -> Succession {
    decide_passing_over(me, last, membership, answers, &[])
}

fn decide_passing_over(
    me: &str,
    last: LogPosition,
    membership: &[&str],
    answers: &[NodeStatus],
    passed_over: &[&str],
) -> Succession {
    let membership = members(membership);
    let passed_over: HashSet<NodeId> = passed_over.iter().map(|node| node.to_string()).collect();
    choose_successor(
        &SelfView {
            id: me,
            epoch: last.epoch,
            last,
            membership: &membership,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(LEADER),
        answers,
        &passed_over,
    )
}

#[test]
fn first_live_member_of_the_leader_queue_takes_over() {
    let last = position(1, 10);
    let node_3 = answer(NODE_3, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    let decision = decide(NODE_2, last, &QUEUE, &[node_3, node_4]);

    assert_eq!(decision, take_over(&[NODE_3, NODE_4]));
}

#[test]
fn later_members_wait_for_the_first_live_one() {
    let last = position(1, 10);
    let node_2 = answer(NODE_2, last, &QUEUE);
    let node_3 = answer(NODE_3, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    assert_eq!(decide(NODE_3, last, &QUEUE, &[node_2.clone(), node_4]), wait_for(NODE_2));
    assert_eq!(decide(NODE_4, last, &QUEUE, &[node_2, node_3]), wait_for(NODE_2));
}

#[test]
fn dead_member_that_does_not_answer_is_skipped() {
    let last = position(1, 10);
    let node_4 = answer(NODE_4, last, &QUEUE);

    // node-2 does not answer.
    let decision = decide(NODE_3, last, &QUEUE, &[node_4]);

    assert_eq!(decision, take_over(&[NODE_4]));
}

/// The decision of `me`, restarted from its disk after every node died
/// (no leader was lost that it knows of).
fn decide_recovered(
    me: &str,
    last: LogPosition,
    membership: &[&str],
    answers: &[NodeStatus],
    released: &[&str],
) -> Succession {
    let membership = members(membership);
    let released = members(released);
    let view = SelfView {
        id: me,
        epoch: last.epoch,
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: true,
        released: &released,
    };
    choose_successor(&view, None, answers, &HashSet::new())
}

fn await_members(missing: &[&str]) -> Succession {
    Succession::AwaitMembers { missing: members(missing) }
}

#[test]
fn after_a_full_restart_a_node_leads_only_once_every_member_it_knows_has_answered() {
    let last = position(1, 10);
    let trio = [LEADER, NODE_2, NODE_3];
    // The old leader restarts first, alone: it waits, and says for whom.
    assert_eq!(decide_recovered(LEADER, last, &trio, &[], &[]), await_members(&[NODE_2, NODE_3]));
    let node_2 = answer(NODE_2, last, &trio);
    assert_eq!(decide_recovered(LEADER, last, &trio, std::slice::from_ref(&node_2), &[]), await_members(&[NODE_3]));
    // Everyone answered: the first of the membership leads, as ever.
    let node_3 = answer(NODE_3, last, &trio);
    assert_eq!(
        decide_recovered(LEADER, last, &trio, &[node_2.clone(), node_3.clone()], &[]),
        take_over(&[NODE_2, NODE_3])
    );
    assert_eq!(decide_recovered(NODE_3, last, &trio, &[answer(LEADER, last, &trio), node_2], &[]), wait_for(LEADER));
}

#[test]
fn a_node_removed_before_the_others_died_and_restarted_first_never_leads() {
    // The leader removed node-2 at index 10 and committed more with node-3;
    // then every node died. node-2's log ends at 9 and still counts itself.
    let before_removal = [LEADER, NODE_2, NODE_3];
    let after_removal = [LEADER, NODE_3];
    let stale = position(1, 9);
    // Alone, with a log that says it is a member: it does not lead.
    assert_eq!(decide_recovered(NODE_2, stale, &before_removal, &[], &[]), await_members(&[LEADER, NODE_3]));
    // Even the one member that does not lead is not enough to decide.
    let node_3 = answer(NODE_3, position(1, 14), &after_removal);
    assert_eq!(
        decide_recovered(NODE_2, stale, &before_removal, std::slice::from_ref(&node_3), &[]),
        await_members(&[LEADER])
    );
    // Once the others answer, their logs show it stale: it waits, for good.
    let leader = answer(LEADER, position(1, 14), &after_removal);
    assert_eq!(
        decide_recovered(NODE_2, stale, &before_removal, &[node_3.clone(), leader.clone()], &[]),
        Succession::Wait { for_node: None }
    );
    // The real members decide among themselves, without it.
    assert_eq!(decide_recovered(LEADER, position(1, 14), &after_removal, &[node_3], &[]), take_over(&[NODE_3]));
}

#[test]
fn a_member_whose_disk_is_gone_is_waited_for_until_an_operator_releases_it() {
    let last = position(1, 10);
    let trio = [LEADER, NODE_2, NODE_3];
    // node-3 came back with nothing: it answers, but with an empty log.
    let node_2 = answer(NODE_2, last, &trio);
    let wiped = answer(NODE_3, LogPosition::default(), &[]);
    assert_eq!(decide_recovered(LEADER, last, &trio, &[node_2.clone(), wiped.clone()], &[]), await_members(&[NODE_3]));
    assert_eq!(decide_recovered(LEADER, last, &trio, &[node_2, wiped], &[NODE_3]), take_over(&[NODE_2]));
}

#[test]
fn every_candidate_of_one_succession_draws_an_epoch_number_of_its_own() {
    let membership = members(&QUEUE);
    let highest = epoch_of(7) | 0x1234;
    let view = |id| SelfView {
        id,
        epoch: highest,
        last: position(highest, 10),
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    // After the leader's loss, node-2 is first in line, then node-3, node-4.
    let numbers: Vec<u64> = [NODE_2, NODE_3, NODE_4]
        .iter()
        .map(|node| epoch_number(next_epoch(successor_epoch_floor(&view(node), Some(LEADER), highest), 0)))
        .collect();
    assert_eq!(numbers, vec![8, 9, 10]);
    // After a full restart nobody was lost: the old leader is first in line.
    let after_restart = epoch_number(next_epoch(successor_epoch_floor(&view(LEADER), None, highest), 0));
    assert_eq!(after_restart, 8);
}

/// node-2, first in line, takes over and crashes before anyone joined it:
/// its takeover entry is on its disk only. node-3 takes over next and
/// commits bids. node-2 restarted from its disk must rank below node-3's
/// leadership: take its snapshot, and never lead without its bids.
#[test]
fn a_takeover_only_its_crashed_node_saw_ranks_below_the_next_leadership() {
    let queue = [LEADER, NODE_2, NODE_3];
    let membership = members(&queue);
    let base = epoch_of(1) | 7;
    let before = position(base, 20);
    let view = |id| SelfView {
        id,
        epoch: base,
        last: before,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    // The nonces favour node-2: they do not decide any more.
    let node_2_epoch = next_epoch(successor_epoch_floor(&view(NODE_2), Some(LEADER), base), u32::MAX);
    let node_3_epoch = next_epoch(successor_epoch_floor(&view(NODE_3), Some(LEADER), base), 1);
    assert!(epoch_number(node_3_epoch) > epoch_number(node_2_epoch));

    // node-2's disk: its lone takeover entry at 21, expecting node-3 back.
    let node_2_last = position(node_2_epoch, 21);
    let node_2_state = ReplicatedState {
        cluster_id: CLUSTER_ID.into(),
        membership: members(&[NODE_2, NODE_3]),
        last: node_2_last,
        ..ReplicatedState::default()
    };
    // node-3's leadership: without node-2, and bids committed up to 40.
    let node_3_state = ReplicatedState {
        cluster_id: CLUSTER_ID.into(),
        membership: members(&[NODE_3]),
        last: position(node_3_epoch, 40),
        ..ReplicatedState::default()
    };

    // Rejoining node-3, node-2 takes its snapshot (a lower epoch would be
    // refused, and node-2 could never rejoin).
    let mut restarted = Backup::new(node_2_epoch, node_2_state.clone());
    let snapshot = Snapshot { epoch: node_3_epoch, state: node_3_state.clone() };
    assert_eq!(restarted.install(snapshot), Ok(40));

    // Or, every node having died, node-2 restarted from its disk hears
    // node-3 and knows itself stale.
    let node_3_answer = NodeStatus {
        epoch: node_3_epoch,
        membership: node_3_state.membership.clone(),
        ..answer(NODE_3, node_3_state.last, &[NODE_3])
    };
    let node_2_view = SelfView {
        id: NODE_2,
        epoch: node_2_epoch,
        last: node_2_last,
        membership: &node_2_state.membership,
        cluster_id: CLUSTER_ID,
        recovered: true,
        released: &[],
    };
    assert_eq!(
        choose_successor(&node_2_view, None, &[node_3_answer], &HashSet::new()),
        Succession::Wait { for_node: None }
    );
}

#[test]
fn stale_candidate_never_takes_over_and_the_others_skip_it() {
    // The lost leader removed node-2 at index 10; node-3 applied the removal,
    // node-2 and node-4 did not.
    let after_removal = [LEADER, NODE_3, NODE_4];
    let node_2 = answer(NODE_2, position(1, 9), &QUEUE);
    let node_3 = answer(NODE_3, position(1, 10), &after_removal);
    let node_4 = answer(NODE_4, position(1, 9), &QUEUE);

    let by_node_2 = decide(NODE_2, position(1, 9), &QUEUE, &[node_3.clone(), node_4.clone()]);
    let by_node_3 = decide(NODE_3, position(1, 10), &after_removal, &[node_2.clone(), node_4]);
    let by_node_4 = decide(NODE_4, position(1, 9), &QUEUE, &[node_2, node_3]);

    assert_eq!(by_node_2, Succession::Wait { for_node: None });
    assert_eq!(by_node_3, take_over(&[NODE_4]));
    assert_eq!(by_node_4, wait_for(NODE_3));
}

#[test]
fn answer_from_a_leader_means_wait() {
    let last = position(1, 10);
    let mut node_3 = answer(NODE_3, position(2, 11), &[NODE_3, NODE_4]);
    node_3.role = Role::Leader;

    // Even the head of the leaderQueue waits: someone already leads.
    let decision = decide(NODE_2, last, &QUEUE, &[node_3]);

    assert_eq!(decision, wait_for(NODE_3));
}

#[test]
fn fresh_node_waits_for_an_existing_cluster_and_bootstraps_only_where_none_is() {
    let empty = LogPosition::default();
    let member = answer(NODE_2, position(1, 10), &QUEUE);
    let other_fresh_node = answer(NODE_3, empty, &[]);

    assert_eq!(decide(NODE_4, empty, &[], std::slice::from_ref(&member)), wait_for(NODE_2));
    assert_eq!(decide(NODE_4, empty, &[], &[other_fresh_node.clone(), member]), wait_for(NODE_2));
    // A member that lost its log but saw an epoch still counts as a cluster.
    let restarted = NodeStatus { epoch: epoch_of(1), ..answer(NODE_2, empty, &[]) };
    assert_eq!(decide(NODE_4, empty, &[], &[restarted]), wait_for(NODE_2));

    assert_eq!(decide(NODE_4, empty, &[], &[other_fresh_node]), take_over(&[]));
    assert_eq!(decide(NODE_4, empty, &[], &[]), take_over(&[]));
}

#[test]
fn passed_over_candidate_is_skipped() {
    let last = position(1, 10);
    let node_2 = answer(NODE_2, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    // node-2 answered but did not take over in time.
    let decision = decide_passing_over(NODE_3, last, &QUEUE, &[node_2.clone(), node_4.clone()], &[NODE_2]);
    assert_eq!(decision, take_over(&[NODE_2, NODE_4]));

    // node-4 skips it too, and waits for node-3.
    let node_3 = answer(NODE_3, last, &QUEUE);
    let decision = decide_passing_over(NODE_4, last, &QUEUE, &[node_2, node_3], &[NODE_2]);
    assert_eq!(decision, wait_for(NODE_3));
}

#[test]
fn node_no_longer_in_its_own_membership_never_takes_over() {
    let without_node_4 = [LEADER, NODE_2, NODE_3];

    // node-4 applied its own removal; node-2 and node-3 are dead.
    let decision = decide(NODE_4, position(1, 10), &without_node_4, &[]);

    assert_eq!(decision, Succession::Wait { for_node: None });
}
