//! Helpers shared by the integration tests: each test gets its own ports,
//! starts real `gavel server` processes (killed when the cluster drops) and
//! waits for conditions with deadlines, never fixed sleeps.

#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gavel::auction::{AuctionEvent, EventKind, Verdict};
use gavel::client::{Client, ClientConfig, node_status};
use gavel::tools::cluster::{ClusterSpec, KeepLogs, LocalCluster};
use gavel::transport::Network;

/// The ports of one test: nodes on `base..base+nodes`, clients on `client`.
pub struct Ports {
    pub base: u16,
    pub client: u16,
}

/// Each test passes its own slot, so tests running at once never share a port.
///
/// Every port the tests and CI use, in one place. Slot `s` is ports
/// `23000 + 20 s` to `23000 + 20 s + 19` (nodes from the base, HTTP at base
/// + 10 where a test serves it, the client port last):
///
/// | slots | tests |
/// |---|---|
/// | 0-8 | failover.rs |
/// | 10-12, 84 | bad_input.rs |
/// | 13 | tour.rs |
/// | 14 | signals.rs |
/// | 15, 43-47, 56-59, 75 | durable.rs (75: the fixture data-before-placement, whose node is port 24500) |
/// | 30-36, 39, 40 | hostile.rs |
/// | 37, 38, 42, 77, 83 | catalogue.rs |
/// | 41, 76, 85, 95 | watch.rs |
/// | 48 | demo.rs |
/// | 86-90, 94, 96, 97 | readers.rs |
/// | 49, 91, 92 | browser.rs (92: the README's screenshots, ignored) |
/// | 93 | readme.rs (the README's tour) |
/// | 50-53 | web_api.rs |
/// | 54, 55 | web_bench.rs (ignored: benchmarks) |
/// | 60-67 | record.rs |
/// | 68-74, 81 | chaos.rs |
/// | 78-80, 82 | secure.rs (80: refused before it binds) |
/// | 150-153 | bench.rs (ports written out: 26000-26079) |
/// | 154-157 | bench.rs (the node counts 2, 4 and 5; etcd's members' client ports from the base, peer ports from base + 10) |
///
/// Outside the slots: CI's chaos runs use nodes from 6400 and client port
/// 6000, one after the other; scripts/fuzz-api.sh nodes from 6600, client
/// port 6650, HTTP from 6680; the benchmarks nodes from 7400 and client port
/// 7000. Each local cluster keeps its membership record in a directory of
/// its own (beside its data directories, or a temporary one), so that no
/// run reads a record an earlier run left on the same client port.
pub fn ports(slot: u16) -> Ports {
    let base = 23000 + slot * 20;
    Ports { base, client: base + 19 }
}

pub fn spec(slot: u16, nodes: usize, server_args: &[&str]) -> ClusterSpec {
    let ports = ports(slot);
    let mut spec = ClusterSpec::new(env!("CARGO_BIN_EXE_gavel"), nodes, ports.base, ports.client);
    spec.server_args = server_args.iter().map(|arg| arg.to_string()).collect();
    let log_dir = std::env::temp_dir().join(format!("gavel-test-{}-slot{slot}", std::process::id()));
    spec.log_dir = Some(log_dir);
    spec.keep_logs = KeepLogs::IfFailed;
    spec.log_filter = "info,gavel=debug".into();
    spec
}

pub async fn start(slot: u16, nodes: usize, server_args: &[&str]) -> LocalCluster {
    LocalCluster::start(spec(slot, nodes, server_args)).await.expect("cluster starts")
}

/// A client of the cluster's client port (over TLS if the cluster has
/// certificates).
pub fn client(cluster: &LocalCluster) -> Client {
    let config = ClientConfig {
        servers: vec![cluster.client_address()],
        network: cluster.network().clone(),
        ..ClientConfig::default()
    };
    Client::new(config).expect("client")
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match gavel::tools::cluster::poll_until(what, deadline, Duration::from_millis(20), check).await {
        Ok(value) => value,
        Err(error) => panic!("{error}"),
    }
}

/// Waits until the cluster has accepted more than `count` bids of the
/// default auction, or panics after `deadline`; returns how many it has.
pub async fn accepted_more_than(cluster: &LocalCluster, deadline: Duration, count: u64) -> u64 {
    eventually(&format!("more than {count} bids to be accepted"), deadline, || {
        let mut reader = client(cluster);
        async move { reader.result("").await.ok().map(|(view, _)| view.accepted_bids).filter(|&accepted| accepted > count) }
    })
    .await
}

/// Bids increasing amounts from several clients until `stop`, each request
/// retried for up to 10 s; returns the amounts the service acknowledged as
/// SUCCESS, sorted.
pub fn spawn_bidders(
    network: Network,
    server: String,
    bidders: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    spawn_bidders_counted(network, server, bidders, stop, Duration::from_secs(10), Arc::default())
}

/// [`spawn_bidders`], each request retried for up to `deadline` (a full
/// restart takes longer than a failover), counting the acknowledged bids in
/// `acknowledged_count` as they come, for the test to wait on.
pub fn spawn_bidders_counted(
    network: Network,
    server: String,
    bidders: usize,
    stop: Arc<AtomicBool>,
    deadline: Duration,
    acknowledged_count: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let next_amount = Arc::new(AtomicU64::new(1));
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for bidder in 0..bidders {
            let (stop, next_amount, server) = (Arc::clone(&stop), Arc::clone(&next_amount), server.clone());
            let (network, acknowledged_count) = (network.clone(), Arc::clone(&acknowledged_count));
            tasks.push(tokio::spawn(async move {
                let config = ClientConfig { servers: vec![server], deadline, network, ..Default::default() };
                let mut client = Client::new(config).expect("client");
                let name = format!("bidder{bidder}");
                let mut acknowledged = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let amount = next_amount.fetch_add(1, Ordering::Relaxed);
                    if let Ok(outcome) = client.bid("", &name, amount).await
                        && outcome.verdict == Verdict::Success
                    {
                        acknowledged.push(amount);
                        acknowledged_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                acknowledged
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("bidder"));
        }
        all.sort_unstable();
        all
    })
}

/// Every accepted bid of the default auction, by amount.
pub async fn accepted_amounts(cluster: &LocalCluster) -> BTreeSet<u64> {
    let mut reader = client(cluster);
    let mut amounts = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = reader.history("", 1000, &token).await.expect("history");
        amounts.extend(page.bids.iter().map(|bid| bid.amount));
        if page.next_page_token.is_empty() {
            return amounts;
        }
        token = page.next_page_token;
    }
}

/// Node `node`'s own view of the membership, leader first.
pub async fn membership(cluster: &LocalCluster, node: usize) -> Option<Vec<String>> {
    node_status(cluster.network(), &cluster.node_address(node), Duration::from_millis(500))
        .await
        .ok()
        .map(|status| status.membership)
}

/// Runs `gavel member remove MEMBER --nodes NODES` and `extra` flags on
/// `cluster`'s client port and record; returns whether it succeeded, and
/// what it said.
pub fn member_remove(cluster: &LocalCluster, member: &str, nodes: &[String], extra: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["member", "remove", member, "--nodes", &nodes.join(",")])
        .args(["--client-port", &cluster.client_port().to_string()])
        .arg("--record-dir")
        .arg(cluster.record_dir())
        .args(extra)
        .output()
        .expect("gavel member remove runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

/// What a `gavel` tool (bench, chaos) said, once it ended.
pub struct ToolOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Stops a tool still running when the test ends: SIGTERM first, which
/// makes bench and chaos stop the servers they started, then SIGKILL.
struct ToolGuard(Child);

impl Drop for ToolGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) has no memory effects; the pid is this guard's child, not yet reaped.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let stopping = Instant::now();
            while matches!(self.0.try_wait(), Ok(None)) && stopping.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `gavel` with `args` to its end, or panics after `deadline` (and
/// stops it). Its output is read on threads of its own, so that a full pipe
/// never holds it up.
pub fn run_tool(args: &[String], deadline: Duration) -> ToolOutput {
    let child = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gavel starts");
    let mut tool = ToolGuard(child);
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(tool.0.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(tool.0.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = tool.0.try_wait().expect("the tool's status") {
            break status;
        }
        assert!(started.elapsed() < deadline, "gavel {} did not end within {deadline:?}", args.join(" "));
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolOutput {
        success: status.success(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// What a watcher started by [`spawn_watcher`] saw, in order.
pub type Seen = Arc<std::sync::Mutex<Vec<AuctionEvent>>>;

/// Starts a watcher of every auction after `after` (0: from now on)
/// through `servers` only, with the client library's resuming; what it
/// saw, in order, and its task.
pub fn spawn_watcher(servers: Vec<String>, after: u64) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut client = Client::new(ClientConfig { servers, ..Default::default() }).expect("client");
        let _ = client
            .watch(None, after, |event| {
                sink.lock().unwrap().push(event.clone());
                true
            })
            .await;
    });
    (seen, task)
}

/// Whether a process runs: signal 0 checks that it exists, and a zombie
/// (exited, not yet reaped) counts as gone.
pub fn is_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    let zombie = gavel::tools::bench::ProcStat::of_process(pid).is_none_or(|stat| stat.state == 'Z');
    exists && !zombie
}

/// The accepted bids among `events`: (revision, bidder, amount).
pub fn bids_of(events: &[AuctionEvent]) -> Vec<(u64, String, u64)> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::BidAccepted(bid) => Some((event.revision, bid.bidder.clone(), bid.amount)),
            _ => None,
        })
        .collect()
}
