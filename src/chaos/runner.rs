//! The chaos run itself: clients that record a history, a fault injector,
//! and the checks at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::{Client, ClientConfig, ClientError};
use crate::cluster::{ClusterSpec, LocalCluster};
use crate::replication::Role;

use super::checker::{self, ModelState, Verdict as Linearizability};
use super::history::{History, Operation, OperationKind, Outcome};
use super::hostile::HostileClient;

/// The faults the injector may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// SIGKILL the leader or a backup.
    Kill,
    /// SIGSTOP a node for a while, then SIGCONT it.
    Stop,
    /// Start killed nodes again.
    Restart,
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
    /// Extra flags for the servers (timeouts).
    pub server_args: Vec<String>,
    /// Hostile clients beside the honest ones (see `chaos::hostile`).
    pub hostile: usize,
    /// Each client pauses up to this long (uniformly) between operations.
    /// Without a pause a release build makes millions of operations in a few
    /// minutes: more history than the check needs, and slower to check.
    pub max_pause: Duration,
}

/// What a chaos run found.
#[derive(Debug)]
pub struct ChaosReport {
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
        let mut lines = vec![format!("operations: {}", self.operations)];
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

/// How long a client keeps retrying one operation before recording it as
/// unknown: longer than a freeze plus a takeover, so most operations resolve.
pub(super) const CLIENT_DEADLINE: Duration = Duration::from_secs(4);

/// Runs the cluster, the clients and the faults, then checks the history.
pub async fn run(config: ChaosConfig) -> anyhow::Result<ChaosReport> {
    let mut spec = ClusterSpec::new(&config.binary, config.nodes, config.base_port, config.client_port);
    spec.server_args = config.server_args.clone();
    spec.log_dir = config.log_dir.clone();
    let cluster = LocalCluster::start(spec).await.context("starting the cluster")?;
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let client_address = cluster.lock().await.client_address();

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder::default());
    let mut clients = Vec::new();
    for index in 0..config.clients {
        let worker = ClientWorker {
            index: index as u32,
            server: client_address.clone(),
            rng: StdRng::seed_from_u64(config.seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
            started,
            max_pause: config.max_pause,
            stop: Arc::clone(&stop),
            recorder: Arc::clone(&recorder),
        };
        clients.push(tokio::spawn(worker.run()));
    }
    let mut hostiles = Vec::new();
    for index in 0..config.hostile {
        let hostile = HostileClient {
            index: (config.clients + index) as u32,
            client_address: client_address.clone(),
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
    let mut violations = Vec::new();
    let (mut rogue_streams, mut replays) = (0, 0);
    for hostile in hostiles {
        let report = hostile.await.context("hostile client task")?;
        violations.extend(report.violations);
        (rogue_streams, replays) = (rogue_streams + report.rogue_streams, replays + report.replays);
    }

    // Heal: every node back, then one final read of the state.
    let final_state = {
        let mut cluster = cluster.lock().await;
        heal(&mut cluster).await?;
        let mut reader =
            Client::new(ClientConfig { servers: vec![client_address.clone()], ..ClientConfig::default() })?;
        let (view, _) = reader.result("").await.context("final read")?;
        ModelState {
            highest_amount: view.highest_amount,
            highest_bidder: view.highest_bidder,
            accepted_bids: view.accepted_bids,
        }
    };

    let history = recorder.history();
    if let Some(path) = &config.history {
        std::fs::write(path, history.to_json_lines()).with_context(|| format!("writing {}", path.display()))?;
    }
    let checking = Instant::now();
    let initial = ModelState { highest_amount: 0, highest_bidder: String::new(), accepted_bids: 0 };
    // The search takes a few steps per operation; the budget only guards
    // against a pathological history, so it grows with the history.
    let budget = checker::DEFAULT_SEARCH_BUDGET.max(history.operations.len() as u64 * 100);
    match checker::check_linearizable_with_budget(&history, &initial, budget) {
        Linearizability::Linearizable { .. } => {}
        Linearizability::Violation(violation) => {
            violations.push(format!("not linearizable: {}", violation.message));
            violations.push(checker::render_violation(&history, &violation));
        }
        Linearizability::Inconclusive { explored } => {
            violations.push(format!("linearizability search gave up after {explored} states"));
        }
    }
    if let Err(violation) = checker::check_durability(&history, &initial, &final_state) {
        violations.push(format!("not durable: {}", violation.message));
        violations.push(checker::render_violation(&history, &violation));
    }
    if let Err(violation) = checker::check_exactly_once(&history, &initial, &final_state) {
        violations.push(format!("not exactly once: {}", violation.message));
        violations.push(checker::render_violation(&history, &violation));
    }

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

/// Collects operations from every client.
#[derive(Default)]
pub(super) struct Recorder {
    next_id: AtomicU64,
    operations: Mutex<Vec<Operation>>,
}

impl Recorder {
    /// The id of the next operation, in invocation order.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn record(&self, operation: Operation) {
        self.operations.lock().unwrap_or_else(PoisonError::into_inner).push(operation);
    }

    fn history(&self) -> History {
        let mut operations = std::mem::take(&mut *self.operations.lock().unwrap_or_else(PoisonError::into_inner));
        operations.sort_by_key(|operation| operation.id);
        History { operations }
    }
}

struct ClientWorker {
    index: u32,
    server: String,
    rng: StdRng,
    started: Instant,
    max_pause: Duration,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
}

const BIDDERS: [&str; 5] = ["ada", "bo", "cy", "di", "ed"];

impl ClientWorker {
    async fn run(mut self) {
        let config =
            ClientConfig { servers: vec![self.server.clone()], deadline: CLIENT_DEADLINE, ..Default::default() };
        let Ok(mut client) = Client::new(config) else { return };
        let mut highest_seen = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            if !self.max_pause.is_zero() {
                tokio::time::sleep(self.max_pause.mul_f64(self.rng.random::<f64>())).await;
            }
            let id = self.recorder.next_id();
            let invoked_us = self.started.elapsed().as_micros() as u64;
            let (kind, outcome) = if self.rng.random_bool(0.25) {
                let outcome = match client.result("").await {
                    Ok((view, _)) => {
                        highest_seen = highest_seen.max(view.highest_amount);
                        Outcome::from(view)
                    }
                    Err(error) => unknown(error),
                };
                (OperationKind::Result, outcome)
            } else {
                let bidder = BIDDERS[self.rng.random_range(0..BIDDERS.len())].to_string();
                // Around the highest this client has seen: some win, some lose.
                let amount = (highest_seen + self.rng.random_range(0..40)).saturating_sub(10).max(1);
                let outcome = match client.bid("", &bidder, amount).await {
                    Ok(outcome) => {
                        highest_seen = highest_seen.max(outcome.highest_amount);
                        Outcome::from(outcome)
                    }
                    Err(error) => unknown(error),
                };
                (OperationKind::Bid { bidder, amount }, outcome)
            };
            let completed_us =
                (!matches!(outcome, Outcome::Unknown)).then(|| self.started.elapsed().as_micros() as u64);
            self.recorder.record(Operation { id, client: self.index, kind, invoked_us, completed_us, outcome });
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
