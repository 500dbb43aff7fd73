//! The exactly-once check: a request applied twice is caught.

use super::*;

#[test]
fn bid_applied_twice_is_rejected() {
    // alice's bid of 100 is answered FAIL, reporting itself as the highest: its first
    // attempt (same request id, inside the client library) was applied, and the retry
    // was judged as a new bid.
    let applied_twice = history(vec![
        success(0, 0, "bob", 50, (0, 10)),
        fail(1, 1, "alice", 100, (20, 40), (100, "alice")),
        read(2, 0, (50, 60), (100, "alice", 2)),
    ]);
    let final_state = state(100, "alice", 2);
    let violation = check_exactly_once(&applied_twice, &empty(), &final_state)
        .expect_err("FAIL reporting itself with no other request that could place it");
    assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
    assert!(violation.message.contains("applied twice"));
    assert_eq!(violation.operations, vec![1]);
    let violation = expect_violation(check_linearizable(&applied_twice, &empty()));
    assert!(violation.message.starts_with("bid at op 1"), "{}", violation.message);

    // An earlier, separate request for the same bid that timed out explains it: that
    // one took effect and this one legitimately fails. Indistinguishable, so accepted.
    let explained = history(vec![
        success(0, 0, "bob", 50, (0, 10)),
        in_doubt_bid(1, 1, "alice", 100, 15),
        fail(2, 1, "alice", 100, (20, 40), (100, "alice")),
        read(3, 0, (50, 60), (100, "alice", 2)),
    ]);
    assert_eq!(check_exactly_once(&explained, &empty(), &final_state), Ok(()));
    assert_valid_order(&explained, &empty(), &expect_order(check_linearizable(&explained, &empty())));

    // A same-amount request invoked only after the FAIL was answered explains nothing.
    let too_late = history(vec![
        success(0, 0, "bob", 50, (0, 10)),
        fail(1, 1, "alice", 100, (20, 40), (100, "alice")),
        in_doubt_bid(2, 1, "alice", 100, 45),
        read(3, 0, (50, 60), (100, "alice", 2)),
    ]);
    let violation = check_exactly_once(&too_late, &empty(), &final_state)
        .expect_err("the Unknown bid started after the FAIL was answered");
    assert_eq!(violation.operations, vec![1, 2]);
    expect_violation(check_linearizable(&too_late, &empty()));
}

#[test]
fn final_accepted_bids_beyond_the_history_are_rejected() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        success(1, 1, "bob", 200, (20, 30)),
        fail(2, 2, "carol", 150, (40, 50), (200, "bob")),
    ]);
    // Three accepted, but only two bids could have been accepted.
    let counted_twice = state(200, "bob", 3);
    let violation =
        check_exactly_once(&h, &empty(), &counted_twice).expect_err("3 accepted bids from 2 distinct amounts");
    assert!(violation.message.contains("applied more than once"), "{}", violation.message);
    let violation = check_durability(&h, &empty(), &counted_twice).expect_err("3 accepted bids from 2 possible");
    assert!(violation.message.contains("counts 3 bids"), "{}", violation.message);
    assert_eq!(check_exactly_once(&h, &empty(), &state(200, "bob", 2)), Ok(()));

    // An Unknown bid of a new amount in range could be the third.
    let mut with_doubt = h.clone();
    with_doubt.operations.push(in_doubt_bid(3, 3, "erin", 120, 5));
    assert_eq!(check_exactly_once(&with_doubt, &empty(), &counted_twice), Ok(()));
    assert_eq!(check_durability(&with_doubt, &empty(), &counted_twice), Ok(()));

    // Relative to the initial count: 10 before the run, 2 during it.
    let initial = state(50, "zed", 10);
    assert_eq!(check_exactly_once(&h, &initial, &state(200, "bob", 12)), Ok(()));
    check_exactly_once(&h, &initial, &state(200, "bob", 13)).expect_err("13 - 10 > 2");
}
