//! The auction house's catalogue: sellers create auctions, anyone lists and
//! reads them. Creating is a command like a bid (sequenced, deduplicated,
//! applied the same on every replica); listing and reading are pure queries
//! of the book.

use std::time::Duration;

use super::{
    Auction, AuctionBook, Party, ReadError, Reason, Verdict, check_normal, fnv_fingerprint, is_hidden,
    resolve_auction_id, validate_ids,
};

/// Longest title accepted, in bytes.
pub const MAX_TITLE_LEN: usize = 128;
/// Longest description accepted, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 2048;
/// The longest an auction may run: a year.
pub const MAX_AUCTION_MS: i64 = 365 * 24 * 60 * 60 * 1000;
/// Auctions a page of `ListAuctions` holds when the caller gives no limit,
/// and the most it ever holds.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// A seller's new auction, as the leader sequenced it: the end is absolute
/// (the leader turns a duration into an end when it stamps the time), so a
/// retried create is the same request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateAuction {
    pub seller: String,
    pub title: String,
    pub description: String,
    /// The first bid must be at least this (0 means 1).
    pub minimum_amount: u64,
    /// How long it runs from when the leader sequenced it, as the seller
    /// asked; 0 when the seller gave an absolute end.
    pub duration_ms: u64,
    /// Set by the leader from the duration, or as the seller asked.
    pub ends_at_unix_ms: i64,
    pub client_id: String,
    pub request_id: u64,
    /// When the leader sequenced it.
    pub at_unix_ms: i64,
    /// The most auctions the house may hold, stamped by the leader from its
    /// settings (0: no limit, as in entries written before there was one).
    pub max_auctions: u64,
    /// The most open auctions one seller may have, stamped likewise (0: no
    /// limit, as in entries written before there was one).
    pub max_open_per_seller: u64,
    /// The digest of the seller's secret (see [`super::NameDigest`]).
    pub name_digest: Option<super::NameDigest>,
}

impl CreateAuction {
    /// A seller's request for an auction that runs `duration` from when the
    /// service sequences it; the client library fills in the session.
    pub fn lasting(seller: &str, title: &str, description: &str, minimum_amount: u64, duration: Duration) -> Self {
        CreateAuction {
            max_open_per_seller: 0,
            name_digest: None,
            seller: seller.to_string(),
            title: title.to_string(),
            description: description.to_string(),
            minimum_amount,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            ends_at_unix_ms: 0,
            client_id: String::new(),
            request_id: 0,
            at_unix_ms: 0,
            max_auctions: 0,
        }
    }

    /// What the request asks for (see [`super::Bid::fingerprint`]): the
    /// duration as asked, not the end the leader set from it, so that a
    /// retry sequenced later is the same request.
    pub fn fingerprint(&self) -> u64 {
        let ends = if self.duration_ms > 0 { [0; 8] } else { self.ends_at_unix_ms.to_le_bytes() };
        fnv_fingerprint(&[
            b"create",
            self.seller.as_bytes(),
            self.title.as_bytes(),
            self.description.as_bytes(),
            &self.minimum_amount.to_le_bytes(),
            &self.duration_ms.to_le_bytes(),
            &ends,
        ])
    }
}

/// A seller's cancel of an auction that has no bid yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelAuction {
    pub auction_id: String,
    pub seller: String,
    pub client_id: String,
    pub request_id: u64,
    /// When the leader sequenced it.
    pub at_unix_ms: i64,
    /// How long the cancelled auction is kept (the leader stamps its
    /// setting in, as for a close).
    pub retain_ms: u64,
    /// The digest of the seller's secret (see [`super::NameDigest`]).
    pub name_digest: Option<super::NameDigest>,
}

impl CancelAuction {
    /// What the request asks for (see [`super::Bid::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        fnv_fingerprint(&[b"cancel", resolve_auction_id(&self.auction_id).as_bytes(), self.seller.as_bytes()])
    }
}

/// How a cancel ended: SUCCESS, FAIL (it has bids, or it is over), or
/// EXCEPTION (an unknown auction, or not its seller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelOutcome {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
}

impl CancelOutcome {
    pub fn exception(reason: Reason) -> Self {
        CancelOutcome { verdict: Verdict::Exception, reason: Some(reason) }
    }
}

/// How a create ended: SUCCESS with the new auction's id, or EXCEPTION with
/// the reason (and nothing changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOutcome {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
    /// Empty unless it succeeded.
    pub auction_id: String,
}

impl CreateOutcome {
    pub fn exception(reason: Reason) -> Self {
        CreateOutcome { verdict: Verdict::Exception, reason: Some(reason), auction_id: String::new() }
    }
}

/// Checks a sequenced create (its end set) without the state.
pub fn validate_create(create: &CreateAuction) -> Result<(), Reason> {
    validate_create_fields(create)?;
    if create.ends_at_unix_ms <= create.at_unix_ms {
        return Err(Reason::EndNotInFuture);
    }
    if create.ends_at_unix_ms - create.at_unix_ms > MAX_AUCTION_MS {
        return Err(Reason::TooLong);
    }
    Ok(())
}

/// Checks what a create can be judged on before the leader stamps it: all
/// but whether its absolute end is in the future. The seller's name must be
/// in normal form, as a bidder's.
pub fn validate_create_fields(create: &CreateAuction) -> Result<(), Reason> {
    check_normal(&create.seller, Party::Seller)?;
    if create.title.trim().is_empty() {
        return Err(Reason::TitleEmpty);
    }
    if create.title.len() > MAX_TITLE_LEN {
        return Err(Reason::TitleTooLong { max: MAX_TITLE_LEN });
    }
    if create.title.chars().any(char::is_control) {
        return Err(Reason::TitleControl);
    }
    if create.description.len() > MAX_DESCRIPTION_LEN {
        return Err(Reason::DescriptionTooLong { max: MAX_DESCRIPTION_LEN });
    }
    if create.duration_ms > MAX_AUCTION_MS as u64 {
        return Err(Reason::TooLong);
    }
    validate_ids("", &create.client_id)
}

/// Refuses what a title or description would hide from a reader: control
/// and invisible format characters (a right-to-left override shows "evil"
/// as "live"), as names refuse them; a description may keep new lines and
/// tabs. Checked before sequencing only: entries logged before the rule
/// replay as they did.
pub(crate) fn check_visible_text(create: &CreateAuction) -> Result<(), Reason> {
    if create.title.chars().any(is_hidden) {
        return Err(Reason::TitleFormat);
    }
    if create.description.chars().any(|c| is_hidden(c) && !matches!(c, '\n' | '\t')) {
        return Err(Reason::DescriptionHidden);
    }
    Ok(())
}

/// One auction as a reader sees it at `now_unix_ms` (the leader's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionInfo {
    pub auction_id: String,
    pub seller: String,
    pub title: String,
    pub description: String,
    pub minimum_amount: u64,
    pub created_at_unix_ms: i64,
    pub ends_at_unix_ms: i64,
    /// Once true, `highest_*` is the winner.
    pub over: bool,
    pub highest_amount: u64,
    pub highest_bidder: String,
    pub accepted_bids: u64,
    pub now_unix_ms: i64,
    /// The log index of the last change to this auction.
    pub revision: u64,
    /// Its seller cancelled it before any bid: over, with no winner.
    pub cancelled: bool,
}

impl AuctionInfo {
    pub fn of(auction: &Auction, now_unix_ms: i64) -> Self {
        AuctionInfo {
            auction_id: auction.auction_id.clone(),
            seller: auction.seller.clone(),
            title: auction.title.clone(),
            description: auction.description.clone(),
            minimum_amount: auction.minimum_amount,
            created_at_unix_ms: auction.created_at_unix_ms,
            ends_at_unix_ms: auction.ends_at_unix_ms,
            over: auction.is_over(now_unix_ms),
            highest_amount: auction.highest_amount,
            highest_bidder: auction.highest_bidder.clone(),
            accepted_bids: auction.accepted_bids,
            now_unix_ms,
            revision: auction.revision,
            cancelled: auction.cancelled,
        }
    }
}

/// A page of auctions in creation order, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionPage {
    pub auctions: Vec<AuctionInfo>,
    /// Empty when this is the last page.
    pub next_page_token: String,
}

/// One accepted bid, as an auction's history keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedBid {
    pub bidder: String,
    pub amount: u64,
    pub at_unix_ms: i64,
    /// The log index that accepted it.
    pub revision: u64,
}

/// A page of an auction's accepted bids, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    pub auction_id: String,
    pub bids: Vec<AcceptedBid>,
    /// Empty when this is the last page.
    pub next_page_token: String,
}

/// What a reader asks of the catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The `Result` of the assignment: the highest bid and whether the
    /// auction is over.
    View {
        auction_id: String,
    },
    Get {
        auction_id: String,
    },
    List {
        open_only: bool,
        limit: u32,
        page_token: String,
    },
    History {
        auction_id: String,
        limit: u32,
        page_token: String,
    },
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    View(super::AuctionView),
    Auction(AuctionInfo),
    Page(AuctionPage),
    History(HistoryPage),
}

/// Why a query could not be answered, besides an unknown auction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("bad page token {0:?}")]
    BadPageToken(String),
}

impl AuctionBook {
    /// Creates an auction: its id comes from a counter in the replicated
    /// state, so every replica gives it the same one.
    pub(super) fn create(&mut self, create: &CreateAuction, revision: u64) -> CreateOutcome {
        if let Err(reason) = validate_create(create) {
            return CreateOutcome::exception(reason);
        }
        // Closed auctions count until they expire: they hold memory too.
        if create.max_auctions > 0 && self.auctions.len() as u64 >= create.max_auctions {
            let reason = Reason::TooManyAuctions { max: create.max_auctions };
            return CreateOutcome { verdict: Verdict::Fail, reason: Some(reason), auction_id: String::new() };
        }
        if create.max_open_per_seller > 0 && self.open_auctions_of(&create.seller) >= create.max_open_per_seller {
            let reason = Reason::TooManyOpenAuctions { max: create.max_open_per_seller };
            return CreateOutcome { verdict: Verdict::Fail, reason: Some(reason), auction_id: String::new() };
        }
        self.created += 1;
        let auction_id = format!("a{}", self.created);
        let auction = Auction {
            auction_id: auction_id.clone(),
            seller: create.seller.clone(),
            title: create.title.clone(),
            description: create.description.clone(),
            minimum_amount: create.minimum_amount.max(1),
            created_at_unix_ms: create.at_unix_ms,
            ends_at_unix_ms: create.ends_at_unix_ms,
            closed: false,
            highest_amount: 0,
            highest_bidder: String::new(),
            accepted_bids: 0,
            bidders: Default::default(),
            history: Default::default(),
            created_revision: revision,
            revision,
            expires_at_unix_ms: None,
            cancelled: false,
        };
        self.insert_auction(auction);
        CreateOutcome { verdict: Verdict::Success, reason: None, auction_id }
    }

    /// Cancels an auction with no bid yet, if `cancel` comes from its seller.
    pub(super) fn cancel(&mut self, cancel: &CancelAuction, revision: u64) -> CancelOutcome {
        let auction_id = resolve_auction_id(&cancel.auction_id).to_string();
        let Some(auction) = self.auctions.get_mut(&auction_id) else {
            return CancelOutcome::exception(Reason::UnknownAuction { auction_id });
        };
        if auction.seller.is_empty() || auction.seller != cancel.seller {
            return CancelOutcome::exception(Reason::NotTheSeller { auction_id });
        }
        let fail = |reason: Reason| CancelOutcome { verdict: Verdict::Fail, reason: Some(reason) };
        if auction.is_over(cancel.at_unix_ms) {
            return fail(Reason::AuctionOver);
        }
        if auction.accepted_bids > 0 {
            return fail(Reason::HasBids { auction_id });
        }
        auction.closed = true;
        auction.cancelled = true;
        auction.revision = revision;
        let expires_at = cancel.at_unix_ms.saturating_add(i64::try_from(cancel.retain_ms).unwrap_or(i64::MAX));
        auction.expires_at_unix_ms = Some(expires_at);
        let ends_at = auction.ends_at_unix_ms;
        self.deadlines.remove(&(ends_at, auction_id.clone()));
        self.expiries.insert((expires_at, auction_id));
        self.count_open(&cancel.seller, -1);
        CancelOutcome { verdict: Verdict::Success, reason: None }
    }

    /// Answers a query as of `now_unix_ms`.
    pub fn query(&self, query: &Query, now_unix_ms: i64) -> Result<QueryAnswer, QueryError> {
        match query {
            Query::View { auction_id } => Ok(QueryAnswer::View(self.view(auction_id, now_unix_ms)?)),
            Query::Get { auction_id } => {
                let auction_id = resolve_auction_id(auction_id);
                let auction =
                    self.auctions.get(auction_id).ok_or_else(|| ReadError::UnknownAuction(auction_id.to_string()))?;
                Ok(QueryAnswer::Auction(AuctionInfo::of(auction, now_unix_ms)))
            }
            Query::List { open_only, limit, page_token } => {
                Ok(QueryAnswer::Page(self.list(*open_only, *limit, page_token, now_unix_ms)?))
            }
            Query::History { auction_id, limit, page_token } => {
                let auction_id = resolve_auction_id(auction_id);
                let auction =
                    self.auctions.get(auction_id).ok_or_else(|| ReadError::UnknownAuction(auction_id.to_string()))?;
                // The token is how many bids earlier pages held.
                let from = if page_token.is_empty() {
                    0
                } else {
                    page_token.parse::<usize>().map_err(|_| QueryError::BadPageToken(page_token.to_string()))?
                };
                let limit = page_size(*limit);
                let from = from.min(auction.history.len());
                let bids: Vec<AcceptedBid> = auction.history.cloned_from(from).take(limit).collect();
                let next = from + bids.len();
                let next_page_token = if next < auction.history.len() { next.to_string() } else { String::new() };
                Ok(QueryAnswer::History(HistoryPage { auction_id: auction_id.to_string(), bids, next_page_token }))
            }
        }
    }

    /// A page of auctions in creation order after `page_token`.
    fn list(&self, open_only: bool, limit: u32, page_token: &str, now_unix_ms: i64) -> Result<AuctionPage, QueryError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let limit = page_size(limit);
        let start = if page_token.is_empty() {
            Unbounded
        } else {
            Excluded(parse_page_token(page_token).ok_or_else(|| QueryError::BadPageToken(page_token.to_string()))?)
        };
        let mut auctions = Vec::new();
        let mut last = None;
        for key in self.creation_order.range((start, Unbounded)) {
            let Some(auction) = self.auctions.get(&key.1) else { continue };
            last = Some(key.clone());
            if open_only && auction.is_over(now_unix_ms) {
                continue;
            }
            auctions.push(AuctionInfo::of(auction, now_unix_ms));
            if auctions.len() == limit {
                break;
            }
        }
        let more = last
            .as_ref()
            .is_some_and(|last| self.creation_order.range((Excluded(last.clone()), Unbounded)).next().is_some());
        let next_page_token = match last {
            Some((revision, id)) if more => format!("{revision}:{id}"),
            _ => String::new(),
        };
        Ok(AuctionPage { auctions, next_page_token })
    }
}

/// The page a caller asked for: 0 means the default, and no page is larger
/// than [`MAX_PAGE`].
fn page_size(limit: u32) -> usize {
    match limit as usize {
        0 => DEFAULT_PAGE,
        limit => limit.min(MAX_PAGE),
    }
}

/// A page token names the last auction of the page: `revision:id`.
fn parse_page_token(token: &str) -> Option<(u64, String)> {
    let (revision, id) = token.split_once(':')?;
    Some((revision.parse().ok()?, id.to_string()))
}
