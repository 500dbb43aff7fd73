//! Names bound to a secret (authentication on): the first valid act under a
//! name with a secret's digest binds the name to it; from then on, a bid,
//! create or cancel under the name without that digest is refused and
//! changes nothing, not even the session it claims.

use super::*;

const ANN: NameDigest = [1; 32];
const MALLORY: NameDigest = [2; 32];

fn with_digest(bid: Bid, digest: Option<NameDigest>) -> Bid {
    Bid { name_digest: digest, ..bid }
}

#[test]
fn a_bid_with_a_secret_binds_its_name_and_only_that_secret_bids_under_it_after() {
    let mut book = book_with_default_auction(1);
    assert_success(&place(&mut book, with_digest(bid("ann", 10), Some(ANN))), "ann", 10);
    assert_eq!(book.name_owner("ann"), Some(&ANN));

    for (digest, who) in [(Some(MALLORY), "another secret"), (None, "no secret")] {
        let before = book.clone();
        let attempt = from_client(with_digest(bid("ann", 20), digest), "mallory-session", 1);
        let outcome = place(&mut book, attempt);
        assert_eq!(outcome.verdict, Verdict::Exception, "{who}: {outcome:?}");
        assert_eq!(outcome.reason.as_ref().map(Reason::code), Some("name_owned"), "{who}");
        assert_eq!(book, before, "{who}: nothing changed, not even the session it claimed");
    }
    assert_success(&place(&mut book, with_digest(bid("ann", 30), Some(ANN))), "ann", 30);
}

#[test]
fn without_secrets_names_stay_anyones_and_a_losing_bid_binds_as_a_winning_one() {
    let mut book = book_with_default_auction(5);
    // No digest: nothing is bound, as with authentication off.
    assert_success(&place(&mut book, bid("bob", 10)), "bob", 10);
    assert_eq!(book.name_owner("bob"), None);
    assert_success(&place(&mut book, with_digest(bid("bob", 11), Some(MALLORY))), "bob", 11);
    // A valid bid that loses binds its name; a malformed one does not.
    let lost = place(&mut book, with_digest(bid("cy", 3), Some(ANN)));
    assert_eq!(lost.verdict, Verdict::Fail, "{lost:?}");
    assert_eq!(book.name_owner("cy"), Some(&ANN));
    let unknown = place(&mut book, Bid { auction_id: "nope".into(), ..with_digest(bid("dee", 50), Some(ANN)) });
    assert_eq!(unknown.verdict, Verdict::Exception);
    assert_eq!(book.name_owner("dee"), None);
}

#[test]
fn a_sellers_name_is_bound_by_a_create_and_guards_creates_and_cancels() {
    let mut book = AuctionBook::default();
    let create = |digest, request_id| CreateAuction {
        max_open_per_seller: 0,
        name_digest: digest,
        seller: "sam".into(),
        title: "a vase".into(),
        description: String::new(),
        minimum_amount: 1,
        duration_ms: 0,
        ends_at_unix_ms: ENDS_AT_MS,
        client_id: format!("sam-{request_id}"),
        request_id: 1,
        at_unix_ms: DURING_MS,
        max_auctions: 0,
    };
    let Applied::Created(first) = book.apply_at(1, &Command::Create(create(Some(ANN), 1))) else { panic!() };
    assert_eq!(first.verdict, Verdict::Success);
    assert_eq!(book.name_owner("sam"), Some(&ANN));

    let Applied::Created(impostor) = book.apply_at(2, &Command::Create(create(Some(MALLORY), 2))) else { panic!() };
    assert_eq!(impostor.reason.as_ref().map(Reason::code), Some("name_owned"));
    let cancel = |digest| CancelAuction {
        name_digest: digest,
        auction_id: first.auction_id.clone(),
        seller: "sam".into(),
        client_id: "c".into(),
        request_id: 1,
        at_unix_ms: DURING_MS,
        retain_ms: RETAIN_MS,
    };
    let before = book.clone();
    let Applied::Cancelled(refused) = book.apply_at(3, &Command::Cancel(cancel(None))) else { panic!() };
    assert_eq!(refused.reason.as_ref().map(Reason::code), Some("name_owned"));
    assert_eq!(book, before, "the refused cancel changed nothing");
    let Applied::Cancelled(cancelled) = book.apply_at(4, &Command::Cancel(cancel(Some(ANN)))) else { panic!() };
    assert_eq!(cancelled.verdict, Verdict::Success, "{cancelled:?}");
}
