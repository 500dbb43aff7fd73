//! What the chaos clients share, the fair ones and the hostile one: the
//! recorder their operations go into, and how long each keeps trying.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::history::{History, Operation};

/// How long a client keeps retrying one operation before recording it as
/// unknown: longer than a freeze plus a takeover, so most operations resolve.
pub(super) const CLIENT_DEADLINE: Duration = Duration::from_secs(4);

/// Collects operations from every client, one history per auction: each
/// auction is checked against its own model.
#[derive(Default)]
pub(super) struct Recorder {
    next_id: AtomicU64,
    operations: Mutex<BTreeMap<String, Vec<Operation>>>,
}

impl Recorder {
    /// The id of the next operation, in invocation order.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn record(&self, auction_id: &str, operation: Operation) {
        let mut operations = self.operations.lock().unwrap_or_else(PoisonError::into_inner);
        operations.entry(auction_id.to_string()).or_default().push(operation);
    }

    /// Every auction's history so far, each in invocation order; the
    /// recorder is left empty.
    pub(super) fn histories(&self) -> BTreeMap<String, History> {
        let operations = std::mem::take(&mut *self.operations.lock().unwrap_or_else(PoisonError::into_inner));
        operations
            .into_iter()
            .map(|(auction_id, mut operations)| {
                operations.sort_by_key(|operation| operation.id);
                (auction_id, History { operations })
            })
            .collect()
    }
}
