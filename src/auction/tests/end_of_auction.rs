//! The end of an auction: the deadline and the close command.

use super::*;

#[test]
fn a_bid_stamped_at_or_after_the_deadline_fails_because_the_auction_is_over() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));

    // One millisecond before the deadline a bid still counts.
    let last_moment = place(&mut book, Bid { at_unix_ms: ENDS_AT_MS - 1, ..bid("bob", 20) });
    assert_success(&last_moment, "bob", 20);
    let before = book.clone();

    // The deadline itself is already too late, and so is any later time,
    // even with an amount that would win. The auction is not closed yet: the
    // stamp alone decides.
    assert!(!default_auction(&book).closed);
    for at_unix_ms in [ENDS_AT_MS, ENDS_AT_MS + 1, i64::MAX] {
        let late = place(&mut book, Bid { at_unix_ms, ..bid("carol", 1_000) });
        assert_fail(&late, "the auction is over", "bob", 20);
    }
    assert_eq!(book, before);
}

#[test]
fn no_bid_is_accepted_after_a_close_even_before_the_deadline() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));
    assert_eq!(book.apply(&close_command(DEFAULT_AUCTION, DURING_MS)), Applied::Closed);
    let before = book.clone();

    let after_close = place(&mut book, bid("bob", 1_000));

    assert_fail(&after_close, "the auction is over", "alice", 10);
    assert_eq!(book, before);
}

#[test]
fn an_over_auction_fails_a_bid_before_judging_its_amount() {
    let mut book = book_with_default_auction(100);

    // Below the minimum and after the deadline: the end is the reason given.
    let late_and_low = place(&mut book, Bid { at_unix_ms: ENDS_AT_MS, ..bid("alice", 5) });

    assert_fail(&late_and_low, "the auction is over", "", 0);
}

#[test]
fn after_the_end_the_view_is_over_and_names_the_highest_bidder_as_winner() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));
    place(&mut book, bid("bob", 25));
    place(&mut book, bid("alice", 20)); // fails: not the winner

    // Before the deadline the auction is running.
    let running = book.view(DEFAULT_AUCTION, ENDS_AT_MS - 1).unwrap();
    assert!(!running.over);

    // At the deadline it is over even before the close entry is applied...
    let expected = AuctionView {
        auction_id: DEFAULT_AUCTION.to_string(),
        over: true,
        highest_amount: 25,
        highest_bidder: "bob".to_string(),
        ends_at_unix_ms: ENDS_AT_MS,
        accepted_bids: 2,
        now_unix_ms: ENDS_AT_MS,
    };
    assert_eq!(book.view(DEFAULT_AUCTION, ENDS_AT_MS), Ok(expected.clone()));

    // ...and after it, with the same winner.
    book.apply(&close_command(DEFAULT_AUCTION, ENDS_AT_MS));
    assert_eq!(book.view(DEFAULT_AUCTION, ENDS_AT_MS), Ok(expected));
}

#[test]
fn a_closed_auction_is_over_in_the_view_before_its_deadline() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));

    book.apply(&close_command(DEFAULT_AUCTION, DURING_MS));

    let view = book.view(DEFAULT_AUCTION, DURING_MS).unwrap();
    assert!(view.over);
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount), ("alice", 10));
}

#[test]
fn an_auction_without_bids_ends_with_no_winner() {
    let book = book_with_default_auction(1);

    let view = book.view(DEFAULT_AUCTION, ENDS_AT_MS).unwrap();

    assert!(view.over);
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount, view.accepted_bids), ("", 0, 0));
}

#[test]
fn close_is_idempotent_and_ignores_an_unknown_auction() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));

    assert_eq!(book.apply(&close_command(DEFAULT_AUCTION, ENDS_AT_MS)), Applied::Closed);
    let after_first_close = book.clone();

    assert_eq!(book.apply(&close_command(DEFAULT_AUCTION, ENDS_AT_MS + 5)), Applied::Ignored);
    assert_eq!(book, after_first_close);

    assert_eq!(book.apply(&close_command("no-such-auction", ENDS_AT_MS)), Applied::Ignored);
    assert_eq!(book, after_first_close);
}

#[test]
fn overdue_lists_the_auctions_past_their_deadline_that_are_not_closed() {
    let mut book = AuctionBook::default();
    book.apply(&open_command("early", 1, OPENED_AT_MS + 10));
    book.apply(&open_command("late", 1, OPENED_AT_MS + 20));
    book.apply(&open_command("closed-early", 1, OPENED_AT_MS + 5));
    book.apply(&close_command("closed-early", OPENED_AT_MS + 1));

    assert_eq!(book.overdue(OPENED_AT_MS + 9), Vec::<String>::new());
    // The deadline itself counts as past, as it does for bids.
    assert_eq!(book.overdue(OPENED_AT_MS + 10), vec!["early".to_string()]);
    // Listed in auction id order, so every replica appends the same closes.
    assert_eq!(book.overdue(OPENED_AT_MS + 20), vec!["early".to_string(), "late".to_string()]);

    // Once the close is applied the auction is no longer overdue.
    book.apply(&close_command("early", OPENED_AT_MS + 20));
    assert_eq!(book.overdue(OPENED_AT_MS + 20), vec!["late".to_string()]);
}
