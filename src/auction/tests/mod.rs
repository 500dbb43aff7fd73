//! Unit tests of the auction rules: they drive `AuctionBook::apply` and
//! `validate_bid` directly, with no clock, network or replication, and assert
//! on the outcomes and on the whole book.
//!
//! The tests are one file per topic; this module holds the helpers they share.

use super::*;

mod bidding;
mod catalogue;
mod dedup;
mod determinism;
mod end_of_auction;
mod exceptions;
mod names;
mod opening;
mod validate_bid;

/// When the test auctions open; every command is stamped relative to it.
const OPENED_AT_MS: i64 = 1_700_000_000_000;
/// The default test auction's deadline: one minute after it opened.
const ENDS_AT_MS: i64 = OPENED_AT_MS + 60_000;
/// How long closed test auctions are kept.
const RETAIN_MS: u64 = 3_600_000;
/// A time well before the deadline, at which bids are judged on amounts.
const DURING_MS: i64 = OPENED_AT_MS + 1_000;

fn open_command(auction_id: &str, minimum_amount: u64, ends_at_unix_ms: i64) -> Command {
    Command::Open(OpenAuction {
        auction_id: auction_id.to_string(),
        description: format!("test auction {auction_id}"),
        minimum_amount,
        ends_at_unix_ms,
        at_unix_ms: OPENED_AT_MS,
    })
}

fn close_command(auction_id: &str, at_unix_ms: i64) -> Command {
    Command::Close { auction_id: auction_id.to_string(), at_unix_ms, retain_ms: RETAIN_MS }
}

/// A book holding the default auction, open until `ENDS_AT_MS`.
fn book_with_default_auction(minimum_amount: u64) -> AuctionBook {
    let mut book = AuctionBook::default();
    assert_eq!(book.apply(&open_command(DEFAULT_AUCTION, minimum_amount, ENDS_AT_MS)), Applied::Opened);
    book
}

/// A bid on the default auction during the auction, without dedup.
fn bid(bidder: &str, amount: u64) -> Bid {
    Bid {
        name_digest: None,
        auction_id: DEFAULT_AUCTION.to_string(),
        bidder: bidder.to_string(),
        amount,
        client_id: String::new(),
        request_id: 0,
        at_unix_ms: DURING_MS,
    }
}

/// The same bid, sent by a client session that wants it deduplicated.
fn from_client(bid: Bid, client_id: &str, request_id: u64) -> Bid {
    Bid { client_id: client_id.to_string(), request_id, ..bid }
}

fn place(book: &mut AuctionBook, bid: Bid) -> BidOutcome {
    match book.apply(&Command::Bid(bid)) {
        Applied::Bid(outcome) => outcome,
        other => panic!("a bid command produced {other:?}"),
    }
}

fn default_auction(book: &AuctionBook) -> &Auction {
    &book.auctions[DEFAULT_AUCTION]
}

fn assert_success(outcome: &BidOutcome, bidder: &str, amount: u64) {
    assert_eq!(outcome.verdict, Verdict::Success, "expected a success, got {outcome:?}");
    assert_eq!(outcome.highest_amount, amount);
    assert_eq!(outcome.highest_bidder, bidder);
}

/// Checks a FAIL, its reason by the words it renders to.
fn assert_fail(outcome: &BidOutcome, reason: &str, highest_bidder: &str, highest_amount: u64) {
    assert_eq!(outcome.verdict, Verdict::Fail, "{outcome:?}");
    assert_eq!(render(&outcome.reason), reason);
    assert_eq!((outcome.highest_bidder.as_str(), outcome.highest_amount), (highest_bidder, highest_amount));
}

/// Checks an EXCEPTION, its reason by the words it renders to.
fn assert_exception(outcome: &BidOutcome, reason: &str, context: &str) {
    assert_eq!(outcome.verdict, Verdict::Exception, "{context}: {outcome:?}");
    assert_eq!(render(&outcome.reason), reason, "{context}");
    assert_eq!((outcome.highest_bidder.as_str(), outcome.highest_amount), ("", 0), "{context}");
}
