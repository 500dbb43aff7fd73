//! What a bench run found, as one JSON object for scripts and as a table for
//! people. Latencies are in microseconds, pauses in milliseconds, memory in KiB.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::memory::ProcessMemory;
use super::stats::{ErrorCounts, WorkerStats};

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `gavel`, `etcd` or `null`.
    pub system: String,
    /// How gavel was driven: `connection` or `client`.
    pub driver: Option<String>,
    /// Servers in the cluster the bench started; none for `--target`.
    pub nodes: Option<usize>,
    pub target: String,
    pub clients: usize,
    pub sessions: usize,
    /// The load generator's runtime threads (1: a single-threaded event loop).
    pub load_generator_threads: usize,
    /// Each gavel (or null) server's runtime threads, when the bench started them.
    pub server_threads: Option<usize>,
    pub warmup_s: f64,
    /// The measured window.
    pub duration_s: f64,
    /// Bids the service answered (SUCCESS, FAIL or EXCEPTION) in the window:
    /// gavel and etcd committed each one before answering it (the null
    /// server commits nothing).
    pub answered: u64,
    pub bids_per_second: f64,
    pub outcomes: Outcomes,
    pub latency_us: Latency,
    pub errors: ErrorCounts,
    /// Each server's peak (`VmHWM`) and current (`VmRSS`) resident memory at the end.
    pub node_memory: Vec<NodeMemory>,
    /// The bench process itself.
    pub load_generator_hwm_kib: Option<u64>,
    /// The host's share of CPU time busy over the second before the run
    /// (from `/proc/stat`): other work on the machine skews every figure.
    pub host_busy_before: Option<f64>,
    /// The share of the host's CPU time other processes used during the
    /// run (warmup included): above a few percent, the figures understate.
    pub host_cpu_foreign_share: Option<f64>,
    pub failover: Option<FailoverReport>,
    pub memory: Option<MemoryReport>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    pub success: u64,
    pub fail: u64,
    pub exception: u64,
}

/// The answered bids' latency, from invocation to answer, retries included.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One server's memory.
#[derive(Clone, Debug, Serialize)]
pub struct NodeMemory {
    pub node: String,
    pub role: String,
    pub pid: Option<u32>,
    pub vm_hwm_kib: Option<u64>,
    pub vm_rss_kib: Option<u64>,
}

impl NodeMemory {
    pub fn read(node: String, role: String, pid: Option<u32>) -> Self {
        let memory = pid.and_then(ProcessMemory::of_pid);
        NodeMemory {
            node,
            role,
            pid,
            vm_hwm_kib: memory.map(|memory| memory.hwm_kib),
            vm_rss_kib: memory.map(|memory| memory.rss_kib),
        }
    }
}

/// The failover trials.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    /// What the figures mean, in words.
    pub definition: String,
    pub trials: Vec<Trial>,
    pub kill_to_first_ack_ms: Summary,
    pub longest_stall_ms: Summary,
}

/// One leader kill.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub trial: usize,
    pub killed: String,
    pub new_leader: Option<String>,
    /// From kill(2) to the killed process reaped.
    pub kill_to_reaped_ms: f64,
    /// From kill(2) to the first SUCCESS answer to an attempt sent after the
    /// old leader was reaped; none if no such answer came within the limit.
    pub kill_to_first_ack_ms: Option<f64>,
    /// The longest gap between two consecutive answers of one client that
    /// spans the kill.
    pub longest_stall_ms: Option<f64>,
    /// How long the restarted node took to rejoin as a backup.
    pub rejoin_ms: Option<f64>,
}

/// Order statistics of a few values (nearest rank).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |quantile: f64| {
            let index = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[index]
        };
        Summary { count: values.len(), min: values[0], p50: rank(0.5), p99: rank(0.99), max: values[values.len() - 1] }
    }
}

/// The `--bids` run: the leader's memory as the bids go by.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    pub leader: String,
    pub leader_pid: Option<u32>,
    pub sessions: usize,
    pub bids: u64,
    pub checkpoints: Vec<MemoryCheckpoint>,
    /// Resident memory added from the first checkpoint at or past half the
    /// bids to the last: what a per-request leak would show as.
    pub rss_growth_second_half_kib: Option<i64>,
    pub rss_growth_per_bid_second_half_bytes: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemoryCheckpoint {
    /// Bids answered when the leader's memory was read.
    pub bids: u64,
    pub vm_rss_kib: Option<u64>,
    pub vm_hwm_kib: Option<u64>,
}

impl MemoryCheckpoint {
    pub fn read(bids: u64, pid: Option<u32>) -> Self {
        let memory = pid.and_then(ProcessMemory::of_pid);
        MemoryCheckpoint {
            bids,
            vm_rss_kib: memory.map(|memory| memory.rss_kib),
            vm_hwm_kib: memory.map(|memory| memory.hwm_kib),
        }
    }
}

impl MemoryReport {
    pub fn new(
        leader: String,
        leader_pid: Option<u32>,
        sessions: usize,
        bids: u64,
        checkpoints: Vec<MemoryCheckpoint>,
    ) -> Self {
        let half = checkpoints.iter().find(|checkpoint| checkpoint.bids * 2 >= bids);
        let last = checkpoints.last();
        let (growth, per_bid) = match (half, last) {
            (Some(half), Some(last)) => match (half.vm_rss_kib, last.vm_rss_kib) {
                (Some(from), Some(to)) if last.bids > half.bids => {
                    let growth = to as i64 - from as i64;
                    (Some(growth), Some(growth as f64 * 1024.0 / (last.bids - half.bids) as f64))
                }
                _ => (None, None),
            },
            _ => (None, None),
        };
        MemoryReport {
            leader,
            leader_pid,
            sessions,
            bids,
            checkpoints,
            rss_growth_second_half_kib: growth,
            rss_growth_per_bid_second_half_bytes: per_bid,
        }
    }
}

impl Report {
    pub(crate) fn new(system: &str, stats: &WorkerStats, window: Duration) -> Self {
        let histogram = &stats.latency;
        let micros = |nanos: u64| nanos as f64 / 1_000.0;
        let latency = if histogram.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: micros(histogram.value_at_quantile(0.5)),
                p90: micros(histogram.value_at_quantile(0.9)),
                p99: micros(histogram.value_at_quantile(0.99)),
                p999: micros(histogram.value_at_quantile(0.999)),
                max: micros(histogram.max()),
                mean: histogram.mean() / 1_000.0,
            }
        };
        let seconds = window.as_secs_f64();
        let answered = stats.answered();
        Report {
            system: system.to_string(),
            driver: None,
            nodes: None,
            target: String::new(),
            clients: 0,
            sessions: 0,
            load_generator_threads: 0,
            server_threads: None,
            warmup_s: 0.0,
            duration_s: seconds,
            answered,
            bids_per_second: if seconds > 0.0 { answered as f64 / seconds } else { 0.0 },
            outcomes: Outcomes { success: stats.success, fail: stats.fail, exception: stats.exception },
            latency_us: latency,
            errors: stats.errors.clone(),
            node_memory: Vec::new(),
            load_generator_hwm_kib: ProcessMemory::of_self().map(|memory| memory.hwm_kib),
            host_busy_before: None,
            host_cpu_foreign_share: None,
            failover: None,
            memory: None,
            notes: Vec::new(),
        }
    }

    /// The report for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let nodes = self.nodes.map_or(format!("target {}", self.target), |nodes| format!("{nodes} nodes"));
        let driver = self.driver.as_ref().map_or(String::new(), |driver| format!(", driver {driver}"));
        let _ = writeln!(
            out,
            "{} bench: {nodes}, {} clients, {} sessions{driver}; {:.1} s measured after {:.1} s warmup",
            self.system, self.clients, self.sessions, self.duration_s, self.warmup_s
        );
        let row = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "  {name:<18} {value}");
        };
        row(&mut out, "answered bids", format!("{}  ({:.0}/s)", self.answered, self.bids_per_second));
        row(
            &mut out,
            "outcomes",
            format!(
                "success {}  fail {}  exception {}",
                self.outcomes.success, self.outcomes.fail, self.outcomes.exception
            ),
        );
        let l = &self.latency_us;
        row(
            &mut out,
            "latency (us)",
            format!(
                "p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  mean {:.0}",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean
            ),
        );
        row(&mut out, "errors", self.errors.describe());
        for node in &self.node_memory {
            let kib =
                |value: Option<u64>| value.map_or("?".to_string(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0));
            row(
                &mut out,
                "memory",
                format!("{} {:<7} peak {}  now {}", node.node, node.role, kib(node.vm_hwm_kib), kib(node.vm_rss_kib)),
            );
        }
        if let Some(failover) = &self.failover {
            let _ = writeln!(out, "  failover trials    ({})", failover.definition);
            let ms = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{ms:.1}"));
            let _ = writeln!(
                out,
                "    {:>5}  {:<16} {:<16} {:>10} {:>10} {:>10}",
                "trial", "killed", "new leader", "first ack", "stall", "rejoin"
            );
            for trial in &failover.trials {
                let _ = writeln!(
                    out,
                    "    {:>5}  {:<16} {:<16} {:>10} {:>10} {:>10}",
                    trial.trial,
                    trial.killed,
                    trial.new_leader.as_deref().unwrap_or("-"),
                    ms(trial.kill_to_first_ack_ms),
                    ms(trial.longest_stall_ms),
                    ms(trial.rejoin_ms)
                );
            }
            let summary =
                |s: &Summary| format!("p50 {:.1}  p99 {:.1}  max {:.1} ms (n={})", s.p50, s.p99, s.max, s.count);
            row(&mut out, "kill -> first ack", summary(&failover.kill_to_first_ack_ms));
            row(&mut out, "longest stall", summary(&failover.longest_stall_ms));
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(
                out,
                "  leader memory      {} over {} bids from {} sessions",
                memory.leader, memory.bids, memory.sessions
            );
            for checkpoint in &memory.checkpoints {
                let _ = writeln!(
                    out,
                    "    after {:>9} bids: rss {:>8} KiB  peak {:>8} KiB",
                    checkpoint.bids,
                    checkpoint.vm_rss_kib.map_or("?".into(), |kib| kib.to_string()),
                    checkpoint.vm_hwm_kib.map_or("?".into(), |kib| kib.to_string())
                );
            }
            if let (Some(growth), Some(per_bid)) =
                (memory.rss_growth_second_half_kib, memory.rss_growth_per_bid_second_half_bytes)
            {
                row(&mut out, "second half growth", format!("{growth} KiB ({per_bid:.3} bytes per bid)"));
            }
        }
        if let Some(busy) = self.host_busy_before {
            row(&mut out, "host before run", format!("{:.0}% busy", busy * 100.0));
        }
        if let Some(foreign) = self.host_cpu_foreign_share {
            row(&mut out, "other processes", format!("{:.1}% of the host's CPU during the run", foreign * 100.0));
        }
        for note in &self.notes {
            row(&mut out, "note", note.clone());
        }
        out
    }
}
