//! The chaos run itself: clients that record a history, a fault injector,
//! and the checks at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::auction::{AuctionEvent, CreateAuction, DEFAULT_AUCTION, EventKind, Verdict};
use crate::client::{Client, ClientConfig, ClientError};
use crate::replication::Role;
use crate::security::Role as CertificateRole;
use crate::security::certs::CertsDir;
use crate::tools::cluster::{ClusterSpec, LocalCluster, poll_until};
use crate::transport::Network;
use crate::transport::Tls;

use super::checker::{self, ModelState, Verdict as Linearizability};
use super::history::{History, Operation, OperationKind, Outcome};
use super::hostile::HostileClient;
use super::recorder::{CLIENT_DEADLINE, Recorder};

/// The faults the injector may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL the leader or a backup.
    Kill,
    /// SIGSTOP a node for a while, then SIGCONT it.
    Stop,
    /// Start killed nodes again.
    Restart,
    /// SIGKILL every node at once, then start them again in a random order
    /// and at a random pace (needs a data directory: without one, a full
    /// crash loses everything by design).
    KillAll,
    /// A backup outlives the members that removed it: freeze the first of
    /// the leaderQueue until the leader removes it, SIGKILL the leader (and,
    /// with data directories, every other node too), then thaw it. It must
    /// never lead with its stale state; the killed nodes restart (from their
    /// disks) and carry on with every acknowledged bid.
    Outlive,
}

#[derive(Clone, Debug)]
pub struct ChaosConfig {
    pub binary: PathBuf,
    pub nodes: usize,
    pub clients: usize,
    pub duration: Duration,
    pub faults: Vec<FaultKind>,
    pub seed: u64,
    pub history: Option<PathBuf>,
    pub base_port: u16,
    pub client_port: u16,
    /// Where the nodes' logs go.
    pub log_dir: Option<PathBuf>,
    /// Where the nodes keep their state; with it, the run also kills every
    /// node at once and restarts them ([`FaultKind::KillAll`]).
    pub data_dir: Option<PathBuf>,
    /// Extra flags for the servers (timeouts).
    pub server_args: Vec<String>,
    /// Hostile clients beside the honest ones (see `chaos::hostile`).
    pub hostile: usize,
    /// Auctions the clients bid on at once: the default one and others
    /// created before the run; one more is created every few seconds during it.
    pub auctions: usize,
    /// Each client pauses up to this long (uniformly) between operations.
    /// Without a pause a release build makes millions of operations in a few
    /// minutes: more history than the check needs, and slower to check.
    pub max_pause: Duration,
    /// TLS and authentication on: the run makes a CA and certificates, the
    /// clients speak TLS, and the hostile ones hold a client certificate,
    /// which must open no replication stream.
    pub secure: bool,
}

/// What a chaos run found.
#[derive(Debug)]
pub struct ChaosReport {
    /// Auctions bid on, each checked on its own.
    pub auctions: usize,
    pub operations: usize,
    pub by_outcome: BTreeMap<&'static str, usize>,
    pub faults: BTreeMap<String, usize>,
    pub failovers: usize,
    pub longest_operation: Duration,
    pub longest_takeover: Duration,
    /// Replication streams the hostile clients opened under a lie, and the
    /// requests they replayed.
    pub rogue_streams: usize,
    pub replays: usize,
    /// Empty when every check passed.
    pub violations: Vec<String>,
    pub checked_in: Duration,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A summary a person can read.
    pub fn render(&self) -> String {
        let mut lines = vec![format!("operations: {} over {} auctions", self.operations, self.auctions)];
        for (outcome, count) in &self.by_outcome {
            lines.push(format!("  {outcome:<10} {count}"));
        }
        let faults: Vec<String> = self.faults.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        lines.push(format!("faults injected: {}", if faults.is_empty() { "none".into() } else { faults.join(", ") }));
        lines.push(format!("failovers seen: {} (longest takeover {:?})", self.failovers, self.longest_takeover));
        lines.push(format!("longest operation (pause a client saw): {:?}", self.longest_operation));
        lines.push(format!(
            "hostile: {} replication streams under a lie, {} request ids replayed",
            self.rogue_streams, self.replays
        ));
        lines.push(format!("checked in {:?}", self.checked_in));
        if self.passed() {
            lines.push("verdict: PASS (linearizable, durable, exactly once)".into());
        } else {
            lines.push(format!("verdict: FAIL ({} violations)", self.violations.len()));
            lines.extend(self.violations.iter().cloned());
        }
        lines.join("\n")
    }
}

/// How often the run creates one more auction.
const CREATE_EVERY: Duration = Duration::from_secs(3);
/// How long the watcher has to catch up with the final state.
const WATCH_CATCH_UP: Duration = Duration::from_secs(15);

/// Creates an auction for the run: it lasts well beyond it.
async fn create_auction(seller: &mut Client) -> anyhow::Result<String> {
    let create = CreateAuction::lasting("the-house", "a chaos lot", "", 1, Duration::from_secs(24 * 60 * 60));
    let outcome = seller.create_auction(create).await?;
    if outcome.verdict != Verdict::Success {
        anyhow::bail!("create refused: {}", crate::auction::render(&outcome.reason));
    }
    Ok(outcome.auction_id)
}

/// The watcher saw every accepted bid of every auction after where it
/// started, exactly once and in order, and nothing else: compared with the
/// auctions' histories, read once the cluster healed.
async fn check_watch(reader: &mut Client, auctions: &[String], watched: &Mutex<Vec<AuctionEvent>>) -> Vec<String> {
    let mut histories = BTreeMap::new();
    for auction_id in auctions {
        let mut bids = Vec::new();
        let mut page_token = String::new();
        loop {
            match reader.history(auction_id, 0, &page_token).await {
                Ok(page) => {
                    bids.extend(page.bids.into_iter().map(|bid| (bid.revision, bid.bidder, bid.amount)));
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                Err(error) => return vec![format!("reading the history of {auction_id}: {error}")],
            }
        }
        histories.insert(auction_id.clone(), bids);
    }
    let last = histories.values().flat_map(|bids| bids.last()).map(|(revision, _, _)| *revision).max().unwrap_or(0);
    let caught_up =
        crate::tools::cluster::poll_until("the watcher to catch up", WATCH_CATCH_UP, Duration::from_millis(20), || {
            let seen = watched.lock().unwrap_or_else(PoisonError::into_inner).last().map_or(0, |event| event.revision);
            async move { (seen >= last).then_some(()) }
        })
        .await;
    if let Err(error) = caught_up {
        return vec![format!("watch: {error}")];
    }
    let watched = watched.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let Some(start) = watched.first().filter(|event| event.kind == EventKind::Progress).map(|event| event.revision)
    else {
        return vec!["watch: the stream did not start with a progress event".into()];
    };
    let mut violations = Vec::new();
    for (auction_id, bids) in &histories {
        let expected: Vec<_> = bids.iter().filter(|(revision, _, _)| *revision > start).cloned().collect();
        let seen: Vec<_> = watched
            .iter()
            .filter(|event| &event.auction_id == auction_id)
            .filter_map(|event| match &event.kind {
                EventKind::BidAccepted(bid) => Some((event.revision, bid.bidder.clone(), bid.amount)),
                _ => None,
            })
            .collect();
        if seen != expected {
            violations.push(format!(
                "watch of auction {auction_id}: saw {} accepted bids, the history after revision {start} holds {} \
                 (first difference at {:?})",
                seen.len(),
                expected.len(),
                seen.iter().zip(&expected).position(|(a, b)| a != b)
            ));
        }
    }
    violations
}

/// Runs the cluster, the clients and the faults, then checks the history.
pub async fn run(config: ChaosConfig) -> anyhow::Result<ChaosReport> {
    let mut spec = ClusterSpec::new(&config.binary, config.nodes, config.base_port, config.client_port);
    spec.server_args = config.server_args.clone();
    spec.log_dir = config.log_dir.clone();
    spec.data_dir = config.data_dir.clone();
    if config.faults.contains(&FaultKind::KillAll) && config.data_dir.is_none() {
        anyhow::bail!("kill-all needs --data-dir: without one, the crash of every node loses every bid by design");
    }
    // The cluster's own CA and certificates, kept while nodes restart.
    spec.secure = config.secure;
    let cluster = LocalCluster::start(spec).await.context("starting the cluster")?;
    let network = cluster.network().clone();
    // The hostile clients hold a client certificate of the cluster's CA:
    // the most an outsider could be given.
    let hostile_network = match cluster.certs_dir() {
        Some(dir) => {
            CertsDir::new(dir).create_client(&CertificateRole::Client("hostile".into()), false)?;
            Network::tcp().with_tls(Some(Tls::for_client(dir, Some("hostile"))?))
        }
        None => Network::tcp(),
    };
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let client_address = cluster.lock().await.client_address();
    let client_config =
        |server: String| ClientConfig { servers: vec![server], network: network.clone(), ..ClientConfig::default() };

    // The auctions: the default one, and the others created before the run.
    let mut seller = Client::new(client_config(client_address.clone()))?;
    let auctions: AuctionList = Arc::new(Mutex::new(vec![DEFAULT_AUCTION.to_string()]));
    for _ in 1..config.auctions.max(1) {
        let created = create_auction(&mut seller).await.context("creating the run's auctions")?;
        auctions.lock().unwrap_or_else(PoisonError::into_inner).push(created);
    }
    // A watcher of every auction from the start; its events are checked
    // against the histories at the end.
    let watched: Arc<Mutex<Vec<AuctionEvent>>> = Arc::default();
    let watcher = {
        let (watched, config) = (Arc::clone(&watched), client_config(client_address.clone()));
        tokio::spawn(async move {
            let Ok(mut client) = Client::new(config) else {
                return;
            };
            let _ = client
                .watch(None, 0, |event| {
                    watched.lock().unwrap_or_else(PoisonError::into_inner).push(event.clone());
                    true
                })
                .await;
        })
    };

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder::default());
    // More auctions during the run, one every few seconds.
    let creator = {
        let (auctions, stop) = (Arc::clone(&auctions), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(CREATE_EVERY).await;
                // An unanswered create may or may not have happened: it is
                // not bid on, which the checks allow either way.
                if let Ok(created) = create_auction(&mut seller).await {
                    auctions.lock().unwrap_or_else(PoisonError::into_inner).push(created);
                }
            }
        })
    };
    let mut clients = Vec::new();
    for index in 0..config.clients {
        let worker = ClientWorker {
            index: index as u32,
            server: client_address.clone(),
            network: network.clone(),
            rng: StdRng::seed_from_u64(config.seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
            started,
            max_pause: config.max_pause,
            stop: Arc::clone(&stop),
            recorder: Arc::clone(&recorder),
            auctions: Arc::clone(&auctions),
        };
        clients.push(tokio::spawn(worker.run()));
    }
    let mut hostiles = Vec::new();
    for index in 0..config.hostile {
        let hostile = HostileClient {
            index: (config.clients + index) as u32,
            client_address: client_address.clone(),
            network: hostile_network.clone(),
            secure: config.secure,
            invented_port: config.base_port + config.nodes as u16 + index as u16,
            rng: StdRng::seed_from_u64(config.seed.wrapping_mul(7_000_003).wrapping_add(index as u64)),
            started,
            stop: Arc::clone(&stop),
            recorder: Arc::clone(&recorder),
        };
        hostiles.push(tokio::spawn(hostile.run()));
    }

    let mut injector = Injector {
        cluster: Arc::clone(&cluster),
        rng: StdRng::seed_from_u64(config.seed),
        faults: config.faults.clone(),
        counts: BTreeMap::new(),
        failovers: 0,
        longest_takeover: Duration::ZERO,
    };
    injector.run_until(started + config.duration).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.context("client task")?;
    }
    creator.await.context("creator task")?;
    let mut violations = Vec::new();
    let (mut rogue_streams, mut replays) = (0, 0);
    for hostile in hostiles {
        let report = hostile.await.context("hostile client task")?;
        violations.extend(report.violations);
        (rogue_streams, replays) = (rogue_streams + report.rogue_streams, replays + report.replays);
    }

    // Heal: every node back, then one final read of each auction.
    let auctions = auctions.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut final_states = BTreeMap::new();
    let mut reader = Client::new(client_config(client_address.clone()))?;
    {
        let mut cluster = cluster.lock().await;
        heal(&mut cluster).await?;
        for auction_id in &auctions {
            let (view, _) = reader.result(auction_id).await.with_context(|| format!("final read of {auction_id}"))?;
            let state = ModelState {
                highest_amount: view.highest_amount,
                highest_bidder: view.highest_bidder,
                accepted_bids: view.accepted_bids,
            };
            final_states.insert(auction_id.clone(), state);
        }
    }
    violations.extend(check_watch(&mut reader, &auctions, &watched).await);
    watcher.abort();

    let histories = recorder.histories();
    if let Some(path) = &config.history {
        for (auction_id, history) in &histories {
            let path = if auction_id == DEFAULT_AUCTION {
                path.clone()
            } else {
                path.with_file_name(format!("{}.{auction_id}", path.file_name().unwrap_or_default().to_string_lossy()))
            };
            std::fs::write(&path, history.to_json_lines()).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let checking = Instant::now();
    let initial = ModelState { highest_amount: 0, highest_bidder: String::new(), accepted_bids: 0 };
    for (auction_id, history) in &histories {
        let Some(final_state) = final_states.get(auction_id) else {
            violations.push(format!("auction {auction_id}: operations recorded but the auction was never listed"));
            continue;
        };
        // The search takes a few steps per operation; the budget only guards
        // against a pathological history, so it grows with the history.
        let budget = checker::DEFAULT_SEARCH_BUDGET.max(history.operations.len() as u64 * 100);
        match checker::check_linearizable_with_budget(history, &initial, budget) {
            Linearizability::Linearizable { .. } => {}
            Linearizability::Violation(violation) => {
                violations.push(format!("auction {auction_id} not linearizable: {}", violation.message));
                violations.push(checker::render_violation(history, &violation));
            }
            Linearizability::Inconclusive { explored } => {
                violations
                    .push(format!("auction {auction_id}: linearizability search gave up after {explored} states"));
            }
        }
        if let Err(violation) = checker::check_durability(history, &initial, final_state) {
            violations.push(format!("auction {auction_id} not durable: {}", violation.message));
            violations.push(checker::render_violation(history, &violation));
        }
        if let Err(violation) = checker::check_exactly_once(history, &initial, final_state) {
            violations.push(format!("auction {auction_id} not exactly once: {}", violation.message));
            violations.push(checker::render_violation(history, &violation));
        }
    }
    let history = History { operations: histories.into_values().flat_map(|history| history.operations).collect() };

    let summary = history.summary();
    let by_outcome = BTreeMap::from([
        ("success", summary.success),
        ("fail", summary.fail),
        ("exception", summary.exception),
        ("read", summary.result),
        ("unknown", summary.unknown),
    ]);
    let longest_operation = history
        .operations
        .iter()
        .map(|operation| {
            let end = operation.completed_us.unwrap_or(operation.invoked_us + CLIENT_DEADLINE.as_micros() as u64);
            Duration::from_micros(end - operation.invoked_us)
        })
        .max()
        .unwrap_or_default();
    Ok(ChaosReport {
        auctions: auctions.len(),
        operations: history.operations.len(),
        by_outcome,
        faults: injector.counts,
        failovers: injector.failovers,
        longest_operation,
        longest_takeover: injector.longest_takeover,
        rogue_streams,
        replays,
        violations,
        checked_in: checking.elapsed(),
    })
}

/// The auctions the clients may bid on: each is in the list only once its
/// creation was acknowledged.
type AuctionList = Arc<Mutex<Vec<String>>>;

struct ClientWorker {
    index: u32,
    server: String,
    network: Network,
    rng: StdRng,
    started: Instant,
    max_pause: Duration,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
    auctions: AuctionList,
}

const BIDDERS: [&str; 5] = ["ada", "bo", "cy", "di", "ed"];

impl ClientWorker {
    async fn run(mut self) {
        let config = ClientConfig {
            servers: vec![self.server.clone()],
            deadline: CLIENT_DEADLINE,
            network: self.network.clone(),
            ..Default::default()
        };
        let Ok(mut client) = Client::new(config) else { return };
        let mut highest_seen_by_auction: BTreeMap<String, u64> = BTreeMap::new();
        while !self.stop.load(Ordering::Relaxed) {
            if !self.max_pause.is_zero() {
                tokio::time::sleep(self.max_pause.mul_f64(self.rng.random::<f64>())).await;
            }
            let auction_id = {
                let auctions = self.auctions.lock().unwrap_or_else(PoisonError::into_inner);
                auctions[self.rng.random_range(0..auctions.len())].clone()
            };
            let highest_seen = highest_seen_by_auction.entry(auction_id.clone()).or_default();
            let id = self.recorder.next_id();
            let invoked_us = self.started.elapsed().as_micros() as u64;
            let (kind, outcome) = if self.rng.random_bool(0.25) {
                let outcome = match client.result(&auction_id).await {
                    Ok((view, _)) => {
                        *highest_seen = (*highest_seen).max(view.highest_amount);
                        Outcome::from(view)
                    }
                    Err(error) => unknown(error),
                };
                (OperationKind::Result, outcome)
            } else {
                let bidder = BIDDERS[self.rng.random_range(0..BIDDERS.len())].to_string();
                // Around the highest this client has seen: some win, some lose.
                let amount = (*highest_seen + self.rng.random_range(0..40)).saturating_sub(10).max(1);
                let outcome = match client.bid(&auction_id, &bidder, amount).await {
                    Ok(outcome) => {
                        *highest_seen = (*highest_seen).max(outcome.highest_amount);
                        Outcome::from(outcome)
                    }
                    Err(error) => unknown(error),
                };
                (OperationKind::Bid { bidder, amount }, outcome)
            };
            let completed_us =
                (!matches!(outcome, Outcome::Unknown)).then(|| self.started.elapsed().as_micros() as u64);
            self.recorder
                .record(&auction_id, Operation { id, client: self.index, kind, invoked_us, completed_us, outcome });
        }
    }
}

fn unknown(error: ClientError) -> Outcome {
    tracing::debug!(%error, "operation outcome unknown");
    Outcome::Unknown
}

struct Injector {
    cluster: Arc<tokio::sync::Mutex<LocalCluster>>,
    rng: StdRng,
    faults: Vec<FaultKind>,
    counts: BTreeMap<String, usize>,
    failovers: usize,
    longest_takeover: Duration,
}

impl Injector {
    async fn run_until(&mut self, end: Instant) {
        if self.faults.is_empty() {
            tokio::time::sleep_until(end.into()).await;
            return;
        }
        while Instant::now() < end {
            let pause = Duration::from_millis(self.rng.random_range(300..1200));
            tokio::time::sleep(pause.min(end.saturating_duration_since(Instant::now()))).await;
            if Instant::now() >= end {
                break;
            }
            let kind = self.faults[self.rng.random_range(0..self.faults.len())];
            if let Err(error) = self.inject(kind).await {
                tracing::warn!(%error, ?kind, "fault not injected");
            }
        }
    }

    fn count(&mut self, what: &str) {
        *self.counts.entry(what.to_string()).or_default() += 1;
    }

    async fn inject(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let cluster = Arc::clone(&self.cluster);
        let mut cluster = cluster.lock().await;
        let Some(leader) = cluster.leader().await else { return Ok(()) };
        match kind {
            FaultKind::Restart => {
                let killed: Vec<usize> = (0..cluster.len()).filter(|&i| !cluster.is_running(i)).collect();
                for i in killed {
                    cluster.restart(i)?;
                    cluster.wait_until_settled(i, Duration::from_secs(10)).await?;
                    self.count("restart");
                }
            }
            FaultKind::KillAll => {
                let killed_at = Instant::now();
                cluster.kill_all()?;
                self.count("kill all");
                // Back in a random order, at a random pace.
                let mut order: Vec<usize> = (0..cluster.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, self.rng.random_range(0..=i));
                }
                for i in order {
                    tokio::time::sleep(Duration::from_millis(self.rng.random_range(0..400))).await;
                    cluster.restart(i)?;
                }
                cluster.wait_for_leader(Duration::from_secs(15)).await?;
                self.failovers += 1;
                self.longest_takeover = self.longest_takeover.max(killed_at.elapsed());
            }
            FaultKind::Outlive => self.outlive(&mut cluster, leader).await?,
            FaultKind::Kill | FaultKind::Stop => {
                let target = if self.rng.random_bool(0.5) { leader } else { self.rng.random_range(0..cluster.len()) };
                if !cluster.is_running(target) || !safe_to_take_down(&cluster, target).await {
                    return Ok(());
                }
                let killed_at = Instant::now();
                if kind == FaultKind::Kill {
                    cluster.kill(target)?;
                    self.count(if target == leader { "kill leader" } else { "kill backup" });
                } else {
                    cluster.freeze(target)?;
                    self.count(if target == leader { "stop leader" } else { "stop backup" });
                    let frozen_for = Duration::from_millis(self.rng.random_range(200..1500));
                    tokio::time::sleep(frozen_for).await;
                    cluster.thaw(target)?;
                }
                if target == leader {
                    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
                    if new_leader != leader {
                        self.failovers += 1;
                        self.longest_takeover = self.longest_takeover.max(killed_at.elapsed());
                    }
                }
            }
        }
        Ok(())
    }
}

impl Injector {
    /// See [`FaultKind::Outlive`]. In memory only the leader is killed: the
    /// other member keeps the acknowledged bids, and must lead, not the
    /// thawed one. With data directories every other node dies too, and
    /// their disks bring the bids back.
    async fn outlive(&mut self, cluster: &mut LocalCluster, leader: usize) -> anyhow::Result<()> {
        let statuses = cluster.statuses().await;
        let Some(membership) = statuses[leader].as_ref().map(|status| status.membership.clone()) else {
            return Ok(());
        };
        let Some(frozen) = membership.get(1).and_then(|node| cluster.index_of(node)) else { return Ok(()) };
        if membership.len() < 3 || !(0..cluster.len()).all(|i| cluster.is_running(i) && !cluster.is_frozen(i)) {
            return Ok(());
        }
        cluster.freeze(frozen)?;
        let (leader_address, frozen_address) = (cluster.node_address(leader), cluster.node_address(frozen));
        let removed =
            poll_until("the frozen backup's removal", Duration::from_secs(10), Duration::from_millis(20), || {
                let (leader_address, frozen_address) = (leader_address.clone(), frozen_address.clone());
                let network = cluster.network().clone();
                async move {
                    let status =
                        crate::client::node_status(&network, &leader_address, Duration::from_millis(300)).await.ok()?;
                    (!status.membership.contains(&frozen_address)).then_some(())
                }
            })
            .await;
        if removed.is_err() {
            cluster.thaw(frozen)?;
            return Ok(());
        }
        let killed_at = Instant::now();
        let durable = cluster.data_dir(leader).is_some();
        let killed: Vec<usize> =
            if durable { (0..cluster.len()).filter(|&i| i != frozen).collect() } else { vec![leader] };
        for &i in &killed {
            cluster.kill(i)?;
        }
        cluster.thaw(frozen)?;
        self.count(if durable { "outlive (every other node killed)" } else { "outlive (leader killed)" });
        if durable {
            // The thawed node alone, unlisted: it must stand aside.
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(100..600))).await;
            for &i in &killed {
                cluster.restart(i)?;
            }
        }
        cluster.wait_for_leader(Duration::from_secs(15)).await?;
        self.failovers += 1;
        self.longest_takeover = self.longest_takeover.max(killed_at.elapsed());
        Ok(())
    }
}

/// The failure model is "all but one member crash": never take down the
/// last running, unfrozen member of the leader's membership besides `target`.
async fn safe_to_take_down(cluster: &LocalCluster, target: usize) -> bool {
    let statuses = cluster.statuses().await;
    let Some(membership) =
        statuses.iter().flatten().find(|status| status.role == Role::Leader).map(|status| status.membership.clone())
    else {
        return false;
    };
    (0..cluster.len()).any(|i| {
        i != target
            && cluster.is_running(i)
            && !cluster.is_frozen(i)
            && membership.contains(&cluster.node_address(i))
            && statuses[i].as_ref().is_some_and(|status| status.role != Role::Joining)
    })
}

/// Thaws and restarts every node and waits for all of them to settle.
async fn heal(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    for i in 0..cluster.len() {
        if cluster.is_frozen(i) {
            cluster.thaw(i)?;
        }
        if !cluster.is_running(i) {
            cluster.restart(i)?;
        }
    }
    cluster.wait_for_leader(Duration::from_secs(15)).await?;
    for i in 0..cluster.len() {
        cluster.wait_until_settled(i, Duration::from_secs(15)).await?;
    }
    Ok(())
}
