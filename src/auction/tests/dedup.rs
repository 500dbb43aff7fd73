//! The dedup table: a retried request is answered, not applied again.

use super::*;

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
    let accepted = default_auction(&book).history.get(0).expect("an accepted bid");
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
