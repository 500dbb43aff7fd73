//! Resident memory of a process, from `/proc/PID/status`, and the host's CPU
//! time, from `/proc/stat` (Linux).

/// `VmHWM` (peak resident set) and `VmRSS` (current), in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessMemory {
    pub hwm_kib: u64,
    pub rss_kib: u64,
}

impl ProcessMemory {
    /// `None` when the process is gone or its status cannot be read.
    pub fn of_pid(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }

    pub fn of_self() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(ProcessMemory { hwm_kib: field("VmHWM:")?, rss_kib: field("VmRSS:")? })
    }
}

/// The host's busy and total CPU time so far, in clock ticks (`/proc/stat`).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal...: idle and iowait are not busy.
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// What a `/proc/PID/stat` or `/proc/PID/task/TID/stat` line says of a
/// process or of one of its threads (proc(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The command or thread name.
    pub name: String,
    /// R running, S sleeping, Z zombie, T stopped, ...
    pub state: char,
    /// CPU time used, user and system, in clock ticks.
    pub cpu_ticks: u64,
    /// The nice value, -20 (first served) to 19.
    pub nice: i64,
}

impl ProcStat {
    /// Parses one stat line.
    pub fn parse(stat: &str) -> Option<Self> {
        // The name is in parentheses and may hold spaces and ')': the fields
        // proper start after the last ')', with the 3rd of proc(5).
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3).copied();
        let ticks = |number: usize| field(number)?.parse::<u64>().ok();
        Some(ProcStat {
            name,
            state: field(3)?.chars().next()?,
            cpu_ticks: ticks(14)? + ticks(15)?,
            nice: field(19)?.parse().ok()?,
        })
    }

    /// A process's line.
    pub fn of_process(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The lines of each of a process's threads.
    pub fn of_threads(pid: u32) -> Vec<Self> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
        tasks
            .flatten()
            .filter_map(|task| Self::parse(&std::fs::read_to_string(task.path().join("stat")).ok()?))
            .collect()
    }
}

/// CPU time (user + system, clock ticks) a process has used, all threads.
fn process_ticks(pid: u32) -> Option<u64> {
    ProcStat::of_process(pid).map(|stat| stat.cpu_ticks)
}

/// The host's CPU time other processes than ours use while a run goes on:
/// the bench shares the host, and anything else running skews its figures.
pub(crate) struct ForeignCpu {
    busy: u64,
    total: u64,
    ours: u64,
    /// This process's own ticks, and the nodes', at the start.
    own: u64,
    nodes: u64,
    started: std::time::Instant,
}

impl ForeignCpu {
    /// Starts counting; `pids` are the processes the run started, besides this one.
    pub fn start(pids: &[u32]) -> Option<Self> {
        let (busy, total) = cpu_times()?;
        let own = process_ticks(std::process::id()).unwrap_or(0);
        let nodes = pids.iter().filter_map(|&pid| process_ticks(pid)).sum::<u64>();
        Some(ForeignCpu { busy, total, ours: own + nodes, own, nodes, started: std::time::Instant::now() })
    }

    /// The cores this process (the load generator, with any readers) and
    /// the nodes in `pids` kept busy on average since the start.
    pub fn cores(&self, pids: &[u32]) -> (f64, f64) {
        // SAFETY: sysconf reads a constant of the system; it has no preconditions.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let seconds = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let own = process_ticks(std::process::id()).unwrap_or(0).saturating_sub(self.own);
        let nodes = pids.iter().filter_map(|&pid| process_ticks(pid)).sum::<u64>().saturating_sub(self.nodes);
        (own as f64 / ticks_per_second / seconds, nodes as f64 / ticks_per_second / seconds)
    }

    fn ours(pids: &[u32]) -> u64 {
        process_ticks(std::process::id()).unwrap_or(0) + pids.iter().filter_map(|&pid| process_ticks(pid)).sum::<u64>()
    }

    /// The share of all CPU time since the start that went to other
    /// processes. Processes of ours that died meanwhile (killed leaders)
    /// count as foreign, so this errs on the high side.
    pub fn share(&self, pids: &[u32]) -> Option<f64> {
        let (busy, total) = cpu_times()?;
        let total = total.checked_sub(self.total)?;
        let ours = Self::ours(pids).saturating_sub(self.ours);
        let foreign = busy.saturating_sub(self.busy).saturating_sub(ours);
        (total > 0).then(|| foreign as f64 / total as f64)
    }
}

/// The share of the host's CPU time that was busy over `window`.
pub(crate) async fn host_busy(window: std::time::Duration) -> Option<f64> {
    let (busy_before, total_before) = cpu_times()?;
    tokio::time::sleep(window).await;
    let (busy_after, total_after) = cpu_times()?;
    let total = total_after.checked_sub(total_before)?;
    (total > 0).then(|| busy_after.saturating_sub(busy_before) as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    /// A name with spaces and a parenthesis, as a thread may take.
    #[test]
    fn a_stat_line_is_read_past_its_name() {
        let line = "4242 (gavel (x) r) S 1 4242 4242 0 -1 4194560 90 0 0 0 17 5 0 0 30 10 3 0 100 0 0";
        let stat = super::ProcStat::parse(line).expect("a stat line");
        assert_eq!(stat, super::ProcStat { name: "gavel (x) r".into(), state: 'S', cpu_ticks: 22, nice: 10 });
        assert_eq!(super::ProcStat::parse("4242 (cut short) S 1"), None);
    }

    use super::*;

    #[test]
    fn reads_peak_and_current_resident_memory() {
        let status = "Name:\tgavel\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(ProcessMemory::parse(status), Some(ProcessMemory { hwm_kib: 2048, rss_kib: 1024 }));
    }

    #[test]
    fn this_process_has_used_cpu_time() {
        let spin_for = |millis| {
            let spin = std::time::Instant::now();
            while spin.elapsed() < std::time::Duration::from_millis(millis) {}
        };
        spin_for(30);
        assert!(process_ticks(std::process::id()).is_some());
        // The clock ticks every 10 ms: a share needs a window of a few ticks.
        let cpu = ForeignCpu::start(&[]).expect("/proc/stat");
        spin_for(100);
        let share = cpu.share(&[]).expect("ticks passed");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }

    #[test]
    fn this_process_has_memory() {
        let memory = ProcessMemory::of_self().expect("/proc/self/status");
        assert!(memory.hwm_kib >= memory.rss_kib && memory.rss_kib > 0);
    }
}
