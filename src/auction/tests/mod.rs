//! Unit tests of the auction rules: they drive `AuctionBook::apply` and
//! `validate_bid` directly, with no clock, network or replication, and assert
//! on the outcomes and on the whole book.

use super::*;

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

// ---------------------------------------------------------------------------
// validate_bid: the stateless checks made before a bid is sequenced.
// ---------------------------------------------------------------------------

#[test]
fn validate_bid_accepts_a_well_formed_request() {
    assert_eq!(validate_bid("default", "alice", 1, "client-1"), Ok(()));
    // Empty ids are well formed: the empty auction id means the default
    // auction, the empty client id disables dedup.
    assert_eq!(validate_bid("", "alice", u64::MAX, ""), Ok(()));
    // Inner spaces and non-ASCII letters are ordinary names.
    assert_eq!(validate_bid("", "Zoë van der Berg", 5, ""), Ok(()));
}

#[test]
fn validate_bid_refuses_amount_zero_with_the_reason() {
    assert_eq!(
        validate_bid("", "alice", 0, "").map_err(|reason| reason.to_string()),
        Err("amount must be a whole number above 0".to_string())
    );
}

#[test]
fn validate_bid_refuses_an_empty_or_whitespace_only_bidder() {
    for bidder in ["", " ", "   ", "\u{3000}", " \u{a0} "] {
        assert_eq!(
            validate_bid("", bidder, 10, "").map_err(|reason| reason.to_string()),
            Err("bidder name must not be empty".to_string()),
            "bidder {bidder:?}"
        );
    }
}

#[test]
fn validate_bid_refuses_a_bidder_longer_than_max_bidder_len_bytes() {
    let too_long = format!("bidder name is longer than {MAX_BIDDER_LEN} bytes");
    assert_eq!(validate_bid("", &"a".repeat(MAX_BIDDER_LEN), 10, ""), Ok(()));
    assert_eq!(
        validate_bid("", &"a".repeat(MAX_BIDDER_LEN + 1), 10, "").map_err(|reason| reason.to_string()),
        Err(too_long.clone())
    );
    // The limit counts bytes, not characters: "é" is two bytes in UTF-8.
    assert_eq!(validate_bid("", &"é".repeat(MAX_BIDDER_LEN / 2), 10, ""), Ok(()));
    assert_eq!(
        validate_bid("", &"é".repeat(MAX_BIDDER_LEN / 2 + 1), 10, "").map_err(|reason| reason.to_string()),
        Err(too_long)
    );
}

#[test]
fn validate_bid_refuses_control_characters_in_the_bidder() {
    for bidder in ["ali\nce", "alice\r", "\0alice", "al\u{7f}ice", "al\u{1b}[31mice", "alice\u{85}", "a\tb"] {
        assert_eq!(
            validate_bid("", bidder, 10, "").map_err(|reason| reason.to_string()),
            Err("bidder name must not hold control characters".to_string()),
            "bidder {bidder:?}"
        );
    }
}

fn normalize_name_of(name: &str) -> Result<Cow<'_, str>, String> {
    normalize_name(name, Party::Bidder).map_err(|reason| reason.to_string())
}

#[test]
fn look_alike_bidder_names_are_one_bidder_or_refused() {
    // Trimmed and composed (NFC): these are alice.
    for spelling in [" alice ", "alice", "\u{3000}alice\u{a0}"] {
        assert_eq!(normalize_name_of(spelling).as_deref(), Ok("alice"), "{spelling:?}");
    }
    assert_eq!(normalize_name_of("Jose\u{301}"), normalize_name_of("Jos\u{e9}"));
    // Bidi overrides and zero-width characters make a name look like
    // another: refused, as control characters are.
    for hidden in ["\u{202e}ecila", "\u{200b}", "al\u{200d}ice", "\u{feff}alice"] {
        let refused = normalize_name_of(hidden).expect_err(hidden);
        assert!(refused.contains("characters") || refused.contains("empty"), "{hidden:?}: {refused}");
    }
    // apply refuses a name that is not in its normal form, so the log holds
    // one spelling per bidder.
    let mut book = book_with_default_auction(1);
    let outcome = place(&mut book, bid(" alice", 10));
    assert_eq!(outcome.verdict, Verdict::Exception);
    assert!(render(&outcome.reason).contains("normal form"), "{:?}", outcome.reason);
}

#[test]
fn validate_bid_refuses_an_over_long_client_id_or_auction_id() {
    assert_eq!(validate_bid("", "alice", 10, &"c".repeat(MAX_CLIENT_ID_LEN)), Ok(()));
    assert_eq!(
        validate_bid("", "alice", 10, &"c".repeat(MAX_CLIENT_ID_LEN + 1)).map_err(|reason| reason.to_string()),
        Err(format!("client id is longer than {MAX_CLIENT_ID_LEN} bytes"))
    );
    assert_eq!(validate_bid(&"x".repeat(MAX_AUCTION_ID_LEN), "alice", 10, ""), Ok(()));
    assert_eq!(
        validate_bid(&"x".repeat(MAX_AUCTION_ID_LEN + 1), "alice", 10, "").map_err(|reason| reason.to_string()),
        Err(format!("auction id is longer than {MAX_AUCTION_ID_LEN} bytes"))
    );
}

// ---------------------------------------------------------------------------
// Bidding: registration, the highest bid, the minimum.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The end of an auction: the deadline and the close command.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Opening auctions, and the default auction.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Exceptions: malformed requests change no auction.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The dedup table: a retried request is answered, not applied again.
// ---------------------------------------------------------------------------

#[test]
fn a_retried_bid_returns_its_first_outcome_and_is_applied_once() {
    let mut book = book_with_default_auction(1);
    let request = from_client(bid("alice", 10), "client-1", 1);

    let first = place(&mut book, request.clone());
    let after_first = book.clone();
    let retry = place(&mut book, request);

    assert_success(&first, "alice", 10);
    // Without dedup the retry would fail as "not higher than the highest".
    assert_eq!(retry, first);
    assert_eq!(book, after_first);
    assert_eq!(default_auction(&book).accepted_bids, 1);
    assert_eq!(book.remembered("client-1", 1), Some(&first));
}

#[test]
fn an_accepted_bid_carries_its_revision_and_stamp_and_a_retry_replays_them() {
    let mut book = book_with_default_auction(1);
    let request = from_client(bid("alice", 10), "client-1", 1);

    let first = match book.apply_at(7, &Command::Bid(request.clone())) {
        Applied::Bid(outcome) => outcome,
        other => panic!("a bid command produced {other:?}"),
    };
    let refused = match book.apply_at(8, &Command::Bid(bid("bob", 5))) {
        Applied::Bid(outcome) => outcome,
        other => panic!("a bid command produced {other:?}"),
    };
    let retry = match book.apply_at(9, &Command::Bid(request)) {
        Applied::Bid(outcome) => outcome,
        other => panic!("a bid command produced {other:?}"),
    };

    assert_eq!(first.placed, Some(Placed { revision: 7, at_unix_ms: DURING_MS }));
    let accepted = &default_auction(&book).history[0];
    assert_eq!((accepted.revision, accepted.at_unix_ms), (7, DURING_MS), "the history shows the same place");
    assert_eq!(refused.placed, None, "a refused bid has no place");
    assert_eq!(retry, first, "the retry replays the first place, not its own revision");
}

#[test]
fn a_retry_returns_the_first_outcome_even_after_the_state_changed() {
    let mut book = book_with_default_auction(1);
    let alice_request = from_client(bid("alice", 10), "alice-session", 1);
    let first = place(&mut book, alice_request.clone());

    // Meanwhile bob outbids alice and the auction closes.
    place(&mut book, from_client(bid("bob", 20), "bob-session", 1));
    book.apply(&close_command(DEFAULT_AUCTION, ENDS_AT_MS));
    let before_retry = book.clone();

    let retry = place(&mut book, alice_request);

    // The retry reports alice's success and the highest bid as it was then,
    // not "the auction is over" and not bob's bid.
    assert_eq!(retry, first);
    assert_success(&retry, "alice", 10);
    assert_eq!(book, before_retry);
    assert_eq!(default_auction(&book).accepted_bids, 2);
}

#[test]
fn a_retried_failure_returns_the_first_failure() {
    let mut book = book_with_default_auction(1);
    place(&mut book, bid("alice", 50));
    let low = from_client(bid("bob", 40), "bob-session", 1);

    let first = place(&mut book, low.clone());
    assert_fail(&first, "bid 40 is not higher than the highest bid 50 by alice", "alice", 50);

    place(&mut book, bid("alice", 60));
    // Judged again, the reason would name 60; the retry gets the first answer.
    assert_eq!(place(&mut book, low), first);
}

#[test]
fn a_request_id_reused_for_another_bid_is_refused_and_not_applied() {
    let mut book = book_with_default_auction(1);
    book.apply(&open_command("vase", 1, ENDS_AT_MS));
    let first = place(&mut book, from_client(bid("alice", 10), "client-1", 1));
    let after_first = book.clone();

    // The same request id from the same client with other content is not a
    // retry: it gets a clear error, never the first request's SUCCESS.
    for reused in [bid("alice", 99), bid("mallory", 10), Bid { auction_id: "vase".into(), ..bid("alice", 10) }] {
        let outcome = place(&mut book, from_client(reused.clone(), "client-1", 1));
        assert_eq!(outcome.verdict, Verdict::Exception, "{reused:?}");
        assert!(render(&outcome.reason).contains("different request"), "{:?}", outcome.reason);
        assert_eq!(book, after_first, "{reused:?}");
    }
    // The faithful retry still gets its first outcome.
    assert_eq!(place(&mut book, from_client(bid("alice", 10), "client-1", 1)), first);
    // An empty auction id and the default auction's id are the same request.
    let same = Bid { auction_id: String::new(), ..bid("alice", 10) };
    assert_eq!(place(&mut book, from_client(same, "client-1", 1)), first);

    // The same request id from another client is another request.
    let other_client = place(&mut book, from_client(bid("bob", 20), "client-2", 1));
    assert_success(&other_client, "bob", 20);
    assert_eq!(default_auction(&book).accepted_bids, 2);
}

#[test]
fn an_empty_client_id_disables_dedup() {
    let mut book = book_with_default_auction(1);
    let anonymous = Bid { request_id: 7, ..bid("alice", 10) };

    let first = place(&mut book, anonymous.clone());
    let second = place(&mut book, anonymous);

    // The second copy is judged on its own: alice already holds 10.
    assert_success(&first, "alice", 10);
    assert_fail(&second, "bid 10 is not higher than the highest bid 10 by alice", "alice", 10);
    assert!(book.sessions.is_empty());
    assert_eq!(book.remembered("", 7), None);

    // A copy with a higher amount is applied again.
    assert_success(&place(&mut book, Bid { request_id: 7, ..bid("alice", 11) }), "alice", 11);
    assert_eq!(default_auction(&book).accepted_bids, 2);
}

#[test]
fn only_the_latest_outcomes_per_client_are_remembered_and_an_older_request_is_refused() {
    // The window keeps each session's memory bounded however many bids it
    // makes. A request older than the window is never executed again: it
    // may have been applied, and its outcome is gone.
    let mut book = book_with_default_auction(1);
    let window = REMEMBERED_PER_CLIENT as u64;
    let mut outcomes = Vec::new();
    for request_id in 1..=window + 1 {
        outcomes.push(place(&mut book, from_client(bid("alice", request_id * 10), "client-1", request_id)));
    }

    // The window holds the latest REMEMBERED_PER_CLIENT requests, oldest first.
    let session = book.session("client-1").expect("session");
    assert_eq!(session.outcomes.len(), REMEMBERED_PER_CLIENT);
    let remembered_ids: Vec<u64> = session.outcomes.iter().map(|remembered| remembered.request_id).collect();
    assert_eq!(remembered_ids, (2..=window + 1).collect::<Vec<_>>());
    assert_eq!(session.highest_request_id, window + 1);
    assert_eq!(book.remembered("client-1", 1), None);
    for request_id in 2..=window + 1 {
        assert_eq!(book.remembered("client-1", request_id), Some(&outcomes[request_id as usize - 1]));
    }

    // The latest request is still answered from memory...
    let latest = window + 1;
    let before_retry = book.clone();
    assert_eq!(
        place(&mut book, from_client(bid("alice", latest * 10), "client-1", latest)),
        outcomes[latest as usize - 1]
    );
    assert_eq!(book, before_retry);

    // ...and the forgotten first request is refused, not applied a second
    // time (a higher amount would have succeeded if judged afresh).
    let too_old = place(&mut book, from_client(bid("alice", 10_000), "client-1", 1));
    assert_eq!(too_old.verdict, Verdict::Exception);
    assert!(render(&too_old.reason).contains("older than the last"), "{:?}", too_old.reason);
    assert_eq!(book, before_retry);
}

#[test]
fn a_request_from_an_unknown_session_above_request_one_is_refused_as_expired() {
    let mut book = book_with_default_auction(1);
    let late = place(&mut book, from_client(bid("alice", 10), "forgotten", 5));
    assert_eq!(late.verdict, Verdict::Exception);
    assert!(render(&late.reason).contains("session expired"), "{:?}", late.reason);
    assert_eq!(book.session("forgotten"), None);
    assert_eq!(default_auction(&book).accepted_bids, 0);
    // A session starts with request 1.
    assert_success(&place(&mut book, from_client(bid("alice", 10), "fresh", 1)), "alice", 10);
}

#[test]
fn sessions_expire_by_log_time_and_a_retry_after_expiry_is_never_applied_twice() {
    let mut book = book_with_default_auction(1);
    let at = |ms: i64, bid: Bid| Bid { at_unix_ms: ms, ..bid };
    // "old" is last used at DURING_MS, "kept" a second later.
    let first = place(&mut book, at(DURING_MS, from_client(bid("alice", 10), "old", 1)));
    assert_success(&first, "alice", 10);
    place(&mut book, at(DURING_MS + 1_000, from_client(bid("bob", 20), "kept", 1)));

    // A session lives at least SESSION_EXPIRY_MS after its last use (and
    // at most a second more: the index keeps whole seconds).
    place(&mut book, at(DURING_MS + SESSION_EXPIRY_MS, from_client(bid("bob", 21), "kept", 2)));
    assert!(book.session("old").is_some(), "alive at the horizon");
    place(&mut book, at(DURING_MS + SESSION_EXPIRY_MS + 1_000, from_client(bid("carol", 31), "other", 1)));
    assert_eq!(book.session("old"), None, "expired within a second of the horizon");
    assert!(book.session("kept").is_some(), "used since");
    assert_eq!(book.session_count(), 2);

    // The retry of "old"'s first request starts a session afresh (its id is
    // 1), so it is judged again: 10 no longer wins, and nothing is applied
    // twice. A later request of the expired session is refused.
    let accepted = default_auction(&book).accepted_bids;
    let later_ms = DURING_MS + SESSION_EXPIRY_MS + 1_001;
    let retry = place(&mut book, at(later_ms, from_client(bid("alice", 10), "old", 1)));
    assert_eq!(retry.verdict, Verdict::Fail);
    let later = place(&mut book, at(later_ms, from_client(bid("alice", 99), "gone", 2)));
    assert!(render(&later.reason).contains("session expired"), "{:?}", later.reason);
    assert_eq!(default_auction(&book).accepted_bids, accepted);
}

#[test]
fn the_dedup_window_is_per_client() {
    let mut book = book_with_default_auction(1);
    let first = place(&mut book, from_client(bid("alice", 1), "client-1", 1));

    // Many requests from another client do not push client-1's out.
    for request_id in 1..=2 * REMEMBERED_PER_CLIENT as u64 {
        place(&mut book, from_client(bid("bob", 1 + request_id), "client-2", request_id));
    }

    assert_eq!(book.remembered("client-1", 1), Some(&first));
    assert_eq!(book.sessions["client-2"].outcomes.len(), REMEMBERED_PER_CLIENT);
}

// ---------------------------------------------------------------------------
// Determinism: replicas applying the same commands reach the same book.
// ---------------------------------------------------------------------------

/// A small deterministic generator, so the sequence is the same on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A mixed sequence of opens, bids (good, low, late, malformed, retried,
/// anonymous) and closes over three auctions, with the clock moving forward.
fn command_sequence(seed: u64, length: usize) -> Vec<Command> {
    let mut random = SplitMix64(seed);
    let auctions = ["", DEFAULT_AUCTION, "vase", "clock", "missing"];
    let bidders = ["alice", "bob", "carol", "", "bad\nname"];
    let clients = ["", "client-1", "client-2", "client-3"];
    let mut commands =
        vec![open_command(DEFAULT_AUCTION, 1, ENDS_AT_MS), open_command("vase", 100, ENDS_AT_MS + 30_000)];
    let mut now = OPENED_AT_MS;
    let mut request_ids = [0_u64; 4];
    for _ in 0..length {
        now += random.below(1_000) as i64;
        let command = match random.below(20) {
            0 => open_command("clock", random.below(50), now + random.below(60_000) as i64),
            1 => close_command(auctions[random.below(5) as usize], now),
            _ => {
                let client = random.below(clients.len() as u64) as usize;
                // Mostly a new request; sometimes a retry of an earlier one.
                if random.below(4) != 0 {
                    request_ids[client] += 1;
                }
                let request_id = request_ids[client].saturating_sub(random.below(12));
                Command::Bid(Bid {
                    auction_id: auctions[random.below(5) as usize].to_string(),
                    bidder: bidders[random.below(5) as usize].to_string(),
                    amount: random.below(400),
                    client_id: clients[client].to_string(),
                    request_id,
                    at_unix_ms: now,
                })
            }
        };
        commands.push(command);
    }
    commands
}

#[test]
fn the_same_commands_applied_to_two_books_give_equal_books_and_outcomes() {
    for seed in 0..20 {
        let commands = command_sequence(seed, 300);
        let mut replica_a = AuctionBook::default();
        let mut replica_b = AuctionBook::default();

        for command in &commands {
            let applied_a = replica_a.apply(command);
            let applied_b = replica_b.apply(command);
            assert_eq!(applied_a, applied_b, "seed {seed}, command {command:?}");
        }

        assert_eq!(replica_a, replica_b, "seed {seed}");
        // A backup that starts from a copy of the state part-way through and
        // applies the rest reaches the same book as well.
        let mut late_replica = AuctionBook::default();
        let (head, tail) = commands.split_at(commands.len() / 2);
        for command in head {
            late_replica.apply(command);
        }
        let mut from_snapshot = late_replica.clone();
        for command in tail {
            from_snapshot.apply(command);
        }
        assert_eq!(from_snapshot, replica_a, "seed {seed}");
    }
}

#[test]
fn random_command_sequences_keep_the_auction_invariants() {
    for seed in 100..120 {
        let mut book = AuctionBook::default();
        for command in command_sequence(seed, 300) {
            let previous = book.clone();
            let applied = book.apply(&command);

            if let (Command::Bid(bid), Applied::Bid(outcome)) = (&command, &applied) {
                let auction_id = resolve_auction_id(&bid.auction_id);
                let changed = book.auctions != previous.auctions;
                // Only a first-time success changes an auction; a retry
                // answered from memory changes nothing at all.
                let retried = previous.remembered(&bid.client_id, bid.request_id).is_some();
                assert_eq!(
                    changed,
                    outcome.verdict == Verdict::Success && !retried,
                    "seed {seed}, {bid:?} -> {outcome:?}"
                );
                if changed {
                    let before = &previous.auctions[auction_id];
                    let after = &book.auctions[auction_id];
                    assert!(bid.amount > before.highest_amount);
                    assert!(bid.amount >= before.minimum_amount);
                    assert!(!before.is_over(bid.at_unix_ms));
                    assert_eq!(after.accepted_bids, before.accepted_bids + 1);
                }
                if retried {
                    assert_eq!(book, previous, "seed {seed}: a retry changed the book");
                }
            }

            for auction in book.auctions.values() {
                // The highest bid is the best of the registered bidders' bests.
                let best = auction.bidders.values().copied().max().unwrap_or(0);
                assert_eq!(auction.highest_amount, best, "seed {seed}");
                if best > 0 {
                    assert_eq!(auction.bidders[&auction.highest_bidder], best, "seed {seed}");
                }
                assert!(auction.accepted_bids >= auction.bidders.len() as u64, "seed {seed}");
            }
            for (_, session) in book.sessions() {
                assert!(session.outcomes.len() <= REMEMBERED_PER_CLIENT, "seed {seed}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The catalogue: sellers create auctions; anyone lists and reads them.
// ---------------------------------------------------------------------------

fn create(seller: &str, title: &str, client_id: &str, request_id: u64) -> CreateAuction {
    CreateAuction {
        seller: seller.to_string(),
        title: title.to_string(),
        description: format!("{title}, barely used"),
        minimum_amount: 5,
        duration_ms: 0,
        ends_at_unix_ms: ENDS_AT_MS,
        client_id: client_id.to_string(),
        request_id,
        at_unix_ms: DURING_MS,
    }
}

fn created(book: &mut AuctionBook, revision: u64, create: CreateAuction) -> CreateOutcome {
    match book.apply_at(revision, &Command::Create(create)) {
        Applied::Created(outcome) => outcome,
        other => panic!("a create produced {other:?}"),
    }
}

fn page(book: &AuctionBook, open_only: bool, limit: u32, page_token: &str) -> AuctionPage {
    let query = Query::List { open_only, limit, page_token: page_token.to_string() };
    match book.query(&query, DURING_MS).expect("a list") {
        QueryAnswer::Page(page) => page,
        other => panic!("a list answered {other:?}"),
    }
}

#[test]
fn a_created_auction_gets_the_next_id_and_is_listed_in_creation_order() {
    let mut book = book_with_default_auction(1);
    let vase = created(&mut book, 10, create("sam", "vase", "s1", 1));
    let clock = created(&mut book, 11, create("sam", "clock", "s1", 2));
    assert_eq!((vase.verdict, vase.auction_id.as_str()), (Verdict::Success, "a1"));
    assert_eq!(clock.auction_id, "a2");

    let listed = page(&book, false, 0, "");
    let ids: Vec<&str> = listed.auctions.iter().map(|info| info.auction_id.as_str()).collect();
    assert_eq!(ids, [DEFAULT_AUCTION, "a1", "a2"]);
    assert_eq!(listed.next_page_token, "");
    let info = &listed.auctions[1];
    assert_eq!((info.seller.as_str(), info.title.as_str(), info.minimum_amount), ("sam", "vase", 5));
    assert_eq!((info.created_at_unix_ms, info.revision), (DURING_MS, 10));

    // Paged: two, then the rest.
    let first = page(&book, false, 2, "");
    assert_eq!(first.auctions.len(), 2);
    let rest = page(&book, false, 2, &first.next_page_token);
    assert_eq!(rest.auctions.iter().map(|info| info.auction_id.as_str()).collect::<Vec<_>>(), ["a2"]);
    assert_eq!(rest.next_page_token, "");
    assert!(matches!(
        book.query(&Query::List { open_only: false, limit: 0, page_token: "x".into() }, 0),
        Err(QueryError::BadPageToken(_))
    ));
}

#[test]
fn a_retried_create_is_answered_once_and_a_reused_id_is_refused() {
    let mut book = book_with_default_auction(1);
    let first = created(&mut book, 10, create("sam", "vase", "s1", 1));
    let after_first = book.clone();
    assert_eq!(created(&mut book, 11, create("sam", "vase", "s1", 1)), first, "a retry");
    assert_eq!(book, after_first);
    let reused = created(&mut book, 12, create("sam", "other", "s1", 1));
    assert_eq!(reused.verdict, Verdict::Exception);
    assert!(render(&reused.reason).contains("different request"), "{:?}", reused.reason);
    // A bid may not reuse a create's request id either.
    let bid_reusing = place(&mut book, from_client(bid("bo", 10), "s1", 1));
    assert_eq!(bid_reusing.verdict, Verdict::Exception);
    assert_eq!(book, after_first);
}

#[test]
fn a_create_with_bad_input_is_an_exception_and_changes_nothing() {
    let mut book = book_with_default_auction(1);
    let before = book.clone();
    let cases = [
        (CreateAuction { seller: String::new(), ..create("x", "vase", "", 0) }, "seller name must not be empty"),
        (create("sam", "  ", "", 0), "title must not be empty"),
        (create("sam", &"t".repeat(MAX_TITLE_LEN + 1), "", 0), "title is longer"),
        (
            CreateAuction { description: "d".repeat(MAX_DESCRIPTION_LEN + 1), ..create("sam", "vase", "", 0) },
            "description is longer",
        ),
        (CreateAuction { ends_at_unix_ms: DURING_MS, ..create("sam", "vase", "", 0) }, "end in the future"),
        (CreateAuction { ends_at_unix_ms: DURING_MS + 400 * 24 * 3_600_000, ..create("sam", "vase", "", 0) }, "a year"),
        (create("s\u{202e}am", "vase", "", 0), "seller name must not hold"),
    ];
    for (bad, reason) in cases {
        let outcome = created(&mut book, 10, bad.clone());
        assert_eq!(outcome.verdict, Verdict::Exception, "{bad:?}");
        assert!(render(&outcome.reason).contains(reason), "{bad:?}: {:?}", outcome.reason);
        assert_eq!(book, before, "{bad:?}");
    }
}

#[test]
fn a_seller_cannot_bid_on_their_own_auction_and_bids_move_its_revision() {
    let mut book = book_with_default_auction(1);
    created(&mut book, 10, create("sam", "vase", "", 0));
    let own = place(&mut book, Bid { auction_id: "a1".into(), ..bid("sam", 10) });
    assert_eq!(own.verdict, Verdict::Fail);
    assert!(render(&own.reason).contains("own auction"), "{:?}", own.reason);

    assert!(book.apply_at(12, &Command::Bid(Bid { auction_id: "a1".into(), ..bid("bo", 10) })) != Applied::Ignored);
    let info = match book.query(&Query::Get { auction_id: "a1".into() }, DURING_MS).expect("known") {
        QueryAnswer::Auction(info) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!((info.highest_bidder.as_str(), info.highest_amount, info.revision), ("bo", 10, 12));
    assert!(matches!(book.query(&Query::Get { auction_id: "a9".into() }, DURING_MS), Err(QueryError::Read(_))));

    // Closed or past its end, it is not listed as open.
    book.apply_at(13, &close_command("a1", DURING_MS));
    let open = page(&book, true, 0, "");
    assert_eq!(open.auctions.iter().map(|info| info.auction_id.as_str()).collect::<Vec<_>>(), [DEFAULT_AUCTION]);
}

#[test]
fn the_history_holds_every_accepted_bid_oldest_first_in_pages() {
    let mut book = book_with_default_auction(1);
    for (revision, amount) in (10..).zip([5, 4, 7, 9]) {
        book.apply_at(revision, &Command::Bid(bid(if amount % 2 == 0 { "bo" } else { "cy" }, amount)));
    }
    let history = |page_token: &str, limit| {
        let query = Query::History { auction_id: String::new(), limit, page_token: page_token.to_string() };
        match book.query(&query, DURING_MS).expect("known") {
            QueryAnswer::History(page) => page,
            other => panic!("{other:?}"),
        }
    };
    // The 4 was refused: three accepted bids, with the entries that took them.
    let all = history("", 0);
    let accepted: Vec<(u64, u64)> = all.bids.iter().map(|bid| (bid.amount, bid.revision)).collect();
    assert_eq!(accepted, [(5, 10), (7, 12), (9, 13)]);
    assert_eq!((all.auction_id.as_str(), all.next_page_token.as_str()), (DEFAULT_AUCTION, ""));
    let first = history("", 2);
    assert_eq!(first.bids.len(), 2);
    let rest = history(&first.next_page_token, 2);
    assert_eq!(rest.bids.iter().map(|bid| bid.amount).collect::<Vec<_>>(), [9]);
    assert_eq!(rest.next_page_token, "");
    assert_eq!(default_auction(&book).accepted_bids, default_auction(&book).history.len() as u64);
}

#[test]
fn events_between_two_revisions_are_the_creations_accepted_bids_and_closes_in_order() {
    let mut book = AuctionBook::default();
    book.apply_at(2, &open_command(DEFAULT_AUCTION, 1, ENDS_AT_MS));
    created(&mut book, 3, create("sam", "vase", "", 0));
    book.apply_at(4, &Command::Bid(bid("bo", 10)));
    book.apply_at(5, &Command::Bid(Bid { auction_id: "a1".into(), ..bid("cy", 6) }));
    book.apply_at(6, &Command::Bid(bid("bo", 9))); // refused: no event
    book.apply_at(7, &close_command("a1", DURING_MS));

    let kinds = |events: Vec<AuctionEvent>| -> Vec<(u64, String, &'static str)> {
        events
            .into_iter()
            .map(|event| {
                let kind = match event.kind {
                    EventKind::Opened(_) => "opened",
                    EventKind::BidAccepted(_) => "bid",
                    EventKind::Closed(_) => "closed",
                    EventKind::Progress => "progress",
                };
                (event.revision, event.auction_id, kind)
            })
            .collect()
    };
    let all = kinds(book.events(None, 0, 7, DURING_MS));
    let expected = [
        (2, DEFAULT_AUCTION.to_string(), "opened"),
        (3, "a1".to_string(), "opened"),
        (4, DEFAULT_AUCTION.to_string(), "bid"),
        (5, "a1".to_string(), "bid"),
        (7, "a1".to_string(), "closed"),
    ];
    assert_eq!(all, expected);
    // Resuming after a revision gives exactly the rest; an upper bound (the
    // commit index) holds back what is not committed.
    assert_eq!(kinds(book.events(None, 4, 7, DURING_MS)), expected[3..]);
    assert_eq!(kinds(book.events(None, 2, 4, DURING_MS)), expected[1..3]);
    assert_eq!(
        kinds(book.events(Some("a1"), 0, 7, DURING_MS)),
        [expected[1].clone(), expected[3].clone(), expected[4].clone()]
    );
    assert!(book.events(Some("nope"), 0, 7, DURING_MS).is_empty());
}

#[test]
fn a_closed_auction_is_forgotten_after_its_retention_and_its_revisions_are_compacted() {
    let mut book = book_with_default_auction(1);
    created(&mut book, 3, create("sam", "vase", "", 0));
    book.apply_at(4, &Command::Bid(Bid { auction_id: "a1".into(), ..bid("bo", 10) }));
    book.apply_at(5, &close_command("a1", DURING_MS));
    assert_eq!(book.auctions["a1"].expires_at_unix_ms, Some(DURING_MS + RETAIN_MS as i64));

    // Kept until its retention ends, by log time: the next entry after that
    // forgets it on every replica.
    book.apply_at(6, &Command::Bid(bid("cy", 5)));
    assert!(book.auctions.contains_key("a1"));
    let later = DURING_MS + RETAIN_MS as i64;
    book.apply_at(7, &Command::Bid(Bid { at_unix_ms: later, ..bid("cy", 6) }));
    assert!(!book.auctions.contains_key("a1"), "forgotten with its history");
    assert_eq!(book.compacted, 5, "its last change");
    assert!(matches!(book.query(&Query::Get { auction_id: "a1".into() }, later), Err(QueryError::Read(_))));
    let listed = page(&book, false, 0, "");
    assert_eq!(listed.auctions.iter().map(|info| info.auction_id.as_str()).collect::<Vec<_>>(), [DEFAULT_AUCTION]);
    // Its events are gone; the others' remain (cy's 6 came after the
    // default auction's end: refused, no event).
    let revisions: Vec<u64> = book.events(None, 0, 7, later).iter().map(|event| event.revision).collect();
    assert_eq!(revisions, [6]);
}

#[test]
fn a_seller_cancels_an_auction_without_bids_and_only_then() {
    let mut book = book_with_default_auction(1);
    created(&mut book, 3, create("sam", "vase", "", 0));
    created(&mut book, 4, create("sam", "clock", "", 0));
    book.apply_at(5, &Command::Bid(Bid { auction_id: "a2".into(), ..bid("bo", 10) }));
    let cancel = |auction_id: &str, seller: &str, request_id| {
        Command::Cancel(CancelAuction {
            auction_id: auction_id.into(),
            seller: seller.into(),
            client_id: "seller-session".into(),
            request_id,
            at_unix_ms: DURING_MS,
            retain_ms: RETAIN_MS,
        })
    };
    let outcome = |applied| match applied {
        Applied::Cancelled(outcome) => outcome,
        other => panic!("{other:?}"),
    };
    let before = book.clone();
    // Not its seller, the house's own auction, an unknown one: EXCEPTION, nothing changes.
    for (auction_id, seller) in [("a1", "bo"), (DEFAULT_AUCTION, "sam"), ("a9", "sam")] {
        let refused = outcome(book.apply_at(
            6,
            &Command::Cancel(CancelAuction {
                auction_id: auction_id.into(),
                seller: seller.into(),
                client_id: String::new(),
                request_id: 0,
                at_unix_ms: DURING_MS,
                retain_ms: RETAIN_MS,
            }),
        ));
        assert_eq!(refused.verdict, Verdict::Exception, "{auction_id} by {seller}");
    }
    assert_eq!(book, before);
    // With a bid: FAIL.
    let has_bids = outcome(book.apply_at(6, &cancel("a2", "sam", 1)));
    assert_eq!(has_bids.verdict, Verdict::Fail);
    assert!(render(&has_bids.reason).contains("has bids"), "{:?}", has_bids.reason);
    // Without: cancelled, over, no winner; its close is an event; bids fail.
    let done = outcome(book.apply_at(7, &cancel("a1", "sam", 2)));
    assert_eq!(done.verdict, Verdict::Success);
    assert_eq!(outcome(book.apply_at(8, &cancel("a1", "sam", 2))), done, "a retry gets its first answer");
    let a1 = &book.auctions["a1"];
    assert!(a1.cancelled && a1.closed && a1.revision == 7);
    let late = place(&mut book, Bid { auction_id: "a1".into(), ..bid("bo", 20) });
    assert_eq!(late.verdict, Verdict::Fail);
    let closed: Vec<u64> = book
        .events(Some("a1"), 3, 8, DURING_MS)
        .iter()
        .filter(|event| matches!(&event.kind, EventKind::Closed(info) if info.cancelled))
        .map(|event| event.revision)
        .collect();
    assert_eq!(closed, [7]);
}
