//! Opening auctions, and the default auction.

use super::*;

#[test]
fn opening_an_existing_auction_is_ignored_and_does_not_reset_it() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));
    let before = book.clone();

    // Another minimum, deadline and description: none of them is taken.
    let reopen = Command::Open(OpenAuction {
        auction_id: DEFAULT_AUCTION.to_string(),
        description: "a different auction".to_string(),
        minimum_amount: 500,
        ends_at_unix_ms: ENDS_AT_MS + 1_000_000,
        at_unix_ms: DURING_MS,
    });
    assert_eq!(book.apply(&reopen), Applied::Ignored);
    assert_eq!(book, before);

    // Nor does opening revive a closed auction.
    book.apply(&close_command(DEFAULT_AUCTION, DURING_MS));
    let closed = book.clone();
    assert_eq!(book.apply(&reopen), Applied::Ignored);
    assert_eq!(book, closed);
    assert_fail(&place(&mut book, bid("bob", 20)), "the auction is over", "alice", 10);
}

#[test]
fn an_empty_auction_id_means_the_default_auction() {
    let mut book = book_with_default_auction(1);

    let outcome = place(&mut book, Bid { auction_id: String::new(), ..bid("alice", 10) });

    assert_success(&outcome, "alice", 10);
    assert_eq!(default_auction(&book).highest_bidder, "alice");
    assert_eq!(resolve_auction_id(""), DEFAULT_AUCTION);
    assert_eq!(resolve_auction_id("other"), "other");
    let view = book.view("", DURING_MS).unwrap();
    assert_eq!((view.auction_id.as_str(), view.highest_amount), (DEFAULT_AUCTION, 10));
}

#[test]
fn auctions_are_judged_independently() {
    let mut book = book_with_default_auction(1);
    book.apply(&open_command("vase", 50, ENDS_AT_MS + 60_000));
    place(&mut book, bid("alice", 100));

    // 60 loses in the default auction but wins in the vase auction.
    let vase = place(&mut book, Bid { auction_id: "vase".to_string(), ..bid("bob", 60) });
    assert_success(&vase, "bob", 60);
    // bob registered in the vase auction only.
    assert!(!default_auction(&book).bidders.contains_key("bob"));

    // After the default auction's deadline the vase auction still runs.
    let later = Bid { auction_id: "vase".to_string(), at_unix_ms: ENDS_AT_MS, ..bid("alice", 70) };
    assert_success(&place(&mut book, later), "alice", 70);
    assert_eq!(book.overdue(ENDS_AT_MS), vec![DEFAULT_AUCTION.to_string()]);
}

#[test]
fn a_view_of_an_unknown_auction_is_an_error() {
    let book = book_with_default_auction(1);

    assert_eq!(book.view("nope", DURING_MS), Err(ReadError::UnknownAuction("nope".to_string())));
    assert_eq!(AuctionBook::default().view("", DURING_MS), Err(ReadError::UnknownAuction(DEFAULT_AUCTION.to_string())));
}
