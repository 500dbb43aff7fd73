//! The catalogue: sellers create auctions; anyone lists and reads them.

use super::*;
use crate::auction::machine::AuctionSettings;
use crate::replication::StateMachine;

fn create(seller: &str, title: &str, client_id: &str, request_id: u64) -> CreateAuction {
    CreateAuction {
        max_open_per_seller: 0,
        name_digest: None,
        seller: seller.to_string(),
        title: title.to_string(),
        description: format!("{title}, barely used"),
        minimum_amount: 5,
        duration_ms: 0,
        ends_at_unix_ms: ENDS_AT_MS,
        client_id: client_id.to_string(),
        request_id,
        at_unix_ms: DURING_MS,
        max_auctions: 0,
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
            name_digest: None,
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
                name_digest: None,
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

/// The house holds at most the limit its leader stamped into a create
/// (closed auctions count until they expire): past it, a create FAILs and
/// changes nothing; an entry from before the limit (0) has none.
#[test]
fn a_create_past_the_houses_limit_fails_and_changes_nothing() {
    let mut book = book_with_default_auction(1);
    let limited = |request_id| CreateAuction { max_auctions: 2, ..create("sam", "vase", "s1", request_id) };
    assert_eq!(created(&mut book, 10, limited(1)).verdict, Verdict::Success);
    let before = book.clone();

    let refused = created(&mut book, 11, limited(2));
    assert_eq!((refused.verdict, refused.reason.clone()), (Verdict::Fail, Some(Reason::TooManyAuctions { max: 2 })));
    assert_eq!(refused.reason.as_ref().map(Reason::code), Some("too_many_auctions"));
    assert_eq!(book.auctions, before.auctions);
    assert_eq!(book.created, before.created);

    let unlimited = created(&mut book, 12, create("sam", "clock", "s1", 3));
    assert_eq!((unlimited.verdict, unlimited.auction_id.as_str()), (Verdict::Success, "a2"));
}

/// The leader stamps its limit into every create it sequences.
#[test]
fn the_leader_stamps_its_limit_into_a_create() {
    let settings = AuctionSettings { max_auctions: 7, ..AuctionSettings::default() };
    let mut command = Command::Create(create("sam", "vase", "s1", 1));
    AuctionBook::stamp(&mut command, DURING_MS, &settings);
    let Command::Create(stamped) = command else { unreachable!("a create stays one") };
    assert_eq!(stamped.max_auctions, 7);
}

/// A seller's open auctions are capped by the limit the create carries:
/// past it a create FAILs, until one of theirs closes; other sellers and
/// creates logged before there was a cap (0) are not held back.
#[test]
fn a_seller_past_their_open_auctions_fails_until_one_closes() {
    let mut book = AuctionBook::default();
    let capped = |seller: &str, request_id| CreateAuction {
        seller: seller.to_string(),
        max_open_per_seller: 2,
        ..create(seller, "a lot", &format!("{seller}-{request_id}"), 1)
    };
    assert_eq!(created(&mut book, 1, capped("sam", 1)).verdict, Verdict::Success);
    let second = created(&mut book, 2, capped("sam", 2));
    assert_eq!(second.verdict, Verdict::Success);
    let third = created(&mut book, 3, capped("sam", 3));
    assert_eq!(
        (third.verdict, third.reason.as_ref().map(Reason::code)),
        (Verdict::Fail, Some("too_many_open_auctions"))
    );
    assert_eq!(created(&mut book, 4, capped("tess", 1)).verdict, Verdict::Success, "another seller");
    assert_eq!(created(&mut book, 5, create("sam", "old", "sam-old", 1)).verdict, Verdict::Success, "no cap logged");

    let cancel = CancelAuction {
        name_digest: None,
        auction_id: second.auction_id.clone(),
        seller: "sam".into(),
        client_id: "sam-cancel".into(),
        request_id: 1,
        at_unix_ms: DURING_MS,
        retain_ms: RETAIN_MS,
    };
    assert!(matches!(
        book.apply_at(6, &Command::Cancel(cancel)),
        Applied::Cancelled(CancelOutcome { verdict: Verdict::Success, .. })
    ));
    assert_eq!(book.open_auctions_of("sam"), 2);
    book.apply_at(7, &close_command("a1", ENDS_AT_MS));
    assert_eq!(book.open_auctions_of("sam"), 1, "a close counts too");
    assert_eq!(created(&mut book, 8, capped("sam", 4)).verdict, Verdict::Success);
}

/// A title or description that would hide something from a reader (a
/// right-to-left override shows "evil" as "live") is refused before it is
/// sequenced; a description keeps its new lines and tabs; an entry logged
/// before the rule still applies as it did.
#[test]
fn hidden_characters_in_a_title_or_description_are_refused_at_the_edge_only() {
    let admitted = |title: &str, description: &str| {
        let mut command = Command::Create(CreateAuction {
            title: title.to_string(),
            description: description.to_string(),
            ..create("sam", "x", "sam-1", 1)
        });
        match AuctionBook::admit(&mut command) {
            Ok(()) => None,
            Err(Applied::Created(outcome)) => outcome.reason.map(|reason| reason.code()),
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(admitted("\u{202e}live", ""), Some("title_format"));
    assert_eq!(admitted("a vase", "zero\u{200b}width"), Some("description_hidden"));
    assert_eq!(admitted("a vase", "bell\u{7}"), Some("description_hidden"));
    assert_eq!(admitted("a vase", "two lines\n\tand a tab"), None);

    let logged_before = CreateAuction { title: "\u{202e}live".into(), ..create("sam", "x", "sam-2", 1) };
    assert_eq!(created(&mut AuctionBook::default(), 1, logged_before).verdict, Verdict::Success);
}
