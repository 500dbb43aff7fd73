//! The command line: clap's definitions of every command and its flags,
//! and the parsers of the values they take.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use gavel::client::{Client, ClientConfig, DEFAULT_SERVER};
use gavel::node;
use gavel::security::NameSecrets;
use gavel::storage::FsyncPolicy;
use gavel::tools::bench::BenchArgs;
use gavel::tools::chaos::FaultKind;
use gavel::transport::Network;
use gavel::transport::Tls;

#[derive(Parser)]
#[command(
    name = "gavel",
    version,
    about = "A replicated auction service that survives server crashes",
    after_help = super::exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand)]
pub enum Commands {
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
        /// What it is, as lists show it.
        #[arg(long)]
        title: String,
        /// More about it.
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
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print events as they commit (every auction's, or one's); resumes
    /// across failovers by itself.
    Watch {
        /// The auctions' ids (one stream for all of them, at most 100);
        /// every auction without any.
        ids: Vec<String>,
        /// Start after this revision (0: from now on).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print JSON lines instead of lines, as the HTTP event stream
        /// carries events: `{"event", "id", "data"}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// An auction's accepted bids, oldest first.
    History {
        /// The auction's id (as `list` prints it).
        id: String,
        /// Print JSON lines instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show one auction.
    Show {
        /// The auction's id (as `list` prints it).
        id: String,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Start a local three-node cluster and open the bidding prompt on it.
    Demo(DemoArgs),
    /// Bid and read under injected faults, then check the history.
    Chaos(ChaosArgs),
    /// Make the cluster's certificates: a CA, then one per node, client and
    /// operator, into one directory (see "Running securely" in the README).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Measure throughput, latency, failover and memory under load.
    Bench(BenchArgs),
    /// The server `gavel bench --system null` starts: the client API on a
    /// node's runtime and transport, answering every bid SUCCESS with no work.
    #[command(hide = true)]
    NullServer(NullServerArgs),
}

#[derive(Args)]
pub struct NullServerArgs {
    /// The port it serves the client API on.
    #[arg(long)]
    pub port: u16,
    /// Threads serving it, as for `gavel server`.
    #[arg(long, default_value_t = 1, value_parser = node::parse_worker_threads)]
    pub worker_threads: usize,
}

#[derive(Args)]
pub struct ChaosArgs {
    /// Servers in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Concurrent clients bidding and reading.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long the faults and the load go on.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The faults to inject.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,stop,restart,outlive")]
    pub faults: Vec<FaultKind>,
    /// Makes the fault schedule and the clients' choices repeatable (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the history as JSON lines.
    #[arg(long)]
    pub history: Option<std::path::PathBuf>,
    /// The first node's port; the others follow.
    #[arg(long, default_value_t = 6400)]
    pub base_port: u16,
    /// The cluster's client port.
    #[arg(long, default_value_t = 6000)]
    pub client_port: u16,
    /// Keep the servers' logs here.
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Give the nodes data directories under this one; the faults then
    /// include killing every node at once (kill-all) and restarting them.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Hostile clients beside the honest ones: they join under members' names,
    /// ack out of turn and replay request ids (0 for none).
    #[arg(long, default_value_t = 1)]
    pub hostile: usize,
    /// Auctions bid on at once (the default one and others created first);
    /// one more is created every 3 s during the run.
    #[arg(long, default_value_t = 3)]
    pub auctions: usize,
    /// Each client pauses up to this long between operations (0 for none).
    #[arg(long, default_value = "4ms", value_parser = humantime::parse_duration)]
    pub max_pause: Duration,
    /// TLS and authentication on, with certificates the run makes; the
    /// hostile clients hold a client certificate and must open no
    /// replication stream.
    #[arg(long)]
    pub secure: bool,
}

#[derive(Args)]
pub struct ServerArgs {
    /// This node's own port: its identity.
    #[arg(long)]
    pub port: u16,
    /// The host this node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The well-known port the leader serves clients on.
    #[arg(long, default_value_t = 5000)]
    pub client_port: u16,
    /// Other nodes to ask before bootstrapping a new cluster, comma-separated
    /// ports (on --host) or addresses (IP:PORT or HOST:PORT; default: the
    /// eight ports on either side of --port, on this host).
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Option<Vec<Peer>>,
    /// A backup that acks nothing for this long is removed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,
    /// A leader silent for this long is taken for lost.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub leader_timeout: Duration,
    /// How often an idle leader sends heartbeats.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// How long a successor has to take over before the next one does.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub takeover_timeout: Duration,
    /// How long the default auction runs, from the cluster's start.
    #[arg(long, default_value = "120s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// How long a closed auction and its history are kept before they are
    /// forgotten (by every replica at the same point of the log).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub retain_closed: Duration,
    /// The most auctions the house holds at once, closed ones until they
    /// are forgotten: past it, creating one fails until some expire (0: no
    /// limit). What bounds each node's memory.
    #[arg(long, default_value_t = gavel::auction::machine::DEFAULT_MAX_AUCTIONS)]
    pub max_auctions: u64,
    /// The most open auctions one seller may have: past it, a create FAILs
    /// (`too_many_open_auctions`) until one closes; 0 for no limit.
    #[arg(long, default_value_t = gavel::auction::machine::DEFAULT_MAX_OPEN_PER_SELLER)]
    pub max_open_per_seller: u64,
    /// Bids one bidder may send a second (a burst of as many): the leader
    /// refuses those past it before sequencing (0: no limit).
    #[arg(long, default_value_t = gavel::auction::machine::DEFAULT_MAX_BIDS_PER_SECOND)]
    pub max_bids_per_second: u32,
    /// Creates one seller may send a second (0: no limit).
    #[arg(long, default_value_t = gavel::auction::machine::DEFAULT_MAX_CREATES_PER_SECOND)]
    pub max_creates_per_second: u32,
    /// Threads serving the node: 1 is a single-threaded event loop, the
    /// faster choice when nodes share a host's cores; 0 is one per core.
    #[arg(long, default_value_t = 1, value_parser = node::parse_worker_threads)]
    pub worker_threads: usize,
    /// Where this node keeps its log and snapshots, so that its state
    /// survives the loss of every node. Without it, state lives in memory
    /// only and replication is all that keeps it.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: `always` syncs every batch of entries to the disk
    /// before it is acknowledged (an acknowledged bid survives the power
    /// loss of every node); `never` leaves it to the operating system (it
    /// survives the crash of every process, not of the machines).
    #[arg(long, default_value = "always", value_parser = parse_fsync, requires = "data_dir")]
    pub fsync: FsyncPolicy,
    /// With --data-dir: entries between two snapshots of the state (recovery
    /// replays at most this many); 0 never snapshots.
    #[arg(long, default_value_t = node::SNAPSHOT_EVERY, requires = "data_dir")]
    pub snapshot_every: u64,
    /// Serve the HTTP/JSON API on this port (on --host): any node answers
    /// any request, forwarding it to the leader.
    #[arg(long)]
    pub http_port: Option<u16>,
    /// The directory, shared by every node of the cluster on this host,
    /// where the membership record is kept (default: one per client port in
    /// the system's temporary directory).
    #[arg(long)]
    pub record_dir: Option<PathBuf>,
    /// Start a new cluster even if the membership record lists members
    /// that may still hold the old one's state (it is then lost).
    #[arg(long)]
    pub new_cluster: bool,
    #[command(flatten)]
    pub security: ServerSecurity,
}

/// How a server proves itself and checks its callers.
#[derive(Args, Clone, Debug)]
pub struct ServerSecurity {
    /// The cluster's certificates (`gavel cert`): the node serves TLS with
    /// its own (`node.IP-PORT.crt`), peers must show a node certificate of
    /// the same CA, and membership changes an operator's.
    #[arg(long, env = "GAVEL_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Serve without TLS or authentication on an address other hosts can
    /// reach (on loopback that is the default).
    #[arg(long, conflicts_with = "certs_dir")]
    pub insecure: bool,
}

fn parse_fsync(value: &str) -> Result<FsyncPolicy, String> {
    match value {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err(format!("expected `always` or `never`, got {value:?}")),
    }
}

/// A `--peers` entry: a port on this node's host, or a full address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Port(u16),
    Address(SocketAddr),
}

impl Peer {
    /// Its address, a port being on `host`.
    pub fn address(self, host: IpAddr) -> SocketAddr {
        match self {
            Peer::Port(port) => SocketAddr::new(host, port),
            Peer::Address(address) => address,
        }
    }
}

/// A peer as `--peers` takes it: a port, `IP:PORT`, or `HOST:PORT` (the
/// host looked up once, now: a node's identity is its address).
fn parse_peer(value: &str) -> Result<Peer, String> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return if port > 0 { Ok(Peer::Port(port)) } else { Err("port 0 is not a peer".into()) };
    }
    if let Ok(address) = value.parse::<SocketAddr>() {
        return Ok(Peer::Address(address));
    }
    let expected = || format!("expected a port or IP:PORT (or HOST:PORT), got {value:?}");
    let addresses: Vec<SocketAddr> = value.to_socket_addrs().map_err(|_| expected())?.collect();
    // IPv4 first, as the servers listen on 127.0.0.1 by default.
    let address = addresses.iter().find(|address| address.is_ipv4()).or(addresses.first()).ok_or_else(expected)?;
    Ok(Peer::Address(*address))
}

/// A server as `--server` takes it: `HOST:PORT`, `IP:PORT`, or a port (on
/// 127.0.0.1), as `--peers` takes ports.
fn parse_server(value: &str) -> Result<String, String> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return if port > 0 { Ok(format!("127.0.0.1:{port}")) } else { Err("port 0 is not a server".into()) };
    }
    gavel::transport::check_address(value).map_err(|error| error.to_string())?;
    Ok(value.to_string())
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("must be longer than 0".into()),
        Err(error) => Err(error.to_string()),
    }
}

impl Commands {
    /// The servers a client command asks (`status` says why by itself).
    pub fn client_target(&self) -> Option<&Target> {
        match self {
            Commands::Bid { target, .. }
            | Commands::Result { target }
            | Commands::Create { target, .. }
            | Commands::Cancel { target, .. }
            | Commands::List { target, .. }
            | Commands::Watch { target, .. }
            | Commands::History { target, .. }
            | Commands::Show { target, .. } => Some(target),
            _ => None,
        }
    }
}

#[derive(Args, Clone)]
pub struct Target {
    /// Where to send requests: the client port, or node addresses
    /// (HOST:PORT, IP:PORT or a port on 127.0.0.1), comma-separated.
    #[arg(long = "server", env = "GAVEL_SERVER", default_value = DEFAULT_SERVER, value_delimiter = ',', value_parser = parse_server)]
    pub servers: Vec<String>,
    /// The auction that `bid`, `result` and the prompt act on (default:
    /// the cluster's own).
    #[arg(long, default_value = "")]
    pub auction: String,
    /// How long to keep retrying a request before giving up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub security: ClientSecurity,
}

impl Target {
    /// A client of the servers named, with the timeout given.
    pub fn client(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            servers: self.servers.clone(),
            deadline: self.timeout,
            network: self.security.network(None)?,
            // A client certificate proves its name: no secret then.
            names: if self.security.cert_name.is_some() { None } else { self.security.names()? },
            ..ClientConfig::default()
        };
        Ok(Client::new(config)?)
    }
}

/// How a client reaches a secure cluster.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientSecurity {
    /// The cluster's certificates (`gavel cert`): speak TLS, trusting only
    /// the cluster's CA. Needed when the servers run with `--certs-dir`.
    #[arg(long, env = "GAVEL_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// The certificate of yours to show, `client.NAME.crt` in --certs-dir
    /// (the operator's for `gavel member remove`).
    #[arg(long, requires = "certs_dir")]
    pub cert_name: Option<String>,
    /// Where the secrets of the names you bid and sell under are kept, with
    /// --certs-dir (default: `gavel/names` in your config directory). A
    /// secure cluster binds a name to the first secret used with it.
    #[arg(long, env = "GAVEL_NAMES_DIR", requires = "certs_dir")]
    pub names_dir: Option<PathBuf>,
}

impl ClientSecurity {
    /// The network to reach the cluster by: over TLS with the certificates
    /// given, showing `--cert-name`'s certificate, or `default_name`'s.
    pub fn network(&self, default_name: Option<&str>) -> anyhow::Result<Network> {
        let tls = match &self.certs_dir {
            Some(dir) => Some(Tls::for_client(dir, self.cert_name.as_deref().or(default_name))?),
            None => None,
        };
        Ok(Network::tcp().with_tls(tls))
    }

    /// Where the names' secrets are kept: with certificates only, since a
    /// cluster without them ignores secrets.
    pub fn names(&self) -> anyhow::Result<Option<Arc<NameSecrets>>> {
        if self.certs_dir.is_none() {
            return Ok(None);
        }
        let dir = match &self.names_dir {
            Some(dir) => dir.clone(),
            None => NameSecrets::default_dir()
                .ok_or_else(|| anyhow::anyhow!("no config directory (HOME is not set): give --names-dir"))?,
        };
        Ok(Some(Arc::new(NameSecrets::in_dir(&dir))))
    }
}

/// `gavel cert`: what each command makes, in `--certs-dir`.
// The variants are the subcommands, named as `cockroach cert` names them.
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
pub enum CertCommand {
    /// The cluster's CA: `ca.crt`, and its key (`ca.key`, or `--ca-key`).
    CreateCa(CertFiles),
    /// A node's certificate, `node.IP-PORT.crt` and its key.
    CreateNode {
        /// The node id, IP:PORT, as the node's `--host` and `--port`.
        node: String,
        /// Other names clients reach the node by (host names or IPs).
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[command(flatten)]
        files: CertFiles,
    },
    /// A client's certificate, `client.NAME.crt` and its key.
    CreateClient {
        /// The client's name: the name it may bid and sell as without the
        /// name's secret.
        name: String,
        #[command(flatten)]
        files: CertFiles,
    },
    /// An operator's certificate, `client.NAME.crt` and its key: it may
    /// change the membership (`gavel member remove`).
    CreateOperator {
        /// The operator's name.
        #[arg(default_value = "operator")]
        name: String,
        #[command(flatten)]
        files: CertFiles,
    },
}

/// Where `gavel cert` writes.
#[derive(Args)]
pub struct CertFiles {
    /// The directory of the certificates.
    #[arg(long, env = "GAVEL_CERTS_DIR")]
    pub certs_dir: PathBuf,
    /// The CA's key (default: `ca.key` in --certs-dir). Whoever holds it
    /// can make any certificate: keep it apart from the nodes.
    #[arg(long)]
    pub ca_key: Option<PathBuf>,
    /// Replace files that exist.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Subcommand)]
pub enum MemberCommand {
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
        #[command(flatten)]
        security: ClientSecurity,
    },
}

/// The nodes `gavel member remove` tells by default: the sequential ports
/// the demo and the README use.
pub(super) const DEFAULT_NODE_PORTS: &str = "5400,5401,5402,5403,5404,5405,5406,5407,5408,5409";

#[derive(Args)]
pub struct DemoArgs {
    /// Your bidder name at the prompt.
    #[arg(long, default_value = "you")]
    pub id: String,
    /// Servers in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The first node's port; the others follow.
    #[arg(long, default_value_t = 5400)]
    pub base_port: u16,
    /// The cluster's client port.
    #[arg(long, default_value_t = 5000)]
    pub client_port: u16,
    /// How long the auction runs (default 1h; 8s for the crash tour).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Instead of the prompt, run a script and print its log.
    #[arg(long, value_enum)]
    pub script: Option<Script>,
    /// The first node's HTTP/JSON API port; the others follow.
    #[arg(long, default_value_t = 8080)]
    pub http_base_port: u16,
    /// Run the whole demo over TLS, with certificates it makes (a CA, one
    /// per node, and the prompt's operator certificate).
    #[arg(long)]
    pub secure: bool,
    /// Keep the nodes' logs (in the temporary directory) when the demo
    /// ends; without it, the demo removes everything it wrote.
    #[arg(long)]
    pub keep_logs: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Script {
    /// Crashes a backup and the leader under bids, restarts them, ends the
    /// auction: the story of `log.txt`.
    CrashTour,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory;
        fn missing(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && !arg.is_hide_set() {
                    out.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                missing(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut without = Vec::new();
        missing(&Cli::command(), "gavel", &mut without);
        assert!(without.is_empty(), "without help: {without:?}");
    }

    /// `--server` and `--peers` take the same forms: a port, IP:PORT and
    /// HOST:PORT (`--peers localhost:5400` and `--server 5000` were refused).
    #[test]
    fn servers_and_peers_take_a_port_an_address_or_a_host_name() {
        assert_eq!(parse_server("5000"), Ok("127.0.0.1:5000".to_string()));
        assert_eq!(parse_server("localhost:5000"), Ok("localhost:5000".to_string()));
        assert_eq!(parse_server("10.0.0.7:5000"), Ok("10.0.0.7:5000".to_string()));
        assert!(parse_server("0").is_err());
        assert!(parse_server("localhost").is_err());

        assert_eq!(parse_peer("5400"), Ok(Peer::Port(5400)));
        let local: SocketAddr = "127.0.0.1:5400".parse().unwrap();
        assert_eq!(parse_peer("127.0.0.1:5400"), Ok(Peer::Address(local)));
        assert_eq!(parse_peer("localhost:5400"), Ok(Peer::Address(local)));
        assert!(parse_peer("0").is_err());
        assert!(parse_peer("no such host here:5400").is_err());
    }
}
