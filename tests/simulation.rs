//! Deterministic network simulation: the real node code, three nodes and
//! bidding clients, on tokio's `turmoil` simulated network, under a seeded
//! fault driver; the history is checked as in a chaos run (linearizable,
//! durable, exactly once).
//!
//! # What is simulated
//!
//! Each node is a turmoil host running `gavel::node::run` over
//! [`network::SimNetwork`], a `NetworkBackend` on turmoil's TCP. Time is
//! turmoil's: the tokio clock of each host is paused and advanced by the
//! simulation, and `now()` gives the node simulated instants and a simulated
//! wall clock starting at a fixed epoch. Clients are turmoil client hosts
//! running the real `gavel::client::Client`. An observer host asks every node
//! for its status every 100 ms; the driver reads those statuses.
//!
//! # The client port is the leadership lock
//!
//! On one real host, two processes cannot both bind the client port: that is
//! gavel's whole leadership lock. Across simulated hosts nothing enforces it,
//! so the simulation models it: every node is configured with the same
//! virtual client address (`10.255.255.254:5000`, which no host has), and a
//! lock shared by all hosts says who holds it. Binding the client port takes
//! the lock (or fails with `AddrInUse`) and binds a real turmoil listener on
//! the host's own address; dialing the virtual address reaches the holder
//! (or is refused when nobody holds it). The lock is released when the
//! listener is dropped, which a crash does: turmoil drops every task of a
//! crashed host. The driver checks after every step that no crashed host
//! holds the lock.
//!
//! This is what the port does on one host, and so partitions in this
//! simulation can never make two leaders: a leader cut off from its backups
//! keeps the lock, drops the backups it cannot reach after the ack timeout
//! and serves the clients that can still reach it; the backups cannot take
//! over (the bind fails) and wait. Partitions and held links therefore cost
//! availability, not safety, and the run checks exactly that: no lost or
//! doubled bid, and a linearizable history. Several real hosts would need
//! more than a port (a lease or a quorum); that is beyond this model.
//!
//! # The faults, and the failure model
//!
//! Between the start and the end of the bidding, every 150-700 ms the driver
//! may inject one of: crash a node (the leader half the time) and restart it
//! later (it comes back empty and rejoins as a backup); partition a node
//! from one or both others (messages dropped; a TCP connection that lost a
//! segment never recovers, as after a timeout) and repair it; hold the
//! messages between a node and one or both others and release them later (a
//! stalled link, or a frozen process as its peers see it); partition a
//! client host from the leader. At the end every fault is healed, the
//! cluster must settle (one leader, every node a member at the same log
//! position) and one final read gives the state for the durability and
//! exactly-once checks.
//!
//! gavel's failure model is "every node but one may fail", counted over the
//! current membership. The driver keeps within it conservatively: at most
//! two faults that touch servers at once, and a fault is injected only if,
//! with it, some node is left untouched that is a *healthy member*: not
//! touched by any fault for the last 1.5 s (longer than the ack timeout plus
//! a probe interval, so it cannot have been dropped as unreachable without
//! the driver knowing), and seen since then by the observer as leader or
//! backup in the current leader's membership, at the leader's epoch. The
//! endpoints of a partition or held link both count as touched.
//!
//! # Determinism
//!
//! A seed fixes turmoil's random numbers (message latencies), the driver's
//! faults and the clients' bids; the simulated clock starts at a fixed
//! epoch. `same_seed_same_history` runs a seed twice and compares. The node
//! and client code keep a few sources of nondeterminism that the simulation
//! works around or that do not change the history:
//!
//! - `Client::new` draws the client id from `rand::random`: the ids differ
//!   between runs but have the same length, and only key the dedup table.
//! - `Client::with_retries` measures its deadline with `std::time::Instant`
//!   (the real clock); the simulation sets that deadline out of reach and
//!   bounds each operation with a simulated timeout instead.
//! - `node::drive` measures the takeover timeout with `std::time::Instant`:
//!   under the simulation it passes at the speed of the test machine, not
//!   of simulated time.
//! - `tokio::select!` picks a random branch first when several are ready;
//!   tokio seeds that from the runtime, which turmoil can only seed when
//!   built with `--cfg tokio_unstable`.
//!
//! # Running
//!
//! `cargo test --test simulation` runs `GAVEL_SIM_SEEDS` seeds (default
//! [`DEFAULT_SEEDS`]) from `GAVEL_SIM_FIRST_SEED` (default 0). A failing seed
//! panics with its report and a replay command:
//! `GAVEL_SIM_SEED=<seed> cargo test --test simulation replay -- --nocapture`.

#[path = "simulation/driver.rs"]
mod driver;
#[path = "simulation/network.rs"]
mod network;

use std::time::Instant;

use driver::{Scenario, SeedRun, run_seed};

/// Seeds run by default: enough to exercise every fault many times, few
/// enough for the CI's time (see `simulation_seeds`).
const DEFAULT_SEEDS: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")))
}

/// Runs `seeds` on every core, each seed on its own thread.
fn run_many(seeds: Vec<u64>, scenario: &Scenario) -> Vec<SeedRun> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(seeds.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let runs = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(index) else { break };
                    let run = run_seed(seed, scenario);
                    runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(run);
                }
            });
        }
    });
    let mut runs = runs.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    runs.sort_by_key(|run| run.seed);
    runs
}

#[test]
fn simulation_seeds() {
    let count = env_u64("GAVEL_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let first = env_u64("GAVEL_SIM_FIRST_SEED").unwrap_or(0);
    let started = Instant::now();
    let runs = run_many((first..first + count).collect(), &Scenario::default());
    let failed: Vec<&SeedRun> = runs.iter().filter(|run| !run.passed()).collect();
    let operations: usize = runs.iter().map(|run| run.history.operations.len()).sum();
    let leaderships: u64 = runs.iter().map(|run| run.leaderships).sum();
    eprintln!(
        "{count} seeds from {first}: {} failed; {operations} operations, {leaderships} leaderships, in {:?}",
        failed.len(),
        started.elapsed()
    );
    if let Some(first_failure) = failed.first() {
        let seeds: Vec<String> = failed.iter().map(|run| run.seed.to_string()).collect();
        panic!("{} of {count} seeds failed: {}\n\n{}", failed.len(), seeds.join(", "), first_failure.report());
    }
}

/// Replays one seed, given as `GAVEL_SIM_SEED`, and prints what happened.
#[test]
fn replay() {
    let Some(seed) = env_u64("GAVEL_SIM_SEED") else {
        eprintln!("set GAVEL_SIM_SEED to replay a seed");
        return;
    };
    let run = run_seed(seed, &Scenario::default());
    println!("{}", run.summary());
    for event in &run.events {
        println!("  {event}");
    }
    if let Ok(path) = std::env::var("GAVEL_SIM_HISTORY") {
        std::fs::write(&path, run.history.to_json_lines()).expect("writing the history");
        println!("history written to {path}");
    }
    assert!(run.passed(), "{}", run.report());
}

#[test]
fn same_seed_same_history() {
    let seed = 7;
    let scenario = Scenario::default();
    let first = run_seed(seed, &scenario);
    let second = run_seed(seed, &scenario);
    assert!(!first.history.operations.is_empty(), "the clients did something");
    assert_eq!(first.events, second.events, "the driver did the same");
    if first.history != second.history {
        let diverged = first
            .history
            .operations
            .iter()
            .zip(&second.history.operations)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("first:  {a:?}\nsecond: {b:?}"))
            .unwrap_or_else(|| "one history is a prefix of the other".into());
        panic!("seed {seed} gave two histories; first difference:\n{diverged}");
    }
    assert_eq!(first.final_state, second.final_state);
}
