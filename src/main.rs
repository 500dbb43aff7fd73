//! The `gavel` command: servers, clients, and the tools around them.

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use gavel::auction::{Reason, render};
use gavel::client::{Client, ClientConfig, DEFAULT_SERVER};
use gavel::node::{self, CoordinatorConfig, NodeConfig, OperatorRemoval, StorageConfig};
use gavel::replication::{Role, epoch_number};
use gavel::storage::{FsyncPolicy, OsDisk, WriterMode};
use gavel::tools::chaos::{self, ChaosConfig, FaultKind};
use gavel::tools::cluster::{ClusterSpec, LocalCluster};
use gavel::tools::prompt::{self, Input};
use gavel::tools::tour::{self, TourConfig};
use gavel::transport::{Network, Port};

// glibc's malloc and free were 12 % of a leader's CPU under load; side by
// side, mimalloc raised 64-client throughput by 17 % at the median, for
// about 8 MiB more resident memory (BENCHMARKS.md, "Allocator").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "gavel", version, about = "A replicated auction service that survives server crashes")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run one server process; the first up leads, the others back it up.
    Server(ServerArgs),
    /// The bidding prompt: type amounts to bid, `result` to read.
    Client {
        /// Your bidder name.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Bid once and print the answer.
    Bid {
        /// The amount: a whole number above 0.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        /// Your bidder name.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print the auction's result once.
    Result {
        #[command(flatten)]
        target: Target,
    },
    /// Create an auction as a seller.
    Create {
        /// Your seller name.
        #[arg(long)]
        seller: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The least first bid.
        #[arg(long, default_value_t = 1)]
        min: u64,
        /// How long it runs, from when the service takes it (`10m`, `2h`).
        #[arg(long, value_parser = parse_positive_duration)]
        duration: Duration,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Cancel an auction of yours that has no bid yet.
    Cancel {
        /// The auction's id.
        id: String,
        /// Your seller name.
        #[arg(long)]
        seller: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the auctions, in creation order.
    List {
        /// Only those still running.
        #[arg(long)]
        open: bool,
        /// Print JSON lines instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// The membership: remove a member whose disk is gone for good.
    #[command(subcommand)]
    Member(MemberCommand),
    /// The cluster: the leader, the leaderQueue, and each member's role,
    /// epoch and log position.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print events as they commit (every auction's, or one's); resumes
    /// across failovers by itself.
    Watch {
        /// One auction's id; all auctions without it.
        id: Option<String>,
        /// Start after this revision (0: from now on).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// An auction's accepted bids, oldest first.
    History {
        /// The auction's id (as `list` prints it).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show one auction.
    Show {
        /// The auction's id (as `list` prints it).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Start a local three-node cluster and open the bidding prompt on it.
    Demo(DemoArgs),
    /// Bid and read under injected faults, then check the history.
    Chaos(ChaosArgs),
    /// Measure throughput, latency, failover and memory under load.
    Bench(gavel::tools::bench::BenchArgs),
    /// The server `gavel bench --system null` starts: the client API on a
    /// node's runtime and transport, answering every bid SUCCESS with no work.
    #[command(hide = true)]
    NullServer(NullServerArgs),
}

#[derive(Args)]
struct NullServerArgs {
    /// The port it serves the client API on.
    #[arg(long)]
    port: u16,
    /// Threads serving it, as for `gavel server`.
    #[arg(long, default_value_t = 1, value_parser = node::parse_worker_threads)]
    worker_threads: usize,
}

#[derive(Args)]
struct ChaosArgs {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients bidding and reading.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The faults to inject.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,stop,restart,outlive")]
    faults: Vec<FaultKind>,
    /// Makes the fault schedule and the clients' choices repeatable (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the history as JSON lines.
    #[arg(long)]
    history: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 6400)]
    base_port: u16,
    #[arg(long, default_value_t = 6000)]
    client_port: u16,
    /// Keep the servers' logs here.
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
    /// Give the nodes data directories under this one; the faults then
    /// include killing every node at once (kill-all) and restarting them.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Hostile clients beside the honest ones: they join under members' names,
    /// ack out of turn and replay request ids (0 for none).
    #[arg(long, default_value_t = 1)]
    hostile: usize,
    /// Auctions bid on at once (the default one and others created first);
    /// one more is created every 3 s during the run.
    #[arg(long, default_value_t = 3)]
    auctions: usize,
    /// Each client pauses up to this long between operations (0 for none).
    #[arg(long, default_value = "4ms", value_parser = humantime::parse_duration)]
    max_pause: Duration,
}

#[derive(Args)]
struct ServerArgs {
    /// This node's own port: its identity.
    #[arg(long)]
    port: u16,
    /// The host this node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The well-known port the leader serves clients on.
    #[arg(long, default_value_t = 5000)]
    client_port: u16,
    /// Other nodes to ask before bootstrapping a new cluster, comma-separated
    /// ports (on --host) or addresses (default: the eight ports on either
    /// side of --port, on this host).
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    peers: Option<Vec<Peer>>,
    /// A backup that acks nothing for this long is removed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    ack_timeout: Duration,
    /// A leader silent for this long is taken for lost.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    leader_timeout: Duration,
    /// How often an idle leader sends heartbeats.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// How long a successor has to take over before the next one does.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    takeover_timeout: Duration,
    /// How long the default auction runs, from the cluster's start.
    #[arg(long, default_value = "120s", value_parser = parse_positive_duration)]
    duration: Duration,
    /// How long a closed auction and its history are kept before they are
    /// forgotten (by every replica at the same point of the log).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    retain_closed: Duration,
    /// Threads serving the node: 1 is a single-threaded event loop, the
    /// faster choice when nodes share a host's cores; 0 is one per core.
    #[arg(long, default_value_t = 1, value_parser = node::parse_worker_threads)]
    worker_threads: usize,
    /// Where this node keeps its log and snapshots, so that its state
    /// survives the loss of every node. Without it, state lives in memory
    /// only and replication is all that keeps it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With --data-dir: `always` syncs every batch of entries to the disk
    /// before it is acknowledged (an acknowledged bid survives the power
    /// loss of every node); `never` leaves it to the operating system (it
    /// survives the crash of every process, not of the machines).
    #[arg(long, default_value = "always", value_parser = parse_fsync, requires = "data_dir")]
    fsync: FsyncPolicy,
    /// With --data-dir: entries between two snapshots of the state (recovery
    /// replays at most this many); 0 never snapshots.
    #[arg(long, default_value_t = node::SNAPSHOT_EVERY, requires = "data_dir")]
    snapshot_every: u64,
    /// Serve the HTTP/JSON API on this port (on --host): any node answers
    /// any request, forwarding it to the leader.
    #[arg(long)]
    http_port: Option<u16>,
    /// The directory, shared by every node of the cluster on this host,
    /// where the membership record is kept (default: one per client port in
    /// the system's temporary directory).
    #[arg(long)]
    record_dir: Option<PathBuf>,
    /// Start a new cluster even if the membership record lists members
    /// that may still hold the old one's state (it is then lost).
    #[arg(long)]
    new_cluster: bool,
}

fn parse_fsync(value: &str) -> Result<FsyncPolicy, String> {
    match value {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err(format!("expected `always` or `never`, got {value:?}")),
    }
}

/// A `--peers` entry: a port on this node's host, or a full address.
#[derive(Clone, Copy, Debug)]
enum Peer {
    Port(u16),
    Address(SocketAddr),
}

fn parse_peer(value: &str) -> Result<Peer, String> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return if port > 0 { Ok(Peer::Port(port)) } else { Err("port 0 is not a peer".into()) };
    }
    value.parse::<SocketAddr>().map(Peer::Address).map_err(|_| format!("expected a port or IP:PORT, got {value:?}"))
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be longer than 0".into()),
        Err(error) => Err(error.to_string()),
    }
}

#[derive(Args, Clone)]
struct Target {
    /// Where to send requests: the client port, or node addresses.
    #[arg(long = "server", default_value = DEFAULT_SERVER, value_delimiter = ',')]
    servers: Vec<String>,
    /// The auction to bid on.
    #[arg(long, default_value = "")]
    auction: String,
    /// How long to keep retrying a request before giving up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

impl Target {
    fn client(&self) -> anyhow::Result<Client> {
        let config = ClientConfig { servers: self.servers.clone(), deadline: self.timeout, ..ClientConfig::default() };
        Ok(Client::new(config)?)
    }
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Removes a member for good. The leader commits its removal. With no
    /// leader running, the membership record is changed instead (the next
    /// leader does not wait for that member), and nodes waiting after a full
    /// restart where no record can be read stop waiting for it (unclean if
    /// it held entries the others lack: use it only for a node whose disk
    /// is gone).
    Remove {
        /// The member's node address (IP:PORT), as `gavel status` shows it.
        member: String,
        /// The nodes to tell: ports on 127.0.0.1 or IP:PORT addresses.
        #[arg(long, value_delimiter = ',', value_parser = parse_peer, default_value = DEFAULT_NODE_PORTS)]
        nodes: Vec<Peer>,
        /// The cluster's client port on this host: taken while the record is
        /// changed without a leader.
        #[arg(long, default_value_t = 5000)]
        client_port: u16,
        /// Where the nodes keep the membership record (as given to `gavel
        /// server --record-dir`; default: the client port's).
        #[arg(long)]
        record_dir: Option<PathBuf>,
    },
}

/// The nodes `gavel member remove` tells by default: the sequential ports
/// the demo and the README use.
const DEFAULT_NODE_PORTS: &str = "5400,5401,5402,5403,5404,5405,5406,5407,5408,5409";

#[derive(Args)]
struct DemoArgs {
    /// Your bidder name at the prompt.
    #[arg(long, default_value = "you")]
    id: String,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The first node's port; the others follow.
    #[arg(long, default_value_t = 5400)]
    base_port: u16,
    #[arg(long, default_value_t = 5000)]
    client_port: u16,
    /// How long the auction runs (default 120s; 8s for the crash tour).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Instead of the prompt, run a script and print its log.
    #[arg(long, value_enum)]
    script: Option<Script>,
    /// The first node's HTTP/JSON API port; the others follow.
    #[arg(long, default_value_t = 8080)]
    http_base_port: u16,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Script {
    /// Crashes a backup and the leader under bids, restarts them, ends the
    /// auction: the story of `log.txt`.
    CrashTour,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    // Servers and the bench's load generator run on one thread unless told
    // otherwise: side by side, that cut the one-client p50 by 40 % and raised
    // the 64-client throughput on a host whose cores the nodes share
    // (BENCHMARKS.md, "Runtime"). The other commands are not hot.
    let worker_threads = match &cli.command {
        Commands::Server(args) => args.worker_threads,
        Commands::Bench(args) => args.worker_threads,
        Commands::NullServer(args) => args.worker_threads,
        _ => 0,
    };
    let runtime = match build_runtime(worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The tools that start their own servers stop them on SIGINT or SIGTERM:
    // the run is dropped, and with it the guards that kill the servers. (Not
    // the prompts: their blocking reads would hold the signal off.)
    let stops_on_signal = matches!(cli.command, Commands::Chaos(_) | Commands::Bench(_));
    let outcome = runtime.block_on(async move {
        if !stops_on_signal {
            return run(cli).await;
        }
        tokio::select! {
            outcome = run(cli) => outcome,
            (name, code) = termination_signal() => {
                eprintln!("stopped by {name}; the servers it started are stopped too");
                Ok(ExitCode::from(code))
            }
        }
    });
    // Drops every task, and the guards they hold; a check still running on
    // a blocking thread gets a second to notice.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGINT or SIGTERM; gives its name and the shell's exit code
/// for it. Never returns if the handlers cannot be installed.
async fn termination_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => ("SIGINT", 130),
        _ = terminate.recv() => ("SIGTERM", 143),
    }
}

/// One thread: a single-threaded event loop. More: a work-stealing runtime
/// with that many workers. 0: one worker per core.
fn build_runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}

/// A server holds a descriptor per connection: lift the soft limit to the
/// hard one, so the connection caps, not the descriptor limit, bound it.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Logs go to stderr; stdout carries the program's answers.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Server(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Commands::Client { id, target } => {
            let mut client = target.client()?;
            let mut stdin = std::io::stdin().lock();
            bidding_prompt(&mut client, &target, &id, &mut stdin, "", |_| async { None }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Bid { amount, id, target } => {
            let amount = match prompt::parse_amount(&amount) {
                Ok(amount) => amount,
                Err(reason) => {
                    println!("EXCEPTION: {reason}");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut client = target.client()?;
            let (line, answered) = prompt::bid_line(&mut client, &target.auction, &id, amount).await;
            println!("{line}");
            Ok(if answered { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Commands::Result { target } => {
            let mut client = target.client()?;
            let (line, answered) = prompt::result_line(&mut client, &target.auction).await;
            println!("{line}");
            Ok(if answered { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Commands::Create { seller, title, description, min, duration, json, target } => {
            let mut client = target.client()?;
            let create = gavel::auction::CreateAuction::lasting(&seller, &title, &description, min, duration);
            match client.create_auction(create).await {
                Ok(outcome) if json => {
                    let verdict = format!("{:?}", outcome.verdict).to_uppercase();
                    let value = serde_json::json!({
                        "outcome": verdict,
                        "reason": render(&outcome.reason),
                        "reason_code": outcome.reason.as_ref().map(Reason::code),
                        "auction_id": outcome.auction_id,
                    });
                    println!("{value}");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(outcome) => {
                    println!("{}", prompt::format_create(&title, &outcome));
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("{}", prompt::format_error(&error));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Commands::Cancel { id, seller, target } => {
            let mut client = target.client()?;
            match client.cancel_auction(&id, &seller).await {
                Ok(outcome) => {
                    let line = match outcome.verdict {
                        gavel::auction::Verdict::Success => format!("CANCELLED: auction {id}"),
                        gavel::auction::Verdict::Fail => format!("FAIL: {}", render(&outcome.reason)),
                        gavel::auction::Verdict::Exception => format!("EXCEPTION: {}", render(&outcome.reason)),
                    };
                    println!("{line}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("{}", prompt::format_error(&error));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Commands::List { open, json, target } => {
            let mut client = target.client()?;
            let mut page_token = String::new();
            loop {
                let page = match client.list_auctions(open, 0, &page_token).await {
                    Ok(page) => page,
                    Err(error) => {
                        println!("{}", prompt::format_error(&error));
                        return Ok(ExitCode::FAILURE);
                    }
                };
                for info in &page.auctions {
                    if json {
                        println!("{}", prompt::auction_json(info));
                    } else {
                        println!("{}", prompt::format_auction(info));
                    }
                }
                if page.next_page_token.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
                page_token = page.next_page_token;
            }
        }
        Commands::Status { json, target } => cluster_status(&target, json).await,
        Commands::Member(MemberCommand::Remove { member, nodes, client_port, record_dir }) => {
            let client = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), client_port);
            let mut record = CoordinatorConfig::for_client_port(client);
            if let Some(dir) = record_dir {
                record.dir = dir;
            }
            remove_member(&member, &nodes, client, &record).await
        }
        Commands::Watch { id, after, json, target } => {
            let mut client = target.client()?;
            let printed = client
                .watch(id.as_deref(), after, |event| {
                    let line = if json { prompt::event_json(event).to_string() } else { prompt::format_event(event) };
                    if !line.is_empty() {
                        println!("{line}");
                    }
                    true
                })
                .await;
            match printed {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) => {
                    println!("{}", prompt::format_error(&error));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Commands::History { id, json, target } => {
            let mut client = target.client()?;
            let mut page_token = String::new();
            loop {
                let page = match client.history(&id, 0, &page_token).await {
                    Ok(page) => page,
                    Err(error) => {
                        println!("{}", prompt::format_error(&error));
                        return Ok(ExitCode::FAILURE);
                    }
                };
                for bid in &page.bids {
                    if json {
                        let value = serde_json::json!({
                            "bidder": bid.bidder, "amount": bid.amount,
                            "at_unix_ms": bid.at_unix_ms, "revision": bid.revision,
                        });
                        println!("{value}");
                    } else {
                        println!("{} bid {} (revision {})", bid.bidder, bid.amount, bid.revision);
                    }
                }
                if page.next_page_token.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
                page_token = page.next_page_token;
            }
        }
        Commands::Show { id, json, target } => {
            let mut client = target.client()?;
            match client.get_auction(&id).await {
                Ok(info) if json => println!("{}", prompt::auction_json(&info)),
                Ok(info) => println!("{}", prompt::format_auction(&info)),
                Err(error) => {
                    println!("{}", prompt::format_error(&error));
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Commands::Demo(args) => demo(args).await.map(|()| ExitCode::SUCCESS),
        Commands::Chaos(args) => chaos(args).await,
        Commands::Bench(args) => gavel::tools::bench::run(args).await,
        Commands::NullServer(args) => null_server(args).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `gavel status`: asks the given servers who leads, then each member.
/// Tells every node that answers to remove `member`: one line per answer.
async fn remove_member(
    member: &str,
    nodes: &[Peer],
    client_address: SocketAddr,
    record: &CoordinatorConfig,
) -> anyhow::Result<ExitCode> {
    if member.parse::<SocketAddr>().is_err() {
        println!("ERROR: {member:?} is not a node address (IP:PORT)");
        return Ok(ExitCode::from(2));
    }
    let timeout = Duration::from_secs(3);
    let mut done = false;
    let mut led = false;
    for node in nodes {
        let address = match node {
            Peer::Port(port) => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), *port),
            Peer::Address(address) => *address,
        };
        if address.to_string() == member {
            continue;
        }
        match gavel::transport::remove_member(&Network::tcp(), &address.to_string(), member, timeout).await {
            Ok(reply) => {
                println!("{address}: {}", reply.answer);
                led |= reply.removed_at.is_some();
                done = true;
            }
            Err(gavel::transport::CallError::Unavailable { .. }) => {}
            Err(error) => println!("{address}: {error}"),
        }
    }
    if !led {
        // No leader took it: change the record, as the leader would.
        match gavel::node::remove_without_leader(&Network::tcp(), client_address, record, member).await {
            Ok(OperatorRemoval::Removed { version, members }) => {
                println!(
                    "membership record: {member} removed (version {version}, members {members:?}); no leader was running"
                );
                done = true;
            }
            Ok(OperatorRemoval::NotListed) => {}
            Ok(OperatorRemoval::LastHolder) => {
                println!(
                    "ERROR: no other member of the membership record runs or keeps its state: removing {member} \
                     would leave nobody who holds the cluster's state"
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(OperatorRemoval::PortHeld) => {
                println!(
                    "the client port {client_address} is held (a leader runs): the membership record is its to change"
                )
            }
            Err(error) => {
                println!("ERROR: the membership record did not change: {error}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if !done {
        println!("ERROR: no node took the removal of {member}");
    }
    Ok(if done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn cluster_status(target: &Target, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(1);
    let mut leader = None;
    for server in &target.servers {
        if let Ok(status) = gavel::client::node_status(server, timeout).await {
            let leads = status.role == Role::Leader;
            let named = status.leader.clone();
            leader = Some(status);
            if leads {
                break;
            }
            if let Some(address) = named
                && let Ok(status) = gavel::client::node_status(&address, timeout).await
            {
                leader = Some(status);
                break;
            }
        }
    }
    let Some(leader) = leader.filter(|status| status.role == Role::Leader) else {
        println!("ERROR: no leader answered at {}", target.servers.join(", "));
        return Ok(ExitCode::FAILURE);
    };
    let mut members = Vec::new();
    for member in &leader.membership {
        members.push((member.clone(), gavel::client::node_status(member, timeout).await.ok()));
    }
    if json {
        let nodes: Vec<serde_json::Value> = members
            .iter()
            .map(|(member, status)| match status {
                Some(status) => serde_json::json!({
                    "node": member, "role": format!("{:?}", status.role).to_lowercase(),
                    "epoch": epoch_number(status.epoch), "last_index": status.last.index, "pid": status.pid,
                }),
                None => serde_json::json!({ "node": member, "role": "not answering" }),
            })
            .collect();
        let queue: Vec<&String> = leader.membership.iter().skip(1).collect();
        let record = leader
            .record
            .as_ref()
            .map(|record| serde_json::json!({ "version": record.version, "members": record.members }));
        println!(
            "{}",
            serde_json::json!({ "leader": leader.node, "leader_queue": queue, "record": record, "nodes": nodes })
        );
    } else {
        println!("leader {} (epoch {}, log index {})", leader.node, epoch_number(leader.epoch), leader.last.index);
        println!("leaderQueue: [{}]", leader.membership.iter().skip(1).cloned().collect::<Vec<_>>().join(", "));
        // The in-sync set as the coordinator holds it: who may lead next.
        if let Some(record) = &leader.record {
            println!("membership record: version {}, members [{}]", record.version, record.members.join(", "));
        }
        for (member, status) in &members {
            match status {
                Some(status) => println!(
                    "  {member}  {:?}  epoch {}  log index {}  pid {}",
                    status.role,
                    epoch_number(status.epoch),
                    status.last.index,
                    status.pid
                ),
                None => println!("  {member}  not answering"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    if args.port == args.client_port {
        anyhow::bail!("--port {} is the client port: give each node a port of its own", args.port);
    }
    raise_open_file_limit();
    let node_address = SocketAddr::new(args.host, args.port);
    let network = Network::tcp();
    let listener = network.bind(node_address, Port::Node).await.with_context(|| format!("binding {node_address}"))?;
    let mut config = NodeConfig::new(node_address, SocketAddr::new(args.host, args.client_port));
    config.peers = match args.peers {
        Some(peers) => peers
            .into_iter()
            .map(|peer| match peer {
                Peer::Port(port) => SocketAddr::new(args.host, port),
                Peer::Address(address) => address,
            })
            .filter(|&peer| peer != node_address)
            .map(|peer| peer.to_string())
            .collect(),
        None => {
            let low = args.port.saturating_sub(8);
            let high = args.port.saturating_add(8);
            (low..=high)
                .filter(|&port| port != args.port && port != args.client_port)
                .map(|port| SocketAddr::new(args.host, port).to_string())
                .collect()
        }
    };
    config.ack_timeout = args.ack_timeout;
    config.leader_timeout = args.leader_timeout;
    config.heartbeat_interval = args.heartbeat;
    config.takeover_timeout = args.takeover_timeout;
    config.auction_duration = args.duration;
    config.retain_closed = args.retain_closed;
    config.storage = args.data_dir.map(|dir| StorageConfig {
        dir,
        fsync: args.fsync,
        disk: Arc::new(OsDisk),
        snapshot_every: args.snapshot_every,
        writer: WriterMode::Thread,
    });
    config.http_address = args.http_port.map(|port| SocketAddr::new(args.host, port).to_string());
    if let Some(dir) = args.record_dir {
        config.coordinator.dir = dir;
    }
    config.new_cluster = args.new_cluster;
    // Bound before the node starts, so that a port in use fails the start.
    let http_listener = match args.http_port {
        Some(port) => {
            let address = SocketAddr::new(args.host, port);
            Some(tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?)
        }
        None => None,
    };

    // The first SIGINT or SIGTERM stops the node gracefully: a leader hands
    // over to the first of its leaderQueue, a backup leaves. A second one
    // exits at once.
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let (name, _) = termination_signal().await;
        tracing::info!(signal = name, "stopping; a second signal exits at once");
        on_signal.cancel();
        let (name, code) = termination_signal().await;
        eprintln!("{name} again: exiting now");
        std::process::exit(i32::from(code));
    });
    tracing::info!(node = %node_address, client_port = args.client_port, pid = std::process::id(), "node starting");
    // The HTTP API beside the node, sharing its stop; it reaches the
    // cluster as any client does: the client port, then every node.
    let web = http_listener.map(|listener| {
        let mut servers = vec![config.client_address.to_string(), node_address.to_string()];
        servers.extend(config.peers.iter().cloned());
        let web_config = gavel::web::WebConfig { node_address: node_address.to_string(), servers };
        tracing::info!(address = ?listener.local_addr().ok(), "serving the HTTP API");
        tokio::spawn(gavel::web::serve(listener, web_config, shutdown.clone()))
    });
    let result = node::run(config, network, listener, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(web) = web {
        match tokio::time::timeout(Duration::from_secs(2), web).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "the HTTP API failed"),
            Ok(_) => {}
            Err(_) => tracing::debug!("HTTP connections still open; closing them"),
        }
    }
    result
}

/// Serves the null client API on 127.0.0.1 until SIGINT, as `serve` does a node.
async fn null_server(args: NullServerArgs) -> anyhow::Result<()> {
    let address = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), args.port);
    let listener = Network::tcp().bind(address, Port::Client).await.with_context(|| format!("binding {address}"))?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    tracing::info!(address = %address, pid = std::process::id(), "null server starting");
    let settings = gavel::transport::TransportSettings::default();
    gavel::tools::null_server::serve_null(address.to_string(), listener, settings, shutdown).await?;
    Ok(())
}

/// Runs the prompt until `quit` or end of input. `extra` handles the words
/// the prompt itself does not know (the demo's commands, which
/// `extra_help` names); it returns the line to print, or `None` for an
/// unknown word.
async fn bidding_prompt<F, Fut>(
    client: &mut Client,
    target: &Target,
    bidder: &str,
    input: &mut impl BufRead,
    extra_help: &str,
    mut extra: F,
) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let help = format!("{}{extra_help}", prompt::HELP);
    println!("bidding as {bidder}; {help}");
    let mut auction_id = target.auction.clone();
    // The background watch of `watch`, while one runs.
    let mut watching: Option<tokio::task::JoinHandle<()>> = None;
    let mut line = String::new();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            println!();
            return Ok(());
        }
        let answer = match prompt::parse_input(&line) {
            Ok(Input::Bid(amount)) => prompt::bid_line(client, &auction_id, bidder, amount).await.0,
            Ok(Input::Result) => prompt::result_line(client, &auction_id).await.0,
            Ok(Input::Help) => help.clone(),
            Ok(Input::Quit) => return Ok(()),
            Ok(Input::Empty) => continue,
            Ok(Input::Other(words)) => {
                let (command, rest) = words.split_once(char::is_whitespace).unwrap_or((words.as_str(), ""));
                match command.to_ascii_lowercase().as_str() {
                    "list" => prompt::list_lines(client).await,
                    "history" => prompt::history_lines(client, &auction_id).await,
                    "create" => prompt::create_line(client, bidder, rest).await,
                    "use" if !rest.trim().is_empty() => {
                        auction_id = rest.trim().to_string();
                        format!("numbers now bid on auction {auction_id}")
                    }
                    "watch" => match watching.take() {
                        Some(task) => {
                            task.abort();
                            "stopped watching".to_string()
                        }
                        None => {
                            watching = Some(watch_in_background(target, &auction_id)?);
                            format!("watching auction {}", gavel::auction::resolve_auction_id(&auction_id))
                        }
                    },
                    _ => match extra(words.clone()).await {
                        Some(answer) => answer,
                        None => format!("unknown command {words:?}: {help}"),
                    },
                }
            }
            Err(reason) => format!("EXCEPTION: {reason}"),
        };
        println!("{answer}");
    }
}

/// Prints the bids and the close of one auction as they commit, until
/// aborted; it resumes across failovers by itself.
fn watch_in_background(target: &Target, auction_id: &str) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut watcher = target.client()?;
    let auction_id = gavel::auction::resolve_auction_id(auction_id).to_string();
    Ok(tokio::spawn(async move {
        let _ = watcher
            .watch(Some(&auction_id), 0, |event| {
                let line = prompt::format_event(event);
                if !line.is_empty() {
                    println!("\n{line}");
                }
                true
            })
            .await;
    }))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("finding the gavel binary")?;
    let log_dir = std::env::temp_dir().join(format!("gavel-demo-{}", std::process::id()));
    if let Some(Script::CrashTour) = args.script {
        let config = TourConfig {
            binary,
            base_port: args.base_port,
            client_port: args.client_port,
            auction_duration: args.duration.unwrap_or(Duration::from_secs(8)),
            log_dir,
        };
        print!("{}", tour::run(config).await?);
        return Ok(());
    }
    let duration = args.duration.unwrap_or(Duration::from_secs(120));
    let mut spec = ClusterSpec::new(binary, args.nodes, args.base_port, args.client_port);
    spec.server_args = vec!["--duration".into(), humantime::format_duration(duration).to_string()];
    spec.log_dir = Some(log_dir.clone());
    // Each node keeps its state on disk, so that even the crash of every
    // node loses no acknowledged bid.
    spec.data_dir = Some(log_dir.join("data"));
    spec.http_base_port = Some(args.http_base_port);
    println!(
        "starting {} nodes on ports {}..{}; logs and data in {}",
        args.nodes,
        args.base_port,
        args.base_port as usize + args.nodes - 1,
        log_dir.display()
    );
    // The prompt's commands and the final drop share the cluster.
    let cluster = tokio::sync::Mutex::new(LocalCluster::start(spec).await?);
    println!("{}", status_report(&*cluster.lock().await).await);
    let http: Vec<String> = {
        let cluster = cluster.lock().await;
        (0..cluster.len()).filter_map(|i| cluster.http_address(i)).map(|address| format!("http://{address}")).collect()
    };
    if let Some(first) = http.first() {
        println!("the web page: {first}/ (every node serves it)");
    }
    println!("HTTP/JSON API on any node: {} (GET /auctions, /openapi.json, /metrics)", http.join(", "));
    println!("demo commands: {DEMO_COMMANDS}");

    let target = Target {
        servers: vec![format!("127.0.0.1:{}", args.client_port)],
        auction: String::new(),
        timeout: Duration::from_secs(10),
    };
    let mut client = target.client()?;
    let mut stdin = std::io::stdin().lock();
    let demo_help = format!("; and the demo's own: {DEMO_COMMANDS}");
    bidding_prompt(&mut client, &target, &args.id, &mut stdin, &demo_help, |word| {
        let cluster = &cluster;
        async move {
            let command = word.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
            match command.as_str() {
                "status" => Some(status_report(&*cluster.lock().await).await),
                "crash" => Some(crash_leader(&mut *cluster.lock().await).await),
                "crash all" => Some(crash_all(&mut *cluster.lock().await)),
                "restart" => Some(restart_crashed(&mut *cluster.lock().await).await),
                _ => None,
            }
        }
    })
    .await?;
    println!("stopping the cluster");
    // The nodes first, then their data: the logs stay for reading.
    drop(cluster);
    let _ = std::fs::remove_dir_all(log_dir.join("data"));
    Ok(())
}

async fn status_report(cluster: &LocalCluster) -> String {
    let statuses = cluster.statuses().await;
    let mut lines = Vec::new();
    let mut queue = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let address = cluster.node_address(i);
        let pid = cluster.pid(i).map_or("-".to_string(), |pid| pid.to_string());
        let role = match status {
            Some(status) => match status.role {
                Role::Leader => {
                    queue = status.membership.iter().skip(1).cloned().collect();
                    format!("LEADER (epoch {}, log index {})", epoch_number(status.epoch), status.last.index)
                }
                Role::Backup => format!("backup (log index {})", status.last.index),
                Role::Joining => "joining".to_string(),
            },
            None if cluster.is_running(i) => "not answering".to_string(),
            None => "crashed".to_string(),
        };
        lines.push(format!("  {address}  pid {pid:>7}  {role}"));
    }
    lines.push(format!("  leaderQueue: [{}]", queue.join(", ")));
    lines.join("\n")
}

async fn crash_leader(cluster: &mut LocalCluster) -> String {
    let Some(leader) = cluster.leader().await else { return "no leader to crash right now".into() };
    let address = cluster.node_address(leader);
    if let Err(error) = cluster.kill(leader) {
        return format!("could not crash {address}: {error:#}");
    }
    let started = std::time::Instant::now();
    match cluster.wait_for_leader(Duration::from_secs(5)).await {
        Ok(new_leader) => format!(
            "=== CRASH leader {address} (SIGKILL) === {} took over in {} ms",
            cluster.node_address(new_leader),
            started.elapsed().as_millis()
        ),
        Err(error) => format!("=== CRASH leader {address} (SIGKILL) === {error:#}"),
    }
}

/// The demo's own commands, as its help lists them.
const DEMO_COMMANDS: &str = "`status`, `crash` (SIGKILL the leader), `crash all` (SIGKILL every node), \
                             `restart` (bring crashed nodes back, from their data directories)";

fn crash_all(cluster: &mut LocalCluster) -> String {
    match cluster.kill_all() {
        Ok(killed) => {
            let crashed: Vec<String> = killed.into_iter().map(|i| cluster.node_address(i)).collect();
            format!("=== CRASH every node (SIGKILL): {} === `restart` brings them back from disk", crashed.join(", "))
        }
        Err(error) => format!("could not crash every node: {error:#}"),
    }
}

async fn restart_crashed(cluster: &mut LocalCluster) -> String {
    let crashed: Vec<usize> = (0..cluster.len()).filter(|&i| !cluster.is_running(i)).collect();
    if crashed.is_empty() {
        return "every node is running".into();
    }
    let everyone = crashed.len() == cluster.len();
    let mut lines = Vec::new();
    // All of them first: after a full crash, none leads until every
    // member is back.
    for &i in &crashed {
        if let Err(error) = cluster.restart(i) {
            lines.push(format!("could not restart {}: {error:#}", cluster.node_address(i)));
        }
    }
    for &i in crashed.iter().filter(|&&i| cluster.is_running(i)) {
        let address = cluster.node_address(i);
        lines.push(match cluster.wait_until_settled(i, Duration::from_secs(15)).await {
            Ok(status) => format!("restarted {address}: {:?}", status.role).to_lowercase(),
            Err(error) => format!("restarted {address}, but {error:#}"),
        });
    }
    if everyone {
        let config = ClientConfig { servers: vec![cluster.client_address()], ..ClientConfig::default() };
        let line = match Client::new(config) {
            Ok(mut client) => match client.result("").await {
                Ok((view, _)) if view.highest_amount > 0 => format!(
                    "every node came back from its data directory: the auction is back, highest bid {} by {} \
                     ({} accepted bids)",
                    view.highest_amount, view.highest_bidder, view.accepted_bids
                ),
                Ok(_) => "every node came back from its data directory: the auction is back, no bid yet".into(),
                Err(error) => format!("every node restarted, but reading the auction failed: {error}"),
            },
            Err(error) => format!("every node restarted, but no client: {error}"),
        };
        lines.push(line);
    }
    lines.join("\n")
}

/// With a data directory, a chaos run kills every node at once too.
fn with_kill_all(mut faults: Vec<FaultKind>, durable: bool) -> Vec<FaultKind> {
    if durable && !faults.is_empty() && !faults.contains(&FaultKind::KillAll) {
        faults.push(FaultKind::KillAll);
    }
    faults
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let config = ChaosConfig {
        binary: std::env::current_exe().context("finding the gavel binary")?,
        nodes: args.nodes,
        clients: args.clients,
        duration: args.duration,
        seed,
        history: args.history,
        base_port: args.base_port,
        client_port: args.client_port,
        log_dir: args.log_dir,
        faults: with_kill_all(args.faults, args.data_dir.is_some()),
        data_dir: args.data_dir,
        max_pause: args.max_pause,
        hostile: args.hostile,
        auctions: args.auctions,
        // Short timeouts, so that faults resolve well within the run.
        server_args: ["--ack-timeout", "500ms", "--leader-timeout", "500ms", "--duration", "24h"]
            .map(String::from)
            .to_vec(),
    };
    println!(
        "chaos: {} nodes, {} clients and {} hostile, {:?}, faults {:?}, seed {seed}",
        config.nodes, config.clients, config.hostile, config.duration, config.faults
    );
    let report = chaos::run(config).await?;
    println!("{}", report.render());
    if !report.passed() {
        println!("replay with: gavel chaos --seed {seed} (same flags)");
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
