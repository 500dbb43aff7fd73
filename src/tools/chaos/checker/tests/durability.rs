//! The durability check: a final result that lost an acknowledged bid is caught.

use super::*;

#[test]
fn durability_failures_are_rejected() {
    let h = history(vec![success(0, 0, "alice", 100, (0, 10)), success(1, 1, "bob", 200, (20, 30))]);
    assert_eq!(check_durability(&h, &empty(), &state(200, "bob", 2)), Ok(()));

    let violation =
        check_durability(&h, &empty(), &state(100, "alice", 2)).expect_err("bob's acknowledged 200 is gone");
    assert!(violation.message.contains("bid at op 1"), "{}", violation.message);
    assert!(violation.message.contains("lost"));
    assert_eq!(violation.operations, vec![1]);

    let violation =
        check_durability(&h, &empty(), &state(200, "carol", 2)).expect_err("the 200 is credited to the wrong bidder");
    assert!(violation.message.contains("bob's"), "{}", violation.message);

    check_durability(&h, &empty(), &state(200, "bob", 1)).expect_err("one acknowledged bid lost");
    check_durability(&h, &empty(), &state(300, "dave", 3)).expect_err("nobody bid 300");

    // ... unless dave's bid of 300 is in doubt, or carol's 200 (same amount) is.
    let mut with_doubt = h.clone();
    with_doubt.operations.push(in_doubt_bid(2, 2, "dave", 300, 25));
    with_doubt.operations.push(in_doubt_bid(3, 3, "carol", 200, 26));
    assert_eq!(check_durability(&with_doubt, &empty(), &state(300, "dave", 3)), Ok(()));
    assert_eq!(check_durability(&with_doubt, &empty(), &state(200, "carol", 2)), Ok(()));

    check_durability(&h, &state(400, "zed", 5), &state(300, "zed", 7)).expect_err("below the highest before the run");
}
