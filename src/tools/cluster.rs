//! Local clusters of `gavel server` processes on sequential ports: what the
//! demo, the chaos runs, the benchmarks and the integration tests start,
//! crash, freeze and restart. Every process is killed when the cluster is
//! dropped.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::node_status;
use crate::replication::{NodeStatus, Role};
use crate::security::certs::CertsDir;
use crate::transport::Network;
use crate::transport::Tls;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `gavel` binary.
    pub binary: PathBuf,
    pub nodes: usize,
    /// Node `i` listens on `base_port + i`.
    pub base_port: u16,
    pub client_port: u16,
    /// More flags for every `gavel server` (timeouts, duration).
    pub server_args: Vec<String>,
    /// Where each node's log goes (`node-PORT.log`); none discards them.
    pub log_dir: Option<PathBuf>,
    /// Whether the logs stay once the cluster is dropped.
    pub keep_logs: KeepLogs,
    /// The `RUST_LOG` filter given to the servers.
    pub log_filter: String,
    /// Where the nodes keep their state (`node-PORT` each), so that it
    /// survives a restart of every node; none keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    /// Node `i` serves the HTTP/JSON API on `http_base_port + i`; none
    /// serves no HTTP.
    pub http_base_port: Option<u16>,
    /// The cluster's certificates (`gavel cert`): each node runs with
    /// `--certs-dir`, and the cluster's own probes speak TLS. None: plain,
    /// unless `secure`.
    pub certs_dir: Option<PathBuf>,
    /// Without `certs_dir`: make a CA and certificates of the cluster's own
    /// (each node's, and an operator's), removed when it is dropped.
    pub secure: bool,
    /// Where the nodes keep the membership record. None: beside the data
    /// directories (`record`) when they have them, else a directory of this
    /// cluster's own, removed when it is dropped, so that no cluster reads
    /// the record an earlier one left on the same client port.
    pub record_dir: Option<PathBuf>,
}

/// Whether a cluster's logs outlive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepLogs {
    /// For the person who ran it (the demo, the tools): they read them after.
    Always,
    /// For a test: kept where it failed, to read why; removed where it
    /// passed, so that runs do not fill the temporary directory.
    IfFailed,
}

impl ClusterSpec {
    pub fn new(binary: impl Into<PathBuf>, nodes: usize, base_port: u16, client_port: u16) -> Self {
        ClusterSpec {
            binary: binary.into(),
            nodes,
            base_port,
            client_port,
            server_args: Vec::new(),
            log_dir: None,
            keep_logs: KeepLogs::Always,
            log_filter: "info".into(),
            data_dir: None,
            http_base_port: None,
            certs_dir: None,
            secure: false,
            record_dir: None,
        }
    }
}

struct LocalNode {
    port: u16,
    child: Option<Child>,
    frozen: bool,
}

/// A running local cluster.
pub struct LocalCluster {
    spec: ClusterSpec,
    nodes: Vec<LocalNode>,
    record_dir: PathBuf,
    /// Whether the record's directory is this cluster's alone, to remove
    /// when it is dropped.
    owns_record_dir: bool,
    /// How the cluster's own probes reach the nodes.
    network: Network,
    /// Whether the certificates are this cluster's own, to remove when it
    /// is dropped.
    owns_certs_dir: bool,
}

/// How long a node may take to start and find its place.
const START_DEADLINE: Duration = Duration::from_secs(15);
const PROBE: Duration = Duration::from_millis(200);

impl LocalCluster {
    /// Starts the nodes one after the other, each once the previous one has
    /// its role, so that the join order (the leaderQueue) is the port order.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        if let Some(dir) = &spec.log_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let nodes = (0..spec.nodes)
            .map(|i| LocalNode { port: spec.base_port + i as u16, child: None, frozen: false })
            .collect();
        let (record_dir, owns_record_dir) = match (&spec.record_dir, &spec.data_dir) {
            (Some(dir), _) => (dir.clone(), false),
            (None, Some(data)) => (data.join("record"), false),
            (None, None) => {
                let name = format!("gavel-record-{}-{}", std::process::id(), spec.client_port);
                let dir = std::env::temp_dir().join(name);
                // A directory of the same name is left from a process with
                // this pid that died before dropping its cluster.
                let _ = std::fs::remove_dir_all(&dir);
                (dir, true)
            }
        };
        let mut spec = spec;
        let owns_certs_dir = spec.secure && spec.certs_dir.is_none();
        if owns_certs_dir {
            let dir = std::env::temp_dir().join(format!("gavel-certs-{}-{}", std::process::id(), spec.client_port));
            let _ = std::fs::remove_dir_all(&dir);
            let nodes: Vec<String> =
                (0..spec.nodes).map(|i| format!("127.0.0.1:{}", spec.base_port as usize + i)).collect();
            CertsDir::new(&dir).create_cluster(&nodes).context("making the cluster's certificates")?;
            spec.certs_dir = Some(dir);
        }
        let tls = match &spec.certs_dir {
            Some(dir) => Some(Tls::for_client(dir, None)?),
            None => None,
        };
        let network = Network::tcp().with_tls(tls);
        let mut cluster = LocalCluster { spec, nodes, record_dir, owns_record_dir, network, owns_certs_dir };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
            cluster.wait_until_settled(i, START_DEADLINE).await?;
        }
        Ok(cluster)
    }

    /// The cluster's certificates, if it runs with TLS.
    pub fn certs_dir(&self) -> Option<&std::path::Path> {
        self.spec.certs_dir.as_deref()
    }

    /// The network the cluster's nodes are reached by: over TLS, trusting
    /// the cluster's CA, when it has certificates.
    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node_address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// Where node `i` serves the HTTP/JSON API, if the spec gives it a port.
    pub fn http_address(&self, i: usize) -> Option<String> {
        self.spec.http_base_port.map(|base| format!("127.0.0.1:{}", base + i as u16))
    }

    pub fn client_port(&self) -> u16 {
        self.spec.client_port
    }

    pub fn client_address(&self) -> String {
        format!("127.0.0.1:{}", self.spec.client_port)
    }

    /// The index of the node with this address.
    pub fn index_of(&self, address: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.node_address(i) == address)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn is_frozen(&self, i: usize) -> bool {
        self.nodes[i].frozen
    }

    /// Where node `i` writes its log, if the spec keeps logs.
    pub fn log_file(&self, i: usize) -> Option<PathBuf> {
        let port = self.nodes[i].port;
        self.spec.log_dir.as_ref().map(|dir| dir.join(format!("node-{port}.log")))
    }

    /// Where node `i` keeps its state, if the spec gives the nodes a disk.
    pub fn data_dir(&self, i: usize) -> Option<PathBuf> {
        let port = self.nodes[i].port;
        self.spec.data_dir.as_ref().map(|dir| dir.join(format!("node-{port}")))
    }

    /// Where the nodes keep the membership record.
    pub fn record_dir(&self) -> &std::path::Path {
        &self.record_dir
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let port = self.nodes[i].port;
        let data_dir: Vec<String> = match self.data_dir(i) {
            Some(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            None => Vec::new(),
        };
        let certs_dir: Vec<String> = match &self.spec.certs_dir {
            Some(dir) => vec!["--certs-dir".into(), dir.display().to_string()],
            None => Vec::new(),
        };
        let http_port: Vec<String> = match self.spec.http_base_port {
            Some(base) => vec!["--http-port".into(), (base + i as u16).to_string()],
            None => Vec::new(),
        };
        // A cluster of one has no peers to name.
        let peers: Vec<String> = match self.peer_list(i) {
            list if list.is_empty() => Vec::new(),
            list => vec!["--peers".into(), list],
        };
        let stderr = match self.log_file(i) {
            Some(path) => {
                let file = File::options().create(true).append(true).open(&path)?;
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        let child = Command::new(&self.spec.binary)
            .arg("server")
            .arg("--port")
            .arg(port.to_string())
            .arg("--client-port")
            .arg(self.spec.client_port.to_string())
            .args(&peers)
            .args(&self.spec.server_args)
            .arg("--record-dir")
            .arg(&self.record_dir)
            .args(&data_dir)
            .args(&http_port)
            .args(&certs_dir)
            .env("RUST_LOG", &self.spec.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.binary.display()))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].frozen = false;
        Ok(())
    }

    fn peer_list(&self, i: usize) -> String {
        (0..self.nodes.len()).filter(|&j| j != i).map(|j| self.node_address(j)).collect::<Vec<_>>().join(",")
    }

    fn signal(&self, i: usize, signal: libc::c_int) -> anyhow::Result<()> {
        let Some(pid) = self.pid(i) else { bail!("node {} is not running", self.node_address(i)) };
        // SAFETY: kill(2) has no memory effects; the pid is our own child,
        // not yet reaped, so it cannot name another process.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if result != 0 {
            bail!("signal {signal} to pid {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGKILL: the crash the service is built to survive.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, libc::SIGKILL)?;
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait();
        }
        self.nodes[i].frozen = false;
        Ok(())
    }

    /// SIGKILLs every running node (a frozen one too): the crash of the
    /// whole cluster. Returns the nodes it killed.
    pub fn kill_all(&mut self) -> anyhow::Result<Vec<usize>> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_running(i)).collect();
        for &i in &running {
            self.kill(i)?;
        }
        Ok(running)
    }

    /// SIGTERM: the graceful stop (a leader hands over, a backup leaves).
    /// Waits up to `deadline` for the process to exit, then kills it; says
    /// whether it exited by itself.
    pub async fn stop(&mut self, i: usize, deadline: Duration) -> anyhow::Result<bool> {
        self.signal(i, libc::SIGTERM)?;
        let Some(mut child) = self.nodes[i].child.take() else { return Ok(true) };
        self.nodes[i].frozen = false;
        let exited = poll_until("the node to exit", deadline, Duration::from_millis(1), || {
            let exited = child.try_wait().ok().flatten().is_some();
            async move { exited.then_some(()) }
        })
        .await
        .is_ok();
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(exited)
    }

    /// SIGSTOP: the process stays, silent, holding its sockets.
    pub fn freeze(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, libc::SIGSTOP)?;
        self.nodes[i].frozen = true;
        Ok(())
    }

    pub fn thaw(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, libc::SIGCONT)?;
        self.nodes[i].frozen = false;
        Ok(())
    }

    /// Starts a killed node again: with its data directory, from what its
    /// disk holds; without, with an empty state (it rejoins as a backup).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].child.is_some() {
            bail!("node {} is still running", self.node_address(i));
        }
        self.spawn(i)
    }

    /// Every node's answer to a status probe, `None` where none came.
    pub async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let mut statuses = Vec::with_capacity(self.nodes.len());
        for i in 0..self.nodes.len() {
            let status = if self.is_running(i) && !self.is_frozen(i) {
                node_status(&self.network, &self.node_address(i), PROBE).await.ok()
            } else {
                None
            };
            statuses.push(status);
        }
        statuses
    }

    /// The node that says it leads and holds the client port.
    pub async fn leader(&self) -> Option<usize> {
        let on_client_port = node_status(&self.network, &self.client_address(), PROBE).await.ok()?;
        (on_client_port.role == Role::Leader).then(|| self.index_of(&on_client_port.node)).flatten()
    }

    /// Waits until node `i` leads, or is a backup in the membership.
    pub async fn wait_until_settled(&self, i: usize, deadline: Duration) -> anyhow::Result<NodeStatus> {
        let what = format!("node {} to join", self.node_address(i));
        poll_until(&what, deadline, Duration::from_millis(20), || async {
            let status = node_status(&self.network, &self.node_address(i), PROBE).await.ok()?;
            let settled = status.role == Role::Leader
                || (status.role == Role::Backup && status.membership.contains(&status.node));
            settled.then_some(status)
        })
        .await
    }

    /// Waits until a leader serves the client port; returns its index.
    pub async fn wait_for_leader(&self, deadline: Duration) -> anyhow::Result<usize> {
        poll_until("a leader on the client port", deadline, Duration::from_millis(10), || self.leader()).await
    }
}

/// Polls `check` every `interval` until it gives a value, or fails once
/// `deadline` has passed.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    deadline: Duration,
    interval: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if self.owns_record_dir {
            let _ = std::fs::remove_dir_all(&self.record_dir);
        }
        if let (true, Some(dir)) = (self.owns_certs_dir, &self.spec.certs_dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
        // A test that failed is unwinding through this drop. Only this
        // cluster's logs go: another cluster may share the directory.
        if self.spec.keep_logs == KeepLogs::IfFailed && !std::thread::panicking() {
            for log in (0..self.nodes.len()).filter_map(|i| self.log_file(i)) {
                let _ = std::fs::remove_file(log);
            }
            if let Some(dir) = &self.spec.log_dir {
                // Refused while anything else is in it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}
