//! The linearizability check on histories built by hand: good ones pass,
//! Unknown outcomes may or may not have taken effect, bad ones are rejected.

use super::*;

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(check_linearizable(&History::default(), &empty()), Verdict::Linearizable { order: Vec::new() });
}

#[test]
fn sequential_good_history_is_linearizable() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        read(1, 1, (20, 30), (100, "alice", 1)),
        fail(2, 1, "bob", 90, (40, 50), (100, "alice")),
        success(3, 0, "bob", 150, (60, 70)),
        read(4, 0, (80, 90), (150, "bob", 2)),
    ]);
    assert_eq!(expect_order(check_linearizable(&h, &empty())), vec![0, 1, 2, 3, 4]);
    assert_eq!(check_durability(&h, &empty(), &state(150, "bob", 2)), Ok(()));
    assert_eq!(check_exactly_once(&h, &empty(), &state(150, "bob", 2)), Ok(()));
}

#[test]
fn concurrent_history_needing_a_non_trivial_order_is_linearizable() {
    // Three concurrent bids invoked highest first: the only order that lets all three
    // succeed is the reverse of invocation, and the read and the FAIL pin carol's bid
    // between bob's and alice's.
    let h = history(vec![
        success(0, 0, "alice", 300, (0, 100)),
        success(1, 1, "carol", 200, (1, 100)),
        success(2, 2, "bob", 100, (2, 100)),
        fail(3, 3, "dave", 150, (3, 98), (200, "carol")),
        read(4, 4, (5, 95), (200, "carol", 2)),
        read(5, 4, (110, 120), (300, "alice", 3)),
    ]);
    let order = expect_order(check_linearizable(&h, &empty()));
    assert_valid_order(&h, &empty(), &order);
    assert!(position(&order, 2) < position(&order, 1));
    assert!(position(&order, 1) < position(&order, 4));
    assert!(position(&order, 4) < position(&order, 0));
    assert!(position(&order, 3) < position(&order, 0));
}

#[test]
fn read_concurrent_with_a_bid_may_see_the_old_highest() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        success(1, 0, "bob", 200, (40, 50)),
        read(2, 1, (45, 70), (100, "alice", 1)),
    ]);
    let order = expect_order(check_linearizable(&h, &empty()));
    assert_valid_order(&h, &empty(), &order);
}

#[test]
fn initial_state_is_respected() {
    let initial = state(500, "zed", 7);
    let h = history(vec![
        fail(0, 0, "bob", 400, (0, 10), (500, "zed")),
        read(1, 1, (20, 30), (500, "zed", 7)),
        success(2, 0, "alice", 600, (40, 50)),
        read(3, 1, (60, 70), (600, "alice", 8)),
    ]);
    assert_valid_order(&h, &initial, &expect_order(check_linearizable(&h, &initial)));
    assert_eq!(check_durability(&h, &initial, &state(600, "alice", 8)), Ok(()));
    assert_eq!(check_exactly_once(&h, &initial, &state(600, "alice", 8)), Ok(()));

    // The same bid of 400 cannot succeed over an initial highest of 500.
    let h = history(vec![success(0, 0, "bob", 400, (0, 10))]);
    let violation = expect_violation(check_linearizable(&h, &initial));
    assert!(violation.message.contains("bid at op 0"), "{}", violation.message);
    assert!(violation.message.contains("highest 500 by zed"), "{}", violation.message);
}

#[test]
fn unknown_bid_that_took_effect_passes() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        in_doubt_bid(1, 1, "bob", 200, 20),
        read(2, 0, (30, 40), (100, "alice", 1)),
        read(3, 2, (50, 60), (200, "bob", 2)),
        in_doubt_read(4, 3, 55),
    ]);
    let order = expect_order(check_linearizable(&h, &empty()));
    assert_valid_order(&h, &empty(), &order);
    assert!(position(&order, 2) < position(&order, 1));
    assert!(position(&order, 1) < position(&order, 3));
    assert_eq!(check_durability(&h, &empty(), &state(200, "bob", 2)), Ok(()));
    assert_eq!(check_exactly_once(&h, &empty(), &state(200, "bob", 2)), Ok(()));
}

#[test]
fn unknown_bid_that_never_took_effect_passes() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        in_doubt_bid(1, 1, "bob", 200, 20),
        read(2, 0, (30, 40), (100, "alice", 1)),
        read(3, 2, (1_000, 1_010), (100, "alice", 1)),
        success(4, 0, "carol", 150, (1_020, 1_030)),
        read(5, 2, (1_040, 1_050), (150, "carol", 2)),
    ]);
    let order = expect_order(check_linearizable(&h, &empty()));
    assert_valid_order(&h, &empty(), &order);
    assert!(!order.contains(&1), "bob's bid cannot be in {order:?}");
    assert_eq!(check_durability(&h, &empty(), &state(150, "carol", 2)), Ok(()));
    assert_eq!(check_exactly_once(&h, &empty(), &state(150, "carol", 2)), Ok(()));
}

#[test]
fn lost_acknowledged_bid_is_a_violation() {
    let h = history(vec![
        success(0, 0, "bob", 50, (0, 10)),
        success(1, 0, "alice", 100, (20, 30)),
        read(2, 1, (40, 50), (50, "bob", 1)),
    ]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.starts_with("read at op 2 (client 1) saw highest 50 by bob"), "{}", violation.message);
    assert!(violation.message.contains("highest 100 by alice with 2 accepted bids"));
    assert_eq!(violation.operations, vec![0, 1, 2]);
}

#[test]
fn stale_read_after_a_later_bid_is_a_violation() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        read(1, 1, (20, 30), (100, "alice", 1)),
        success(2, 0, "bob", 200, (40, 50)),
        read(3, 1, (60, 70), (100, "alice", 1)),
    ]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.starts_with("read at op 3"), "{}", violation.message);
    assert!(violation.operations.contains(&3));
    assert!(violation.operations.contains(&2));
}

#[test]
fn read_of_a_bid_that_never_succeeded_is_a_violation() {
    // A value nobody bid.
    let h = history(vec![success(0, 0, "alice", 100, (0, 10)), read(1, 1, (20, 30), (300, "carol", 2))]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.contains("read at op 1"), "{}", violation.message);

    // A bid that was answered FAIL.
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        fail(1, 1, "bob", 80, (20, 30), (100, "alice")),
        read(2, 1, (40, 50), (80, "bob", 2)),
    ]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.contains("read at op 2"), "{}", violation.message);
}

#[test]
fn concurrent_success_bids_are_rejected_only_when_no_order_fits() {
    // bob's 100 runs alongside alice's 200. The read (after alice's bid finished)
    // counts one accepted bid, so bob's bid was not yet applied; applied later, a bid
    // of 100 under a highest of 200 must FAIL, yet it was answered SUCCESS.
    let impossible = history(vec![
        success(0, 0, "alice", 200, (0, 10)),
        success(1, 1, "bob", 100, (0, 50)),
        read(2, 2, (20, 30), (200, "alice", 1)),
    ]);
    let violation = expect_violation(check_linearizable(&impossible, &empty()));
    assert!(
        violation.message.starts_with("bid at op 1 (client 1, bob bids 100) was answered SUCCESS"),
        "{}",
        violation.message
    );
    assert!(violation.message.contains("lets it succeed"));
    assert_eq!(violation.operations, vec![0, 1, 2]);

    // Had the read counted two accepted bids, bob's bid went first: fine.
    let possible = history(vec![
        success(0, 0, "alice", 200, (0, 10)),
        success(1, 1, "bob", 100, (0, 50)),
        read(2, 2, (20, 30), (200, "alice", 2)),
    ]);
    let order = expect_order(check_linearizable(&possible, &empty()));
    assert_eq!(order, vec![1, 0, 2]);
}

#[test]
fn exception_answer_is_a_violation() {
    let h = history(vec![
        success(0, 0, "alice", 100, (0, 10)),
        bid_answered(1, 1, "bob", 200, (20, 30), BidVerdict::Exception, (100, "alice")),
    ]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
    assert!(violation.message.contains("EXCEPTION"));
    assert_eq!(violation.operations, vec![1]);
}

#[test]
fn success_not_reporting_itself_is_a_violation() {
    let h = history(vec![bid_answered(0, 0, "alice", 100, (0, 10), BidVerdict::Success, (90, "bob"))]);
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.contains("not itself"), "{}", violation.message);
}

#[test]
fn malformed_history_is_reported() {
    let mut h = history(vec![success(0, 0, "alice", 100, (0, 10))]);
    h.operations[0].completed_us = None;
    let violation = expect_violation(check_linearizable(&h, &empty()));
    assert!(violation.message.starts_with("malformed history"), "{}", violation.message);
}
