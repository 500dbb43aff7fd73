//! `validate_bid`: the stateless checks made before a bid is sequenced.

use super::*;

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
