//! One seeded run: three gavel nodes, each with a simulated disk, bidding
//! clients and an observer on turmoil's simulated network, the fault driver
//! stepping it, and the checks on the history.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use gavel::auction::AuctionBook;
use gavel::auction::machine::AuctionSettings;
use gavel::client::{Client, ClientConfig, ClientError};
use gavel::node::{CoordinatorConfig, NodeConfig, StorageConfig};
use gavel::replication::NodeStatus;
use gavel::storage::{FsyncPolicy, SimDisk, WriterMode};
use gavel::tools::chaos::checker::{self, ModelState, Verdict as Linearizability};
use gavel::tools::chaos::history::{History, Operation, OperationKind, Outcome};
use gavel::transport::{AuctionConnection, Network, Port, TransportSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::driver::{Driver, Fault, SETTLE_DEADLINE};
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
    /// How much simulated time one step of the simulation covers.
    pub tick: Duration,
    /// Whether the leader may crash while a partition or held link cuts
    /// servers off from each other, or soon after one healed. Then the
    /// client port is free while a node that was removed, and has not caught
    /// up, may grab it: see the findings `partition_lets_a_removed_backup_take_over`
    /// and `rejoining_backup_takes_over_after_a_partition`.
    pub leader_crash_while_cut_off: bool,
    /// The most full-cluster crashes the driver may inject in one run.
    pub full_crashes: usize,
    /// When the nodes' disks sync: `Always` is the durable setting; `Never`
    /// makes every crash lose what the node acknowledged, which the checks
    /// must catch (see `full_crashes_without_fsync_lose_bids`).
    pub fsync: FsyncPolicy,
    /// Faults injected at fixed times, whatever the failure model says, in
    /// order of time: for scenarios written by hand.
    pub script: Vec<ScriptedFault>,
}

/// One fault of a written scenario.
#[derive(Clone, Debug)]
pub struct ScriptedFault {
    pub at: Duration,
    pub fault: Fault,
    pub lasting: Duration,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 3,
            client_hosts: 2,
            clients_per_host: 2,
            bidding_starts: Duration::from_millis(1000),
            bidding_for: Duration::from_millis(env_millis("GAVEL_SIM_BIDDING_MS").unwrap_or(3000)),
            faults: true,
            tick: Duration::from_millis(env_millis("GAVEL_SIM_TICK_MS").unwrap_or(2)),
            leader_crash_while_cut_off: std::env::var("GAVEL_SIM_CUT_OFF").is_ok_and(|value| value == "1"),
            full_crashes: DEFAULT_FULL_CRASHES,
            fsync: if std::env::var("GAVEL_SIM_FSYNC").is_ok_and(|value| value == "never") {
                FsyncPolicy::Never
            } else {
                FsyncPolicy::Always
            },
            script: Vec::new(),
        }
    }
}

/// Full-cluster crashes a run may have: one, since each costs the clients a
/// second or two of their three of bidding while every node is down, and
/// the other faults their turns.
pub const DEFAULT_FULL_CRASHES: usize = 1;

fn env_millis(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The node timeouts of the simulation: short, so a run of a few simulated
/// seconds sees several failovers.
const ACK_TIMEOUT: Duration = Duration::from_millis(300);
const LEADER_TIMEOUT: Duration = Duration::from_millis(300);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// As a real deployment: the node measures it on the network's (here the
/// simulated) clock.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(1);
/// Longer than any run: the auction never closes under the clients.
const AUCTION_DURATION: Duration = Duration::from_secs(3600);
/// A node's own port; every host has its own address.
pub const NODE_PORT: u16 = 5400;
/// Each node's data directory, on a simulated disk of its own.
const DATA_DIR: &str = "data";
/// The directory of the membership record, on the shared coordinator disk.
const COORDINATOR_DIR: &str = "cluster";
/// How long a disk takes to sync. Longer than a tick, so a write and its
/// sync land on different steps, and a crash, which comes between two steps,
/// can find the write unsynced and lose it or tear it: about one disk crash
/// in eight does, over the default seeds.
const SYNC_LATENCY: Duration = Duration::from_millis(5);
/// Entries between two snapshots of a node's state (a server's default is
/// 100,000): a run of a few hundred entries takes several.
const SNAPSHOT_EVERY: u64 = 25;
/// Node `i` starts `i` times this after the first, so n0 bootstraps and
/// the others join in order.
const START_STAGGER: Duration = Duration::from_millis(200);

/// How long one attempt of a client call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(400);
/// How long a client keeps retrying one operation before recording it as
/// unknown, in simulated time: the library's deadline, and a bound around
/// the call as well, so that no operation can outlive the run.
const OPERATION_DEADLINE: Duration = Duration::from_secs(2);
const LIBRARY_DEADLINE: Duration = OPERATION_DEADLINE;
/// The final read waits this long for the healed cluster.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(10);

/// How often the observer asks each node for its status.
const OBSERVE_EVERY: Duration = Duration::from_millis(100);
const OBSERVE_TIMEOUT: Duration = Duration::from_millis(150);

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
    /// The kind of each fault injected, e.g. "crash leader".
    pub faults: Vec<String>,
    /// Each check that failed, as text; empty when the run passed.
    pub violations: Vec<String>,
    pub simulated: Duration,
    /// How to run it again.
    pub replay: String,
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
        let _ = writeln!(text, "replay: {}", self.replay);
        text
    }

    /// A fingerprint of the history and the driver's log: two runs of one
    /// seed must give the same.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        self.history.to_json_lines().hash(&mut hasher);
        self.events.hash(&mut hasher);
        hasher.finish()
    }

    /// A one-line summary for passing runs.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {}; {} faults, {} leaderships, {:?} simulated",
            self.seed,
            self.history.summary(),
            self.faults.len(),
            self.leaderships,
            self.simulated
        )
    }
}

/// The command that replays `seed` of `scenario`.
pub fn replay_command(seed: u64, scenario: &Scenario) -> String {
    if !scenario.script.is_empty() {
        return "run the written scenario's test again (cargo test --test simulation -- --ignored --nocapture NAME)"
            .into();
    }
    let cut_off = if scenario.leader_crash_while_cut_off { "GAVEL_SIM_CUT_OFF=1 " } else { "" };
    let fsync = if scenario.fsync == FsyncPolicy::Never { "GAVEL_SIM_FSYNC=never " } else { "" };
    format!("{cut_off}{fsync}GAVEL_SIM_SEED={seed} cargo test --test simulation replay -- --nocapture")
}

/// What the hosts and the driver share. turmoil runs every host on the
/// test's thread, one after the other, so the locks are never contended;
/// they are there because the node code wants `Send` things.
#[derive(Default)]
pub struct Shared {
    /// Each node's disk, kept across its crashes and restarts.
    pub disks: Vec<SimDisk>,
    /// The coordinator's directory, shared by every node as the one on a
    /// real host is: the membership record and the nodes' life locks. It
    /// never crashes: the record is written synced, and a node's life lock
    /// goes with its host's tasks.
    pub coordinator_disk: SimDisk,
    next_operation: AtomicU64,
    operations: Mutex<Vec<Operation>>,
    /// The latest status each node gave the observer, and when.
    pub observed: Mutex<Vec<Option<Observation>>>,
    /// Set by the driver once the cluster settled after the bidding.
    pub healed: AtomicBool,
    /// Client hosts whose every operation has completed. The final read
    /// waits for all of them: a bid still retrying when it began would be
    /// concurrent with it, and the read could rightly miss it.
    hosts_done: AtomicUsize,
    /// Set by the final reader: the observer may stop.
    done: AtomicBool,
    final_read: Mutex<Option<Result<ModelState, String>>>,
    /// Answers the model never allows from a client library (a refusal).
    client_problems: Mutex<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct Observation {
    pub at: Duration,
    /// `None` when the node did not answer.
    pub status: Option<NodeStatus>,
}

pub fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
        .tick_duration(scenario.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(40))
        .build();

    let lock = Arc::new(ClientPortLock::default());
    // One disk per node, for the whole run: a crash of the node crashes its
    // disk (the driver sees to it), and the restarted node recovers from it.
    let disks = (0..scenario.nodes).map(|_| SimDisk::new()).collect();
    let shared = Arc::new(Shared { disks, ..Shared::default() });
    *locked(&shared.observed) = vec![None; scenario.nodes];

    // Looking the names up first fixes every host's address.
    let node_names: Vec<String> = (0..scenario.nodes).map(|i| format!("n{i}")).collect();
    let node_ips: Vec<IpAddr> = node_names.iter().map(|name| sim.lookup(name.as_str())).collect();
    let node_addresses: Vec<SocketAddr> = node_ips.iter().map(|ip| SocketAddr::new(*ip, NODE_PORT)).collect();
    let client_names: Vec<String> = (0..scenario.client_hosts).map(|i| format!("c{i}")).collect();
    let client_ips: Vec<IpAddr> = client_names.iter().map(|name| sim.lookup(name.as_str())).collect();
    let observer_ip = sim.lookup("observer");

    for (index, name) in node_names.iter().enumerate() {
        let config = NodeConfig::<AuctionBook> {
            peers: node_addresses
                .iter()
                .filter(|address| **address != node_addresses[index])
                .map(SocketAddr::to_string)
                .collect(),
            ack_timeout: ACK_TIMEOUT,
            leader_timeout: LEADER_TIMEOUT,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            takeover_timeout: TAKEOVER_TIMEOUT,
            machine: AuctionSettings { default_auction_duration: AUCTION_DURATION, ..AuctionSettings::default() },
            storage: Some(StorageConfig {
                dir: PathBuf::from(DATA_DIR),
                fsync: scenario.fsync,
                disk: Arc::new(shared.disks[index].clone()),
                // Often, so that a run takes snapshots, compacts its logs,
                // recovers from snapshot and log, and installs snapshots
                // over logs that diverged.
                snapshot_every: SNAPSHOT_EVERY,
                // A writer thread would sync on the real clock: no replay.
                writer: WriterMode::Inline { sync_latency: SYNC_LATENCY },
            }),
            coordinator: CoordinatorConfig {
                dir: PathBuf::from(COORDINATOR_DIR),
                disk: Arc::new(shared.coordinator_disk.clone()),
            },
            ..NodeConfig::new(node_addresses[index], virtual_client_address())
        };
        let starts_at = START_STAGGER * index as u32;
        let network = Network::new(SimNetwork::new(node_ips[index], Arc::clone(&lock), host_seed(seed, name)));
        // turmoil calls this again on a bounce: the node recovers from its disk.
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

    let client_hosts = client_names.len();
    for (host, name) in client_names.iter().enumerate() {
        let network = Network::new(SimNetwork::new(client_ips[host], Arc::clone(&lock), host_seed(seed, name)));
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
            while let Some(finished) = workers.join_next().await {
                // A client that panicked fails the run, rather than thinning its history.
                finished?;
            }
            shared.hosts_done.fetch_add(1, Ordering::Relaxed);
            if final_reader {
                while !shared.healed.load(Ordering::Relaxed) || shared.hosts_done.load(Ordering::Relaxed) < client_hosts
                {
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
        let network = Network::new(SimNetwork::new(observer_ip, Arc::clone(&lock), host_seed(seed, "observer")));
        let shared = Arc::clone(&shared);
        let addresses = node_addresses.clone();
        sim.client("observer", async move {
            let mut observers = tokio::task::JoinSet::new();
            for (index, address) in addresses.into_iter().enumerate() {
                observers.spawn_local(observe(index, address.to_string(), network.clone(), Arc::clone(&shared)));
            }
            while let Some(finished) = observers.join_next().await {
                finished?;
            }
            Ok(())
        });
    }

    let mut driver = Driver::new(seed, scenario, node_names, node_ips, client_names, lock.clone(), shared.clone());
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
    SeedRun {
        seed,
        history,
        final_state,
        events: driver.events,
        leaderships: lock.tenures(),
        faults: driver.fault_kinds,
        violations,
        simulated,
        replay: replay_command(seed, scenario),
    }
}

/// A host's own seed, derived from the run's.
fn host_seed(seed: u64, host: &str) -> u64 {
    host.bytes().fold(seed ^ 0x0123_4567_89ab_cdef, |acc, byte| acc.rotate_left(8) ^ u64::from(byte))
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
            names: None,
            servers: vec![virtual_client_address().to_string()],
            deadline: LIBRARY_DEADLINE,
            attempt_timeout: ATTEMPT_TIMEOUT,
            network: self.network.clone(),
            in_process: None,
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
                        Outcome::from(view)
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
                        Outcome::from(outcome)
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
        if error.is_refusal() {
            // The service refused a well-formed request: no correct server does.
            locked(&self.shared.client_problems).push(format!("operation {id} was refused: {error}"));
        }
        Outcome::Unknown
    }
}

/// The result read after the cluster healed.
async fn final_read(network: &Network) -> Result<ModelState, String> {
    let config = ClientConfig {
        names: None,
        servers: vec![virtual_client_address().to_string()],
        deadline: LIBRARY_DEADLINE,
        attempt_timeout: ATTEMPT_TIMEOUT,
        network: network.clone(),
        in_process: None,
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
