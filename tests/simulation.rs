//! Deterministic network simulation: the real node code, three nodes with
//! simulated disks and bidding clients on tokio's `turmoil` simulated
//! network, under a seeded fault driver that crashes (one node or all of
//! them), restarts and partitions hosts and holds their messages; the
//! history is checked as in a chaos run (linearizable, durable, exactly
//! once).
//!
//! Layout: `simulation/network.rs` is the turmoil `NetworkBackend` and the
//! client-port lock; `simulation/run.rs` sets up one run (hosts, clients,
//! observer, checks); `simulation/driver.rs` injects and heals the faults.
//!
//! # What is simulated
//!
//! Each node is a turmoil host running `gavel::node::run` over
//! `network::SimNetwork`, a `NetworkBackend` on turmoil's TCP. Time is
//! turmoil's: the tokio clock of each host is paused and advanced by the
//! simulation, and `now()` gives the node simulated instants and a simulated
//! wall clock from a fixed epoch. Two client hosts run two concurrent
//! `gavel::client::Client`s each, bidding around the highest amount they have
//! seen and reading the result; every operation is recorded with simulated
//! invocation and completion times. An observer host asks every node for its
//! status every 100 ms, for the driver.
//!
//! Each node keeps a data directory on a `SimDisk` of its own, which the
//! harness keeps across the host's crashes and restarts, with the durable
//! setting (fsync always). A crash of the host crashes its disk: what was
//! not synced is lost, and the last write may be torn. A restarted host runs
//! the node again from scratch, on what its disk kept: the node recovers its
//! snapshot and log, and rejoins the leader as a backup; after a crash of
//! every node, the nodes recovered from disk wait for every member they know
//! before one of them leads. A sync takes 5 ms of simulated time, so a crash
//! can catch writes that are on the disk but not yet synced.
//!
//! # The client port is the leadership lock
//!
//! On one real host, two processes cannot both bind the client port: that is
//! gavel's leadership lock. Across simulated hosts nothing enforces it, so
//! the simulation models it: every node is configured with the same virtual
//! client address (`192.0.2.1:5000`, which no host has), and a lock
//! shared by all hosts says who holds it. Binding the client port takes the
//! lock (or fails with `AddrInUse`) and binds a turmoil listener on the
//! host's own address; dialing the virtual address reaches the holder (or is
//! refused when nobody holds it). The lock is released when the listener is
//! dropped, which a crash does, since turmoil drops every task of a crashed
//! host; the driver checks after every step that no crashed host holds it
//! (it never has).
//!
//! Like the port on one host, the lock is reachable by every node whatever
//! the network does, so a partition never makes two leaders at once: a
//! leader cut off from its backups keeps the lock, drops the backups it
//! cannot reach after the ack timeout and serves the clients that can still
//! reach it; the backups cannot take over (the bind fails) and wait. While
//! the leader lives, partitions and held links cost availability, not
//! safety, and the sweep checks that. But when the leader crashes during a
//! partition, or just after one healed, the lock is free for whichever node
//! binds first, and a node that was removed and has not caught up could take
//! over with a stale log, losing acknowledged bids. The simulation found
//! two such cases; the membership record fixed both:
//!
//! - `partition_lets_a_removed_backup_take_over` (fixed, now a regular
//!   test): a backup cut off from both others could not learn that it was
//!   removed, and took over when the leader crashed. The leader now stores
//!   the record without it before it commits anything without it, and only
//!   a listed node leads, so the cut-off backup stands aside.
//!   `partitions_beyond_the_model` is the random sweep that found it (with
//!   disks, seeds 450, 476, 567, 821, 862, 930, 1014 and 1400 of 300..1500
//!   failed before the record; all of 300..1500 pass now; it runs seeds
//!   300..600 by default). Across hosts the record is the coordinator's
//!   (etcd, for Several hosts); here one shared simulated disk holds it.
//!   `a_removed_backup_that_wakes_up_after_the_rest_crashed_never_leads`
//!   is the one-host form (a frozen backup, the rest crashed, then thawed):
//!   30 of 30 seeds lost bids before the record, none now.
//! - `rejoining_backup_takes_over_after_a_partition` (fixed, now a regular
//!   test): a backup removed during a partition rejoined after the heal; its
//!   join entry made the others count it as a member again before it had
//!   caught up, and when the leader crashed it passed the staleness check
//!   and took over with a stale log. A frozen backup does the same on one
//!   host. Fixed in the replication core: a joiner becomes a member only once
//!   it has acked its catch-up; and a node gives every candidate a fresh
//!   chance at each new succession.
//!
//! # The faults, and the failure model
//!
//! During the bidding, every 150-700 ms the driver may inject one of: crash
//! a node (the leader half the time) and restart it 0.1-1.5 s later; crash
//! every node at once and restart them one by one, in a random order, within
//! 0.1-1.5 s (a full-cluster crash: at most one per run, drawn one time in
//! five while nothing else touches a server, so most runs have one);
//! partition a node from one or both other nodes (messages dropped; a TCP
//! connection that lost a segment never recovers, as after a timeout) and
//! repair it; hold the messages between a node and one or both others and
//! release them later (a stalled link, or a frozen process as its peers see
//! it); partition a client host from the leader. A crash cuts the crashed
//! host's links for the instant of the crash, so what its closing sockets
//! send is lost and the peers learn of it by their timeouts, or by a reset
//! when they next send to it (see `Driver::crash` for why). After the bidding
//! every fault is healed, the cluster must settle within 15 s (one leader,
//! every node a member at the same log position), and one final read, once
//! every client's last operation has completed, gives the state for the
//! durability and exactly-once checks.
//!
//! gavel's failure model is "every node but one may fail", counted over the
//! current membership, on one host. The driver keeps within it, simply and
//! conservatively:
//!
//! - at most two faults touching servers at once, and at most one fault on
//!   any link;
//! - a fault is injected only if, with it, some node is left that is a
//!   *healthy member*: none of the active faults may cost it its membership
//!   (a crash costs the crashed node's; a partition or held link, the side
//!   without the leader, or both sides when the leader is on neither), no
//!   fault has touched it for 1.5 s (more than the ack timeout plus a probe
//!   interval, so it cannot have been dropped without the driver knowing),
//!   and the observer has seen it since as leader or backup in the current
//!   leader's membership, at the leader's epoch;
//! - the leader does not crash while a partition or held link separates two
//!   servers, nor within 1.5 s after one healed (the findings above, now
//!   fixed; `partitions_beyond_the_model` lifts this rule).
//!
//! A full-cluster crash goes beyond "every node but one": nobody stays up to
//! carry the auction over, only the disks do. With disks that sync every
//! entry before it counts, that is within gavel's model too (a node restarted
//! from its disk leads only once every member it knows answered), so the
//! driver injects it, alone: no other fault may touch a server then. With
//! disks that never sync (`GAVEL_SIM_FSYNC=never`) it loses acknowledged
//! bids, and the checks must say so: `full_crashes_without_fsync_lose_bids`
//! is that negative control.
//!
//! With disks, a written scenario finds a loss of acknowledged bids within
//! the model, though not within the driver's stricter rules:
//! `an_unseen_takeover_outranks_the_next_leader` (ignored, open).
//!
//! # Determinism
//!
//! A seed fixes turmoil's random numbers (message latencies), the driver's
//! faults, the clients' bids and the nodes' random numbers (epoch nonces,
//! through `NetworkBackend::random`); the simulated clock starts at a fixed
//! epoch. `same_seed_same_history` runs a seed twice in one process and
//! compares; `GAVEL_SIM_DIGESTS=FILE` writes one fingerprint per seed, to
//! compare runs across processes. Sources of nondeterminism in the code
//! under test, and what the simulation does about them:
//!
//! - tokio drops a crashed runtime's tasks in an order set by their task
//!   ids, which are global to the process; the FIN and RST the closing
//!   sockets send would come in a different order in each run, shifting
//!   every later random latency. Worked around: a crash cuts the host's
//!   links first (see above).
//! - The client's deadline, the takeover timeout and the client id used to
//!   read the real clock and `rand::random`; they now come from the
//!   `NetworkBackend` (`now()` and `random()`), so they follow the seed and
//!   simulated time. The simulation runs with the real takeover timeout
//!   (1 s).
//! - The node's `select!`s are `biased`, so no branch order is random.
//! - The storage writer syncs on a thread of its own, which runs on the real
//!   clock, outside the simulation. The simulated nodes use
//!   `WriterMode::Inline` instead: the node's own task writes, and a task on
//!   the host's runtime syncs after a simulated latency. A crash drops that
//!   task with the rest of the host, before the driver crashes the disk, so
//!   the disk sees what a real crash leaves. The disk crashes draw from the
//!   driver's random numbers.
//! - `NodeStatus::pid` is `std::process::id()`: the status replies to the
//!   observer differ in length between processes. Latent: message lengths do
//!   not change turmoil's timing.
//!
//! # Running
//!
//! `cargo test --test simulation` runs `GAVEL_SIM_SEEDS` seeds (default
//! [`DEFAULT_SEEDS`]) from `GAVEL_SIM_FIRST_SEED` (default 0), on every
//! core. A failing seed panics with its report and a replay command,
//! `GAVEL_SIM_SEED=<seed> cargo test --test simulation replay -- --nocapture`;
//! `GAVEL_SIM_LOG=gavel=debug,turmoil=info` adds the nodes' logs stamped
//! with simulated time, `GAVEL_SIM_HISTORY=FILE` writes the history as JSON
//! lines. `GAVEL_SIM_TICK_MS` (default 2) and `GAVEL_SIM_BIDDING_MS`
//! (default 3000) change the shape of every run, and so what a seed means;
//! `GAVEL_SIM_FSYNC=never` runs the disks without syncs (the negative
//! control's setting).

#[path = "simulation/driver.rs"]
mod driver;
#[path = "simulation/network.rs"]
mod network;
#[path = "simulation/run.rs"]
mod run;

use std::time::{Duration, Instant};

use driver::Fault;
use gavel::storage::FsyncPolicy;
use run::{Scenario, ScriptedFault, SeedRun, run_seed};

/// Seeds run by default: enough to exercise every fault many times, few
/// enough for the CI's time (see `simulation_seeds`).
const DEFAULT_SEEDS: u64 = 300;

/// Logs of the nodes, filtered by `GAVEL_SIM_LOG` (e.g. `gavel=debug`), for
/// a replay; off by default.
fn init_logs() {
    if let Ok(filter) = std::env::var("GAVEL_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimulatedTime)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    }
}

/// Stamps log lines with the simulated time.
struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, writer: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match turmoil::sim_elapsed() {
            Some(elapsed) => write!(writer, "{:>9.3}s", elapsed.as_secs_f64()),
            None => write!(writer, "{:>10}", "-"),
        }
    }
}

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
    init_logs();
    let count = env_u64("GAVEL_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let first = env_u64("GAVEL_SIM_FIRST_SEED").unwrap_or(0);
    let started = Instant::now();
    let runs = run_many((first..first + count).collect(), &Scenario::default());
    let failed: Vec<&SeedRun> = runs.iter().filter(|run| !run.passed()).collect();
    let operations: usize = runs.iter().map(|run| run.history.operations.len()).sum();
    let leaderships: u64 = runs.iter().map(|run| run.leaderships).sum();
    let mut faults = std::collections::BTreeMap::<String, usize>::new();
    for run in &runs {
        for kind in &run.faults {
            *faults.entry(kind.clone()).or_default() += 1;
        }
    }
    let faults: Vec<String> = faults.iter().map(|(kind, count)| format!("{count} {kind}")).collect();
    eprintln!(
        "{count} seeds from {first}: {} failed; {operations} operations, {leaderships} leaderships; faults: {}; in {:?}",
        failed.len(),
        faults.join(", "),
        started.elapsed()
    );
    if let Ok(path) = std::env::var("GAVEL_SIM_DIGESTS") {
        // One line per seed, to compare two runs of the same seeds.
        let lines: Vec<String> = runs.iter().map(|run| format!("{} {:016x}", run.seed, run.digest())).collect();
        std::fs::write(&path, lines.join("\n") + "\n").expect("writing the digests");
    }
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
    init_logs();
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
    init_logs();
    // A seed whose run crashes every node mid-bidding, disks and all.
    let seed = 0;
    let scenario = Scenario::default();
    let first = run_seed(seed, &scenario);
    let second = run_seed(seed, &scenario);
    assert!(!first.history.operations.is_empty(), "the clients did something");
    assert!(
        first.faults.iter().any(|kind| kind == "crash all"),
        "seed {seed} no longer crashes every node; pick one that does: {:?}",
        first.events
    );
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
    assert_eq!(first.events, second.events, "the driver did the same");
    assert_eq!(first.final_state, second.final_state);
}

/// Negative control: the default sweep with disks that never sync. Every
/// crash loses what the node wrote since its log was last synced (a segment
/// is synced when it is created), and a full-cluster crash loses it on every
/// node at once: the nodes come back with a stale log or none, and the bids
/// acknowledged since are gone. The checks must find it, or they could not
/// find it with syncing disks either.
///
/// It passes when they do. Of seeds 0..300, 184 have a full-cluster crash;
/// the checks find lost acknowledged bids in 134 (0, 1, 3, 6, 8, 10, 12,
/// ...; 4 of them without a full-cluster crash), and 169 fail some check.
/// With syncing disks the same 300 seeds pass.
#[test]
#[ignore = "negative control, slow: with disks that never sync, full-cluster crashes lose acknowledged bids and the checks must say so"]
fn full_crashes_without_fsync_lose_bids() {
    let count = env_u64("GAVEL_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let first = env_u64("GAVEL_SIM_FIRST_SEED").unwrap_or(0);
    let scenario = Scenario { fsync: FsyncPolicy::Never, ..Scenario::default() };
    let runs = run_many((first..first + count).collect(), &scenario);
    let lost: Vec<&SeedRun> =
        runs.iter().filter(|run| run.violations.iter().any(|violation| violation.starts_with("not durable"))).collect();
    let full_crashed = |run: &&SeedRun| run.faults.iter().any(|kind| kind == "crash all");
    let with_full_crash = runs.iter().filter(full_crashed).count();
    let seeds: Vec<String> = lost.iter().map(|run| run.seed.to_string()).collect();
    eprintln!(
        "{count} seeds from {first}, {with_full_crash} with a full-cluster crash, disks never synced: {} lost \
         acknowledged bids ({} of them without a full-cluster crash): {}",
        lost.len(),
        lost.iter().filter(|run| !full_crashed(run)).count(),
        seeds.join(", ")
    );
    // What else the checks found: the seeds with each kind of violation.
    let mut found = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for run in &runs {
        let kinds: std::collections::BTreeSet<String> = run
            .violations
            .iter()
            .filter(|violation| !violation.is_empty() && !violation.starts_with(char::is_whitespace))
            .map(|violation| match violation.split_once(" was refused: ") {
                Some((_, reason)) => format!("refused: {reason}"),
                None => violation.split(':').next().unwrap_or_default().to_string(),
            })
            .collect();
        for kind in kinds {
            found.entry(kind).or_default().push(run.seed);
        }
    }
    eprintln!("{} seeds failed:", runs.iter().filter(|run| !run.passed()).count());
    for (kind, seeds) in &found {
        eprintln!("  {} with {kind}: {seeds:?}", seeds.len());
    }
    let Some(example) = lost.first() else {
        panic!("no seed lost an acknowledged bid: the checks cannot see a lost write");
    };
    eprintln!("{}", example.report());
}

/// Finding (fixed): a partition let a removed backup take over and lose
/// acknowledged bids.
///
/// The scenario: n2, a backup, is cut off from n0 (the leader) and n1. After
/// the ack timeout n0 removes n2, and bids go on, acknowledged by n0 and n1
/// alone. Then n0 crashes while n2 is still cut off. n2 never learned of its
/// removal; its probes reach no peer, so nothing tells it that it is stale,
/// and it counts itself the first live member of its leaderQueue. The client
/// port is free, so n2 binds it, before n1 notices the silence, and leads
/// with a log that lacks every bid since the partition; n1 then rejoins n2
/// and gets n2's snapshot. The random sweep found the same (seeds 70, 72,
/// 190, 199 and 256 of 0..300 before the nodes had disks, 450 since) when
/// the driver may crash the leader during a partition (`GAVEL_SIM_CUT_OFF=1`,
/// see `partitions_beyond_the_model`).
///
/// Fixed by the membership record: n0 stores the record without n2 before
/// it commits anything without it, and n2, finding itself unlisted, stands
/// aside; n1, listed, takes over with every acknowledged bid. (The one-host
/// form of it, a frozen backup, is
/// `a_removed_backup_that_wakes_up_after_the_rest_crashed_never_leads`.)
#[test]
fn partition_lets_a_removed_backup_take_over() {
    init_logs();
    let scenario = Scenario {
        faults: false,
        script: vec![
            ScriptedFault {
                at: Duration::from_millis(1500),
                fault: Fault::Partition(vec![2], vec![0, 1]),
                lasting: Duration::from_millis(1500),
            },
            ScriptedFault {
                at: Duration::from_millis(2000),
                fault: Fault::Crash(0),
                lasting: Duration::from_millis(500),
            },
        ],
        ..Scenario::default()
    };
    let run = run_seed(1, &scenario);
    println!("{}", run.summary());
    assert!(run.passed(), "{}", run.report());
}

/// The sweep with the leader allowed to crash while servers are cut off
/// from each other, or just after: it fails, with the two findings above
/// (before the nodes had disks, seeds 70, 72, 190, 199 and 256 of 0..300
/// were the first; 3601 was the second). With disks, none of 0..300 fails,
/// and 8 of 300..1500 do (450, 476, 567, 821, 862, 930, 1014, 1400; 450 is
/// the first finding).
#[test]
fn partitions_beyond_the_model() {
    // From seed 300: the range where, with disks, the first findings were.
    let count = env_u64("GAVEL_SIM_SEEDS").unwrap_or(300);
    let first = env_u64("GAVEL_SIM_FIRST_SEED").unwrap_or(300);
    let scenario = Scenario { leader_crash_while_cut_off: true, ..Scenario::default() };
    let runs = run_many((first..first + count).collect(), &scenario);
    let failed: Vec<&SeedRun> = runs.iter().filter(|run| !run.passed()).collect();
    if let Some(first_failure) = failed.first() {
        let seeds: Vec<String> = failed.iter().map(|run| run.seed.to_string()).collect();
        panic!("{} of {count} seeds failed: {}\n\n{}", failed.len(), seeds.join(", "), first_failure.report());
    }
}

/// The fault pattern of a frozen backup, within the one-host model: n1 is
/// cut off (its links held, as its peers see a frozen process) past the ack
/// timeout, so the leader removes it; the leader and the other backup
/// crash; n1's links are released while they are down, so it finds the
/// client port free and nobody to ask. Before the membership record it took
/// the port with the bids it had when it was cut off. Now the record, stored
/// before the leader committed without it, does not list it: it stands
/// aside, and the crashed members come back from their disks and lead with
/// every acknowledged bid. Seeds 0..`GAVEL_SIM_SEEDS` (default 30).
#[test]
fn a_removed_backup_that_wakes_up_after_the_rest_crashed_never_leads() {
    init_logs();
    let count = env_u64("GAVEL_SIM_SEEDS").unwrap_or(30);
    let scenario = Scenario {
        faults: false,
        bidding_for: Duration::from_millis(4000),
        script: vec![
            ScriptedFault {
                at: Duration::from_millis(1500),
                fault: Fault::Hold(vec![1], vec![0, 2]),
                lasting: Duration::from_millis(1500),
            },
            ScriptedFault {
                at: Duration::from_millis(2400),
                fault: Fault::Crash(0),
                lasting: Duration::from_millis(1200),
            },
            ScriptedFault {
                at: Duration::from_millis(2400),
                fault: Fault::Crash(2),
                lasting: Duration::from_millis(1200),
            },
        ],
        ..Scenario::default()
    };
    let runs = run_many((0..count).collect(), &scenario);
    let failed: Vec<&SeedRun> = runs.iter().filter(|run| !run.passed()).collect();
    if let Some(first_failure) = failed.first() {
        let seeds: Vec<String> = failed.iter().map(|run| run.seed.to_string()).collect();
        panic!("{} of {count} seeds failed: {}\n\n{}", failed.len(), seeds.join(", "), first_failure.report());
    }
}

/// Finding: a backup removed during a partition rejoins after the heal, the
/// leader crashes before the backup has caught up, and the backup takes
/// over with a stale log, losing acknowledged bids.
///
/// The scenario (seed 3601 of the sweep with `GAVEL_SIM_CUT_OFF=1`): n2 is
/// cut off from n0, the leader, but not from n1. n0 removes n2 and goes on
/// acknowledging bids with n1. n2, having lost its leader, waits for n1 to
/// take over, and since n1 does not (n0 is alive), passes it over. The
/// partition heals; n2 joins n0 again, which appends n2's join (so n1 counts
/// n2 as a member again) and sends n2 the entries it missed. n0 crashes
/// before n2 has them. n2's staleness check asks whether a more advanced
/// peer no longer counts it as a member; n1 does count it, so n2 believes it
/// is fit to lead, and n1, passed over earlier, is skipped: n2 takes the
/// client port with a log that lacks the bids acknowledged while it was away,
/// and n1 rejoins it and gets its snapshot.
///
/// No partition is needed on one host: a backup frozen long enough to be
/// removed, then thawed, does the same. What makes it possible: the staleness
/// rule looks at the current membership only (a rejoined member that has not
/// caught up passes it), and a passed-over successor stays passed over after
/// the leader changed (`waiting_for` is only cleared by a successful join),
/// so safety depends on the takeover timeout being longer than the rightful
/// successor needs to notice the leader's loss. Here the takeover timeout is
/// zero (see `run.rs`), which makes it likely; with one second it is a race.
#[test]
fn rejoining_backup_takes_over_after_a_partition() {
    init_logs();
    let crash_offsets: Vec<u64> = match env_u64("GAVEL_SIM_CRASH_AFTER_HEAL_MS") {
        Some(offset) => vec![offset],
        None => vec![80, 85, 90, 95],
    };
    let mut failures = Vec::new();
    for crash_after_heal in crash_offsets {
        let scenario = Scenario {
            faults: false,
            script: vec![
                ScriptedFault {
                    at: Duration::from_millis(1500),
                    fault: Fault::Partition(vec![2], vec![0]),
                    lasting: Duration::from_millis(600),
                },
                ScriptedFault {
                    at: Duration::from_millis(2100 + crash_after_heal),
                    fault: Fault::Crash(0),
                    lasting: Duration::from_millis(500),
                },
            ],
            ..Scenario::default()
        };
        // Seed 4 puts the rejoin in the window: joined, not yet caught up.
        let run = run_seed(4, &scenario);
        println!("crash {crash_after_heal} ms after the heal: {}", run.summary());
        if !run.passed() {
            failures.push(run.report());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Finding, with disks that sync: a takeover no other node saw outranks the
/// leader after it; its node, restarted from its disk, cannot rejoin, and
/// later takes over with a stale log, losing acknowledged bids.
///
/// The scenario (seed 0): n0, the leader, crashes at 1.5 s and restarts from
/// its disk at 1.8 s. n1 takes over with epoch number 2 and crashes 6 ms
/// later, before n2 has joined it: its takeover entry (index 31) is on its
/// own disk and nowhere else. n2 takes over in turn, with epoch number 2 as
/// well (it could not see n1's), and a nonce that happens to be lower than
/// n1's; n0 joins it, and the bidding goes on. n1 restarts from its disk at
/// 2.35 s, its log ending with its own takeover, a position above every
/// entry of n2's leadership since positions compare the epoch first. It
/// refuses n2's stream ("entry from epoch ... but epoch ... was already
/// seen"), every time it joins: alone, that is a cluster that never settles
/// (the same crashes without the third one). n2 crashes at 3 s. n1 is no
/// member in n0's eyes, but n0's log, though 70 entries longer, is not more
/// advanced than n1's, so nothing shows n1 stale: n1, first in its own
/// leaderQueue, takes the client port with its log at index 31, and n0
/// rejoins it and is given its snapshot. 60 bids were acknowledged; 26 are
/// left.
///
/// Each crash leaves a live member that holds every committed entry, so it
/// is within "every node but one may fail". The random sweep does not find
/// it: its driver crashes a node only while another, untouched for 1.5 s,
/// has been seen following the leader, and n2 never followed n1 (nor had n0
/// been up for long). Before disks, n1 came back empty
/// and could not lead. What made it possible: two takeovers could draw the
/// same epoch number (no quorum hands them out), and an entry that only its
/// writer ever held outranked committed ones from then on.
///
/// Fixed: a successor's epoch number is raised by one for each member ahead
/// of it in the leaderQueue (`replication::successor_epoch_floor`), so two
/// candidates of one succession never share one, and the later, which leads
/// only when those ahead did not, ranks higher (the replication core's test
/// `a_takeover_only_its_crashed_node_saw_ranks_below_the_next_leadership`
/// shows the rule). Kept as a regular run of the script; the timing of
/// later changes moved its crashes, so it no longer reaches the tie by
/// itself (it passes with the fix undone too): the core's test is the one
/// that fails without the rule.
#[test]
fn an_unseen_takeover_outranks_the_next_leader() {
    init_logs();
    let crash = |at: u64, node: usize, lasting: u64| ScriptedFault {
        at: Duration::from_millis(at),
        fault: Fault::Crash(node),
        lasting: Duration::from_millis(lasting),
    };
    let scenario = Scenario {
        faults: false,
        script: vec![crash(1500, 0, 300), crash(1852, 1, 500), crash(3000, 2, 500)],
        ..Scenario::default()
    };
    let run = run_seed(0, &scenario);
    println!("{}", run.summary());
    assert!(run.passed(), "{}", run.report());
}
