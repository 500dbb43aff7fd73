//! One seeded run: three gavel nodes and bidding clients on turmoil's
//! simulated network, a fault driver, and the checks on the history.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use gavel::auction::Verdict;
use gavel::chaos::checker::{self, ModelState, Verdict as Linearizability};
use gavel::chaos::history::{BidVerdict, History, Operation, OperationKind, Outcome};
use gavel::client::{Client, ClientConfig, ClientError};
use gavel::node::NodeConfig;
use gavel::replication::{NodeStatus, Role};
use gavel::transport::{AuctionConnection, Network, Port, TransportSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::network::{ClientPortLock, EPOCH_UNIX_MS, SimNetwork, sim_elapsed, virtual_client_address};

/// The shape of one run. Every duration is simulated time.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: usize,
    /// Client hosts, and concurrent clients on each.
    pub client_hosts: usize,
    pub clients_per_host: usize,
    /// When the clients start bidding: the cluster has formed by then.
    pub bidding_starts: Duration,
    /// How long they bid, while the driver injects faults.
    pub bidding_for: Duration,
    /// Whether the driver injects faults at all.
    pub faults: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 3,
            client_hosts: 2,
            clients_per_host: 2,
            bidding_starts: Duration::from_millis(1000),
            bidding_for: Duration::from_secs(4),
            faults: true,
        }
    }
}

/// The node timeouts of the simulation: short, so a run of a few simulated
/// seconds sees several failovers.
const ACK_TIMEOUT: Duration = Duration::from_millis(300);
const LEADER_TIMEOUT: Duration = Duration::from_millis(300);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(1);
/// Longer than any run: the auction never closes under the clients.
const AUCTION_DURATION: Duration = Duration::from_secs(3600);
/// A node's own port; every host has its own address.
const NODE_PORT: u16 = 5400;
/// Node `i` starts `i` times this after the first, so n0 bootstraps and
/// the others join in order.
const START_STAGGER: Duration = Duration::from_millis(200);

/// How long one attempt of a client call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(400);
/// How long a client keeps retrying one operation before recording it as
/// unknown. Enforced in simulated time around the call: the client
/// library's own deadline reads the real clock (see the module doc of
/// `tests/simulation.rs`), so it is set far out of reach.
const OPERATION_DEADLINE: Duration = Duration::from_secs(2);
const LIBRARY_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// The final read waits this long for the healed cluster.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(10);

/// How often the observer asks each node for its status.
const OBSERVE_EVERY: Duration = Duration::from_millis(100);
const OBSERVE_TIMEOUT: Duration = Duration::from_millis(150);

/// A node counts as a healthy member only this long after its last fault
/// was healed (and once seen as a member since): time to notice the heal
/// and rejoin. See [`Driver::healthy`].
const RECOVERY_GAP: Duration = Duration::from_millis(1500);
/// After the bidding, how long the healed cluster has to settle (one leader,
/// every node a member at the same position) before the final read.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);
/// At most this many faults that impair server hosts at once.
const MAX_ACTIVE_FAULTS: usize = 2;

/// Bidder names: a few, so the same bidder outbids itself now and then.
const BIDDERS: [&str; 4] = ["ada", "bo", "cy", "di"];

/// Everything one run produced.
#[derive(Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub history: History,
    /// The result read after the cluster healed.
    pub final_state: Option<ModelState>,
    /// What the driver did, one line per fault or heal, with its time.
    pub events: Vec<String>,
    /// How many times the client port was taken: one per leadership.
    pub leaderships: u64,
    /// Each check that failed, as text; empty when the run passed.
    pub violations: Vec<String>,
    pub simulated: Duration,
}

impl SeedRun {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The failure message: what failed, the driver's log, and how to replay.
    pub fn report(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "simulation seed {} failed:", self.seed);
        for violation in &self.violations {
            let _ = writeln!(text, "  {violation}");
        }
        let _ = writeln!(text, "{}", self.history.summary());
        let _ = writeln!(text, "driver log:");
        for event in &self.events {
            let _ = writeln!(text, "  {event}");
        }
        let _ = writeln!(text, "replay: {}", replay_command(self.seed));
        text
    }

    /// A one-line summary for passing runs.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {}; {} faults, {} leaderships, {:?} simulated",
            self.seed,
            self.history.summary(),
            self.events.iter().filter(|event| !event.contains("heal") && !event.contains("settled")).count(),
            self.leaderships,
            self.simulated
        )
    }
}

pub fn replay_command(seed: u64) -> String {
    format!("GAVEL_SIM_SEED={seed} cargo test --test simulation replay -- --nocapture")
}

/// What the hosts and the driver share. turmoil runs every host on the
/// test's thread, one after the other, so the locks are never contended;
/// they are there because the node code wants `Send` things.
#[derive(Default)]
struct Shared {
    next_operation: AtomicU64,
    operations: Mutex<Vec<Operation>>,
    /// The latest status each node gave the observer, and when.
    observed: Mutex<Vec<Option<Observation>>>,
    /// Set by the driver once the cluster settled after the bidding.
    healed: AtomicBool,
    /// Set by the final reader: the observer may stop.
    done: AtomicBool,
    final_read: Mutex<Option<Result<ModelState, String>>>,
    /// Answers the model never allows from a client library (a refusal).
    client_problems: Mutex<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Observation {
    at: Duration,
    /// `None` when the node did not answer.
    status: Option<NodeStatus>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// Runs one seed to the end and checks its history.
pub fn run_seed(seed: u64, scenario: &Scenario) -> SeedRun {
    let bidding_ends = scenario.bidding_starts + scenario.bidding_for;
    let limit = bidding_ends + SETTLE_DEADLINE + FINAL_READ_DEADLINE + Duration::from_secs(10);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(EPOCH_UNIX_MS))
        .simulation_duration(limit)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(40))
        .build();

    let lock = Arc::new(ClientPortLock::default());
    let shared = Arc::new(Shared::default());
    *locked(&shared.observed) = vec![None; scenario.nodes];

    // Looking the names up first fixes every host's address.
    let node_names: Vec<String> = (0..scenario.nodes).map(|i| format!("n{i}")).collect();
    let node_ips: Vec<IpAddr> = node_names.iter().map(|name| sim.lookup(name.as_str())).collect();
    let node_addresses: Vec<SocketAddr> = node_ips.iter().map(|ip| SocketAddr::new(*ip, NODE_PORT)).collect();
    let client_names: Vec<String> = (0..scenario.client_hosts).map(|i| format!("c{i}")).collect();
    let client_ips: Vec<IpAddr> = client_names.iter().map(|name| sim.lookup(name.as_str())).collect();
    let observer_ip = sim.lookup("observer");

    for (index, name) in node_names.iter().enumerate() {
        let config = NodeConfig {
            peers: node_addresses
                .iter()
                .filter(|address| **address != node_addresses[index])
                .map(SocketAddr::to_string)
                .collect(),
            ack_timeout: ACK_TIMEOUT,
            leader_timeout: LEADER_TIMEOUT,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            takeover_timeout: TAKEOVER_TIMEOUT,
            auction_duration: AUCTION_DURATION,
            ..NodeConfig::new(node_addresses[index], virtual_client_address())
        };
        let starts_at = START_STAGGER * index as u32;
        let network = Network::new(SimNetwork::new(node_ips[index], Arc::clone(&lock)));
        // turmoil calls this again on a bounce: the node comes back empty.
        sim.host(name.as_str(), move || {
            let config = config.clone();
            let network = network.clone();
            async move {
                let now = sim_elapsed();
                if now < starts_at {
                    tokio::time::sleep(starts_at - now).await;
                }
                let listener = network.bind(config.node_address, Port::Node).await?;
                gavel::node::run(config, network, listener, CancellationToken::new()).await?;
                Ok(())
            }
        });
    }

    for (host, name) in client_names.iter().enumerate() {
        let network = Network::new(SimNetwork::new(client_ips[host], Arc::clone(&lock)));
        let shared = Arc::clone(&shared);
        let clients_per_host = scenario.clients_per_host;
        let bidding_starts = scenario.bidding_starts;
        let final_reader = host == 0;
        sim.client(name.as_str(), async move {
            tokio::time::sleep(bidding_starts.saturating_sub(sim_elapsed())).await;
            let mut workers = tokio::task::JoinSet::new();
            for slot in 0..clients_per_host {
                let index = (host * clients_per_host + slot) as u32;
                let worker = Worker {
                    index,
                    rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(u64::from(index))),
                    shared: Arc::clone(&shared),
                    network: network.clone(),
                    until: bidding_ends,
                };
                workers.spawn_local(worker.run());
            }
            while workers.join_next().await.is_some() {}
            if final_reader {
                while !shared.healed.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let state = final_read(&network).await;
                *locked(&shared.final_read) = Some(state);
                shared.done.store(true, Ordering::Relaxed);
            }
            Ok(())
        });
    }

    {
        let network = Network::new(SimNetwork::new(observer_ip, Arc::clone(&lock)));
        let shared = Arc::clone(&shared);
        let addresses = node_addresses.clone();
        sim.client("observer", async move {
            let mut observers = tokio::task::JoinSet::new();
            for (index, address) in addresses.into_iter().enumerate() {
                observers.spawn_local(observe(index, address.to_string(), network.clone(), Arc::clone(&shared)));
            }
            while observers.join_next().await.is_some() {}
            Ok(())
        });
    }

    let mut driver = Driver {
        rng: StdRng::seed_from_u64(seed ^ 0x5eed_d41e_f00d_cafe),
        scenario: scenario.clone(),
        node_names,
        node_ips,
        client_names,
        lock: Arc::clone(&lock),
        shared: Arc::clone(&shared),
        active: Vec::new(),
        crashed: BTreeSet::new(),
        impaired_until: vec![Duration::ZERO; scenario.nodes],
        next_fault_at: scenario.bidding_starts + Duration::from_millis(200),
        bidding_ends,
        healed_at: None,
        events: Vec::new(),
        violations: Vec::new(),
    };

    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => {
                driver.violations.push(format!("the simulation failed: {error}"));
                break;
            }
        }
        driver.after_step(&mut sim);
    }

    let simulated = sim.elapsed();
    let mut history = History { operations: std::mem::take(&mut *locked(&shared.operations)) };
    history.operations.sort_by_key(|operation| operation.id);
    let mut violations = driver.violations;
    violations.extend(locked(&shared.client_problems).iter().cloned());
    let final_state = match locked(&shared.final_read).take() {
        Some(Ok(state)) => Some(state),
        Some(Err(error)) => {
            violations.push(format!("the final read failed: {error}"));
            None
        }
        None => None,
    };
    if let Some(final_state) = &final_state {
        violations.extend(check(&history, final_state));
    }
    SeedRun { seed, history, final_state, events: driver.events, leaderships: lock.tenures(), violations, simulated }
}

/// The three checks of the chaos runner, on a simulated history.
pub fn check(history: &History, final_state: &ModelState) -> Vec<String> {
    let initial = ModelState::default();
    let mut violations = Vec::new();
    match checker::check_linearizable(history, &initial) {
        Linearizability::Linearizable { .. } => {}
        Linearizability::Violation(violation) => {
            violations.push(format!("not linearizable: {}", violation.message));
            violations.push(checker::render_violation(history, &violation));
        }
        Linearizability::Inconclusive { explored } => {
            violations.push(format!("linearizability search gave up after {explored} states"));
        }
    }
    if let Err(violation) = checker::check_durability(history, &initial, final_state) {
        violations.push(format!("not durable: {}", violation.message));
        violations.push(checker::render_violation(history, &violation));
    }
    if let Err(violation) = checker::check_exactly_once(history, &initial, final_state) {
        violations.push(format!("not exactly once: {}", violation.message));
        violations.push(checker::render_violation(history, &violation));
    }
    violations
}

/// One simulated client: bids around the highest amount it has seen and
/// reads the result, one operation at a time, recording each.
struct Worker {
    index: u32,
    rng: StdRng,
    shared: Arc<Shared>,
    network: Network,
    until: Duration,
}

impl Worker {
    async fn run(mut self) {
        let config = ClientConfig {
            servers: vec![virtual_client_address().to_string()],
            deadline: LIBRARY_DEADLINE,
            attempt_timeout: ATTEMPT_TIMEOUT,
            network: self.network.clone(),
        };
        let mut client = Client::new(config).expect("a client with one server address");
        let mut highest_seen = 0u64;
        while sim_elapsed() < self.until {
            let id = self.shared.next_operation.fetch_add(1, Ordering::Relaxed);
            let invoked_us = micros(sim_elapsed());
            let (kind, outcome) = if self.rng.random_bool(0.25) {
                let outcome = match tokio::time::timeout(OPERATION_DEADLINE, client.result("")).await {
                    Ok(Ok((view, _leader))) => {
                        highest_seen = highest_seen.max(view.highest_amount);
                        Outcome::Result {
                            highest_amount: view.highest_amount,
                            highest_bidder: view.highest_bidder,
                            accepted_bids: view.accepted_bids,
                        }
                    }
                    Ok(Err(error)) => self.unknown(id, error),
                    Err(_deadline) => Outcome::Unknown,
                };
                (OperationKind::Result, outcome)
            } else {
                let bidder = BIDDERS[self.rng.random_range(0..BIDDERS.len())].to_string();
                // Around the highest this client has seen: some win, some lose.
                let amount = (highest_seen + self.rng.random_range(0..30)).saturating_sub(8).max(1);
                let outcome = match tokio::time::timeout(OPERATION_DEADLINE, client.bid("", &bidder, amount)).await {
                    Ok(Ok(outcome)) => {
                        highest_seen = highest_seen.max(outcome.highest_amount);
                        Outcome::Bid {
                            verdict: match outcome.verdict {
                                Verdict::Success => BidVerdict::Success,
                                Verdict::Fail => BidVerdict::Fail,
                                Verdict::Exception => BidVerdict::Exception,
                            },
                            highest_amount: outcome.highest_amount,
                            highest_bidder: outcome.highest_bidder,
                        }
                    }
                    Ok(Err(error)) => self.unknown(id, error),
                    Err(_deadline) => Outcome::Unknown,
                };
                (OperationKind::Bid { bidder, amount }, outcome)
            };
            let completed_us = (!matches!(outcome, Outcome::Unknown)).then(|| micros(sim_elapsed()));
            locked(&self.shared.operations).push(Operation {
                id,
                client: self.index,
                kind,
                invoked_us,
                completed_us,
                outcome,
            });
            let pause = Duration::from_millis(self.rng.random_range(0..20));
            tokio::time::sleep(pause).await;
        }
    }

    fn unknown(&self, id: u64, error: ClientError) -> Outcome {
        if let ClientError::Rejected(message) = &error {
            // The service refused a well-formed request: no correct server does.
            locked(&self.shared.client_problems).push(format!("operation {id} was refused: {message}"));
        }
        Outcome::Unknown
    }
}

/// The result read after the cluster healed.
async fn final_read(network: &Network) -> Result<ModelState, String> {
    let config = ClientConfig {
        servers: vec![virtual_client_address().to_string()],
        deadline: LIBRARY_DEADLINE,
        attempt_timeout: ATTEMPT_TIMEOUT,
        network: network.clone(),
    };
    let mut reader = Client::new(config).map_err(|error| error.to_string())?;
    match tokio::time::timeout(FINAL_READ_DEADLINE, reader.result("")).await {
        Ok(Ok((view, _leader))) => Ok(ModelState {
            highest_amount: view.highest_amount,
            highest_bidder: view.highest_bidder,
            accepted_bids: view.accepted_bids,
        }),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer in {FINAL_READ_DEADLINE:?}")),
    }
}

/// Asks one node for its status every [`OBSERVE_EVERY`], until the run is done.
async fn observe(index: usize, address: String, network: Network, shared: Arc<Shared>) {
    let settings = TransportSettings { connect_timeout: OBSERVE_TIMEOUT, ..TransportSettings::default() };
    let mut connection =
        AuctionConnection::new(&network, &address, &settings, OBSERVE_TIMEOUT).expect("a node address is valid");
    while !shared.done.load(Ordering::Relaxed) {
        let status = connection.status().await.ok();
        locked(&shared.observed)[index] = Some(Observation { at: sim_elapsed(), status });
        tokio::time::sleep(OBSERVE_EVERY).await;
    }
}

/// A fault the driver injects, and undoes later.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// The host's process dies: every task dropped, every socket closed.
    Crash(usize),
    /// Messages between the two groups of servers are dropped; a TCP
    /// connection that lost a segment never recovers, as if it timed out.
    Partition(Vec<usize>, Vec<usize>),
    /// Messages between the two groups are held and delivered, in order,
    /// when released: a stalled link, or a frozen process as its peers see it.
    Hold(Vec<usize>, Vec<usize>),
    /// A client host cannot reach a server (the leader, when injected).
    ClientPartition { client_host: usize, node: usize },
}

impl Fault {
    /// The server hosts whose membership the fault may cost.
    fn impairs(&self) -> Vec<usize> {
        match self {
            Fault::Crash(node) => vec![*node],
            Fault::Partition(a, b) | Fault::Hold(a, b) => a.iter().chain(b).copied().collect(),
            Fault::ClientPartition { .. } => Vec::new(),
        }
    }
}

struct ActiveFault {
    fault: Fault,
    heal_at: Duration,
}

struct Driver {
    rng: StdRng,
    scenario: Scenario,
    node_names: Vec<String>,
    node_ips: Vec<IpAddr>,
    client_names: Vec<String>,
    lock: Arc<ClientPortLock>,
    shared: Arc<Shared>,
    active: Vec<ActiveFault>,
    crashed: BTreeSet<usize>,
    /// When each node's last fault was healed.
    impaired_until: Vec<Duration>,
    next_fault_at: Duration,
    bidding_ends: Duration,
    /// When every fault was healed after the bidding.
    healed_at: Option<Duration>,
    events: Vec<String>,
    violations: Vec<String>,
}

impl Driver {
    fn after_step(&mut self, sim: &mut turmoil::Sim<'_>) {
        let now = sim.elapsed();
        self.check_lock(sim, now);
        // Heal what is due.
        let mut index = 0;
        while index < self.active.len() {
            if self.active[index].heal_at <= now || (now >= self.bidding_ends && self.healed_at.is_none()) {
                let fault = self.active.remove(index).fault;
                self.heal(sim, &fault, now);
            } else {
                index += 1;
            }
        }
        if now >= self.bidding_ends {
            self.settle(now);
            return;
        }
        if self.scenario.faults && now >= self.next_fault_at && now >= self.scenario.bidding_starts {
            self.next_fault_at = now + Duration::from_millis(self.rng.random_range(150..700));
            self.inject(sim, now);
        }
    }

    /// The lock must never be held by a crashed host: a crash drops the
    /// host's tasks, and the listener's guard with them.
    fn check_lock(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        if let Some(holder) = self.lock.holder()
            && !sim.is_host_running(holder)
        {
            self.violations.push(format!("{now:?}: the client port is held by {holder}, which is down"));
            self.lock.release_held_by(holder);
        }
    }

    fn log(&mut self, now: Duration, what: String) {
        self.events.push(format!("{:>7.3}s {what}", now.as_secs_f64()));
    }

    fn leader(&self) -> Option<usize> {
        let holder = self.lock.holder()?;
        self.node_ips.iter().position(|ip| *ip == holder)
    }

    fn impaired(&self) -> BTreeSet<usize> {
        self.active.iter().flat_map(|active| active.fault.impairs()).collect()
    }

    /// A node the cluster can count on: not impaired now nor for the last
    /// [`RECOVERY_GAP`], and seen since its last fault as a leader or backup
    /// in the current leader's membership, at the leader's epoch.
    ///
    /// The gap matters: the observer's statuses are up to a probe interval
    /// old, and a leader drops a backup it cannot reach within its ack
    /// timeout; a node that has not been impaired for longer than that
    /// cannot have been dropped for being unreachable.
    fn healthy(&self, node: usize, now: Duration, impaired: &BTreeSet<usize>) -> bool {
        if impaired.contains(&node) || now < self.impaired_until[node] + RECOVERY_GAP {
            return false;
        }
        let Some(leader) = self.leader() else { return false };
        let observed = locked(&self.shared.observed);
        let status_of = |index: usize| {
            observed[index]
                .as_ref()
                .filter(|observation| observation.at >= self.impaired_until[index])
                .and_then(|observation| observation.status.clone())
        };
        let (Some(leader_status), Some(status)) = (status_of(leader), status_of(node)) else { return false };
        let id = format!("{}:{NODE_PORT}", self.node_ips[node]);
        leader_status.role == Role::Leader
            && leader_status.membership.contains(&id)
            && matches!(status.role, Role::Leader | Role::Backup)
            && status.epoch == leader_status.epoch
    }

    /// Whether the failure model still holds once `fault` is added: some
    /// healthy member is left outside everything impaired.
    fn allowed(&self, fault: &Fault, now: Duration) -> bool {
        if fault.impairs().is_empty() {
            return true;
        }
        if self.active_server_faults() >= MAX_ACTIVE_FAULTS {
            return false;
        }
        let mut impaired = self.impaired();
        impaired.extend(fault.impairs());
        (0..self.scenario.nodes).any(|node| self.healthy(node, now, &impaired))
    }

    fn active_server_faults(&self) -> usize {
        self.active.iter().filter(|active| !active.fault.impairs().is_empty()).count()
    }

    fn inject(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        let Some(leader) = self.leader() else { return };
        let nodes = self.scenario.nodes;
        let live: Vec<usize> = (0..nodes).filter(|node| !self.crashed.contains(node)).collect();
        let pick_node = |rng: &mut StdRng| {
            // The leader half the time: its loss is the interesting one.
            if rng.random_bool(0.5) { leader } else { live[rng.random_range(0..live.len())] }
        };
        let fault = match self.rng.random_range(0..100) {
            0..35 => Fault::Crash(pick_node(&mut self.rng)),
            35..60 => {
                let a = pick_node(&mut self.rng);
                let others: Vec<usize> = (0..nodes).filter(|node| *node != a).collect();
                if self.rng.random_bool(0.3) {
                    Fault::Partition(vec![a], others)
                } else {
                    Fault::Partition(vec![a], vec![others[self.rng.random_range(0..others.len())]])
                }
            }
            60..85 => {
                let a = pick_node(&mut self.rng);
                let others: Vec<usize> = (0..nodes).filter(|node| *node != a).collect();
                if self.rng.random_bool(0.5) {
                    Fault::Hold(vec![a], others)
                } else {
                    Fault::Hold(vec![a], vec![others[self.rng.random_range(0..others.len())]])
                }
            }
            _ => Fault::ClientPartition {
                client_host: self.rng.random_range(0..self.client_names.len()),
                node: leader,
            },
        };
        let lasting = Duration::from_millis(match fault {
            Fault::Crash(_) => self.rng.random_range(100..1500),
            Fault::Partition(..) => self.rng.random_range(100..2000),
            Fault::Hold(..) => self.rng.random_range(50..1200),
            Fault::ClientPartition { .. } => self.rng.random_range(100..1500),
        });
        if self.crashed.contains(&match fault {
            Fault::Crash(node) => node,
            _ => usize::MAX,
        }) || self.overlaps(&fault)
            || !self.allowed(&fault, now)
        {
            return;
        }
        let role = |node: usize| if node == leader { "leader" } else { "backup" };
        let describe = |group: &[usize]| {
            group.iter().map(|node| format!("{}({})", self.node_names[*node], role(*node))).collect::<Vec<_>>().join(",")
        };
        let what = match &fault {
            Fault::Crash(node) => {
                sim.crash(self.node_names[*node].as_str());
                self.crashed.insert(*node);
                format!("crash {}", describe(&[*node]))
            }
            Fault::Partition(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.partition(x, y), sim);
                format!("partition {} | {}", describe(a), describe(b))
            }
            Fault::Hold(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.hold(x, y), sim);
                format!("hold {} | {}", describe(a), describe(b))
            }
            Fault::ClientPartition { client_host, node } => {
                sim.partition(self.client_names[*client_host].as_str(), self.node_names[*node].as_str());
                format!("partition {} | {}", self.client_names[*client_host], describe(&[*node]))
            }
        };
        self.log(now, format!("{what} for {lasting:?}"));
        self.active.push(ActiveFault { fault, heal_at: now + lasting });
    }

    /// Two faults on the same link would heal each other early.
    fn overlaps(&self, fault: &Fault) -> bool {
        let links = |fault: &Fault| -> Vec<(String, String)> {
            match fault {
                Fault::Crash(_) => Vec::new(),
                Fault::Partition(a, b) | Fault::Hold(a, b) => {
                    let mut links = Vec::new();
                    for x in a {
                        for y in b {
                            let (x, y) = (self.node_names[*x].clone(), self.node_names[*y].clone());
                            links.push(if x < y { (x, y) } else { (y, x) });
                        }
                    }
                    links
                }
                Fault::ClientPartition { client_host, node } => {
                    vec![(self.client_names[*client_host].clone(), self.node_names[*node].clone())]
                }
            }
        };
        let new_links = links(fault);
        self.active.iter().any(|active| links(&active.fault).iter().any(|link| new_links.contains(link)))
    }

    fn for_pairs(
        &self,
        a: &[usize],
        b: &[usize],
        mut apply: impl FnMut(&mut turmoil::Sim<'_>, &str, &str),
        sim: &mut turmoil::Sim<'_>,
    ) {
        for x in a {
            for y in b {
                apply(sim, self.node_names[*x].as_str(), self.node_names[*y].as_str());
            }
        }
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
        let what = match fault {
            Fault::Crash(node) => {
                sim.bounce(self.node_names[*node].as_str());
                self.crashed.remove(node);
                format!("heal: restart {}", self.node_names[*node])
            }
            Fault::Partition(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.repair(x, y), sim);
                format!("heal: repair {:?} | {:?}", self.names(a), self.names(b))
            }
            Fault::Hold(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.release(x, y), sim);
                format!("heal: release {:?} | {:?}", self.names(a), self.names(b))
            }
            Fault::ClientPartition { client_host, node } => {
                sim.repair(self.client_names[*client_host].as_str(), self.node_names[*node].as_str());
                format!("heal: repair {} | {}", self.client_names[*client_host], self.node_names[*node])
            }
        };
        for node in fault.impairs() {
            self.impaired_until[node] = now;
        }
        self.log(now, what);
    }

    fn names(&self, group: &[usize]) -> Vec<String> {
        group.iter().map(|node| self.node_names[*node].clone()).collect()
    }

    /// After the bidding: once every node is a member of one leader at the
    /// same log position, let the final read go.
    fn settle(&mut self, now: Duration) {
        if self.shared.healed.load(Ordering::Relaxed) {
            return;
        }
        let healed_at = *self.healed_at.get_or_insert(now);
        let settled = self.leader().is_some_and(|leader| {
            let observed = locked(&self.shared.observed);
            let status_of = |index: usize| {
                observed[index]
                    .as_ref()
                    .filter(|observation| observation.at > healed_at)
                    .and_then(|observation| observation.status.clone())
            };
            let Some(leader_status) = status_of(leader).filter(|status| status.role == Role::Leader) else {
                return false;
            };
            (0..self.scenario.nodes).all(|node| {
                let id = format!("{}:{NODE_PORT}", self.node_ips[node]);
                status_of(node).is_some_and(|status| {
                    matches!(status.role, Role::Leader | Role::Backup)
                        && status.epoch == leader_status.epoch
                        && status.last == leader_status.last
                        && leader_status.membership.contains(&id)
                })
            })
        });
        if settled {
            self.log(now, "settled: one leader, every node a member at the same position".into());
            self.shared.healed.store(true, Ordering::Relaxed);
        } else if now >= healed_at + SETTLE_DEADLINE {
            let statuses: Vec<String> = locked(&self.shared.observed)
                .iter()
                .enumerate()
                .map(|(index, observation)| match observation.as_ref().and_then(|o| o.status.as_ref()) {
                    Some(status) => format!(
                        "{}: {:?} epoch {} last {}/{} members {:?}",
                        self.node_names[index],
                        status.role,
                        status.epoch,
                        status.last.epoch,
                        status.last.index,
                        status.membership
                    ),
                    None => format!("{}: no answer", self.node_names[index]),
                })
                .collect();
            self.violations.push(format!(
                "the healed cluster did not settle within {SETTLE_DEADLINE:?}: {}",
                statuses.join("; ")
            ));
            self.log(now, "not settled; reading anyway".into());
            self.shared.healed.store(true, Ordering::Relaxed);
        }
    }
}
