//! `gavel bench`: a closed-loop load generator and its report.
//!
//! It starts a local cluster of the same binary (or targets a running one),
//! runs `--clients` concurrent bidders, each one request at a time, and
//! reports acknowledged bids per second, the latency distribution, errors by
//! kind and every node's peak RSS. Three more modes share the same workload:
//!
//! - `--failover N` kills the leader N times under load and measures, per
//!   trial, the time from the SIGKILL to the first bid acknowledged by the new
//!   leader, and the longest pause any one client saw.
//! - `--bids N` stops after N bids instead of after a duration, spread over
//!   `--sessions` client sessions, and samples the leader's RSS on the way:
//!   memory must not grow per request.
//! - `--system etcd` (cargo feature `etcd`) runs the same workload against a
//!   three-member etcd cluster on loopback, each bid a compare-and-put txn.
//! - `--system null` runs the same workload against a `gavel null-server`
//!   process: a node's services, runtime and transport with no node behind
//!   them, answering every bid SUCCESS. It is the ceiling the host, the
//!   transport and the load generator allow; gavel's figures read as a share
//!   of it, measured in the same session.
//!
//! - `--data-dir DIR` gives the nodes data directories (`--fsync always` or
//!   `never`): the report adds the entries one sync of the leader's log
//!   carried and the disk's own fsync latency, measured in the same run;
//!   `--recovery-after N` kills every node once N bids were answered and
//!   times the recovery from disk.
//!
//! Layout: [`load`] is the workload (bidders and the closed loop), [`report`]
//! the figures and how they print, `stats` what each bidder counted (both
//! read and neither imports the other), [`memory`] reads `/proc`, [`failover`] the
//! kill-and-restart trials, `etcd` the etcd cluster and its bidder, [`null`]
//! the null server process, [`disk`] the disk's fsync latency.

mod disk;
#[cfg(feature = "etcd")]
mod etcd;
mod failover;
mod hostile;
mod load;
mod memory;
mod null;
mod readers;
pub mod report;
mod stats;

pub use memory::ProcStat;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::replication::Role;
use crate::tools::cluster::{ClusterSpec, LocalCluster};
use crate::transport::{AuctionConnection, Network, TransportSettings};

use load::{ClientBidder, ConnectionBidder, Load};
use null::NullServer;
use readers::{Readers, WatchScope};
use report::{MemoryCheckpoint, MemoryReport, NodeMemory, Report};
use stats::WorkerStats;

/// `gavel bench` flags.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Servers in the local cluster the bench starts; 1 is the unreplicated baseline.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The first node's port; the others follow.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// The local cluster's client port.
    #[arg(long, default_value_t = 7000)]
    pub client_port: u16,
    /// Bid against a running cluster's client port instead of starting one.
    #[arg(long, conflicts_with = "failover")]
    pub target: Option<String>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Client sessions (client ids) the clients take turns with; default one per client.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts, not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Kill the leader this many times under load, restarting it as a backup each time.
    #[arg(long, default_value_t = 0)]
    pub failover: usize,
    /// Stop after this many bids (no warmup) and sample the leader's RSS on the way.
    #[arg(long, conflicts_with = "failover")]
    pub bids: Option<u64>,
    /// With --failover: stop the leader with SIGTERM (a graceful handover)
    /// instead of SIGKILL.
    #[arg(long, requires = "failover")]
    pub graceful: bool,
    /// Auctions the bids are spread over: this many are created before the
    /// run (session `s` bids on auction `s % N`; give --sessions at least as
    /// many); 1 bids on the default auction only.
    #[arg(long, default_value_t = 1)]
    pub auctions: usize,
    /// Watchers beside the load (of what --watch-scope says); each accepted
    /// bid's delivery to each of them is timed, and the bids each saw are
    /// checked against the auctions' histories at the end.
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// What each watcher watches.
    #[arg(long, value_enum, default_value_t = WatchScope::Default)]
    pub watch_scope: WatchScope,
    /// Watchers (and never-reading streams) on every node of the local
    /// cluster, spread evenly, instead of on the client port.
    #[arg(long)]
    pub watch_every_node: bool,
    /// Watch streams of every auction after revision 1 that never read,
    /// beside the load.
    #[arg(long, default_value_t = 0)]
    pub silent_watchers: usize,
    /// With --auctions: the bytes of each created auction's description.
    #[arg(long, default_value_t = 0)]
    pub description_bytes: usize,
    /// Holds the bids to about this many per second in all (0: as fast as
    /// the clients go).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Hostile peers beside the load that say Hello, read, never ack, and
    /// reconnect at once when dropped.
    #[arg(long, default_value_t = 0)]
    pub hostile: usize,
    /// Hostile peers that ack the leader's position but never read.
    #[arg(long, default_value_t = 0)]
    pub greedy_peers: usize,
    /// Once this many bids were answered, kill the last node (a backup),
    /// restart it empty and time its rejoin under the ongoing load. With
    /// --sessions as large, every bid brings a new bidder and a new session.
    #[arg(long, conflicts_with_all = ["failover", "bids"])]
    pub rejoin_after: Option<u64>,
    /// The system under test.
    #[arg(long, value_enum, default_value_t = System::Gavel)]
    pub system: System,
    /// How the bench talks to gavel: the bare connection, or the client library.
    #[arg(long, value_enum, default_value_t = Driver::Connection)]
    pub driver: Driver,
    /// Threads of the load generator: 1 is a single-threaded event loop; 0 is one per core.
    #[arg(long, default_value_t = 1, value_parser = crate::node::parse_worker_threads)]
    pub worker_threads: usize,
    /// Threads of each server the bench starts (`gavel server --worker-threads`).
    #[arg(long, default_value_t = 1, value_parser = crate::node::parse_worker_threads)]
    pub server_threads: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Keep the servers' logs here (default: discarded).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// etcd: the first member's client port; members use consecutive ports.
    #[arg(long, default_value_t = 23790)]
    pub etcd_client_port: u16,
    /// etcd: the first member's peer port.
    #[arg(long, default_value_t = 23800)]
    pub etcd_peer_port: u16,
    /// etcd: where the members' data directories go; tmpfs, so the disk is out of the comparison.
    #[arg(long, default_value = "/dev/shm")]
    pub etcd_data_root: PathBuf,
    /// gavel: give each node a data directory under this one (durable);
    /// the report then gives the disk's own fsync latency and the entries
    /// one fsync carried.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gavel with --data-dir: `always` or `never` (`gavel server --fsync`).
    #[arg(long, default_value = "always", value_parser = ["always", "never"], requires = "data_dir")]
    pub fsync: String,
    /// gavel with --data-dir: once this many bids were answered, stop the
    /// load, SIGKILL every node and time the cluster's recovery from disk
    /// (to a leader that answers reads with every bid).
    #[arg(long, requires = "data_dir", conflicts_with_all = ["failover", "bids", "rejoin_after"])]
    pub recovery_after: Option<u64>,
    /// gavel with --data-dir: `gavel server --snapshot-every`.
    #[arg(long, requires = "data_dir")]
    pub snapshot_every: Option<u64>,
    /// gavel: TLS and authentication on, with certificates of the cluster's
    /// own (the bench's clients trust its CA and show no certificate).
    #[arg(long, conflicts_with = "target")]
    pub secure: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Gavel,
    /// Needs the `etcd` cargo feature and Debian's `etcd-server`.
    Etcd,
    /// A server that answers every bid SUCCESS with no work: the host's ceiling.
    Null,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `transport::AuctionConnection` with the bench's own retry loop.
    Connection,
    /// `client::Client`, the library users get.
    Client,
}

/// How long a request keeps retrying before the bench counts it as given up,
/// as `client::Client` does by default.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long one attempt may take.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bids the `--bids` mode samples the leader's RSS after (and at the end).
const CHECKPOINT_FRACTIONS: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 1.0];

/// Runs the bench; the exit code says whether every measured bid was answered.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    validate(&args)?;
    let host_busy_before = memory::host_busy(Duration::from_secs(1)).await;
    let mut report = match args.system {
        System::Gavel => run_gavel(&args).await?,
        System::Etcd => run_etcd(&args).await?,
        System::Null => run_null(&args).await?,
    };
    report.host_busy_before = host_busy_before;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.answered > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.failover > 0 && args.nodes < 2 {
        bail!("--failover needs --nodes 2 or more: someone must take over");
    }
    if args.sessions.is_some_and(|sessions| sessions < args.clients) {
        bail!("--sessions must be at least --clients");
    }
    if args.driver == Driver::Client && args.sessions.is_some_and(|sessions| sessions != args.clients) {
        bail!("--driver client keeps one session per client: use --driver connection with --sessions");
    }
    if args.rejoin_after.is_some() && (args.nodes < 2 || args.target.is_some()) {
        bail!("--rejoin-after needs a local cluster of 2 nodes or more");
    }
    let hostile = args.hostile > 0 || args.greedy_peers > 0;
    if args.system != System::Gavel
        && (args.failover > 0 || args.bids.is_some() || args.target.is_some() || hostile || args.rejoin_after.is_some())
    {
        bail!(
            "--system {} supports the throughput runs only (no --failover, --bids, --target, --hostile, \
             --greedy-peers or --rejoin-after)",
            system_name(args.system)
        );
    }
    Ok(())
}

#[cfg(feature = "etcd")]
async fn run_etcd(args: &BenchArgs) -> anyhow::Result<Report> {
    etcd::run(args).await
}

#[cfg(not(feature = "etcd"))]
async fn run_etcd(_args: &BenchArgs) -> anyhow::Result<Report> {
    bail!("this gavel was built without the `etcd` feature: cargo build --release --features etcd")
}

/// A cluster the bench started, the address of one it was pointed at, or
/// the null server.
enum Subject {
    Local(Box<LocalCluster>),
    Remote(String),
    Null(NullServer),
}

impl Subject {
    fn client_address(&self) -> String {
        match self {
            Subject::Local(cluster) => cluster.client_address(),
            Subject::Remote(address) => address.clone(),
            Subject::Null(server) => server.address(),
        }
    }

    /// The server processes the bench started, as they run now.
    fn pids(&self) -> Vec<u32> {
        match self {
            Subject::Local(cluster) => (0..cluster.len()).filter_map(|i| cluster.pid(i)).collect(),
            Subject::Remote(_) => Vec::new(),
            Subject::Null(server) => vec![server.pid()],
        }
    }

    /// How the bench reaches it: over TLS to a secure local cluster.
    fn network(&self) -> Network {
        match self {
            Subject::Local(cluster) => cluster.network().clone(),
            Subject::Remote(_) | Subject::Null(_) => Network::tcp(),
        }
    }

    /// The leader's address and, when it runs here, its pid.
    async fn leader(&self) -> (String, Option<u32>) {
        match self {
            Subject::Local(cluster) => match cluster.leader().await {
                Some(i) => (cluster.node_address(i), cluster.pid(i)),
                None => ("unknown".into(), None),
            },
            Subject::Remote(address) => {
                let pid = crate::client::node_status(&Network::tcp(), address, ATTEMPT_TIMEOUT)
                    .await
                    .ok()
                    .map(|status| status.pid);
                (address.clone(), pid)
            }
            Subject::Null(server) => (server.address(), Some(server.pid())),
        }
    }
}

async fn run_gavel(args: &BenchArgs) -> anyhow::Result<Report> {
    let data_dir = args.data_dir.as_ref().map(|dir| dir.join(format!("gavel-bench-{}", std::process::id())));
    let subject = match &args.target {
        Some(target) => Subject::Remote(target.clone()),
        None => {
            let binary = std::env::current_exe().context("finding the gavel binary")?;
            let mut spec = ClusterSpec::new(binary, args.nodes, args.base_port, args.client_port);
            // The auction must outlast the run, whatever its length.
            spec.server_args =
                vec!["--duration".into(), "30days".into(), "--worker-threads".into(), args.server_threads.to_string()];
            spec.log_dir = args.log_dir.clone();
            spec.secure = args.secure;
            if let Some(dir) = &data_dir {
                spec.data_dir = Some(dir.clone());
                spec.server_args.extend(["--fsync".into(), args.fsync.clone()]);
                if let Some(every) = args.snapshot_every {
                    spec.server_args.extend(["--snapshot-every".into(), every.to_string()]);
                }
            }
            progress(args, format_args!("starting {} nodes on ports {}..", args.nodes, args.base_port));
            let cluster = LocalCluster::start(spec).await?;
            cluster.wait_for_leader(Duration::from_secs(15)).await?;
            Subject::Local(Box::new(cluster))
        }
    };
    let report = measure(args, subject).await;
    // The nodes are stopped by now: their data goes too.
    if let Some(dir) = data_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    report
}

async fn run_null(args: &BenchArgs) -> anyhow::Result<Report> {
    progress(args, format_args!("starting the null server on port {}", args.client_port));
    let server = NullServer::start(args).await?;
    measure(args, Subject::Null(server)).await
}

/// Runs the workload against `subject`, then stops it.
async fn measure(args: &BenchArgs, mut subject: Subject) -> anyhow::Result<Report> {
    let address = subject.client_address();
    let network = subject.network();
    let first_amount = current_highest(&network, &address).await? + 1;

    let sessions = args.sessions.unwrap_or(args.clients);
    let nonce = rand::random::<u32>();
    let auctions =
        if args.auctions > 1 { create_auctions(&network, &address, args.auctions, args).await? } else { Vec::new() };
    let measure_from = if args.bids.is_some() { Duration::ZERO } else { args.warmup };
    let foreign_cpu = memory::ForeignCpu::start(&subject.pids());
    let mut load = Load::new(first_amount, measure_from, args.bids);
    if args.rate > 0 {
        load.pace = Some(Duration::from_secs_f64(args.clients as f64 / args.rate as f64));
    }
    if args.watchers > 0 {
        load.invoked_at = Some(Default::default());
    }
    let load = Arc::new(load);
    let deliveries = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram bounds"),
    ));
    let watch_servers = match (&subject, args.watch_every_node) {
        (Subject::Local(cluster), true) => (0..cluster.len()).map(|node| cluster.node_address(node)).collect(),
        _ => vec![address.clone()],
    };
    let mut readers =
        Readers::start(&network, &watch_servers, args, &auctions, Arc::clone(&load), Arc::clone(&deliveries))?;
    let mut workers = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        // Client `c` takes sessions c, c + clients, c + 2 * clients, ...
        let session_ids: Vec<usize> = (client..sessions).step_by(args.clients).collect();
        let load = Arc::clone(&load);
        let phase = load.phase_of(client, args.clients);
        let worker = match args.driver {
            Driver::Connection => {
                let bidder = ConnectionBidder::new(&network, &address, nonce, &session_ids, &auctions)?;
                tokio::spawn(load::drive(bidder, load, phase))
            }
            Driver::Client => {
                let bidder = ClientBidder::new(&network, &address, nonce, client)?;
                tokio::spawn(load::drive(bidder, load, phase))
            }
        };
        workers.push(worker);
    }
    let ticker = tokio::spawn(load::progress_lines(Arc::clone(&load), !args.quiet));
    let hostile_stop = CancellationToken::new();
    let hostile_counts = Arc::new(hostile::HostileCounts::default());
    let kinds = std::iter::repeat_n(hostile::HostileKind::Silent, args.hostile)
        .chain(std::iter::repeat_n(hostile::HostileKind::Greedy, args.greedy_peers));
    let hostiles: Vec<_> = kinds
        .enumerate()
        .map(|(i, kind)| {
            // Invented names, on ports no node of the bench uses.
            let name_port = 61000 + i as u16;
            hostile::spawn(address.clone(), kind, name_port, Arc::clone(&hostile_counts), hostile_stop.clone())
        })
        .collect();
    let (leader_address, leader_pid) = subject.leader().await;
    let syncs_at_start = disk_counts(&leader_address).await;
    let leader_rss_at_start = leader_pid.and_then(memory::ProcessMemory::of_pid);
    // Beside hostile peers, the leader's RSS every 10 s: it must stay flat.
    let rss_samples = (!hostiles.is_empty()).then(|| {
        let stop = hostile_stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let started = Instant::now();
            while !stop.is_cancelled() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
                if let Some(memory) = leader_pid.and_then(memory::ProcessMemory::of_pid) {
                    samples.push(format!(
                        "{:.0} s {:.1} MiB",
                        started.elapsed().as_secs_f64(),
                        memory.rss_kib as f64 / 1024.0
                    ));
                }
            }
            samples
        })
    });

    let mut failover_report = None;
    let mut memory_report = None;
    let mut rejoin_note = None;
    if args.failover > 0 {
        let Subject::Local(cluster) = &mut subject else { bail!("--failover needs a local cluster") };
        tokio::time::sleep(args.warmup).await;
        let signal = if args.graceful { failover::Stop::Graceful } else { failover::Stop::Kill };
        failover_report = Some(failover::trials(cluster, &load, args.failover, signal, !args.quiet).await);
        load.stop_now();
    } else if let Some(preload) = args.recovery_after {
        let Subject::Local(cluster) = &mut subject else { bail!("--recovery-after needs a local cluster") };
        rejoin_note = Some(failover::recovery_trial(cluster, &load, preload, !args.quiet).await?);
    } else if let Some(preload) = args.rejoin_after {
        let Subject::Local(cluster) = &mut subject else { bail!("--rejoin-after needs a local cluster") };
        rejoin_note = Some(failover::rejoin_trial(cluster, &load, preload, !args.quiet).await?);
        load.stop_now();
    } else if let Some(bids) = args.bids {
        memory_report = Some(sample_memory(&subject, &load, bids, sessions).await);
    } else {
        load.stop_at(args.warmup + args.duration);
        tokio::time::sleep(args.warmup + args.duration).await;
        load.stop_now();
    }
    let leader_rss_at_end = leader_pid.and_then(memory::ProcessMemory::of_pid);
    let syncs_at_end = disk_counts(&leader_address).await;
    // No bid is on its way once the workers are done: every timed watcher
    // sees the last one of its scope, then what each saw is checked.
    let stats = join_workers(workers).await?;
    let delivered = if args.watchers > 0 {
        match readers::histories(&network, &address, &auctions).await {
            Ok(histories) => {
                let caught_up = readers.caught_up(&histories, Duration::from_secs(30)).await;
                Some((caught_up, Ok(readers.check(&histories))))
            }
            Err(error) => Some((false, Err(error))),
        }
    } else {
        None
    };
    readers.stop();
    hostile_stop.cancel();
    for hostile in hostiles {
        let _ = hostile.await;
    }
    let rss_samples = match rss_samples {
        Some(sampler) => sampler.await.unwrap_or_default(),
        None => Vec::new(),
    };
    ticker.abort();
    // Read again: the failover trials restart nodes under new pids.
    let foreign_share = foreign_cpu.as_ref().and_then(|cpu| cpu.share(&subject.pids()));
    let cores = foreign_cpu.as_ref().map(|cpu| cpu.cores(&subject.pids()));

    let nodes = match &subject {
        Subject::Local(cluster) => local_memory(cluster).await,
        Subject::Remote(address) => remote_memory(address).await,
        Subject::Null(server) => vec![NodeMemory::read(server.address(), "null".into(), Some(server.pid()))],
    };
    let mut report = Report::new(&system_name(args.system), &stats, load.measured_window());
    report.driver = Some(format!("{:?}", args.driver).to_lowercase());
    (report.nodes, report.server_threads) = match &subject {
        Subject::Local(cluster) => (Some(cluster.len()), Some(args.server_threads)),
        Subject::Null(_) => (Some(1), Some(args.server_threads)),
        Subject::Remote(_) => (None, None),
    };
    report.load_generator_threads = args.worker_threads;
    report.target = address;
    report.clients = args.clients;
    report.sessions = sessions;
    report.warmup_s = measure_from.as_secs_f64();
    report.node_memory = nodes;
    report.host_cpu_foreign_share = foreign_share;
    report.failover = failover_report;
    report.memory = memory_report;
    if args.hostile > 0 || args.greedy_peers > 0 {
        let mib = |memory: Option<memory::ProcessMemory>| {
            memory.map_or("-".into(), |m| format!("{:.1} MiB", m.rss_kib as f64 / 1024.0))
        };
        report.notes.push(format!(
            "{} silent and {} greedy hostile peers opened {} streams; leader {leader_address} RSS {} at the start, {} at the end",
            args.hostile,
            args.greedy_peers,
            hostile_counts.streams.load(std::sync::atomic::Ordering::Relaxed),
            mib(leader_rss_at_start),
            mib(leader_rss_at_end),
        ));
        if !rss_samples.is_empty() {
            report.notes.push(format!("leader RSS every 10 s: {}", rss_samples.join(", ")));
        }
    }
    report.notes.extend(rejoin_note);
    if let Some(dir) = &args.data_dir {
        // After a recovery trial the leader is a new process: its counts
        // started again.
        if let (Some(start), Some(end), None) = (syncs_at_start, syncs_at_end, args.recovery_after) {
            let syncs = end.fsyncs.saturating_sub(start.fsyncs);
            let entries = end.fsynced_entries.saturating_sub(start.fsynced_entries);
            report.notes.push(format!(
                "--fsync {}: the leader's log took {syncs} syncs for {entries} entries ({:.1} entries per sync)",
                args.fsync,
                entries as f64 / syncs.max(1) as f64
            ));
        }
        match disk::fsync_latency(dir, 1000) {
            Ok((p50, p99)) => report.notes.push(format!(
                "the disk under {} (measured after the run): fdatasync of a 100-byte append p50 {:.0} us, p99 {:.0} us",
                dir.display(),
                p50,
                p99
            )),
            Err(error) => report.notes.push(format!("the disk's fsync latency could not be measured: {error}")),
        }
    }
    if args.watchers > 0 {
        let deliveries = deliveries.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |quantile| deliveries.value_at_quantile(quantile) as f64 / 1e6;
        let on = if args.watch_every_node { "spread over every node" } else { "on the client port" };
        report.notes.push(format!(
            "{} watchers ({:?} scope, {on}): {} deliveries, from the invocation of a bid after the warmup to its event at a watcher \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.watchers,
            args.watch_scope,
            deliveries.len(),
            ms(0.5),
            ms(0.99),
            deliveries.max() as f64 / 1e6
        ));
        match delivered {
            Some((caught_up, Ok(delivered))) => report.notes.push(format!(
                "events lost {}, repeated {}, watchers never started {}{}",
                delivered.lost,
                delivered.repeated,
                delivered.unstarted,
                if caught_up { "" } else { "; some watchers had not reached the last revision in 30 s" }
            )),
            Some((_, Err(error))) => report.notes.push(format!("the watchers' bids could not be checked: {error}")),
            None => {}
        }
    }
    if args.silent_watchers > 0 {
        report.notes.push(format!(
            "{} never-reading watch streams after revision 1 held open ({} asked)",
            readers.silent_streams.load(std::sync::atomic::Ordering::Relaxed),
            args.silent_watchers
        ));
    }
    if let Subject::Null(_) = subject {
        report.notes.push(
            "the null server answers every bid SUCCESS with no state and no replication, \
             on a node's services, runtime and transport: the ceiling of this host"
                .into(),
        );
    }
    report.notes.push(format!(
        "{} client tasks and the servers share this host ({} cores)",
        args.clients,
        std::thread::available_parallelism().map_or(0, |cores| cores.get())
    ));
    if let Some((load_generator, nodes)) = cores {
        report.notes.push(format!(
            "CPU over the run, in cores kept busy: the nodes {nodes:.2}, this load generator (its bidders{}) \
             {load_generator:.2}",
            if args.watchers + args.silent_watchers > 0 { " and readers" } else { "" }
        ));
    }
    drop(subject);
    Ok(report)
}

/// The syncs of the leader's log so far, if it keeps one.
async fn disk_counts(leader: &str) -> Option<crate::replication::DiskCounts> {
    crate::client::node_status(&Network::tcp(), leader, ATTEMPT_TIMEOUT).await.ok()?.disk
}

/// Creates `count` auctions for the run, one after the other.
async fn create_auctions(
    network: &Network,
    address: &str,
    count: usize,
    args: &BenchArgs,
) -> anyhow::Result<Vec<String>> {
    progress(args, format_args!("creating {count} auctions"));
    let config = crate::client::ClientConfig {
        servers: vec![address.to_string()],
        network: network.clone(),
        ..Default::default()
    };
    let mut seller = crate::client::Client::new(config)?;
    let mut auctions = Vec::with_capacity(count);
    let description = "d".repeat(args.description_bytes);
    for lot_number in 0..count {
        let lot = Duration::from_secs(30 * 24 * 60 * 60);
        // Sellers enough that no one's rate or open-auction cap is reached.
        let seller_name = format!("bench-house-{}", lot_number % 1000);
        let create = crate::auction::CreateAuction::lasting(&seller_name, "a bench lot", &description, 1, lot);
        let outcome = seller.create_auction(create).await?;
        if outcome.verdict != crate::auction::Verdict::Success {
            bail!("creating an auction: {}", crate::auction::render(&outcome.reason));
        }
        auctions.push(outcome.auction_id);
    }
    Ok(auctions)
}

async fn join_workers(workers: Vec<tokio::task::JoinHandle<WorkerStats>>) -> anyhow::Result<WorkerStats> {
    let mut total = WorkerStats::new();
    for worker in workers {
        total.merge(worker.await.context("a bench client panicked")?);
    }
    Ok(total)
}

/// The highest bid so far, so a bench against a running auction bids above it.
async fn current_highest(network: &Network, address: &str) -> anyhow::Result<u64> {
    let mut connection = AuctionConnection::new(network, address, &TransportSettings::default(), ATTEMPT_TIMEOUT)?;
    let started = Instant::now();
    loop {
        match connection.result("").await {
            Ok((view, _leader)) => return Ok(view.highest_amount),
            Err(error) if started.elapsed() > Duration::from_secs(10) => {
                bail!("reading the auction at {address}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Every node's memory, with its role as it says at the end of the run.
async fn local_memory(cluster: &LocalCluster) -> Vec<NodeMemory> {
    let statuses = cluster.statuses().await;
    (0..cluster.len())
        .map(|i| {
            let pid = cluster.pid(i);
            let role = statuses[i].as_ref().map_or("down".to_string(), |status| role_name(status.role));
            NodeMemory::read(cluster.node_address(i), role, pid)
        })
        .collect()
}

/// The members of a running cluster, found through its leader; their memory
/// is readable when they run on this host.
async fn remote_memory(address: &str) -> Vec<NodeMemory> {
    let Ok(leader) = crate::client::node_status(&Network::tcp(), address, ATTEMPT_TIMEOUT).await else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for member in &leader.membership {
        let status = crate::client::node_status(&Network::tcp(), member, ATTEMPT_TIMEOUT).await.ok();
        let role = status.as_ref().map_or("down".to_string(), |status| role_name(status.role));
        nodes.push(NodeMemory::read(member.clone(), role, status.map(|status| status.pid)));
    }
    nodes
}

fn role_name(role: Role) -> String {
    format!("{role:?}").to_lowercase()
}

fn system_name(system: System) -> String {
    format!("{system:?}").to_lowercase()
}

/// Waits for `bids` answers, reading the leader's memory at checkpoints.
async fn sample_memory(subject: &Subject, load: &Load, bids: u64, sessions: usize) -> MemoryReport {
    let (leader, pid) = subject.leader().await;
    let mut checkpoints = vec![MemoryCheckpoint::read(0, pid)];
    for fraction in CHECKPOINT_FRACTIONS {
        let at = ((bids as f64 * fraction) as u64).max(1);
        while load.answered() < at && !load.workers_done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        checkpoints.push(MemoryCheckpoint::read(load.answered(), pid));
    }
    load.stop_now();
    MemoryReport::new(leader, pid, sessions, bids, checkpoints)
}

/// A line on stderr unless `--quiet`.
fn progress(args: &BenchArgs, line: std::fmt::Arguments<'_>) {
    if !args.quiet {
        eprintln!("bench: {line}");
    }
}
