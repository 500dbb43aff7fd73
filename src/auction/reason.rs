//! Why a write was refused, or a note on one that succeeded, as a value.
//!
//! The replicated state and its dedup table hold a [`Reason`], never a
//! sentence: the sentence is rendered at the edge (`Display`), and a program
//! branches on [`Reason::code`] instead of matching text. A retry gets the
//! same value its first execution got, so it renders the same words.

use std::fmt;

/// Whose name a [`Reason::Name`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Bidder,
    Seller,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Party::Bidder => "bidder",
            Party::Seller => "seller",
        })
    }
}

/// What is wrong with a bidder's or seller's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameProblem {
    Empty,
    /// It holds control characters.
    Control,
    /// It holds invisible format characters (bidi overrides, zero-width
    /// spaces), which make a name look like another.
    Format,
    TooLong {
        max: usize,
    },
    /// The request did not carry the one spelling the log holds.
    NotNormal {
        given: String,
        normal: String,
    },
}

/// Why a write was refused (FAIL or EXCEPTION), or what a SUCCESS notes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // A SUCCESS's note.
    /// The bidder's first accepted bid on the auction registered them.
    Registered {
        bidder: String,
    },

    // Malformed input: EXCEPTION, before anything is sequenced.
    AmountZero,
    Name {
        party: Party,
        problem: NameProblem,
    },
    AuctionIdTooLong {
        max: usize,
    },
    ClientIdTooLong {
        max: usize,
    },
    TitleEmpty,
    TitleTooLong {
        max: usize,
    },
    TitleControl,
    /// Invisible format characters (a right-to-left override, say) in a
    /// title: refused before sequencing only, so that logs written before
    /// the rule replay as they did.
    TitleFormat,
    /// Control or invisible format characters, other than newlines and
    /// tabs, in a description (before sequencing only, likewise).
    DescriptionHidden,
    DescriptionTooLong {
        max: usize,
    },
    /// A create gave neither a duration nor an end.
    NoEnd,
    /// A create gave both a duration and an end.
    DurationAndEnd,
    EndNotInFuture,
    /// Longer than [`super::catalogue::MAX_AUCTION_MS`].
    TooLong,
    /// The house holds its most auctions (open, or closed and not yet
    /// expired): a FAIL, until some expire.
    TooManyAuctions {
        max: u64,
    },
    /// The seller has this many open auctions already: a FAIL, until one
    /// closes.
    TooManyOpenAuctions {
        max: u64,
    },
    UnknownAuction {
        auction_id: String,
    },

    // The session's rules: EXCEPTION, and nothing changed.
    /// The request id was used for other content.
    RequestIdReused {
        request_id: u64,
    },
    /// The request id was used for another kind of write.
    RequestKindDiffers {
        request_id: u64,
    },
    /// Older than the remembered window: it may have run already.
    RequestTooOld {
        request_id: u64,
        window: usize,
    },
    /// A request above 1 from a session nobody remembers.
    SessionUnknown,
    /// A request id past the largest a session may use.
    RequestIdTooLarge {
        max: u64,
    },
    /// The name is bound to a secret this request did not give (TLS on):
    /// EXCEPTION, and nothing changed.
    NameOwned {
        party: Party,
        name: String,
    },

    // The auction's rules: FAIL (a bid or cancel that loses) or EXCEPTION
    // (a cancel by someone else).
    AuctionOver,
    BelowMinimum {
        amount: u64,
        minimum: u64,
    },
    NotHigher {
        amount: u64,
        highest: u64,
        highest_bidder: String,
    },
    NotAboveOwnBest {
        amount: u64,
        own_best: u64,
    },
    SellerBids,
    NotTheSeller {
        auction_id: String,
    },
    HasBids {
        auction_id: String,
    },
}

impl Reason {
    /// A stable name a program can branch on: what APIs send next to the
    /// sentence (and what the HTTP API's error carries).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Registered { .. } => "registered",
            Reason::AmountZero => "amount_zero",
            Reason::Name { problem, .. } => match problem {
                NameProblem::Empty => "name_empty",
                NameProblem::Control => "name_control",
                NameProblem::Format => "name_format",
                NameProblem::TooLong { .. } => "name_too_long",
                NameProblem::NotNormal { .. } => "name_not_normal",
            },
            Reason::AuctionIdTooLong { .. } => "auction_id_too_long",
            Reason::ClientIdTooLong { .. } => "client_id_too_long",
            Reason::TitleEmpty => "title_empty",
            Reason::TitleTooLong { .. } => "title_too_long",
            Reason::TitleControl => "title_control",
            Reason::TitleFormat => "title_format",
            Reason::DescriptionHidden => "description_hidden",
            Reason::DescriptionTooLong { .. } => "description_too_long",
            Reason::NoEnd => "no_end",
            Reason::DurationAndEnd => "duration_and_end",
            Reason::EndNotInFuture => "end_not_in_future",
            Reason::TooLong => "too_long",
            Reason::TooManyAuctions { .. } => "too_many_auctions",
            Reason::TooManyOpenAuctions { .. } => "too_many_open_auctions",
            Reason::UnknownAuction { .. } => "unknown_auction",
            Reason::RequestIdReused { .. } => "request_id_reused",
            Reason::RequestKindDiffers { .. } => "request_kind_differs",
            Reason::RequestTooOld { .. } => "request_too_old",
            Reason::SessionUnknown => "session_unknown",
            Reason::RequestIdTooLarge { .. } => "request_id_too_large",
            Reason::NameOwned { .. } => "name_owned",
            Reason::AuctionOver => "auction_over",
            Reason::BelowMinimum { .. } => "below_minimum",
            Reason::NotHigher { .. } => "not_higher",
            Reason::NotAboveOwnBest { .. } => "not_above_own_best",
            Reason::SellerBids => "seller_bids",
            Reason::NotTheSeller { .. } => "not_the_seller",
            Reason::HasBids { .. } => "has_bids",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Registered { bidder } => write!(f, "the first bid by {bidder} on this auction, now the highest"),
            Reason::AmountZero => f.write_str("amount must be a whole number above 0"),
            Reason::Name { party, problem } => match problem {
                NameProblem::Empty => write!(f, "{party} name must not be empty"),
                NameProblem::Control => write!(f, "{party} name must not hold control characters"),
                NameProblem::Format => write!(f, "{party} name must not hold invisible format characters"),
                NameProblem::TooLong { max } => write!(f, "{party} name is longer than {max} bytes"),
                NameProblem::NotNormal { given, normal } => {
                    write!(f, "{party} name {given:?} is not in its normal form {normal:?}")
                }
            },
            Reason::AuctionIdTooLong { max } => write!(f, "auction id is longer than {max} bytes"),
            Reason::ClientIdTooLong { max } => write!(f, "client id is longer than {max} bytes"),
            Reason::TitleEmpty => f.write_str("title must not be empty"),
            Reason::TitleTooLong { max } => write!(f, "title is longer than {max} bytes"),
            Reason::TitleControl => f.write_str("title must not hold control characters"),
            Reason::TitleFormat => {
                f.write_str("title must not hold invisible format characters (such as a right-to-left override)")
            }
            Reason::DescriptionHidden => f.write_str(
                "description must not hold control or invisible format characters, other than new lines and tabs",
            ),
            Reason::DescriptionTooLong { max } => write!(f, "description is longer than {max} bytes"),
            Reason::NoEnd => f.write_str("give the auction a duration or an end"),
            Reason::DurationAndEnd => f.write_str("give a duration or an end, not both"),
            Reason::EndNotInFuture => f.write_str("the auction must end in the future"),
            Reason::TooLong => f.write_str("an auction runs for a year at most"),
            Reason::TooManyAuctions { max } => write!(
                f,
                "the auction house holds {max} auctions already (closed ones until they expire); try again later"
            ),
            Reason::TooManyOpenAuctions { max } => {
                write!(f, "the seller has {max} open auctions already; create more once one closes")
            }
            Reason::UnknownAuction { auction_id } => write!(f, "unknown auction {auction_id:?}"),
            Reason::RequestIdReused { request_id } => {
                write!(f, "request {request_id} of this session was a different request; it was not applied")
            }
            Reason::RequestKindDiffers { request_id } => {
                write!(f, "request {request_id} of this session was a different kind of request; it was not applied")
            }
            Reason::RequestTooOld { request_id, window } => write!(
                f,
                "request {request_id} is older than the last {window} of this session; it was not applied again"
            ),
            Reason::SessionUnknown => f.write_str("session expired or unknown: start a new session"),
            Reason::RequestIdTooLarge { max } => {
                write!(f, "request ids go up to {max}; this session is done: start a new session")
            }
            Reason::NameOwned { party, name } => write!(
                f,
                "the {party} name {name:?} belongs to someone else: acting under it needs its secret \
                 (the client that first used it keeps it)"
            ),
            Reason::AuctionOver => f.write_str("the auction is over"),
            Reason::BelowMinimum { amount, minimum } => write!(f, "bid {amount} is below the minimum bid {minimum}"),
            Reason::NotHigher { amount, highest, highest_bidder } => {
                write!(f, "bid {amount} is not higher than the highest bid {highest} by {highest_bidder}")
            }
            Reason::NotAboveOwnBest { amount, own_best } => {
                write!(f, "bid {amount} is not higher than your previous bid {own_best}")
            }
            Reason::SellerBids => f.write_str("a seller cannot bid on their own auction"),
            Reason::NotTheSeller { auction_id } => write!(f, "only its seller can cancel auction {auction_id}"),
            Reason::HasBids { auction_id } => write!(f, "auction {auction_id} has bids; it cannot be cancelled"),
        }
    }
}

/// The text of an optional reason: empty when there is none.
pub fn render(reason: &Option<Reason>) -> String {
    reason.as_ref().map(ToString::to_string).unwrap_or_default()
}
