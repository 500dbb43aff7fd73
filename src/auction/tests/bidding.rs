//! Bidding: registration, the highest bid, the minimum.

use super::*;

#[test]
fn the_first_bid_of_a_bidder_registers_it_and_takes_the_lead() {
    let mut book = book_with_default_auction(1);

    let outcome = place(&mut book, bid("alice", 10));

    assert_eq!(
        outcome,
        BidOutcome {
            verdict: Verdict::Success,
            reason: Some(Reason::Registered { bidder: "alice".to_string() }),
            highest_amount: 10,
            highest_bidder: "alice".to_string(),
            placed: Some(Placed { revision: 0, at_unix_ms: DURING_MS }),
        }
    );
    let auction = default_auction(&book);
    assert_eq!(auction.bidders, OrdMap::from_iter([("alice".to_string(), 10_u64)]));
    assert_eq!((auction.highest_bidder.as_str(), auction.highest_amount), ("alice", 10));
    assert_eq!(auction.accepted_bids, 1);
}

#[test]
fn a_registered_bidder_that_raises_its_bid_succeeds_without_registering_again() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));
    place(&mut book, bid("bob", 20));

    let outcome = place(&mut book, bid("alice", 30));

    // Only the first success of a bidder says it registered.
    assert_success(&outcome, "alice", 30);
    assert_eq!(outcome.reason, None);
    let auction = default_auction(&book);
    assert_eq!(auction.bidders, OrdMap::from_iter([("alice".to_string(), 30_u64), ("bob".to_string(), 20_u64)]));
    assert_eq!(auction.accepted_bids, 3);
}

#[test]
fn a_bid_not_higher_than_the_highest_fails_with_the_reason() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 50));
    let before = book.clone();

    // Equal to the highest bid is not higher.
    let equal = place(&mut book, bid("bob", 50));
    assert_fail(&equal, "bid 50 is not higher than the highest bid 50 by alice", "alice", 50);

    let lower = place(&mut book, bid("bob", 49));
    assert_fail(&lower, "bid 49 is not higher than the highest bid 50 by alice", "alice", 50);

    // A failed bid changes nothing, and does not register bob.
    assert_eq!(book, before);
    assert!(!default_auction(&book).bidders.contains_key("bob"));
}

#[test]
fn a_bid_not_higher_than_the_bidders_own_previous_bid_fails() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));
    place(&mut book, bid("bob", 20));
    let before = book.clone();

    // alice's own best is 10; 15 beats it but not bob's 20. Since the highest
    // bid never falls, the highest-bid rule is the one that refuses it.
    let below_highest = place(&mut book, bid("alice", 15));
    assert_fail(&below_highest, "bid 15 is not higher than the highest bid 20 by bob", "bob", 20);

    // The highest bidder cannot repeat or lower its own bid either.
    let repeated = place(&mut book, bid("bob", 20));
    assert_fail(&repeated, "bid 20 is not higher than the highest bid 20 by bob", "bob", 20);
    let lowered = place(&mut book, bid("bob", 5));
    assert_fail(&lowered, "bid 5 is not higher than the highest bid 20 by bob", "bob", 20);

    assert_eq!(book, before);
}

#[test]
fn a_bid_below_the_minimum_fails_and_the_minimum_itself_succeeds() {
    let mut book = book_with_default_auction(100);
    let before = book.clone();

    let below = place(&mut book, bid("alice", 99));
    // Nobody holds a bid yet, so the outcome reports an empty highest bid.
    assert_fail(&below, "bid 99 is below the minimum bid 100", "", 0);
    assert_eq!(book, before);

    let at_minimum = place(&mut book, bid("alice", 100));
    assert_success(&at_minimum, "alice", 100);
}

#[test]
fn a_minimum_of_zero_is_raised_to_one_so_amount_one_is_the_least_bid() {
    let mut book = book_with_default_auction(0);

    assert_eq!(default_auction(&book).minimum_amount, 1);
    assert_success(&place(&mut book, bid("alice", 1)), "alice", 1);
}

#[test]
fn amounts_up_to_u64_max_are_compared_without_overflow() {
    let mut book = book_with_default_auction(u64::MAX - 1);

    let below_minimum = place(&mut book, bid("alice", u64::MAX - 2));
    assert_fail(&below_minimum, &format!("bid {} is below the minimum bid {}", u64::MAX - 2, u64::MAX - 1), "", 0);

    assert_success(&place(&mut book, bid("alice", u64::MAX - 1)), "alice", u64::MAX - 1);
    assert_success(&place(&mut book, bid("bob", u64::MAX)), "bob", u64::MAX);

    // Nothing can beat u64::MAX, not even u64::MAX again.
    let again = place(&mut book, bid("alice", u64::MAX));
    assert_fail(&again, &format!("bid {0} is not higher than the highest bid {0} by bob", u64::MAX), "bob", u64::MAX);

    let view = book.view(DEFAULT_AUCTION, ENDS_AT_MS).unwrap();
    assert!(view.over);
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount, view.accepted_bids), ("bob", u64::MAX, 2));
}
