//! Exceptions: malformed requests change no auction.

use super::*;

/// Bids that are malformed whatever the state, and the reason for each.
fn malformed_bids() -> Vec<(Bid, String)> {
    vec![
        (bid("alice", 0), "amount must be a whole number above 0".to_string()),
        (bid("", 10), "bidder name must not be empty".to_string()),
        (bid(" \t ", 10), "bidder name must not be empty".to_string()),
        (bid(&"a".repeat(MAX_BIDDER_LEN + 1), 10), format!("bidder name is longer than {MAX_BIDDER_LEN} bytes")),
        (bid("eve\u{7}", 10), "bidder name must not hold control characters".to_string()),
        (
            Bid { auction_id: "x".repeat(MAX_AUCTION_ID_LEN + 1), ..bid("alice", 10) },
            format!("auction id is longer than {MAX_AUCTION_ID_LEN} bytes"),
        ),
        (
            Bid { client_id: "c".repeat(MAX_CLIENT_ID_LEN + 1), request_id: 1, ..bid("alice", 10) },
            format!("client id is longer than {MAX_CLIENT_ID_LEN} bytes"),
        ),
        (
            Bid { auction_id: "no-such-auction".to_string(), ..bid("alice", 10) },
            "unknown auction \"no-such-auction\"".to_string(),
        ),
    ]
}

#[test]
fn a_malformed_bid_is_an_exception_with_the_reason_and_changes_nothing() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 10));

    for (malformed, reason) in malformed_bids() {
        let before = book.clone();
        let client_id = malformed.client_id.clone();

        let outcome = place(&mut book, malformed.clone());

        assert_exception(&outcome, &reason, &format!("bid {malformed:?}"));
        // Nothing changes, the dedup table included: a request that cannot
        // have an effect gets the same reason when it is retried.
        assert_eq!(book, before, "bid {malformed:?} from {client_id:?}");
    }
    assert_eq!(book.session_count(), 0);
    assert_eq!(default_auction(&book).accepted_bids, 1);
}

#[test]
fn a_malformed_bid_from_a_client_changes_nothing_not_even_its_session() {
    // A malformed request, or one for an auction that does not exist, has no
    // effect whatever its session: it is answered with its reason and not
    // recorded, so it neither opens a session nor pushes a remembered
    // outcome out of the window.
    let mut book = book_with_default_auction(1);
    place(&mut book, from_client(bid("alice", 10), "client-1", 1));

    for (request_id, (malformed, reason)) in (100..).zip(malformed_bids()) {
        let before = book.clone();
        let client_id =
            if malformed.client_id.is_empty() { "client-1".to_string() } else { malformed.client_id.clone() };
        let malformed = from_client(malformed, &client_id, request_id);

        let outcome = place(&mut book, malformed.clone());

        assert_exception(&outcome, &reason, &format!("bid {malformed:?}"));
        assert_eq!(book, before, "bid {malformed:?}");
    }
}

#[test]
fn an_over_long_client_id_is_refused_by_apply_too_and_opens_no_session() {
    // The limit on client ids is enforced before sequencing; if such a bid
    // reaches `apply` anyway, it is refused the same way and never becomes a
    // session that would grow the table.
    let mut book = book_with_default_auction(1);
    let long_client_id = "c".repeat(MAX_CLIENT_ID_LEN + 1);

    let outcome = place(&mut book, from_client(bid("alice", 10), &long_client_id, 1));

    let reason = format!("client id is longer than {MAX_CLIENT_ID_LEN} bytes");
    assert_exception(&outcome, &reason, "over-long client id");
    assert_eq!(book.session(&long_client_id), None);
    assert_eq!(default_auction(&book).accepted_bids, 0);
}

#[test]
fn a_bid_for_an_unknown_auction_is_refused_without_effect_and_judged_once_it_opens() {
    let mut book = AuctionBook::default();
    let early = from_client(Bid { auction_id: "vase".to_string(), ..bid("alice", 10) }, "client-1", 1);

    let outcome = place(&mut book, early.clone());
    assert_exception(&outcome, "unknown auction \"vase\"", "unknown auction");
    assert!(book.auctions.is_empty());
    assert_eq!(book.session("client-1"), None, "a request without effect opens no session");

    // The auction opens. The first attempt had no effect, so a retry that
    // reaches the open auction is its only execution.
    book.apply(&open_command("vase", 1, ENDS_AT_MS));
    assert_success(&place(&mut book, early.clone()), "alice", 10);
    assert_eq!(book.auctions["vase"].accepted_bids, 1);
    assert_eq!(place(&mut book, early), book.remembered("client-1", 1).cloned().expect("remembered"));
    assert_eq!(book.auctions["vase"].accepted_bids, 1);
}
