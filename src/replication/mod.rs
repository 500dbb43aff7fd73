//! The primary-backup replication core, sans I/O.
//!
//! [`Leader`] and [`Backup`] are state machines: the node layer feeds them
//! events (a proposed command, a read, an ack, entries from the leader, a
//! lost peer, a tick) with the current time, and performs the [`Action`]s
//! they emit. They own no sockets, tasks or clocks, so the protocol is
//! unit-tested with an in-memory network (see the tests module). They are
//! generic over the [`StateMachine`] they replicate, and know nothing of
//! what its commands mean.

mod backup;
mod leader;
mod machine;
mod record;
mod state;
mod status;
mod takeover;
#[cfg(test)]
mod tests;

pub use backup::{Backup, ReplicationError};
pub use leader::{Action, Event, Leader, LeaderSettings, Message, Reply};
pub use machine::{EventSource, Proposed, RateLimit, StateMachine};
pub use record::{Member, MembershipRecord, UNKNOWN_INCARNATION};
pub use state::{Entry, LogPosition, Payload, ReplicatedState, Snapshot};
pub use status::{DiskCounts, NodeStatus, RecordView, Role};
pub use takeover::{
    MAX_EPOCH_LEAD, SelfView, Succession, choose_successor, highest_credible_epoch, successor_epoch_floor,
};

/// A node's identity: the address of its own port, e.g. `127.0.0.1:5400`.
pub type NodeId = String;

/// The time, as the node layer reads it once per step.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// For timeouts.
    pub instant: std::time::Instant,
    /// For stamping commands and judging deadlines.
    pub unix_ms: i64,
}

impl Now {
    pub fn read() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        Now { instant: std::time::Instant::now(), unix_ms }
    }

    /// The same clock, `millis` later: for tests and simulations.
    pub fn advanced(self, millis: u64) -> Self {
        Now { instant: self.instant + std::time::Duration::from_millis(millis), unix_ms: self.unix_ms + millis as i64 }
    }
}

/// The epoch a new leader takes, above `highest_seen`.
///
/// Epochs are unique per leadership: the high 32 bits count leaderships, the
/// low 32 bits are a random nonce the new leader draws. Two successors that
/// take over from the same highest epoch (one unaware of the other's short
/// reign) thus never share an epoch, so an `(epoch, index)` pair names one
/// entry only, which is what catch-up by suffix relies on.
///
/// It never wraps: epoch numbers at or above [`MAX_EPOCH_NUMBER`] could
/// not have been issued (that many leaderships would take millennia), so
/// every node refuses them, and the count saturates below the top bit.
pub fn next_epoch(highest_seen: u64, nonce: u32) -> u64 {
    let number = (epoch_number(highest_seen) + 1).min(MAX_EPOCH_NUMBER - 1);
    (number << 32) | u64::from(nonce)
}

/// The epoch of the leadership whose takeover (or bootstrap) stored a
/// record of epoch number `number` (see [`MembershipRecord::epoch`]); the
/// nonce only tells apart leaderships of a cluster whose record was lost.
pub fn epoch_of_record(number: u64, nonce: u32) -> u64 {
    (number.min(MAX_EPOCH_NUMBER - 1) << 32) | u64::from(nonce)
}

/// The epoch number a takeover (or bootstrap) write stores: above the
/// record it replaces, if any, and above every epoch number its writer has
/// seen, so that the new leadership's epoch outranks every entry in any log.
pub fn takeover_epoch_number(stored: Option<&MembershipRecord>, highest_epoch_seen: u64) -> u64 {
    let above_record = stored.map_or(1, |record| record.epoch + 1);
    above_record.max(epoch_number(highest_epoch_seen) + 1).min(MAX_EPOCH_NUMBER - 1)
}

/// Epoch numbers from here up could not have been issued: a peer or leader
/// that reports one is refused (it would make the next epoch wrap).
pub const MAX_EPOCH_NUMBER: u64 = 1 << 31;

/// Whether `epoch` could have been issued by a leader.
pub fn is_possible_epoch(epoch: u64) -> bool {
    epoch_number(epoch) < MAX_EPOCH_NUMBER
}

/// The count of leaderships an epoch stands for: what people are shown.
pub fn epoch_number(epoch: u64) -> u64 {
    epoch >> 32
}

/// How one node's log compares to another's when choosing who takes over:
/// a later epoch wins, then a longer log.
pub fn more_advanced(a: LogPosition, b: LogPosition) -> bool {
    (a.epoch, a.index) > (b.epoch, b.index)
}
