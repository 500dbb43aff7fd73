//! The workload: bidders that each keep one request in flight (a closed
//! loop), the shared state they report to, and what each one measured.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::auction::{Bid, Verdict};
// Backoff between attempts, as `client::Client` does it.
use crate::client::{Client, ClientConfig, FIRST_BACKOFF, MAX_BACKOFF};
use crate::transport::{AuctionConnection, CallError, Network, TransportSettings};

use super::stats::{ErrorCounts, WorkerStats};
use super::{ATTEMPT_TIMEOUT, REQUEST_DEADLINE};

/// No time recorded yet, in the nanosecond marks below.
const NEVER: u64 = u64::MAX;

/// How one bid ended, for the bench.
pub(crate) struct Answer {
    /// The service's verdict, or why there was none.
    pub verdict: Result<Verdict, Failure>,
    /// When the attempt that got the answer was sent: the failover trials
    /// count only answers to attempts sent after the old leader was dead.
    pub attempt_started: Instant,
}

/// Why a bid got no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The service refused the request.
    Rejected,
    /// No answer before the request's deadline.
    GaveUp,
    /// The backend (etcd) failed the call.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Backend,
}

/// Something that bids for one client, retrying as its kind of client does.
pub(crate) trait Bidder: Send + 'static {
    /// Bids `amount`; `None` if the run stopped while it was retrying.
    fn bid(
        &mut self,
        amount: u64,
        errors: &mut ErrorCounts,
        load: &Load,
    ) -> impl Future<Output = Option<Answer>> + Send;
}

/// The state the clients share: the next amount, counters, and the marks of
/// the failover trials. Times are nanoseconds since `origin`.
pub(crate) struct Load {
    origin: Instant,
    /// Bids take increasing amounts from here, so most of them succeed.
    next_amount: AtomicU64,
    /// Answers so far, measured or not: the progress line and the checkpoints.
    answered: AtomicU64,
    errors: AtomicU64,
    /// Bids started, against `bid_limit`.
    issued: AtomicU64,
    bid_limit: Option<u64>,
    running: AtomicUsize,
    stopping: AtomicBool,
    /// Answers that complete in `[measure_from, measure_until)` are measured.
    measure_from: u64,
    measure_until: AtomicU64,
    /// The last leader kill: when the signal went, and when the process was
    /// known dead (`NEVER` in between, so no attempt counts too early).
    kill_signal: AtomicU64,
    kill_dead: AtomicU64,
    /// The first SUCCESS to an attempt sent after `kill_dead`.
    first_ack_after_kill: AtomicU64,
    /// `(kill_signal, gap)`: a client's pause between two answers that spans a kill.
    stalls: Mutex<Vec<(u64, u64)>>,
    /// With a held rate: the time from one bid of a client to its next
    /// (see [`drive`]); and when each amount was bid, from the end of
    /// the warmup on (the window the bids' own latencies are measured in,
    /// after the watchers opened their streams).
    pub pace: Option<Duration>,
    pub invoked_at: Option<Mutex<std::collections::HashMap<u64, Instant>>>,
}

impl Load {
    pub fn new(first_amount: u64, measure_from: Duration, bid_limit: Option<u64>) -> Self {
        Load {
            origin: Instant::now(),
            next_amount: AtomicU64::new(first_amount),
            answered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            bid_limit,
            running: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            measure_from: measure_from.as_nanos() as u64,
            measure_until: AtomicU64::new(NEVER),
            kill_signal: AtomicU64::new(0),
            kill_dead: AtomicU64::new(0),
            first_ack_after_kill: AtomicU64::new(NEVER),
            stalls: Mutex::new(Vec::new()),
            pace: None,
            invoked_at: None,
        }
    }

    pub fn since_origin(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.since_origin(Instant::now())
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Relaxed)
    }

    /// Whether every client has finished its share of a `--bids` run.
    pub fn workers_done(&self) -> bool {
        self.bid_limit.is_some_and(|limit| self.issued.load(Relaxed) >= limit) && self.running.load(Relaxed) == 0
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Relaxed) || self.now() >= self.measure_until.load(Relaxed)
    }

    /// Ends the measurement `after` the start of the run.
    pub fn stop_at(&self, after: Duration) {
        self.measure_until.store(after.as_nanos() as u64, Relaxed);
    }

    /// Ends the measurement now; clients finish their bid in flight.
    pub fn stop_now(&self) {
        let now = self.now();
        let _ = self.measure_until.fetch_min(now, Relaxed);
        self.stopping.store(true, Relaxed);
    }

    /// The measured window's length.
    pub fn measured_window(&self) -> Duration {
        let until = self.measure_until.load(Relaxed);
        Duration::from_nanos(until.saturating_sub(self.measure_from))
    }

    /// Marks a kill about to be signalled; returns its mark.
    pub fn kill_signalled(&self) -> u64 {
        self.kill_dead.store(NEVER, Relaxed);
        self.first_ack_after_kill.store(NEVER, Relaxed);
        let now = self.now();
        self.kill_signal.store(now, Relaxed);
        now
    }

    /// Marks the killed process as reaped: attempts from now on reach another.
    pub fn kill_done(&self) {
        self.kill_dead.store(self.now(), Relaxed);
    }

    pub fn first_ack_after_kill(&self) -> Option<u64> {
        Some(self.first_ack_after_kill.load(Relaxed)).filter(|&at| at != NEVER)
    }

    /// The longest pause spanning the kill marked `kill_signal`.
    pub fn longest_stall(&self, kill_signal: u64) -> Option<u64> {
        let stalls = self.stalls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stalls.iter().filter(|(kill, _)| *kill == kill_signal).map(|(_, gap)| *gap).max()
    }

    /// Clients whose pause across that kill ended, so far.
    pub fn clients_resumed(&self, kill_signal: u64) -> usize {
        let stalls = self.stalls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        stalls.iter().filter(|(kill, _)| *kill == kill_signal).count()
    }

    /// Clients still in their loop.
    pub fn running_clients(&self) -> usize {
        self.running.load(Relaxed)
    }

    /// When client `client` of `clients` bids first, with a pace: the
    /// clients' bids spread over the pace, as independent users' do,
    /// rather than all at once a pace apart (64 clients held to 1,000
    /// bids/s sent 64 bids together every 64 ms).
    pub fn phase_of(&self, client: usize, clients: usize) -> Duration {
        self.pace.map_or(Duration::ZERO, |pace| pace.mul_f64(client as f64 / clients.max(1) as f64))
    }

    fn take_ticket(&self) -> bool {
        match self.bid_limit {
            Some(limit) => self.issued.fetch_add(1, Relaxed) < limit,
            None => true,
        }
    }
}

/// One client's closed loop: bid, wait for the answer, bid again. With a
/// pace, each bid starts a pace after the one before it (at once if the
/// answer came later), the first `phase` after the start.
pub(crate) async fn drive<B: Bidder>(mut bidder: B, load: Arc<Load>, phase: Duration) -> WorkerStats {
    load.running.fetch_add(1, Relaxed);
    let mut stats = WorkerStats::new();
    let mut last_answer: Option<u64> = None;
    let mut next_bid = tokio::time::Instant::now() + phase;
    while !load.is_stopping() && load.take_ticket() {
        if let Some(pace) = load.pace {
            tokio::time::sleep_until(next_bid).await;
            next_bid = (next_bid + pace).max(tokio::time::Instant::now());
        }
        let amount = load.next_amount.fetch_add(1, Relaxed);
        let invoked = Instant::now();
        if let Some(invoked_at) = load.invoked_at.as_ref().filter(|_| load.since_origin(invoked) >= load.measure_from) {
            invoked_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(amount, invoked);
        }
        let errors_before = stats.errors.total();
        let answer = bidder.bid(amount, &mut stats.errors, &load).await;
        let done = Instant::now();
        let retried = stats.errors.total() - errors_before;
        if retried > 0 {
            load.errors.fetch_add(retried, Relaxed);
        }
        let Some(answer) = answer else { break };
        let Ok(verdict) = answer.verdict else { continue };
        let done_at = load.since_origin(done);
        load.answered.fetch_add(1, Relaxed);

        let kill = load.kill_signal.load(Relaxed);
        if let Some(previous) = last_answer
            && kill != 0
            && previous < kill
            && done_at >= kill
        {
            let mut stalls = load.stalls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            stalls.push((kill, done_at - previous));
        }
        last_answer = Some(done_at);
        if verdict == Verdict::Success && load.since_origin(answer.attempt_started) > load.kill_dead.load(Relaxed) {
            load.first_ack_after_kill.fetch_min(done_at, Relaxed);
        }

        if done_at >= load.measure_from && done_at < load.measure_until.load(Relaxed) {
            let nanos = done.duration_since(invoked).as_nanos() as u64;
            stats.latency.saturating_record(nanos.max(1_000));
            match verdict {
                Verdict::Success => stats.success += 1,
                Verdict::Fail => stats.fail += 1,
                Verdict::Exception => stats.exception += 1,
            }
        }
    }
    load.running.fetch_sub(1, Relaxed);
    stats
}

/// A progress line on stderr each second while the run lasts.
pub(crate) async fn progress_lines(load: Arc<Load>, enabled: bool) {
    if !enabled {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut previous = 0;
    loop {
        ticker.tick().await;
        let answered = load.answered();
        let elapsed = load.now();
        let phase = if elapsed < load.measure_from { "warmup" } else { "measuring" };
        eprintln!(
            "bench: {:>5.1}s {phase:<9} {:>8} bids/s  answered {:>9}  errors {}",
            elapsed as f64 / 1e9,
            answered - previous,
            answered,
            load.errors.load(Relaxed)
        );
        previous = answered;
    }
}

/// One gavel session: its id, its bidder name and its next request id.
struct Session {
    client_id: String,
    bidder: String,
    /// The auction it bids on ("" for the default one).
    auction_id: String,
    next_request_id: u64,
    /// How many times it was renewed: part of the next client id.
    renewals: u32,
}

impl Session {
    fn renew(&mut self) {
        self.renewals += 1;
        self.client_id = format!("{}~{}", self.client_id.split('~').next().unwrap_or_default(), self.renewals);
        self.next_request_id = 1;
    }
}

/// Bids over one `AuctionConnection` (one HTTP/2 connection), taking turns
/// between its sessions, and retries on Unavailable with the same request id.
pub(crate) struct ConnectionBidder {
    connection: AuctionConnection,
    sessions: Vec<Session>,
    next_session: usize,
}

impl ConnectionBidder {
    /// Session `id` bids on `auctions[id % len]`, or on the default auction
    /// when `auctions` is empty.
    pub fn new(
        network: &Network,
        address: &str,
        nonce: u32,
        session_ids: &[usize],
        auctions: &[String],
    ) -> anyhow::Result<Self> {
        let connection = AuctionConnection::new(network, address, &TransportSettings::default(), ATTEMPT_TIMEOUT)?;
        let sessions = session_ids
            .iter()
            .map(|&id| Session {
                client_id: format!("bench-{nonce:08x}-{id}"),
                bidder: format!("bidder-{id}"),
                auction_id: if auctions.is_empty() { String::new() } else { auctions[id % auctions.len()].clone() },
                next_request_id: 1,
                renewals: 0,
            })
            .collect();
        Ok(ConnectionBidder { connection, sessions, next_session: 0 })
    }
}

impl Bidder for ConnectionBidder {
    async fn bid(&mut self, amount: u64, errors: &mut ErrorCounts, load: &Load) -> Option<Answer> {
        let turn = self.next_session;
        self.next_session = (turn + 1) % self.sessions.len();
        let session = &mut self.sessions[turn];
        let bid = Bid {
            name_digest: None,
            auction_id: session.auction_id.clone(),
            bidder: session.bidder.clone(),
            amount,
            client_id: session.client_id.clone(),
            request_id: session.next_request_id,
            at_unix_ms: 0,
        };
        session.next_request_id += 1;
        let invoked = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt_started = Instant::now();
            match self.connection.bid(&bid, &[]).await {
                Ok(outcome) => return Some(Answer { verdict: Ok(outcome.verdict), attempt_started }),
                Err(error) if !error.is_retryable() => {
                    errors.rejected += 1;
                    return Some(Answer { verdict: Err(Failure::Rejected), attempt_started });
                }
                Err(error) => {
                    match error {
                        CallError::Unavailable { leader_hint: Some(_), .. } => errors.not_leader += 1,
                        CallError::Unavailable { message, .. } if message.starts_with("no answer") => {
                            errors.timeout += 1
                        }
                        _ => errors.unavailable += 1,
                    }
                    // Unanswered, the session may be unknown to the service
                    // (its first request may never have arrived): the next
                    // request starts a new one, as `client::Client` does.
                    let session = &mut self.sessions[turn];
                    if load.stopping.load(Relaxed) {
                        session.renew();
                        return None;
                    }
                    if invoked.elapsed() + backoff >= REQUEST_DEADLINE {
                        session.renew();
                        errors.gave_up += 1;
                        return Some(Answer { verdict: Err(Failure::GaveUp), attempt_started });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Bids through `client::Client`, the library users get. It retries inside,
/// so the bench sees retries only as a count, and takes the invocation as
/// the attempt's start (a stricter rule in the failover trials).
pub(crate) struct ClientBidder {
    client: Client,
    bidder: String,
}

impl ClientBidder {
    pub fn new(network: &Network, address: &str, _nonce: u32, id: usize) -> anyhow::Result<Self> {
        let config = ClientConfig {
            servers: vec![address.to_string()],
            network: network.clone(),
            deadline: REQUEST_DEADLINE,
            attempt_timeout: ATTEMPT_TIMEOUT,
            ..ClientConfig::default()
        };
        Ok(ClientBidder { client: Client::new(config)?, bidder: format!("bidder-{id}") })
    }
}

impl Bidder for ClientBidder {
    async fn bid(&mut self, amount: u64, errors: &mut ErrorCounts, _load: &Load) -> Option<Answer> {
        let attempt_started = Instant::now();
        let verdict = match self.client.bid("", &self.bidder, amount).await {
            Ok(outcome) => {
                errors.unavailable += u64::from(self.client.last_retries());
                Ok(outcome.verdict)
            }
            Err(error) if error.is_refusal() => {
                errors.rejected += 1;
                Err(Failure::Rejected)
            }
            Err(_) => {
                errors.gave_up += 1;
                Err(Failure::GaveUp)
            }
        };
        Some(Answer { verdict, attempt_started })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers at once, noting when each client bid.
    struct Recorder {
        client: usize,
        bids: Arc<Mutex<Vec<(usize, tokio::time::Instant)>>>,
    }

    impl Bidder for Recorder {
        async fn bid(&mut self, _amount: u64, _errors: &mut ErrorCounts, _load: &Load) -> Option<Answer> {
            self.bids.lock().expect("bids").push((self.client, tokio::time::Instant::now()));
            Some(Answer { verdict: Ok(Verdict::Success), attempt_started: Instant::now() })
        }
    }

    /// Four clients held to 100 bids/s bid 10 ms apart, each every 40 ms,
    /// rather than four at once every 40 ms.
    #[tokio::test(start_paused = true)]
    async fn clients_held_to_a_rate_spread_their_bids_over_the_pace() {
        let mut load = Load::new(1, Duration::ZERO, Some(8));
        load.pace = Some(Duration::from_millis(40));
        let load = Arc::new(load);
        let bids = Arc::new(Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|client| {
                let recorder = Recorder { client, bids: Arc::clone(&bids) };
                tokio::spawn(drive(recorder, Arc::clone(&load), load.phase_of(client, 4)))
            })
            .collect();
        for worker in workers {
            worker.await.expect("a client");
        }
        let mut at: Vec<(u128, usize)> =
            bids.lock().expect("bids").iter().map(|(client, at)| ((*at - start).as_millis(), *client)).collect();
        at.sort();
        assert_eq!(at, vec![(0, 0), (10, 1), (20, 2), (30, 3), (40, 0), (50, 1), (60, 2), (70, 3)]);
    }
}
