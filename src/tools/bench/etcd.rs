//! The same closed-loop workload against etcd, for comparison: a
//! three-member etcd cluster on loopback, started from Debian's
//! `etcd-server` with its data on tmpfs (so the comparison is about
//! replication, not the disk), and one compare-and-put transaction per bid.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, KvClient, Txn, TxnOp};

use crate::auction::Verdict;

use super::load::{self, Answer, Bidder, Failure, Load};
use super::report::{NodeMemory, Report};
use super::stats::ErrorCounts;
use super::{BenchArgs, progress};

/// The key holding the highest bid: the amount as 8 big-endian bytes (byte
/// order is numeric order), then the bidder's name.
const HIGHEST: &str = "auction/highest";
const MEMBERS: usize = 3;
const START_LIMIT: Duration = Duration::from_secs(30);

/// The etcd members, killed (SIGKILL) and their data removed on drop.
struct EtcdCluster {
    members: Vec<Child>,
    client_urls: Vec<String>,
    data_dir: PathBuf,
}

impl EtcdCluster {
    fn start(args: &BenchArgs) -> anyhow::Result<Self> {
        let data_dir = args.etcd_data_root.join(format!("gavel-bench-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", args.etcd_peer_port + i as u16);
        let client_urls: Vec<String> =
            (0..MEMBERS).map(|i| format!("http://127.0.0.1:{}", args.etcd_client_port + i as u16)).collect();
        let initial_cluster = (0..MEMBERS).map(|i| format!("m{i}={}", peer_url(i))).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members: Vec::new(), client_urls: client_urls.clone(), data_dir };
        for (i, client_url) in client_urls.iter().enumerate() {
            let log = match &args.log_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)?;
                    Stdio::from(std::fs::File::create(dir.join(format!("etcd-m{i}.log")))?)
                }
                None => Stdio::null(),
            };
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(cluster.data_dir.join(format!("m{i}")))
                .arg("--listen-client-urls")
                .arg(client_url)
                .arg("--advertise-client-urls")
                .arg(client_url)
                .arg("--listen-peer-urls")
                .arg(peer_url(i))
                .arg("--initial-advertise-peer-urls")
                .arg(peer_url(i))
                .arg("--initial-cluster")
                .arg(&initial_cluster)
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg(format!("gavel-bench-{}", std::process::id()))
                .arg("--logger")
                .arg("zap")
                .arg("--log-level")
                .arg("warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting etcd (Debian: apt-get install etcd-server)")?;
            cluster.members.push(child);
        }
        Ok(cluster)
    }

    /// Waits until every member answers and they agree on a leader; returns
    /// the leader's client URL.
    async fn wait_for_leader(&self) -> anyhow::Result<String> {
        let polling = Duration::from_millis(100);
        crate::tools::cluster::poll_until("an etcd leader", START_LIMIT, polling, || self.leader()).await
    }

    async fn leader(&self) -> Option<String> {
        let mut leader = None;
        for url in &self.client_urls {
            let mut client = connect(url).await.ok()?;
            let status = client.status().await.ok()?;
            let member = status.header()?.member_id();
            if status.leader() == 0 {
                return None;
            }
            if status.leader() == member {
                leader = Some(url.clone());
            }
        }
        leader
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(1)).with_timeout(super::ATTEMPT_TIMEOUT);
    Ok(Client::connect([url], Some(options)).await?)
}

/// Bids with one etcd client (its own connection) as a compare-and-put txn.
struct EtcdBidder {
    kv: KvClient,
    bidder: Vec<u8>,
}

impl Bidder for EtcdBidder {
    async fn bid(&mut self, amount: u64, errors: &mut ErrorCounts, _load: &Load) -> Option<Answer> {
        let amount_key = amount.to_be_bytes().to_vec();
        let mut value = amount_key.clone();
        value.extend_from_slice(&self.bidder);
        // The stored value is the amount then the name, so it compares less
        // than `amount` exactly when its amount is lower: an equal bid loses.
        let txn = Txn::new()
            .when([Compare::value(HIGHEST, CompareOp::Less, amount_key)])
            .and_then([TxnOp::put(HIGHEST, value, None)]);
        let attempt_started = Instant::now();
        let verdict = match self.kv.txn(txn).await {
            Ok(response) if response.succeeded() => Ok(Verdict::Success),
            Ok(_) => Ok(Verdict::Fail),
            Err(_) => {
                errors.backend += 1;
                Err(Failure::Backend)
            }
        };
        Some(Answer { verdict, attempt_started })
    }
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    progress(args, format_args!("starting {MEMBERS} etcd members, data on {}", args.etcd_data_root.display()));
    let cluster = EtcdCluster::start(args)?;
    let leader_url = cluster.wait_for_leader().await?;
    progress(args, format_args!("etcd leader at {leader_url}"));
    // The key exists before the run, holding 0, so every bid is one compare.
    connect(&leader_url).await?.put(HIGHEST, 0u64.to_be_bytes().to_vec(), None).await?;

    let member_pids: Vec<u32> = cluster.members.iter().map(Child::id).collect();
    let foreign_cpu = super::memory::ForeignCpu::start(&member_pids);
    let load = Arc::new(Load::new(1, args.warmup, None));
    let mut workers = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let bidder =
            EtcdBidder { kv: connect(&leader_url).await?.kv_client(), bidder: format!("bidder-{client}").into_bytes() };
        workers.push(tokio::spawn(load::drive(bidder, Arc::clone(&load), load.phase_of(client, args.clients))));
    }
    let ticker = tokio::spawn(load::progress_lines(Arc::clone(&load), !args.quiet));
    load.stop_at(args.warmup + args.duration);
    tokio::time::sleep(args.warmup + args.duration).await;
    load.stop_now();
    let stats = super::join_workers(workers).await?;
    ticker.abort();
    let foreign_share = foreign_cpu.and_then(|cpu| cpu.share(&member_pids));

    let mut report = Report::new("etcd", &stats, load.measured_window());
    report.nodes = Some(MEMBERS);
    report.target = leader_url.clone();
    report.clients = args.clients;
    report.sessions = args.clients;
    report.load_generator_threads = args.worker_threads;
    report.warmup_s = args.warmup.as_secs_f64();
    report.host_cpu_foreign_share = foreign_share;
    report.node_memory = cluster
        .members
        .iter()
        .zip(&cluster.client_urls)
        .map(|(member, url)| {
            let role = if *url == leader_url { "leader" } else { "member" };
            NodeMemory::read(url.clone(), role.into(), Some(member.id()))
        })
        .collect();
    report.notes.push(format!(
        "etcd {MEMBERS} members on loopback, data on {}{}; \
         every client has its own connection to the etcd leader; each bid is one txn: \
         compare value(auction/highest) < amount, then put",
        args.etcd_data_root.display(),
        if args.etcd_data_root.starts_with("/dev/shm") { " (tmpfs: the disk is out of the comparison)" } else { "" }
    ));
    report.notes.push(format!(
        "{} client tasks and the servers share this host ({} cores)",
        args.clients,
        std::thread::available_parallelism().map_or(0, |cores| cores.get())
    ));
    Ok(report)
}
