//! Readers beside the load: watchers that time each bid's delivery and
//! count what they saw (so that a lost or repeated event shows), and watch
//! streams that never read. Watchers share a few connections per node, the
//! way many readers behind one client multiplex on HTTP/2, and resume
//! after the last revision they saw wherever they can when a node stops
//! serving them.
//!
//! The readers run on an event loop of their own, apart from the bidders':
//! readers are other clients, and a bid's latency is the service's, not the
//! time its answer waited in the load generator behind thousands of
//! watchers' events. (On a small host they still share its cores.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::auction::{DEFAULT_AUCTION, EventKind};
use crate::transport::{AuctionConnection, Network, TransportSettings};

use super::BenchArgs;
use super::load::Load;

/// Streams one connection carries at most.
const STREAMS_PER_CONNECTION: usize = 200;
/// How long one call to open a watch may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What each timed watcher watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WatchScope {
    /// The default auction.
    Default,
    /// The auctions the bids go to, watcher `w` the `w % N`-th.
    Spread,
    /// Every auction.
    All,
}

/// One timed watcher's counts.
#[derive(Debug)]
pub struct WatcherCount {
    /// The auction it watches (`None`: every one).
    pub auction: Option<String>,
    /// The revision its watch from now on started after (0 until known).
    pub started_after: AtomicU64,
    /// The last revision it saw.
    pub last: AtomicU64,
    /// Accepted bids it saw, by auction.
    pub bids: Mutex<HashMap<String, u64>>,
}

/// The readers of one run.
pub struct Readers {
    pub counts: Vec<Arc<WatcherCount>>,
    /// The readers' own event loop, on a thread of its own; its connections
    /// and tasks end with it.
    runtime: Option<tokio::runtime::Runtime>,
    tasks: Vec<JoinHandle<()>>,
    /// Streams opened and held unread.
    pub silent_streams: Arc<AtomicU64>,
}

impl Readers {
    /// Starts `args.watchers` timed watchers of `args.watch_scope` and
    /// `args.silent_watchers` streams after revision 1 of every auction
    /// that never read, spread over
    /// `servers` (watcher `w` starts at server `w % len`). A timed
    /// watcher's delivery of each bid, from its invocation (as `load`
    /// noted it), goes into `deliveries`.
    pub fn start(
        network: &Network,
        servers: &[String],
        args: &BenchArgs,
        auctions: &[String],
        load: Arc<Load>,
        deliveries: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    ) -> anyhow::Result<Self> {
        let (watchers, scope, silent) = (args.watchers, args.watch_scope, args.silent_watchers);
        if watchers + silent == 0 {
            return Ok(Readers {
                counts: Vec::new(),
                runtime: None,
                tasks: Vec::new(),
                silent_streams: Default::default(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-readers")
            .enable_all()
            .build()?;
        // The connections' own tasks start on the readers' loop too.
        let readers_loop = runtime.enter();
        let settings = TransportSettings::default();
        // Connections per server, each for up to STREAMS_PER_CONNECTION streams.
        let per_server = (watchers + silent).div_ceil(servers.len().max(1)).div_ceil(STREAMS_PER_CONNECTION).max(1);
        let mut connections: Vec<Vec<AuctionConnection>> = Vec::new();
        for server in servers {
            let mut of_server = Vec::new();
            for _ in 0..per_server {
                of_server.push(AuctionConnection::new(network, server, &settings, OPEN_TIMEOUT)?);
            }
            connections.push(of_server);
        }
        let connections = Arc::new(connections);
        let mut counts = Vec::new();
        let mut tasks = Vec::new();
        for watcher in 0..watchers {
            let auction = match scope {
                WatchScope::Default => Some(DEFAULT_AUCTION.to_string()),
                WatchScope::Spread if !auctions.is_empty() => Some(auctions[watcher % auctions.len()].clone()),
                WatchScope::Spread => Some(DEFAULT_AUCTION.to_string()),
                WatchScope::All => None,
            };
            let count = Arc::new(WatcherCount {
                auction,
                started_after: AtomicU64::new(0),
                last: AtomicU64::new(0),
                bids: Mutex::new(HashMap::new()),
            });
            counts.push(Arc::clone(&count));
            let (connections, load, deliveries) =
                (Arc::clone(&connections), Arc::clone(&load), Arc::clone(&deliveries));
            tasks.push(runtime.spawn(async move {
                timed_watcher(&connections, watcher, &count, load.invoked_at.as_ref(), &deliveries).await;
            }));
        }
        let silent_streams = Arc::new(AtomicU64::new(0));
        for stream in 0..silent {
            let (connections, opened) = (Arc::clone(&connections), Arc::clone(&silent_streams));
            tasks.push(runtime.spawn(async move {
                let (server, connection) = pick(&connections, watchers + stream, 0);
                if let Ok(events) = connections[server][connection].clone().watch(None, 1).await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    // Held, never read, until the task is aborted.
                    std::future::pending::<()>().await;
                    drop(events);
                }
            }));
        }
        drop(readers_loop);
        Ok(Readers { counts, runtime: Some(runtime), tasks, silent_streams })
    }

    /// Waits until every timed watcher saw the last bid of its scope in
    /// `histories`, or `deadline` passed: whether they all did.
    pub async fn caught_up(&self, histories: &Histories, deadline: Duration) -> bool {
        let last = histories.values().filter_map(|revisions| revisions.last().copied()).max().unwrap_or(0);
        let targets: Vec<u64> = self
            .counts
            .iter()
            .map(|count| match &count.auction {
                None => last,
                Some(auction) => histories.get(auction).and_then(|revisions| revisions.last().copied()).unwrap_or(0),
            })
            .collect();
        let started = Instant::now();
        loop {
            if self.counts.iter().zip(&targets).all(|(count, target)| count.last.load(Ordering::Relaxed) >= *target) {
                return true;
            }
            if started.elapsed() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The connection watcher `watcher` uses on its `attempt`-th try: it starts
/// at server `watcher % servers` and moves on to the next one each try.
fn pick(connections: &[Vec<AuctionConnection>], watcher: usize, attempt: usize) -> (usize, usize) {
    let server = (watcher + attempt) % connections.len();
    (server, (watcher / connections.len()) % connections[server].len())
}

/// Watches from now on, resuming after the last revision it saw at the
/// next server whenever a stream ends, until aborted.
async fn timed_watcher(
    connections: &[Vec<AuctionConnection>],
    watcher: usize,
    count: &WatcherCount,
    invoked_at: Option<&Mutex<HashMap<u64, Instant>>>,
    deliveries: &Mutex<hdrhistogram::Histogram<u64>>,
) {
    let mut attempt = 0;
    loop {
        let (server, connection) = pick(connections, watcher, attempt);
        attempt += 1;
        let after = count.last.load(Ordering::Relaxed);
        let opened = connections[server][connection].clone().watch(count.auction.as_deref(), after).await;
        let Ok(mut events) = opened else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while let Some(Ok(event)) = events.next().await {
            match &event.kind {
                EventKind::Progress => {
                    let _ =
                        count.started_after.compare_exchange(0, event.revision, Ordering::Relaxed, Ordering::Relaxed);
                }
                EventKind::BidAccepted(bid) => {
                    let mut bids = count.bids.lock().unwrap_or_else(PoisonError::into_inner);
                    // The auction's id is copied once, not once an event.
                    match bids.get_mut(&event.auction_id) {
                        Some(seen) => *seen += 1,
                        None => {
                            bids.insert(event.auction_id.clone(), 1);
                        }
                    }
                    drop(bids);
                    let invoked = invoked_at.and_then(|invoked| {
                        invoked.lock().unwrap_or_else(PoisonError::into_inner).get(&bid.amount).copied()
                    });
                    if let Some(invoked) = invoked {
                        let nanos = u64::try_from(invoked.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        deliveries.lock().unwrap_or_else(PoisonError::into_inner).saturating_record(nanos.max(1_000));
                    }
                }
                EventKind::Opened(_) | EventKind::Closed(_) => {}
            }
            count.last.fetch_max(event.revision, Ordering::Relaxed);
        }
    }
}

/// What the timed watchers saw against the auctions' histories.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Accepted bids after a watcher's start that it never saw.
    pub lost: u64,
    /// Bids a watcher saw more often than they were accepted.
    pub repeated: u64,
    /// Watchers whose watch never said where it started.
    pub unstarted: usize,
}

/// Each auction's accepted bids' revisions, oldest first.
pub type Histories = HashMap<String, Vec<u64>>;

/// The histories of the auctions the bids went to (`auctions`, or the
/// default one), read at `address` once the load stopped.
pub async fn histories(network: &Network, address: &str, auctions: &[String]) -> anyhow::Result<Histories> {
    let mut connection =
        AuctionConnection::new(network, address, &TransportSettings::default(), Duration::from_secs(10))?;
    let mut bid_auctions: Vec<String> = auctions.to_vec();
    if bid_auctions.is_empty() {
        bid_auctions.push(DEFAULT_AUCTION.to_string());
    }
    let mut histories = Histories::new();
    for auction in &bid_auctions {
        let mut revisions = Vec::new();
        let mut token = String::new();
        loop {
            let page = connection.history(auction, 1000, &token).await?;
            revisions.extend(page.bids.iter().map(|bid| bid.revision));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        histories.insert(auction.clone(), revisions);
    }
    Ok(histories)
}

impl Readers {
    /// Checks every timed watcher's bids against `histories`.
    pub fn check(&self, histories: &Histories) -> Delivered {
        let mut delivered = Delivered::default();
        for count in &self.counts {
            let started_after = count.started_after.load(Ordering::Relaxed);
            if started_after == 0 {
                delivered.unstarted += 1;
                continue;
            }
            let seen = count.bids.lock().unwrap_or_else(PoisonError::into_inner);
            for (auction, revisions) in histories {
                if count.auction.as_ref().is_some_and(|watched| watched != auction) {
                    continue;
                }
                let expected = revisions.iter().filter(|revision| **revision > started_after).count() as u64;
                let got = seen.get(auction).copied().unwrap_or(0);
                delivered.lost += expected.saturating_sub(got);
                delivered.repeated += got.saturating_sub(expected);
            }
        }
        delivered
    }
}
