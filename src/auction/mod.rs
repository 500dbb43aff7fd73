//! The auction rules: pure and deterministic.
//!
//! `AuctionBook::apply` takes a command and returns its outcome. It never reads
//! a clock: the leader stamps the time into every command, so every replica
//! that applies the same commands in the same order reaches the same state.
//! The book also holds the dedup table, so a retried bid returns the outcome
//! of its first execution instead of being applied twice.
//!
//! Its maps are persistent (`imbl`): a clone shares them and costs O(1), so
//! the leader takes a consistent snapshot for a joiner without copying the
//! state or stopping, however large it is.

use std::borrow::Cow;

use imbl::{OrdMap, OrdSet};

mod catalogue;
mod events;
mod history;
pub mod machine;
mod reason;
mod sessions;

pub use catalogue::{
    AcceptedBid, AuctionInfo, AuctionPage, CancelAuction, CancelOutcome, CreateAuction, CreateOutcome, DEFAULT_PAGE,
    HistoryPage, MAX_DESCRIPTION_LEN, MAX_PAGE, MAX_TITLE_LEN, Query, QueryAnswer, QueryError, validate_create,
    validate_create_fields,
};
pub use events::{AuctionEvent, EventKind, EventScope, MAX_WATCHED_AUCTIONS};
pub use history::BidHistory;
pub use reason::{NameProblem, Party, Reason, render};
pub use sessions::{ClientSession, RememberedOutcome, WriteOutcome};

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The auction a request with an empty `auction_id` means.
pub const DEFAULT_AUCTION: &str = "default";
/// Longest bidder name accepted, in bytes.
pub const MAX_BIDDER_LEN: usize = 64;
/// Longest client id accepted, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// The largest request id a session may use (2^53 - 1, exact in JSON): a
/// session that reaches it is done, and its client starts a new one. Above
/// it, an id is refused before it is sequenced, so that no request can end
/// its session at once (ids only rise, and none rises past 2^64 - 1).
pub const MAX_REQUEST_ID: u64 = (1 << 53) - 1;
/// Longest auction id accepted, in bytes.
pub const MAX_AUCTION_ID_LEN: usize = 64;
/// Outcomes remembered per client session. A client has one request in
/// flight at a time and retries only its latest, so a short window is enough;
/// it keeps memory per session bounded however many bids a session makes.
pub const REMEMBERED_PER_CLIENT: usize = 8;
/// A session unused for this long, in log time, is forgotten by every
/// replica at the same entry. Clients renew their session well before (see
/// `client::RENEW_SESSION_AFTER`), and no request retries for longer than
/// `client::MAX_DEADLINE`, so a retry never outlives its session.
pub const SESSION_EXPIRY_MS: i64 = 5 * 60 * 1000;

/// How a bid ended. A refused bid is an outcome, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The bid is now the highest.
    Success,
    /// A valid bid that loses: too low, or the auction is over.
    Fail,
    /// A malformed request: amount 0, bad bidder, unknown auction.
    Exception,
}

/// The answer to a bid, as remembered in the dedup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidOutcome {
    pub verdict: Verdict,
    /// Why it was refused, or a note on its success.
    pub reason: Option<Reason>,
    /// The highest bid after this one was applied.
    pub highest_amount: u64,
    pub highest_bidder: String,
    /// Where an accepted bid stands in the log; `None` for a refused bid,
    /// and for one accepted before outcomes carried it (a snapshot of
    /// format 0 remembers none).
    pub placed: Option<Placed>,
}

/// Where an accepted bid stands: the revision (log index) that applied it
/// and the time the leader stamped it with, as its auction's history shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub revision: u64,
    pub at_unix_ms: i64,
}

impl BidOutcome {
    /// The answer to a malformed request: nothing changed.
    pub fn exception(reason: Reason) -> Self {
        BidOutcome {
            verdict: Verdict::Exception,
            reason: Some(reason),
            highest_amount: 0,
            highest_bidder: String::new(),
            placed: None,
        }
    }
}

/// A bid as the leader sequenced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    pub auction_id: String,
    pub bidder: String,
    pub amount: u64,
    /// Identifies the client session for deduplication; empty disables it.
    pub client_id: String,
    pub request_id: u64,
    /// When the leader received it: decides whether it beat the deadline.
    pub at_unix_ms: i64,
    /// The digest of the secret the bidder's client gave (see
    /// [`NameDigest`]); `None` without one, or with authentication off.
    pub name_digest: Option<NameDigest>,
}

/// The SHA-256 of the secret a client made for a name. With authentication
/// on, the first valid act under a name with a secret binds the name to its
/// digest; from then on every bid, create and cancel under the name must
/// bring the same. The leader sequences the digest, never the secret.
pub type NameDigest = [u8; 32];

impl Bid {
    /// A digest of what the request asks for, to tell a retry from a request
    /// id reused for another bid. FNV-1a over the fields, each prefixed by
    /// its length: written out rather than taken from a hasher crate because
    /// it is part of the replicated state, so it must never change between
    /// versions or platforms.
    pub fn fingerprint(&self) -> u64 {
        fnv_fingerprint(&[
            resolve_auction_id(&self.auction_id).as_bytes(),
            self.bidder.as_bytes(),
            &self.amount.to_le_bytes(),
        ])
    }
}

/// FNV-1a over `fields`, each prefixed by its length.
fn fnv_fingerprint(fields: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for field in fields {
        for &byte in (field.len() as u64).to_le_bytes().iter().chain(field.iter()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}

/// A state change of the auctions. The leader stamps the time in each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Open(OpenAuction),
    Bid(Bid),
    /// Closes an auction; it and its history are kept `retain_ms` more
    /// (the leader stamps its setting in, so every replica expires it at
    /// the same entry).
    Close {
        auction_id: String,
        at_unix_ms: i64,
        retain_ms: u64,
    },
    Create(CreateAuction),
    Cancel(CancelAuction),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAuction {
    pub auction_id: String,
    pub description: String,
    pub minimum_amount: u64,
    pub ends_at_unix_ms: i64,
    pub at_unix_ms: i64,
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Bid(BidOutcome),
    Created(CreateOutcome),
    Cancelled(CancelOutcome),
    Opened,
    Closed,
    /// The command changed nothing (an auction opened twice, closed twice).
    Ignored,
}

/// One auction's replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auction {
    pub auction_id: String,
    /// Empty for the default auction, which the cluster opens itself.
    pub seller: String,
    pub title: String,
    pub description: String,
    pub created_at_unix_ms: i64,
    /// The log index that created it: the catalogue lists in this order.
    pub created_revision: u64,
    /// The log index of its last change.
    pub revision: u64,
    /// Set at its close: from then (log time) it is forgotten.
    pub expires_at_unix_ms: Option<i64>,
    /// Its seller cancelled it before any bid.
    pub cancelled: bool,
    pub minimum_amount: u64,
    /// The deadline is absolute, so it survives failover unchanged.
    pub ends_at_unix_ms: i64,
    /// Set by the close entry the leader appends once the deadline passed.
    pub closed: bool,
    pub highest_amount: u64,
    pub highest_bidder: String,
    pub accepted_bids: u64,
    /// Registered bidders and their best bid; the first bid registers.
    pub bidders: OrdMap<String, u64>,
    /// Every accepted bid, oldest first.
    pub history: BidHistory,
}

impl Auction {
    /// Whether no bid can be accepted at `now`: closed, or past the deadline.
    pub fn is_over(&self, now_unix_ms: i64) -> bool {
        self.closed || now_unix_ms >= self.ends_at_unix_ms
    }
}

/// A read of one auction, as the `Result` call returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionView {
    pub auction_id: String,
    pub over: bool,
    pub highest_amount: u64,
    pub highest_bidder: String,
    pub ends_at_unix_ms: i64,
    pub accepted_bids: u64,
    pub now_unix_ms: i64,
}

/// Why a read could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("unknown auction {0:?}")]
    UnknownAuction(String),
}

/// All auctions and the dedup table: the replicated state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuctionBook {
    pub auctions: OrdMap<String, Auction>,
    /// The auctions by `(created_revision, auction_id)`: the catalogue's order.
    creation_order: OrdSet<(u64, String)>,
    /// The auctions by `(revision, auction_id)` of their last change, each
    /// with its creation's revision: a watcher finds what changed since a
    /// revision without a scan, and passes over an auction created after
    /// the revisions it pages through without looking it up.
    by_last_change: OrdMap<(u64, String), u64>,
    /// Closed auctions by `(expires_at_unix_ms, auction_id)`.
    expiries: OrdSet<(i64, String)>,
    /// Open auctions by `(ends_at_unix_ms, auction_id)`: the leader finds
    /// the overdue ones without scanning every auction on every tick.
    deadlines: OrdSet<(i64, String)>,
    /// The highest revision whose events were forgotten with an expired
    /// auction: a watcher cannot resume from before it.
    pub compacted: u64,
    /// Auctions created by sellers so far: the next one is `a{created + 1}`.
    pub created: u64,
    /// Ordered, so that a snapshot can be streamed in chunks, each resuming
    /// after the last key sent.
    sessions: OrdMap<String, ClientSession>,
    /// The sessions by `(expiry_bucket(last_used_unix_ms), client_id)`: the
    /// oldest first, so expiry finds them without scanning the table. Kept
    /// by whole seconds, so that a busy session is re-indexed once a second
    /// rather than on every bid.
    sessions_by_use: OrdSet<(i64, String)>,
    /// Names bound to a secret, by the secret's digest (see [`NameDigest`]).
    names: OrdMap<String, NameDigest>,
    /// Each seller's open auctions: what a create's per-seller cap counts.
    /// Derived from the auctions (a snapshot rebuilds it as it inserts them).
    open_by_seller: OrdMap<String, u64>,
}

/// Checks what a bid request can be judged on without the state, so that a
/// malformed request is refused before it is sequenced and changes nothing.
/// The bidder name must already be in its normal form (see
/// [`normalize_name`]): the service normalises it where it enters.
pub fn validate_bid(auction_id: &str, bidder: &str, amount: u64, client_id: &str) -> Result<(), Reason> {
    if amount == 0 {
        return Err(Reason::AmountZero);
    }
    check_normal(bidder, Party::Bidder)?;
    validate_ids(auction_id, client_id)
}

/// Checks the lengths of the ids a write carries.
pub fn validate_ids(auction_id: &str, client_id: &str) -> Result<(), Reason> {
    if auction_id.len() > MAX_AUCTION_ID_LEN {
        return Err(Reason::AuctionIdTooLong { max: MAX_AUCTION_ID_LEN });
    }
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(Reason::ClientIdTooLong { max: MAX_CLIENT_ID_LEN });
    }
    Ok(())
}

/// Whether `c` would hide something from a reader: a control character, or
/// an invisible format one (a right-to-left override, a zero-width space).
/// Names refuse them all; titles and descriptions too (see
/// [`catalogue::check_visible_text`]).
pub(crate) fn is_hidden(c: char) -> bool {
    matches!(c.general_category(), GeneralCategory::Control | GeneralCategory::Format)
}

/// Refuses a request id past [`MAX_REQUEST_ID`]: at the edge only, since
/// entries logged before the bound may hold larger ones.
pub(crate) fn check_request_id(request_id: u64) -> Result<(), Reason> {
    if request_id > MAX_REQUEST_ID {
        return Err(Reason::RequestIdTooLarge { max: MAX_REQUEST_ID });
    }
    Ok(())
}

/// Checks that `name` is already in its normal form: the log holds only
/// that spelling.
pub(crate) fn check_normal(name: &str, party: Party) -> Result<(), Reason> {
    let normal = normalize_name(name, party)?;
    if normal != name {
        let problem = NameProblem::NotNormal { given: name.to_string(), normal: normal.into_owned() };
        return Err(Reason::Name { party, problem });
    }
    Ok(())
}

/// The one spelling of a bidder or seller name: trimmed and in Unicode NFC, so that
/// names that look alike are one bidder. Control and format characters
/// (bidi overrides, zero-width spaces) are refused: they make a name look
/// like another.
pub fn normalize_name(name: &str, party: Party) -> Result<Cow<'_, str>, Reason> {
    let refuse = |problem| Err(Reason::Name { party, problem });
    // The common case, checked without Unicode tables or a copy: printable
    // ASCII with no space at either end is already in normal form.
    let printable = |byte: &u8| (b' '..=b'~').contains(byte);
    if name.len() <= MAX_BIDDER_LEN
        && name.bytes().all(|byte| printable(&byte))
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.is_empty()
    {
        return Ok(Cow::Borrowed(name));
    }
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return refuse(NameProblem::Empty);
    }
    if let Some(c) = name.chars().find(|&c| is_hidden(c)) {
        return refuse(if c.is_control() { NameProblem::Control } else { NameProblem::Format });
    }
    let normal: String = trimmed.nfc().collect();
    if normal.len() > MAX_BIDDER_LEN {
        return refuse(NameProblem::TooLong { max: MAX_BIDDER_LEN });
    }
    Ok(if normal == name { Cow::Borrowed(name) } else { Cow::Owned(normal) })
}

/// The log time a command was stamped with.
pub fn command_time(command: &Command) -> i64 {
    match command {
        Command::Open(open) => open.at_unix_ms,
        Command::Bid(bid) => bid.at_unix_ms,
        Command::Close { at_unix_ms, .. } => *at_unix_ms,
        Command::Create(create) => create.at_unix_ms,
        Command::Cancel(cancel) => cancel.at_unix_ms,
    }
}

/// The auction a command changes, if it names an existing one.
fn command_auction(command: &Command) -> Option<&str> {
    match command {
        Command::Open(open) => Some(&open.auction_id),
        Command::Bid(bid) => Some(resolve_auction_id(&bid.auction_id)),
        Command::Close { auction_id, .. } => Some(auction_id),
        Command::Cancel(cancel) => Some(resolve_auction_id(&cancel.auction_id)),
        Command::Create(_) => None,
    }
}

/// Replaces `name` by its normal form, or says why it has none.
pub fn normalize_in_place(name: &mut String, party: Party) -> Result<(), Reason> {
    if let Cow::Owned(normal) = normalize_name(name, party)? {
        *name = normal;
    }
    Ok(())
}

/// Maps the empty auction id to the default auction.
pub fn resolve_auction_id(auction_id: &str) -> &str {
    if auction_id.is_empty() { DEFAULT_AUCTION } else { auction_id }
}

impl AuctionBook {
    /// Puts an auction back, or in, keeping the catalogue's order.
    pub fn insert_auction(&mut self, auction: Auction) {
        let key = (auction.created_revision, auction.auction_id.clone());
        let change = ((auction.revision, auction.auction_id.clone()), auction.created_revision);
        let expiry = auction.expires_at_unix_ms.map(|at| (at, auction.auction_id.clone()));
        let deadline = (!auction.closed).then(|| (auction.ends_at_unix_ms, auction.auction_id.clone()));
        if !auction.closed {
            self.count_open(&auction.seller, 1);
        }
        if let Some(replaced) = self.auctions.insert(auction.auction_id.clone(), auction) {
            if !replaced.closed {
                self.count_open(&replaced.seller, -1);
            }
            self.creation_order.remove(&(replaced.created_revision, replaced.auction_id.clone()));
            self.by_last_change.remove(&(replaced.revision, replaced.auction_id.clone()));
            self.deadlines.remove(&(replaced.ends_at_unix_ms, replaced.auction_id.clone()));
            if let Some(at) = replaced.expires_at_unix_ms {
                self.expiries.remove(&(at, replaced.auction_id));
            }
        }
        self.creation_order.insert(key);
        self.by_last_change.insert(change.0, change.1);
        self.expiries.extend(expiry);
        self.deadlines.extend(deadline);
    }

    /// Counts an auction of `seller`'s that opened (+1) or closed (-1); the
    /// cluster's own auctions have no seller and are not counted.
    fn count_open(&mut self, seller: &str, change: i64) {
        if seller.is_empty() {
            return;
        }
        let count = self.open_by_seller.get(seller).copied().unwrap_or(0).saturating_add_signed(change);
        if count == 0 {
            self.open_by_seller.remove(seller);
        } else {
            self.open_by_seller.insert(seller.to_string(), count);
        }
    }

    /// How many auctions of `seller`'s are open.
    pub fn open_auctions_of(&self, seller: &str) -> u64 {
        self.open_by_seller.get(seller).copied().unwrap_or(0)
    }

    /// Forgets the closed auctions whose retention ended at log time `now`,
    /// with their histories: every replica at the same entry.
    fn expire_auctions(&mut self, now_unix_ms: i64) {
        while let Some((at, _)) = self.expiries.get_min()
            && *at <= now_unix_ms
        {
            let Some((_, auction_id)) = self.expiries.remove_min() else { break };
            if let Some(auction) = self.auctions.remove(&auction_id) {
                self.deadlines.remove(&(auction.ends_at_unix_ms, auction_id.clone()));
                self.creation_order.remove(&(auction.created_revision, auction_id.clone()));
                self.by_last_change.remove(&(auction.revision, auction_id));
                self.compacted = self.compacted.max(auction.revision);
            }
        }
    }

    /// Keeps the index of last changes true after `command` ran at
    /// `revision`: the one auction it names may have changed.
    fn note_change(&mut self, command: &Command, before: Option<u64>) {
        let Some(auction_id) = command_auction(command) else { return };
        let Some(auction) = self.auctions.get(auction_id) else { return };
        if before != Some(auction.revision) {
            if let Some(before) = before {
                self.by_last_change.remove(&(before, auction_id.to_string()));
            }
            self.by_last_change.insert((auction.revision, auction_id.to_string()), auction.created_revision);
        }
    }

    /// Applies one command, outside the log (revision 0): for tests.
    pub fn apply(&mut self, command: &Command) -> Applied {
        self.apply_at(0, command)
    }

    /// Applies the command of the log entry at `revision`. Deterministic: the
    /// same book and command give the same book and outcome on every replica.
    pub fn apply_at(&mut self, revision: u64, command: &Command) -> Applied {
        self.expire_auctions(command_time(command));
        let before = command_auction(command).and_then(|id| self.auctions.get(id)).map(|auction| auction.revision);
        let applied = self.run(revision, command);
        if let Applied::Created(outcome) = &applied
            && outcome.verdict == Verdict::Success
        {
            // A new auction: insert_auction indexed it already.
            return applied;
        }
        self.note_change(command, before);
        applied
    }

    fn run(&mut self, revision: u64, command: &Command) -> Applied {
        match command {
            Command::Open(open) => self.open(open, revision),
            Command::Bid(bid) => Applied::Bid(self.bid(bid, revision)),
            Command::Close { auction_id, at_unix_ms, retain_ms } => match self.auctions.get_mut(auction_id) {
                Some(auction) if !auction.closed => {
                    auction.closed = true;
                    auction.revision = revision;
                    let expires_at = at_unix_ms.saturating_add(i64::try_from(*retain_ms).unwrap_or(i64::MAX));
                    auction.expires_at_unix_ms = Some(expires_at);
                    self.deadlines.remove(&(auction.ends_at_unix_ms, auction_id.clone()));
                    self.expiries.insert((expires_at, auction_id.clone()));
                    let seller = auction.seller.clone();
                    self.count_open(&seller, -1);
                    Applied::Closed
                }
                _ => Applied::Ignored,
            },
            Command::Create(create) => {
                if let Err(reason) = self.check_owner(Party::Seller, &create.seller, create.name_digest.as_ref()) {
                    return Applied::Created(CreateOutcome::exception(reason));
                }
                let write = WriteOutcome::Create(CreateOutcome::exception(Reason::SessionUnknown));
                let outcome = self.deduplicated(
                    &create.client_id,
                    create.request_id,
                    create.fingerprint(),
                    create.at_unix_ms,
                    &write,
                    |book| WriteOutcome::Create(book.create(create, revision)),
                );
                match outcome {
                    WriteOutcome::Create(outcome) => {
                        if outcome.verdict == Verdict::Success {
                            self.bind_name(&create.seller, create.name_digest.as_ref());
                        }
                        Applied::Created(outcome)
                    }
                    _ => Applied::Created(CreateOutcome::exception(Reason::RequestKindDiffers {
                        request_id: create.request_id,
                    })),
                }
            }
            Command::Cancel(cancel) => {
                if let Err(reason) = self.check_owner(Party::Seller, &cancel.seller, cancel.name_digest.as_ref()) {
                    return Applied::Cancelled(CancelOutcome::exception(reason));
                }
                let like = WriteOutcome::Cancel(CancelOutcome::exception(Reason::SessionUnknown));
                let outcome = self.deduplicated(
                    &cancel.client_id,
                    cancel.request_id,
                    cancel.fingerprint(),
                    cancel.at_unix_ms,
                    &like,
                    |book| WriteOutcome::Cancel(book.cancel(cancel, revision)),
                );
                match outcome {
                    WriteOutcome::Cancel(outcome) => {
                        if outcome.verdict == Verdict::Success {
                            self.bind_name(&cancel.seller, cancel.name_digest.as_ref());
                        }
                        Applied::Cancelled(outcome)
                    }
                    _ => Applied::Cancelled(CancelOutcome::exception(Reason::RequestKindDiffers {
                        request_id: cancel.request_id,
                    })),
                }
            }
        }
    }

    fn open(&mut self, open: &OpenAuction, revision: u64) -> Applied {
        if self.auctions.contains_key(&open.auction_id) {
            return Applied::Ignored;
        }
        self.insert_auction(Auction {
            auction_id: open.auction_id.clone(),
            seller: String::new(),
            title: open.description.clone(),
            description: open.description.clone(),
            created_at_unix_ms: open.at_unix_ms,
            created_revision: revision,
            revision,
            expires_at_unix_ms: None,
            cancelled: false,
            minimum_amount: open.minimum_amount.max(1),
            ends_at_unix_ms: open.ends_at_unix_ms,
            closed: false,
            highest_amount: 0,
            highest_bidder: String::new(),
            accepted_bids: 0,
            bidders: OrdMap::new(),
            history: BidHistory::default(),
        });
        Applied::Opened
    }

    fn bid(&mut self, bid: &Bid, revision: u64) -> BidOutcome {
        // A request that cannot have an effect gets its reason, whatever its
        // session: the same answer a retry would get. A name's owner is
        // checked before the session too, so that someone without the
        // secret changes nothing, not even the session they claim.
        let checked =
            self.check_bid(bid).and_then(|()| self.check_owner(Party::Bidder, &bid.bidder, bid.name_digest.as_ref()));
        if let Err(reason) = checked {
            return BidOutcome::exception(reason);
        }
        let like = WriteOutcome::Bid(BidOutcome::exception(Reason::SessionUnknown));
        let outcome =
            self.deduplicated(&bid.client_id, bid.request_id, bid.fingerprint(), bid.at_unix_ms, &like, |book| {
                WriteOutcome::Bid(book.judge_bid(bid, revision))
            });
        match outcome {
            WriteOutcome::Bid(outcome) => {
                // A bid that lost is a valid act under the name too.
                if outcome.verdict != Verdict::Exception {
                    self.bind_name(&bid.bidder, bid.name_digest.as_ref());
                }
                outcome
            }
            _ => BidOutcome::exception(Reason::RequestKindDiffers { request_id: bid.request_id }),
        }
    }

    /// Refuses an act under `name` without the secret it is bound to.
    fn check_owner(&self, party: Party, name: &str, digest: Option<&NameDigest>) -> Result<(), Reason> {
        match self.names.get(name) {
            Some(owner) if Some(owner) != digest => Err(Reason::NameOwned { party, name: name.to_string() }),
            _ => Ok(()),
        }
    }

    /// Binds a free `name` to the secret of the valid act that used it.
    fn bind_name(&mut self, name: &str, digest: Option<&NameDigest>) {
        if let Some(digest) = digest
            && !self.names.contains_key(name)
        {
            self.names.insert(name.to_string(), *digest);
        }
    }

    /// The names bound to a secret after `after` (from the first when
    /// `None`), at most `limit`: a snapshot's chunks.
    pub fn name_owners_after<'a>(
        &'a self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Iterator<Item = (&'a String, &'a NameDigest)> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |after| Excluded(after.to_string()));
        self.names.range((start, Unbounded)).take(limit)
    }

    /// Puts back a name's binding from a snapshot.
    pub fn restore_name_owner(&mut self, name: String, digest: NameDigest) {
        self.names.insert(name, digest);
    }

    /// The digest `name` is bound to, if it is.
    pub fn name_owner(&self, name: &str) -> Option<&NameDigest> {
        self.names.get(name)
    }

    /// What refuses a bid whatever its session: malformed input, or an
    /// auction that does not exist.
    fn check_bid(&self, bid: &Bid) -> Result<(), Reason> {
        validate_bid(&bid.auction_id, &bid.bidder, bid.amount, &bid.client_id)?;
        let auction_id = resolve_auction_id(&bid.auction_id);
        if !self.auctions.contains_key(auction_id) {
            return Err(Reason::UnknownAuction { auction_id: auction_id.to_string() });
        }
        Ok(())
    }

    fn judge_bid(&mut self, bid: &Bid, revision: u64) -> BidOutcome {
        let auction_id = resolve_auction_id(&bid.auction_id);
        let Some(auction) = self.auctions.get_mut(auction_id) else {
            return BidOutcome::exception(Reason::UnknownAuction { auction_id: auction_id.to_string() });
        };
        let fail = |auction: &Auction, reason: Reason| BidOutcome {
            verdict: Verdict::Fail,
            reason: Some(reason),
            highest_amount: auction.highest_amount,
            highest_bidder: auction.highest_bidder.clone(),
            placed: None,
        };
        if auction.is_over(bid.at_unix_ms) {
            return fail(auction, Reason::AuctionOver);
        }
        if bid.amount < auction.minimum_amount {
            return fail(auction, Reason::BelowMinimum { amount: bid.amount, minimum: auction.minimum_amount });
        }
        if bid.amount <= auction.highest_amount {
            let reason = Reason::NotHigher {
                amount: bid.amount,
                highest: auction.highest_amount,
                highest_bidder: auction.highest_bidder.clone(),
            };
            return fail(auction, reason);
        }
        if let Some(&own_best) = auction.bidders.get(&bid.bidder) {
            // Implied by the rule above today, kept so the rule stays true if
            // highest bids ever become retractable.
            if bid.amount <= own_best {
                return fail(auction, Reason::NotAboveOwnBest { amount: bid.amount, own_best });
            }
        }
        if !auction.seller.is_empty() && auction.seller == bid.bidder {
            return fail(auction, Reason::SellerBids);
        }
        let registered = !auction.bidders.contains_key(&bid.bidder);
        auction.bidders.insert(bid.bidder.clone(), bid.amount);
        auction.highest_amount = bid.amount;
        auction.highest_bidder = bid.bidder.clone();
        auction.accepted_bids += 1;
        auction.revision = revision;
        auction.history.push_back(AcceptedBid {
            bidder: bid.bidder.clone(),
            amount: bid.amount,
            at_unix_ms: bid.at_unix_ms,
            revision,
        });
        BidOutcome {
            verdict: Verdict::Success,
            reason: registered.then(|| Reason::Registered { bidder: bid.bidder.clone() }),
            highest_amount: auction.highest_amount,
            highest_bidder: auction.highest_bidder.clone(),
            placed: Some(Placed { revision, at_unix_ms: bid.at_unix_ms }),
        }
    }

    /// Reads one auction as of `now` (the leader's clock).
    pub fn view(&self, auction_id: &str, now_unix_ms: i64) -> Result<AuctionView, ReadError> {
        let auction_id = resolve_auction_id(auction_id);
        let auction = self.auctions.get(auction_id).ok_or_else(|| ReadError::UnknownAuction(auction_id.to_string()))?;
        Ok(AuctionView {
            auction_id: auction.auction_id.clone(),
            over: auction.is_over(now_unix_ms),
            highest_amount: auction.highest_amount,
            highest_bidder: auction.highest_bidder.clone(),
            ends_at_unix_ms: auction.ends_at_unix_ms,
            accepted_bids: auction.accepted_bids,
            now_unix_ms,
        })
    }

    /// Auctions whose deadline passed but which are not closed yet.
    pub fn overdue(&self, now_unix_ms: i64) -> Vec<String> {
        use std::ops::Bound::{Included, Unbounded};
        self.deadlines
            .range((Unbounded, Included((now_unix_ms, String::from(char::MAX)))))
            .map(|(_, auction_id)| auction_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
