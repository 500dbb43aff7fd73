//! The node's watchers: every watch on this node, whatever its role, reads
//! the committed events from one published view of the node's state.
//!
//! A node publishes a view of its state with the index up to which that
//! state is committed (a leader once every backup acked it; a backup once
//! its leader said so, see `Backup::observe_published`). A watch is a task
//! that pages through the events of the latest view after the revision it
//! delivered last, the way etcd's unsynced watchers catch up from the
//! store. Readers cannot hurt writers:
//!
//! - publishing is a `watch::Sender::send_replace` on the replication
//!   loop: it never waits for a reader and never buffers for one;
//! - a watch holds at most one page of events, bounded in events and in
//!   bytes, and [`MAX_QUEUED_EVENTS`] more on their way out; a reader that
//!   does not read makes its own task wait, and no one else;
//! - a page is made from the latest view and the view is let go before the
//!   events are sent, so a reader that stalls never pins an old version of
//!   the state;
//! - a node serves at most [`MAX_WATCH_STREAMS`] watches; past it, a new
//!   one is refused with a word to try another node.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::replication::{EventSource, ReplicatedState};
use crate::transport::ServiceError;

/// Watch streams one node serves at once. With the per-stream bound below,
/// never-reading watchers hold at most about 70 KiB each of the node's
/// memory (events of 2 KiB descriptions), beside what the transport holds.
pub const MAX_WATCH_STREAMS: usize = 10_000;
/// Events queued between a watch and its transport stream. A reader that
/// does not take them makes its watch wait here, holding no more.
pub const MAX_QUEUED_EVENTS: usize = 16;
/// The bytes of events one page may hold (at least one revision's).
const MAX_PAGE_BYTES: usize = 16 * 1024;
/// The revisions one page spans at most. An entry has at most one event,
/// so a page has at most this many events before the byte bound.
const MAX_PAGE_REVISIONS: u64 = 1024;
/// The span a watch starts with; it halves when a page was cut to its byte
/// bound and doubles when not, so that a catch-up through large events
/// makes few pages it then throws away.
const FIRST_PAGE_REVISIONS: u64 = 64;

/// The node's state as watchers read it: events up to `commit_index` are
/// committed; what the machine holds beyond it is not shown. The machine is
/// a persistent structure, so a copy costs little.
#[derive(Clone)]
pub(super) struct CommittedView<M> {
    pub commit_index: u64,
    /// The last index of the node's log: a backup's published index may lag
    /// what its leader's watchers saw, but its log holds every revision
    /// they saw, as every committed entry.
    pub log_end: u64,
    pub machine: M,
    pub clock_unix_ms: i64,
}

/// What a node's watches share: the published view and the stream count.
pub(super) struct Watchers<M> {
    /// The latest view, while this node serves watches; `None` before the
    /// first and once it stopped (it stepped down, or lost its leader),
    /// which ends the watches it serves.
    views: watch::Sender<Option<CommittedView<M>>>,
    /// The index this node last published, whatever its role: where a
    /// watch "from now on" starts. Kept up to date with no watcher too.
    published: watch::Sender<u64>,
    /// One permit per open watch stream.
    streams: Arc<Semaphore>,
}

impl<M: EventSource> Default for Watchers<M> {
    fn default() -> Self {
        Watchers {
            views: watch::channel(None).0,
            published: watch::channel(0).0,
            streams: Arc::new(Semaphore::new(MAX_WATCH_STREAMS)),
        }
    }
}

impl<M: EventSource> Watchers<M> {
    /// Publishes the committed view; `None` when this node stops serving
    /// watches, which ends them (their clients resume elsewhere).
    pub fn publish(&self, view: Option<CommittedView<M>>) {
        self.views.send_replace(view);
    }

    /// How many watches read the view: the node copies its state for them
    /// only while there are some.
    pub fn count(&self) -> usize {
        self.views.receiver_count()
    }

    /// Notes the index this node published (it only ever moves on).
    fn note_published(&self, index: u64) {
        self.published.send_if_modified(|published| {
            let moved = index > *published;
            *published = (*published).max(index);
            moved
        });
    }

    /// Opens a watch of `scope` after `after_revision` (0: from now on,
    /// which is the end of this node's log at this moment, `log_end`): the
    /// task to run it, and the stream of its events.
    pub fn open(
        &self,
        scope: M::Scope,
        after_revision: u64,
        log_end: u64,
    ) -> Result<(Watch<M>, WatchEvents<M>), ServiceError> {
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| ServiceError::TooManyWatches(MAX_WATCH_STREAMS))?;
        let (events, receiver) = mpsc::channel(MAX_QUEUED_EVENTS);
        let start = if after_revision > 0 {
            Start::After(after_revision)
        } else {
            Start::Now(log_end.max(*self.published.borrow()))
        };
        let watch = Watch { views: self.views.subscribe(), scope, start, events, _permit: permit };
        Ok((watch, receiver))
    }
}

/// Publishes the committed state to watchers when it moved on, or when a
/// watcher arrived; not at all while nobody watches (a published copy makes
/// the leader's next writes copy what they change).
#[derive(Default)]
pub(super) struct Publisher {
    published: Option<u64>,
    watchers: usize,
}

impl Publisher {
    /// `index` is the one the leader or the backup last announced (see
    /// `Action::Publish` and `Backup::observe_published`), of `state`.
    pub fn publish<M: EventSource>(&mut self, watchers: &Watchers<M>, state: &ReplicatedState<M>, index: Option<u64>) {
        let Some(commit_index) = index else { return };
        watchers.note_published(commit_index);
        let count = watchers.count();
        let newcomers = count > self.watchers;
        self.watchers = count;
        if count == 0 || (index == self.published && !newcomers) {
            return;
        }
        self.published = index;
        watchers.publish(Some(CommittedView {
            commit_index,
            log_end: state.last.index,
            machine: state.machine.clone(),
            clock_unix_ms: state.clock_unix_ms,
        }));
    }
}

/// The events of one watch, as its transport stream reads them.
pub(super) type WatchEvents<M> = mpsc::Receiver<Result<<M as EventSource>::Event, ServiceError>>;

/// Where a watch starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// After this revision.
    After(u64),
    /// After the end of the node's log at the moment it was asked (which
    /// may lag the leader's published index by a heartbeat if it is
    /// published, and may run ahead of it if it is not): the watch says
    /// so once it is published, so "now" is never a revision that could
    /// still be lost and rewritten.
    Now(u64),
}

/// One watch: the task that pages through the published views for its
/// reader. It ends when the reader goes, when the node stops serving, or
/// with an error the reader can resume from.
pub(super) struct Watch<M: EventSource> {
    views: watch::Receiver<Option<CommittedView<M>>>,
    scope: M::Scope,
    start: Start,
    events: mpsc::Sender<Result<M::Event, ServiceError>>,
    /// Held for as long as the watch runs.
    _permit: OwnedSemaphorePermit,
}

impl<M: EventSource> Watch<M> {
    pub async fn run(mut self) {
        // The revision delivered last; `None` until a watch from now on
        // has said where now is.
        let mut last = match self.start {
            Start::After(revision) => Some(revision),
            Start::Now(_) => None,
        };
        let mut viewed = false;
        let mut page_revisions = FIRST_PAGE_REVISIONS;
        loop {
            let view = self.views.borrow_and_update().clone();
            let Some(view) = view else {
                if viewed {
                    // The node stopped serving: the reader resumes after
                    // what it got, here once the node serves again or at
                    // another node.
                    let resume = last.map_or(String::new(), |last| format!("; resume after revision {last}"));
                    let message = format!("this node stopped serving watches{resume}");
                    let _ = self.events.try_send(Err(ServiceError::WatchInterrupted(message)));
                    return;
                }
                // Not published yet: wait for the first view.
                if !self.wait_for_change().await {
                    return;
                }
                continue;
            };
            if !viewed {
                viewed = true;
                // A revision the node's log has not reached (it holds every
                // committed entry): nobody wrote it. One it holds but has
                // not published yet comes, once the leader says so.
                if let Start::After(asked) = self.start
                    && asked > view.log_end
                {
                    let published = view.commit_index;
                    let _ = self.events.try_send(Err(ServiceError::AheadOfLog { asked, published }));
                    return;
                }
            }
            let from = match last {
                Some(from) => from,
                None => {
                    let Start::Now(now) = self.start else { unreachable!("a watch after a revision has one") };
                    // Events start after the node's log end when the watch
                    // was asked, once that is published: never before (the
                    // first view may be an older one, left from earlier
                    // watchers), and none after it is skipped (the first
                    // view may come later, with more committed). If the
                    // node stops serving first, the reader never got a
                    // start, and asks from now on again.
                    let now = if now > 0 { now } else { view.commit_index };
                    if view.commit_index < now {
                        drop(view);
                        if !self.wait_for_change().await {
                            return;
                        }
                        continue;
                    }
                    if !self.send(Ok(M::progress(now))).await {
                        return;
                    }
                    last = Some(now);
                    continue;
                }
            };
            if from < view.machine.compacted() {
                let compacted = view.machine.compacted();
                let _ = self.events.try_send(Err(ServiceError::Compacted { asked: from, compacted }));
                return;
            }
            if view.commit_index <= from {
                drop(view);
                if !self.wait_for_change().await {
                    return;
                }
                continue;
            }
            let (page, page_end, cut) = page(&view, &self.scope, from, page_revisions);
            page_revisions =
                if cut { (page_revisions / 2).max(1) } else { (page_revisions * 2).min(MAX_PAGE_REVISIONS) };
            // Let the view go before waiting on the reader.
            drop(view);
            for event in page {
                if !self.send(Ok(event)).await {
                    return;
                }
            }
            last = Some(page_end);
        }
    }

    /// Waits for the reader to take `event`; false once the reader went.
    async fn send(&self, event: Result<M::Event, ServiceError>) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Waits for a new view; false once the reader went or the node
    /// dropped its views.
    async fn wait_for_change(&mut self) -> bool {
        tokio::select! {
            changed = self.views.changed() => changed.is_ok(),
            () = self.events.closed() => false,
        }
    }
}

/// The events in `scope` after `from`, over at most `revisions` revisions
/// and [`MAX_PAGE_BYTES`] (cut at a revision, keeping at least the first
/// one's): the events, the revision the page ends at, and whether it was
/// cut to its byte bound.
fn page<M: EventSource>(
    view: &CommittedView<M>,
    scope: &M::Scope,
    from: u64,
    revisions: u64,
) -> (Vec<M::Event>, u64, bool) {
    let upto = view.commit_index.min(from.saturating_add(revisions));
    let mut events = view.machine.events(scope, from, upto, view.clock_unix_ms);
    let mut bytes = 0;
    let mut keep = events.len();
    for (at, event) in events.iter().enumerate() {
        bytes += M::event_size(event);
        if bytes > MAX_PAGE_BYTES && at > 0 && M::revision(event) > M::revision(&events[0]) {
            keep = at;
            break;
        }
    }
    if keep == events.len() {
        return (events, upto, false);
    }
    // Events of one revision go out together, so a resume never splits them.
    let next = M::revision(&events[keep]);
    events.retain(|event| M::revision(event) < next);
    (events, next - 1, true)
}
