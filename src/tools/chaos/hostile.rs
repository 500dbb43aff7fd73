//! The chaos run's hostile client, beside the fault injector. It joins the
//! replication under members' names and invented ones and acks out of turn
//! (indexes it was never sent, or none at all); and it bids from a session of
//! its own, then replays each request id, once with the same bid and once
//! with another. Its bids are real operations and go into the history; what
//! a replay is told is checked on the spot: the same bid gets the first
//! answer, another bid an EXCEPTION, never an effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use crate::auction::{Bid, BidOutcome, DEFAULT_AUCTION, Verdict};
use crate::replication::Role;
use crate::tools::rogue::RogueStream;
use crate::transport::{AuctionConnection, Network, TransportSettings, probe_status};

use super::history::{Operation, OperationKind, Outcome};
use super::recorder::{CLIENT_DEADLINE, Recorder};

const TIMEOUT: Duration = Duration::from_millis(300);

/// What a hostile client did, and what it was told that it should not have been.
#[derive(Debug, Default)]
pub(super) struct HostileReport {
    /// Replication streams the leader accepted under a lie.
    pub rogue_streams: usize,
    /// Requests it replayed (same bid, then another bid).
    pub replays: usize,
    pub violations: Vec<String>,
}

pub(super) struct HostileClient {
    /// Its number among the history's clients.
    pub index: u32,
    pub client_address: String,
    /// How it reaches the cluster: over TLS with a client certificate in a
    /// secure run.
    pub network: Network,
    /// Whether the cluster authenticates its peers: then no lie may open a
    /// replication stream at all.
    pub secure: bool,
    /// A port no node uses, for the names it invents.
    pub invented_port: u16,
    pub rng: StdRng,
    pub started: Instant,
    pub stop: Arc<AtomicBool>,
    pub recorder: Arc<Recorder>,
}

impl HostileClient {
    /// Runs until told to stop.
    pub async fn run(mut self) -> HostileReport {
        let network = self.network.clone();
        let Ok(mut connection) =
            AuctionConnection::new(&network, &self.client_address, &TransportSettings::default(), TIMEOUT)
        else {
            let violations = vec!["the hostile client could not make its connection".into()];
            return HostileReport { violations, ..HostileReport::default() };
        };
        let mut report = HostileReport::default();
        let mut session = (format!("hostile-{:08x}", self.rng.random::<u32>()), 1_u64);
        let mut highest_seen = 0_u64;
        while !self.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(5..50))).await;
            if self.rng.random_bool(0.5) {
                if self.join_and_lie(&network).await {
                    report.rogue_streams += 1;
                    if self.secure {
                        report.violations.push("a client certificate opened a replication stream".into());
                    }
                }
                continue;
            }
            let amount = (highest_seen + self.rng.random_range(0..40_u64)).saturating_sub(10).max(1);
            let bid = Bid {
                name_digest: None,
                auction_id: String::new(),
                bidder: "mallory".into(),
                amount,
                client_id: session.0.clone(),
                request_id: session.1,
                at_unix_ms: 0,
            };
            session.1 += 1;
            let first = self.bid_recorded(&mut connection, &bid).await;
            let Some(first) = first else {
                // Unanswered: whether the service holds the session is
                // unknown, so the next request starts a new one.
                session = (format!("hostile-{:08x}", self.rng.random::<u32>()), 1);
                continue;
            };
            highest_seen = highest_seen.max(first.highest_amount);
            report.replays += 1;
            if let Ok(again) = connection.bid(&bid, &[]).await
                && again != first
            {
                report
                    .violations
                    .push(format!("a replay of {bid:?} was told {again:?}, not its first answer {first:?}"));
            }
            let other = Bid { amount: amount + 1_000_000, ..bid };
            if let Ok(answer) = connection.bid(&other, &[]).await
                && answer.verdict != Verdict::Exception
            {
                report
                    .violations
                    .push(format!("request id {} reused for {other:?} was told {answer:?}", other.request_id));
            }
        }
        report
    }

    /// Bids as a client does (retrying the same request until the deadline)
    /// and records the operation.
    async fn bid_recorded(&self, connection: &mut AuctionConnection, bid: &Bid) -> Option<BidOutcome> {
        let id = self.recorder.next_id();
        let invoked = Instant::now();
        let invoked_us = self.started.elapsed().as_micros() as u64;
        let answer = loop {
            match connection.bid(bid, &[]).await {
                Ok(outcome) => break Some(outcome),
                Err(error) if error.is_retryable() && invoked.elapsed() < CLIENT_DEADLINE => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => break None,
            }
        };
        let completed_us = answer.is_some().then(|| self.started.elapsed().as_micros() as u64);
        let outcome = answer.clone().map_or(Outcome::Unknown, Outcome::from);
        let kind = OperationKind::Bid { bidder: bid.bidder.clone(), amount: bid.amount };
        self.recorder
            .record(DEFAULT_AUCTION, Operation { id, client: self.index, kind, invoked_us, completed_us, outcome });
        answer
    }

    /// Opens a replication stream on the leader's node port under a
    /// member's name or an invented one, lies in its acks, and hangs up.
    /// Says whether the leader took the stream.
    async fn join_and_lie(&mut self, network: &Network) -> bool {
        let Ok(status) = probe_status(network, &self.client_address, TIMEOUT).await else { return false };
        if status.role != Role::Leader {
            return false;
        }
        let mut names: Vec<String> =
            status.membership.iter().filter(|member| **member != status.node).cloned().collect();
        names.push(format!("127.0.0.1:{}", self.invented_port));
        let name = names[self.rng.random_range(0..names.len())].clone();
        let Ok(mut stream) = RogueStream::open(network, &status.node, &name, TIMEOUT).await else { return false };
        match self.rng.random_range(0..3) {
            0 => {
                stream.ack(u64::MAX).await;
            }
            1 => {
                stream.ack(self.rng.random_range(0..=status.last.index + 100)).await;
            }
            _ => {}
        }
        let hold = Duration::from_millis(self.rng.random_range(20..200));
        let _ = tokio::time::timeout(hold, async { while stream.read().await.is_some() {} }).await;
        true
    }
}
