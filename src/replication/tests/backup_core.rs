//! The backup's core: what a backup accepts from a leader and what it refuses
//! (older epochs, gaps, entries it already holds).

use super::*;

#[test]
fn backup_refuses_entries_from_an_older_epoch() {
    let (mut backup, _) = backup_with_three_entries(2);
    let state = backup.state().clone();

    let refusal = backup.apply(&[entry(1, 4, anonymous_bid("bob", 20))]);

    assert_eq!(refusal, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(backup.state(), &state);
    assert_eq!(backup.epoch(), epoch_of(2));
}

#[test]
fn backup_refuses_a_snapshot_from_an_older_epoch() {
    let (mut backup, _) = backup_with_three_entries(2);
    let state = backup.state().clone();

    let state_of_this_cluster = ReplicatedState { cluster_id: CLUSTER_ID.to_string(), ..ReplicatedState::default() };
    let refusal = backup.install(Snapshot { epoch: epoch_of(1), state: state_of_this_cluster });

    assert_eq!(refusal, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(backup.state(), &state);
}

#[test]
fn backup_refuses_a_gap() {
    let (mut backup, _) = backup_with_three_entries(1);
    let state = backup.state().clone();

    let refusal = backup.apply(&[entry(1, 5, anonymous_bid("bob", 20))]);

    assert_eq!(refusal, Err(ReplicationError::Gap { got: 5, last: 3 }));
    assert_eq!(backup.state(), &state);
}

#[test]
fn backup_skips_entries_it_already_holds() {
    let (mut backup, entries) = backup_with_three_entries(1);
    let state = backup.state().clone();

    // The same message again changes nothing.
    assert_eq!(backup.apply(&entries), Ok(3));
    assert_eq!(backup.state(), &state);

    // An overlapping message applies only what is new.
    let overlapping = [entries[2].clone(), entry(1, 4, anonymous_bid("bob", 20))];
    assert_eq!(backup.apply(&overlapping), Ok(4));
    let auction = default_auction(backup.state());
    assert_eq!((auction.accepted_bids, auction.highest_bidder.as_str()), (2, "bob"));
}

#[test]
fn backup_adopts_a_newer_epoch_and_then_refuses_the_old_leader() {
    let (mut backup, _) = backup_with_three_entries(1);

    assert_eq!(backup.apply(&[entry(2, 4, anonymous_bid("bob", 20))]), Ok(4));
    assert_eq!(backup.epoch(), epoch_of(2));

    // A late message of the old leader is refused.
    let late = backup.apply(&[entry(1, 5, anonymous_bid("carol", 30))]);
    assert_eq!(late, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(
        backup.observe_epoch(epoch_of(1)),
        Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) })
    );
    assert_eq!(backup.last(), LogPosition { epoch: epoch_of(2), index: 4 });
}

/// A backup publishes what the leader said it published, as far as its own
/// log holds it; the index only grows, and is announced once per move.
#[test]
fn a_backup_publishes_the_leaders_published_index_as_far_as_it_holds_it() {
    let (mut backup, _) = backup_with_three_entries(2);
    assert_eq!(backup.observe_published(0), None, "nothing published yet");
    assert_eq!(backup.observe_published(2), Some(2));
    assert_eq!(backup.observe_published(2), None, "announced once");

    // The leader published beyond what this backup holds: only its own log
    // up to there counts, and the rest once it arrives.
    assert_eq!(backup.observe_published(5), Some(3));
    assert_eq!(backup.apply(&[entry(2, 4, anonymous_bid("bob", 20))]), Ok(4));
    assert_eq!(backup.observe_published(0), Some(4), "what the leader said before still counts");

    // A message that says less (a new leader whose takeover has not
    // committed yet says 0) takes nothing back: committed stays committed.
    assert_eq!(backup.observe_published(1), None);
    assert_eq!(backup.published(), 4);
}
