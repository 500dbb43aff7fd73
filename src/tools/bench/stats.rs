//! What the bidders count: each client's latencies, outcomes and errors,
//! merged into the run's totals. The workload ([`super::load`]) fills them
//! in and the report ([`super::report`]) reads them; neither imports the other.

use hdrhistogram::Histogram;
use serde::Serialize;

/// What one client measured.
pub(crate) struct WorkerStats {
    /// Latency of measured answers, nanoseconds, retries included.
    pub latency: Histogram<u64>,
    pub success: u64,
    pub fail: u64,
    pub exception: u64,
    pub errors: ErrorCounts,
}

impl WorkerStats {
    pub fn new() -> Self {
        // 1 µs to 100 s at three significant digits.
        let latency = Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds");
        WorkerStats { latency, success: 0, fail: 0, exception: 0, errors: ErrorCounts::default() }
    }

    pub fn merge(&mut self, other: WorkerStats) {
        self.latency.add(&other.latency).expect("histograms with the same bounds");
        self.success += other.success;
        self.fail += other.fail;
        self.exception += other.exception;
        self.errors.add(&other.errors);
    }

    pub fn answered(&self) -> u64 {
        self.success + self.fail + self.exception
    }
}

/// Failed attempts by kind. Every kind but `rejected` and `gave_up` was retried.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ErrorCounts {
    /// The connection failed or was refused (no leader on the client port).
    pub unavailable: u64,
    /// A node answered that it is not the leader.
    pub not_leader: u64,
    /// No answer within the attempt timeout.
    pub timeout: u64,
    /// The server refused the request: not retried.
    pub rejected: u64,
    /// No answer before the request's deadline.
    pub gave_up: u64,
    /// etcd returned an error: not retried.
    pub backend: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.unavailable + self.not_leader + self.timeout + self.rejected + self.gave_up + self.backend
    }

    pub fn add(&mut self, other: &ErrorCounts) {
        self.unavailable += other.unavailable;
        self.not_leader += other.not_leader;
        self.timeout += other.timeout;
        self.rejected += other.rejected;
        self.gave_up += other.gave_up;
        self.backend += other.backend;
    }

    /// The kinds that occurred, with their counts, or `none`.
    pub(crate) fn describe(&self) -> String {
        let kinds = [
            ("unavailable", self.unavailable),
            ("not_leader", self.not_leader),
            ("timeout", self.timeout),
            ("rejected", self.rejected),
            ("gave_up", self.gave_up),
            ("backend", self.backend),
        ];
        let nonzero: Vec<String> =
            kinds.iter().filter(|(_, count)| *count > 0).map(|(kind, count)| format!("{kind} {count}")).collect();
        if nonzero.is_empty() { "none".into() } else { nonzero.join(", ") }
    }
}
