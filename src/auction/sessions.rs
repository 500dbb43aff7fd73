//! Client sessions: the dedup table that makes every write exactly-once.
//! A session remembers its latest outcomes, so a retry gets the outcome of
//! its first execution, and expires in log time, so every replica forgets
//! the same sessions at the same entry.

use std::collections::VecDeque;

use super::{AuctionBook, BidOutcome, CancelOutcome, CreateOutcome, REMEMBERED_PER_CLIENT, Reason, SESSION_EXPIRY_MS};

/// The outcome of any write a session made: what a retry gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Bid(BidOutcome),
    Create(CreateOutcome),
    Cancel(CancelOutcome),
}

impl WriteOutcome {
    /// The refusal of a write that was not applied, in the write's own kind.
    pub(super) fn exception(like: &Self, reason: Reason) -> Self {
        match like {
            WriteOutcome::Bid(_) => WriteOutcome::Bid(BidOutcome::exception(reason)),
            WriteOutcome::Create(_) => WriteOutcome::Create(CreateOutcome::exception(reason)),
            WriteOutcome::Cancel(_) => WriteOutcome::Cancel(CancelOutcome::exception(reason)),
        }
    }
}

/// One remembered request of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RememberedOutcome {
    pub request_id: u64,
    /// What the request asked for (see [`Bid::fingerprint`]): a request id
    /// reused for other content gets an error, never this outcome.
    pub fingerprint: u64,
    pub outcome: WriteOutcome,
}

/// The dedup record of one client session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSession {
    /// The latest outcomes, oldest first.
    pub outcomes: VecDeque<RememberedOutcome>,
    /// The highest request id executed: a lower one that is no longer
    /// remembered is refused rather than executed a second time.
    pub highest_request_id: u64,
    /// The log time of its latest request; it expires
    /// [`SESSION_EXPIRY_MS`] later.
    pub last_used_unix_ms: i64,
}

/// The whole second a session's last use is indexed under, rounded up: a
/// session lives at least [`SESSION_EXPIRY_MS`] after its last use.
fn expiry_bucket(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(1000).saturating_add(1).saturating_mul(1000)
}

impl AuctionBook {
    /// The outcome a retried request already got, if it is remembered.
    pub fn remembered(&self, client_id: &str, request_id: u64) -> Option<&BidOutcome> {
        if client_id.is_empty() {
            return None;
        }
        match self.remembered_write(client_id, request_id)? {
            WriteOutcome::Bid(outcome) => Some(outcome),
            WriteOutcome::Create(_) | WriteOutcome::Cancel(_) => None,
        }
    }

    /// The outcome of any write a retried request already got.
    pub fn remembered_write(&self, client_id: &str, request_id: u64) -> Option<&WriteOutcome> {
        let session = self.sessions.get(client_id)?;
        session.outcomes.iter().find(|remembered| remembered.request_id == request_id).map(|r| &r.outcome)
    }

    /// The dedup record of one session, if it is live.
    pub fn session(&self, client_id: &str) -> Option<&ClientSession> {
        self.sessions.get(client_id)
    }

    /// Every live session, by client id.
    pub fn sessions(&self) -> impl Iterator<Item = (&String, &ClientSession)> {
        self.sessions.iter()
    }

    /// Up to `limit` sessions whose client id comes after `after`, in order:
    /// a snapshot streams the table in chunks this way.
    pub fn sessions_after<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> impl Iterator<Item = (&'a String, &'a ClientSession)> + 'a {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |after| Bound::Excluded(after.to_string()));
        self.sessions.range((start, Bound::Unbounded)).take(limit)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Puts back a session read from a snapshot.
    pub fn restore_session(&mut self, client_id: String, session: ClientSession) {
        let bucket = expiry_bucket(session.last_used_unix_ms);
        if let Some(replaced) = self.sessions.insert(client_id.clone(), session) {
            self.sessions_by_use.remove(&(expiry_bucket(replaced.last_used_unix_ms), client_id.clone()));
        }
        self.sessions_by_use.insert((bucket, client_id));
    }

    /// Forgets the sessions unused for [`SESSION_EXPIRY_MS`] (and less than
    /// a second more) at log time `now`: every replica forgets the same ones
    /// at the same entry.
    fn expire_sessions(&mut self, now_unix_ms: i64) {
        while let Some((bucket, _)) = self.sessions_by_use.get_min()
            && bucket.saturating_add(SESSION_EXPIRY_MS) <= now_unix_ms
        {
            if let Some((_, client_id)) = self.sessions_by_use.remove_min() {
                self.sessions.remove(&client_id);
            }
        }
    }

    /// Runs a session's write once: a retry (same request id, same content)
    /// gets the remembered outcome; a request id reused for other content,
    /// one older than the window, or one above 1 from a session nobody
    /// remembers gets an EXCEPTION (shaped like `like`) and changes nothing.
    /// An empty client id disables the dedup.
    pub(super) fn deduplicated(
        &mut self,
        client_id: &str,
        request_id: u64,
        fingerprint: u64,
        at_unix_ms: i64,
        like: &WriteOutcome,
        run: impl FnOnce(&mut Self) -> WriteOutcome,
    ) -> WriteOutcome {
        if client_id.is_empty() {
            return run(self);
        }
        self.expire_sessions(at_unix_ms);
        match self.sessions.get(client_id) {
            Some(session) => {
                if let Some(remembered) = session.outcomes.iter().find(|r| r.request_id == request_id) {
                    if remembered.fingerprint != fingerprint {
                        return WriteOutcome::exception(like, Reason::RequestIdReused { request_id });
                    }
                    // A retry changes nothing, its session's age included:
                    // a client retries only within its deadline, well
                    // inside the session's life.
                    return remembered.outcome.clone();
                }
                if request_id <= session.highest_request_id {
                    let reason = Reason::RequestTooOld { request_id, window: REMEMBERED_PER_CLIENT };
                    return WriteOutcome::exception(like, reason);
                }
            }
            // A session begins with request 1; a later one from a session
            // nobody remembers may be the retry of a request whose outcome
            // expired with its session, so it must not run again.
            None if request_id > 1 => {
                return WriteOutcome::exception(like, Reason::SessionUnknown);
            }
            None => {}
        }
        let outcome = run(self);
        self.touch_session(client_id, at_unix_ms);
        let session = self.sessions.get_mut(client_id).expect("touched just now");
        if session.outcomes.len() == REMEMBERED_PER_CLIENT {
            session.outcomes.pop_front();
        }
        session.outcomes.push_back(RememberedOutcome { request_id, fingerprint, outcome: outcome.clone() });
        session.highest_request_id = session.highest_request_id.max(request_id);
        outcome
    }

    /// Creates the session if needed and marks it used at `now`.
    fn touch_session(&mut self, client_id: &str, now_unix_ms: i64) {
        match self.sessions.get_mut(client_id) {
            Some(session) if now_unix_ms <= session.last_used_unix_ms => {}
            Some(session) => {
                let (old, new) = (expiry_bucket(session.last_used_unix_ms), expiry_bucket(now_unix_ms));
                session.last_used_unix_ms = now_unix_ms;
                if old != new {
                    self.sessions_by_use.remove(&(old, client_id.to_string()));
                    self.sessions_by_use.insert((new, client_id.to_string()));
                }
            }
            None => {
                let session = ClientSession { last_used_unix_ms: now_unix_ms, ..ClientSession::default() };
                self.sessions.insert(client_id.to_string(), session);
                self.sessions_by_use.insert((expiry_bucket(now_unix_ms), client_id.to_string()));
            }
        }
    }
}
