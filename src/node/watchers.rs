//! The node's watchers: every watch on this node, whatever its role, reads
//! its committed events from one hub, the way etcd's synced and unsynced
//! watcher groups do.
//!
//! - **Synced watches** read a ring of the latest committed events. The
//!   node's publisher computes each committed event once, from its live
//!   state, as its published index moves, and every watch shares it. It
//!   wakes only the watches whose scope the new events are in (etcd's
//!   watcher groups keyed by range), so a thousand watches of a quiet
//!   auction cost nothing while another one takes bids.
//! - **Watches behind the ring** (resuming after an older revision) catch
//!   up from a published view of the node's state, a page at a time, then
//!   join the ring. A view is published only while some watch needs one:
//!   a published copy of the state makes the leader's next writes copy
//!   what they change.
//!
//! Readers cannot hurt writers:
//!
//! - the publisher, on the replication loop, never waits for a reader and
//!   buffers at most [`MAX_RING_BYTES`] of events for all of them;
//! - a watch holds at most one page of events and a queue of more on
//!   their way out, each bounded in events and in bytes; a reader that
//!   does not read makes its own watch wait, and no one else;
//! - a watch lets a view go before it waits for its reader, so a reader
//!   that stalls never pins an old version of the state;
//! - a node serves at most [`MAX_WATCH_STREAMS`] watches, whose pages and
//!   queues hold at most [`MAX_READER_BYTES`]; past it, a new one is
//!   refused with a word to try another node.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::replication::{EventSource, ReplicatedState};
use crate::transport::{ClientApi, ServiceError, SharedEvent, WatchSender, Watched, WatchedEvents, bounded_queue};

/// Watch streams one node serves at once. With the bounds of each below,
/// the events its watches hold come to at most about
/// [`MAX_READER_BYTES`]; past it, a new watch is refused.
pub const MAX_WATCH_STREAMS: usize = 10_000;
/// Pages of events queued between a watch and its transport stream, at
/// most that many and of at most [`MAX_QUEUED_BYTES`] in all (a page
/// larger than that goes alone). A reader that does not take them makes
/// its watch wait here, holding no more.
pub const MAX_QUEUED_PAGES: usize = 16;
pub const MAX_QUEUED_BYTES: usize = 8 * 1024;
/// The memory for readers of one node, beside the ring they share: each
/// watch's page and queue. (The transport holds one more buffer of about
/// 8 KiB for a stream its reader does not read.)
pub const MAX_READER_BYTES: usize = MAX_WATCH_STREAMS * (MAX_PAGE_BYTES + MAX_QUEUED_BYTES);
/// The bytes of the latest committed events the node keeps for its synced
/// watches, counted as the events (each is kept with its wire encoding,
/// and its HTTP frame once an event stream carried it: up to about three
/// times this); a watch further behind catches up from the state.
pub const MAX_RING_BYTES: usize = 8 << 20;
/// The bytes of events one page may hold (at least one revision's).
const MAX_PAGE_BYTES: usize = 8 * 1024;
/// The revisions one page from the state spans at most. An entry has at
/// most one event, so a page has at most this many before the byte bound.
const MAX_PAGE_REVISIONS: u64 = 1024;
/// The span a catch-up starts with; it halves when a page was cut to its
/// byte bound and doubles when not, so that a catch-up through large
/// events makes few pages it then throws away.
const FIRST_PAGE_REVISIONS: u64 = 64;

/// The node's state as a catching-up watch reads it: events up to
/// `commit_index` are committed; what the machine holds beyond it is not
/// shown. The machine is a persistent structure, so a copy costs little.
#[derive(Clone)]
pub(super) struct CommittedView<M> {
    pub commit_index: u64,
    /// The index `machine` is at: what it shows beyond `commit_index` is
    /// not committed yet (a read answered from it waits until it is).
    pub log_end: u64,
    pub machine: M,
    pub clock_unix_ms: i64,
}

/// The latest committed events, oldest first: complete after `start` up
/// to `head`, with each topic's events indexed, so that a watch of a few
/// topics reads its own and scans no other.
struct Ring<M: EventSource> {
    events: VecDeque<Arc<SharedEvent<M::Event>>>,
    /// The sequence number of `events[0]`: each event has one, counted
    /// from the ring's start, so that an index survives the front's trims.
    first_sequence: u64,
    /// Each topic's events in the ring, by sequence number, oldest first.
    of_topic: HashMap<M::Topic, VecDeque<u64>>,
    bytes: usize,
    start: u64,
    head: u64,
    /// The index the publisher started it at, and the revision of each
    /// topic's latest event since (kept when the event leaves the ring): a
    /// watch of quiet topics that fell behind `start` missed nothing if
    /// none of its topics had an event after its revision.
    since: u64,
    latest: HashMap<M::Topic, u64>,
    /// Whether the publisher keeps it: while the node serves and someone
    /// watches. When it starts again, it starts empty at the published
    /// index (the gap is the state's to serve).
    active: bool,
}

impl<M: EventSource> Default for Ring<M> {
    fn default() -> Self {
        Ring {
            events: VecDeque::new(),
            first_sequence: 0,
            of_topic: HashMap::new(),
            bytes: 0,
            start: 0,
            head: 0,
            since: 0,
            latest: HashMap::new(),
            active: false,
        }
    }
}

impl<M: EventSource> Ring<M> {
    /// A ring kept from `index` on.
    fn started_at(index: u64) -> Self {
        Ring { start: index, head: index, since: index, active: true, ..Ring::default() }
    }

    /// Adds the next committed event: its topic.
    fn push(&mut self, event: SharedEvent<M::Event>) -> M::Topic {
        let (topic, revision) = (M::topic(&event.event), M::revision(&event.event));
        let sequence = self.first_sequence + self.events.len() as u64;
        // The topics are mostly known ones: a key is cloned only when new.
        match self.of_topic.get_mut(&topic) {
            Some(sequences) => sequences.push_back(sequence),
            None => {
                self.of_topic.insert(topic.clone(), VecDeque::from([sequence]));
            }
        }
        match self.latest.get_mut(&topic) {
            Some(latest) => *latest = revision,
            None => {
                self.latest.insert(topic.clone(), revision);
            }
        }
        self.bytes += M::event_size(&event.event);
        self.events.push_back(Arc::new(event));
        topic
    }

    /// Lets the oldest revisions go, whole, until the ring holds at most
    /// [`MAX_RING_BYTES`], so that it stays complete after its start.
    fn trim(&mut self) {
        while self.bytes > MAX_RING_BYTES
            && let Some(oldest) = self.events.front()
        {
            self.start = M::revision(&oldest.event);
            while let Some(next) = self.events.front()
                && M::revision(&next.event) == self.start
            {
                let topic = M::topic(&next.event);
                self.bytes -= M::event_size(&next.event);
                self.events.pop_front();
                if let Some(sequences) = self.of_topic.get_mut(&topic) {
                    sequences.pop_front();
                    if sequences.is_empty() {
                        self.of_topic.remove(&topic);
                    }
                }
                self.first_sequence += 1;
            }
        }
    }

    fn revision_at(&self, sequence: u64) -> u64 {
        M::revision(&self.events[(sequence - self.first_sequence) as usize].event)
    }

    /// Whether none of `topics` has had an event after `after` since the
    /// ring started, when that is known.
    fn quiet_since(&self, topics: Option<&[M::Topic]>, after: u64) -> bool {
        let Some(topics) = topics else { return false };
        after >= self.since && topics.iter().all(|topic| self.latest.get(topic).is_none_or(|latest| *latest <= after))
    }

    /// The events of `topics` (`None`: every one) after `after`: at most
    /// [`MAX_PAGE_BYTES`] of them, cut at a revision.
    fn page(&self, topics: Option<&[M::Topic]>, after: u64) -> RingPage<M::Event> {
        if !self.active {
            return RingPage::Behind;
        }
        if after >= self.head {
            return RingPage::Current;
        }
        if self.quiet_since(topics, after) {
            // Nothing in its scope since: it moves on to the head, unread.
            return RingPage::Events(Vec::new(), self.head);
        }
        if after < self.start {
            return RingPage::Behind;
        }
        // Every event after `after` in order, read only as far as the page
        // goes; or those of the topics, gathered from their indexes.
        let sequences: Box<dyn Iterator<Item = u64> + '_> = match topics {
            None => {
                let first = self.events.partition_point(|shared| M::revision(&shared.event) <= after) as u64;
                Box::new(self.first_sequence + first..self.first_sequence + self.events.len() as u64)
            }
            Some(topics) => {
                let mut sequences = Vec::new();
                for of_topic in topics.iter().filter_map(|topic| self.of_topic.get(topic)) {
                    let first = of_topic.partition_point(|sequence| self.revision_at(*sequence) <= after);
                    sequences.extend(of_topic.range(first..));
                }
                if topics.len() > 1 {
                    sequences.sort_unstable();
                }
                Box::new(sequences.into_iter())
            }
        };
        let mut page: Vec<Watched<M::Event>> = Vec::new();
        let mut bytes = 0;
        for sequence in sequences {
            let shared = &self.events[(sequence - self.first_sequence) as usize];
            let revision = M::revision(&shared.event);
            if bytes > MAX_PAGE_BYTES && page.last().is_some_and(|last| M::revision(last.event()) < revision) {
                return RingPage::Events(page, revision - 1);
            }
            bytes += M::event_size(&shared.event);
            page.push(Watched::Shared(Arc::clone(shared)));
        }
        RingPage::Events(page, self.head)
    }
}

/// The bell of one watch: rung when events in its scope commit, if the
/// watch armed it. A watch arms its bell before it looks at the ring, so a
/// publication after that look rings it, and one before shows in the look;
/// a watch busy with its reader is not armed and costs a publication a
/// look at one flag. A bell rung before its watch waits stays rung (a
/// `Notify` permit).
#[derive(Default)]
struct WatchBell {
    notify: Notify,
    armed: AtomicBool,
}

impl WatchBell {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Rings it if armed: whether it rang.
    fn ring(&self) -> bool {
        let armed = self.armed.swap(false, Ordering::SeqCst);
        if armed {
            self.notify.notify_one();
        }
        armed
    }
}

/// The bells of the watches, by the topics they watch (or every event): a
/// publication rings only those its events are for.
struct Bells<T> {
    next: u64,
    of_topic: HashMap<T, HashMap<u64, Arc<WatchBell>>>,
    of_everything: HashMap<u64, Arc<WatchBell>>,
}

impl<T> Default for Bells<T> {
    fn default() -> Self {
        Bells { next: 0, of_topic: HashMap::new(), of_everything: HashMap::new() }
    }
}

impl<T: Eq + std::hash::Hash + Clone> Bells<T> {
    fn hang(&mut self, topics: Option<&[T]>) -> (u64, Arc<WatchBell>) {
        let (id, bell) = (self.next, Arc::new(WatchBell::default()));
        self.next += 1;
        match topics {
            None => {
                self.of_everything.insert(id, Arc::clone(&bell));
            }
            Some(topics) => {
                for topic in topics {
                    self.of_topic.entry(topic.clone()).or_default().insert(id, Arc::clone(&bell));
                }
            }
        }
        (id, bell)
    }

    fn take_down(&mut self, id: u64, topics: Option<&[T]>) {
        match topics {
            None => {
                self.of_everything.remove(&id);
            }
            Some(topics) => {
                for topic in topics {
                    if let Some(bells) = self.of_topic.get_mut(topic) {
                        bells.remove(&id);
                        if bells.is_empty() {
                            self.of_topic.remove(topic);
                        }
                    }
                }
            }
        }
    }

    /// Rings the armed bells of `topics`' watches and of those of every
    /// event: how many rang (a watch of several of them, once).
    fn ring<'a>(&self, topics: impl IntoIterator<Item = &'a T>) -> usize
    where
        T: 'a,
    {
        let of_topics = topics.into_iter().filter_map(|topic| self.of_topic.get(topic)).flat_map(HashMap::values);
        self.of_everything.values().chain(of_topics).filter(|bell| bell.ring()).count()
    }

    /// Rings every bell, armed or not: the node stopped serving.
    fn ring_all(&self) {
        for bell in self.of_everything.values().chain(self.of_topic.values().flat_map(HashMap::values)) {
            bell.armed.store(false, Ordering::SeqCst);
            bell.notify.notify_one();
        }
    }
}

/// A watch's bell, taken down when the watch ends.
struct Bell<M: EventSource> {
    bell: Arc<WatchBell>,
    id: u64,
    topics: Option<Vec<M::Topic>>,
    watchers: Arc<Watchers<M>>,
}

impl<M: EventSource> Drop for Bell<M> {
    fn drop(&mut self) {
        self.watchers.bells.lock().unwrap_or_else(PoisonError::into_inner).take_down(self.id, self.topics.as_deref());
    }
}

/// What the ring has for a watch after a revision.
enum RingPage<E> {
    /// These events (in the watch's scope), and the revision they reach.
    Events(Vec<Watched<E>>, u64),
    /// Nothing after it yet.
    Current,
    /// Its events are older than the ring's: catch up from the state.
    Behind,
}

/// What a node's watches share.
pub(super) struct Watchers<M: EventSource> {
    ring: Mutex<Ring<M>>,
    /// The ring's head while this node serves watches; `None` before and
    /// once it stopped (it stepped down, or lost its leader), which ends
    /// its watches. A watch that waits for events waits on its bell; a
    /// watch that waits to start (for its node to serve, or for "now" to
    /// be published) waits on this.
    head: watch::Sender<Option<u64>>,
    bells: Mutex<Bells<M::Topic>>,
    /// The latest view of the state, for watches that catch up; published
    /// only while some watch holds a receiver.
    views: watch::Sender<Option<CommittedView<M>>>,
    /// A catching-up watch or a read found the view older than it needs.
    view_wanted: AtomicBool,
    /// Wakes a backup's loop to publish a view at once, rather than on
    /// its leader's next message.
    view_requested: Notify,
    /// The index this node last published, whatever its role.
    published: watch::Sender<u64>,
    /// One permit per open watch stream.
    streams: Arc<Semaphore>,
    /// Once a task rings the bells on the watches' own runtime (see
    /// [`Watchers::ring_bells`]): the topics published since it last rang,
    /// and its wake.
    rung_elsewhere: AtomicBool,
    to_ring: Mutex<HashSet<M::Topic>>,
    ring_wake: Notify,
}

impl<M: EventSource> Default for Watchers<M> {
    fn default() -> Self {
        Watchers {
            ring: Mutex::new(Ring::default()),
            head: watch::channel(None).0,
            bells: Mutex::new(Bells::default()),
            views: watch::channel(None).0,
            view_wanted: AtomicBool::new(false),
            view_requested: Notify::new(),
            published: watch::channel(0).0,
            streams: Arc::new(Semaphore::new(MAX_WATCH_STREAMS)),
            rung_elsewhere: AtomicBool::new(false),
            to_ring: Mutex::new(HashSet::new()),
            ring_wake: Notify::new(),
        }
    }
}

impl<M: EventSource> Watchers<M> {
    /// Ends the watches this node serves: it stopped leading or following.
    pub fn stop(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        *ring = Ring::default();
        drop(ring);
        self.head.send_replace(None);
        self.views.send_replace(None);
        self.bells.lock().unwrap_or_else(PoisonError::into_inner).ring_all();
    }

    /// Hangs a bell for a watch of `scope`, rung when events in it commit.
    fn hang_bell(self: &Arc<Self>, scope: &M::Scope) -> Bell<M> {
        let topics = M::scope_topics(scope);
        let (id, bell) = self.bells.lock().unwrap_or_else(PoisonError::into_inner).hang(topics.as_deref());
        Bell { bell, id, topics, watchers: Arc::clone(self) }
    }

    /// Asks for a fresh view of the state.
    fn request_view(&self) {
        self.view_wanted.store(true, Ordering::Relaxed);
        self.view_requested.notify_one();
    }

    /// Resolves when a view was asked for (see [`Watchers::request_view`]).
    pub async fn view_requested(&self) {
        self.view_requested.notified().await;
    }

    /// A view of the state at or past `index`, by `deadline`.
    pub async fn view_holding(&self, index: u64, deadline: Instant) -> Option<CommittedView<M>> {
        let mut views = self.views.subscribe();
        loop {
            if let Some(view) = views.borrow_and_update().as_ref().filter(|view| view.log_end >= index) {
                return Some(view.clone());
            }
            self.request_view();
            match tokio::time::timeout_at(deadline, views.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Waits until this node has published `index`, by `deadline`:
    /// whether it did.
    pub async fn published_at_least(&self, index: u64, deadline: Instant) -> bool {
        let mut published = self.published.subscribe();
        let reached = published.wait_for(|published| *published >= index);
        matches!(tokio::time::timeout_at(deadline, reached).await, Ok(Ok(_)))
    }

    fn open_streams(&self) -> usize {
        MAX_WATCH_STREAMS - self.streams.available_permits()
    }

    /// Notes the index this node published (it only ever moves on).
    fn note_published(&self, index: u64) {
        self.published.send_if_modified(|published| {
            let moved = index > *published;
            *published = (*published).max(index);
            moved
        });
    }

    /// Adds the events committed up to `index` to the ring, from `machine`
    /// (whose state is at least that far), once each for every watch, and
    /// each with its encoding (`share`), then rings the bells of the
    /// watches they are for: how many it rang (none while a ringer rings
    /// them on the watches' runtime; see [`Watchers::ring_bells`]).
    fn extend_ring(
        &self,
        machine: &M,
        index: u64,
        clock_unix_ms: i64,
        share: fn(M::Event) -> SharedEvent<M::Event>,
    ) -> usize {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let mut topics = HashSet::new();
        if !ring.active {
            *ring = Ring::started_at(index);
        } else if index > ring.head {
            for event in machine.events(&M::everything(), ring.head, index, clock_unix_ms) {
                topics.insert(ring.push(share(event)));
            }
            ring.head = index;
            ring.trim();
        } else {
            return 0;
        }
        let head = ring.head;
        drop(ring);
        self.head.send_replace(Some(head));
        if self.rung_elsewhere.load(Ordering::Relaxed) {
            if !topics.is_empty() {
                let mut to_ring = self.to_ring.lock().unwrap_or_else(PoisonError::into_inner);
                // Most often the ringer took the last ones already: the set
                // moves in, rather than each topic hashed again.
                if to_ring.is_empty() {
                    *to_ring = topics;
                } else {
                    to_ring.extend(topics);
                }
                drop(to_ring);
                self.ring_wake.notify_one();
            }
            return 0;
        }
        self.bells.lock().unwrap_or_else(PoisonError::into_inner).ring(&topics)
    }

    /// Rings the bells of what this node publishes from here on, until
    /// `stop`: run on the runtime that serves the watches, it wakes each of
    /// them there, where the publisher (on the replication's thread) would
    /// wake each one across threads.
    pub async fn ring_bells(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        self.rung_elsewhere.store(true, Ordering::Relaxed);
        loop {
            tokio::select! {
                () = self.ring_wake.notified() => {}
                () = stop.cancelled() => break,
            }
            let topics = std::mem::take(&mut *self.to_ring.lock().unwrap_or_else(PoisonError::into_inner));
            self.bells.lock().unwrap_or_else(PoisonError::into_inner).ring(&topics);
        }
        self.rung_elsewhere.store(false, Ordering::Relaxed);
    }

    /// Lets the ring go while nobody watches.
    fn idle(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.active {
            *ring = Ring::default();
        }
    }

    /// The ring's events of `topics` (`None`: every one) after `after`.
    fn ring_page(&self, topics: Option<&[M::Topic]>, after: u64) -> RingPage<M::Event> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner).page(topics, after)
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
        // A revision this node's log has not reached (it holds every
        // committed entry): nobody wrote it. One it holds but has not
        // published yet comes, once the leader says so.
        if after_revision > log_end {
            let published = *self.published.borrow();
            return Err(ServiceError::AheadOfLog { asked: after_revision, published });
        }
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| ServiceError::TooManyWatches { streams: MAX_WATCH_STREAMS, mib: MAX_READER_BYTES >> 20 })?;
        let (events, receiver) = bounded_queue(MAX_QUEUED_PAGES, MAX_QUEUED_BYTES);
        let start = if after_revision > 0 { Start::After(after_revision) } else { Start::Now(log_end) };
        let watch = Watch { head: self.head.subscribe(), views: None, scope, start, events, _permit: permit };
        Ok((watch, receiver))
    }
}

/// Publishes the committed state to the node's watches as its published
/// index moves: the new events into the ring, and a view of the state for
/// watches that catch up and reads on a backup. Nothing while nobody
/// watches or reads.
#[derive(Default)]
pub(super) struct Publisher {
    /// The index of the view published last.
    viewed: Option<u64>,
}

impl Publisher {
    /// `index` is the one the leader or the backup last announced (see
    /// `Action::Publish` and `Backup::observe_published`), of `state`.
    pub fn publish<M: ClientApi>(&mut self, watchers: &Watchers<M>, state: &ReplicatedState<M>, index: Option<u64>) {
        let Some(commit_index) = index else { return };
        watchers.note_published(commit_index);
        if watchers.open_streams() == 0 {
            watchers.idle();
        } else {
            watchers.extend_ring(&state.machine, commit_index, state.clock_unix_ms, M::share_event);
        }
        let wanted = watchers.view_wanted.swap(false, Ordering::Relaxed);
        if watchers.views.receiver_count() == 0 {
            // Nobody catches up: let the last view go, or the state's
            // old version stays beside the new one as writes replace it.
            if self.viewed.take().is_some() {
                watchers.views.send_replace(None);
            }
            return;
        }
        if index == self.viewed && !wanted {
            return;
        }
        self.viewed = index;
        watchers.views.send_replace(Some(CommittedView {
            commit_index,
            log_end: state.last.index,
            machine: state.machine.clone(),
            clock_unix_ms: state.clock_unix_ms,
        }));
    }
}

/// The events of one watch, as its transport stream reads them.
pub(super) type WatchEvents<M> = WatchedEvents<<M as EventSource>::Event>;

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

/// One watch: the task that reads the ring, or catches up from the state,
/// for its reader. It ends when the reader goes, when the node stops
/// serving, or with an error the reader can resume from.
pub(super) struct Watch<M: EventSource> {
    head: watch::Receiver<Option<u64>>,
    /// While it catches up from the state.
    views: Option<watch::Receiver<Option<CommittedView<M>>>>,
    scope: M::Scope,
    start: Start,
    events: WatchSender<M::Event>,
    /// Held for as long as the watch runs.
    _permit: OwnedSemaphorePermit,
}

/// Why a watch stops waiting.
enum Woken {
    Moved,
    Stopped,
    ReaderGone,
}

impl<M: EventSource> Watch<M> {
    pub async fn run(mut self, watchers: Arc<Watchers<M>>) {
        let bell = watchers.hang_bell(&self.scope);
        let watchers = watchers.as_ref();
        // The revision delivered last; `None` until a watch from now on
        // has said where now is.
        let mut last = match self.start {
            Start::After(revision) => Some(revision),
            Start::Now(_) => None,
        };
        // Whether the node served this watch yet.
        let mut served = false;
        let mut page_revisions = FIRST_PAGE_REVISIONS;
        loop {
            let head = *self.head.borrow_and_update();
            let Some(head) = head else {
                if served {
                    self.interrupted(last);
                    return;
                }
                // Not serving yet: wait for its first publication.
                match self.wait_for_head().await {
                    Woken::Moved => continue,
                    Woken::Stopped | Woken::ReaderGone => return,
                }
            };
            served = true;
            let Some(from) = last else {
                let Start::Now(now) = self.start else { unreachable!("a watch after a revision has one") };
                // Events start after the node's log end when the watch was
                // asked, once that is committed: none before, and none
                // after it is skipped. If the node stops serving first,
                // the reader never got a start, and asks from now on again.
                let now = if now > 0 { now } else { head };
                if head < now {
                    match self.wait_for_head().await {
                        Woken::Moved => continue,
                        Woken::Stopped => return self.interrupted(last),
                        Woken::ReaderGone => return,
                    }
                }
                if !self.send(Watched::Own(M::progress(now))).await {
                    return;
                }
                last = Some(now);
                continue;
            };
            bell.bell.arm();
            match watchers.ring_page(bell.topics.as_deref(), from) {
                RingPage::Events(page, end) => {
                    self.views = None;
                    if !self.send_page(page).await {
                        return;
                    }
                    last = Some(end);
                }
                RingPage::Current => match self.wait_for_bell(&bell.bell.notify).await {
                    Woken::Moved => {}
                    Woken::Stopped => return self.interrupted(last),
                    Woken::ReaderGone => return,
                },
                RingPage::Behind => match self.catch_up(watchers, from, &mut page_revisions).await {
                    CatchUp::Sent(end) => last = Some(end),
                    CatchUp::Waited => {}
                    CatchUp::Ended => return,
                },
            }
        }
    }

    /// One page of the events after `from` from a view of the state.
    async fn catch_up(&mut self, watchers: &Watchers<M>, from: u64, page_revisions: &mut u64) -> CatchUp {
        let views = self.views.get_or_insert_with(|| watchers.views.subscribe());
        let view = views.borrow_and_update().clone();
        let Some(view) = view.filter(|view| view.commit_index > from) else {
            // None yet, or one older than needed: the publisher makes a
            // fresh one.
            watchers.request_view();
            return tokio::select! {
                changed = views.changed() => if changed.is_ok() { CatchUp::Waited } else { CatchUp::Ended },
                () = self.events.closed() => CatchUp::Ended,
            };
        };
        if from < view.machine.compacted() {
            let compacted = view.machine.compacted();
            self.events.send_last(Err(ServiceError::Compacted { asked: from, compacted }));
            return CatchUp::Ended;
        }
        let (page, end, cut) = page(&view, &self.scope, from, *page_revisions);
        *page_revisions =
            if cut { (*page_revisions / 2).max(1) } else { (*page_revisions * 2).min(MAX_PAGE_REVISIONS) };
        // Let the view go, and stop asking for views, before waiting on
        // the reader.
        drop(view);
        self.views = None;
        if !self.send_page(page.into_iter().map(Watched::Own).collect()).await {
            return CatchUp::Ended;
        }
        CatchUp::Sent(end)
    }

    /// Tells the reader where to resume, if there is room to.
    fn interrupted(&self, last: Option<u64>) {
        let resume = last.map_or(String::new(), |last| format!("; resume after revision {last}"));
        let message = format!("this node stopped serving watches{resume}");
        self.events.send_last(Err(ServiceError::WatchInterrupted(message)));
    }

    /// Waits for the reader to take `event`; false once the reader went.
    async fn send(&self, event: Watched<M::Event>) -> bool {
        self.send_page(vec![event]).await
    }

    /// Queues a page of events as one batch (one wake of the reader, not
    /// one an event) once the queue has room; false once the reader went.
    async fn send_page(&self, page: Vec<Watched<M::Event>>) -> bool {
        let bytes = page.iter().map(|event| M::event_size(event.event())).sum();
        self.events.send_batch(page.into_iter().map(Ok).collect(), bytes).await
    }

    /// Waits for events in its scope (or for its node to stop serving).
    async fn wait_for_bell(&self, bell: &Notify) -> Woken {
        tokio::select! {
            () = bell.notified() => if self.head.borrow().is_some() { Woken::Moved } else { Woken::Stopped },
            () = self.events.closed() => Woken::ReaderGone,
        }
    }

    /// Waits for the ring's head to move.
    async fn wait_for_head(&mut self) -> Woken {
        tokio::select! {
            changed = self.head.changed() => match changed {
                Ok(()) if self.head.borrow().is_some() => Woken::Moved,
                _ => Woken::Stopped,
            },
            () = self.events.closed() => Woken::ReaderGone,
        }
    }
}

/// What one catch-up step did.
enum CatchUp {
    /// Sent the events up to this revision.
    Sent(u64),
    /// Waited for a fresh view.
    Waited,
    /// The reader went, or the watch ended with an error.
    Ended,
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

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::auction::{AuctionBook, Bid, Command, EventKind, EventScope, OpenAuction};
    use crate::replication::{LogPosition, StateMachine};

    /// A book at index `last`: the default auction opened at 1, then a
    /// bid at every index after it.
    fn book(last: u64) -> ReplicatedState<AuctionBook> {
        book_of(&["default"], last)
    }

    /// A book at index `last`: `auctions` opened at 1, 2, ..., then a bid
    /// at every index after them, on each auction in turn.
    fn book_of(auctions: &[&str], last: u64) -> ReplicatedState<AuctionBook> {
        let mut state = ReplicatedState::<AuctionBook>::default();
        for (index, auction) in (1..).zip(auctions) {
            let open = OpenAuction {
                auction_id: auction.to_string(),
                description: String::new(),
                minimum_amount: 1,
                ends_at_unix_ms: i64::MAX / 2,
                at_unix_ms: 1,
            };
            StateMachine::apply(&mut state.machine, index, &Command::Open(open));
        }
        let opened = auctions.len() as u64;
        for index in opened + 1..=last {
            let bid = Bid {
                auction_id: auctions[((index - opened - 1) % opened) as usize].to_string(),
                bidder: "ann".into(),
                amount: index,
                client_id: String::new(),
                request_id: 0,
                at_unix_ms: 2,
                name_digest: None,
            };
            StateMachine::apply(&mut state.machine, index, &Command::Bid(bid));
        }
        state.last = LogPosition { epoch: 1, index: last };
        state.clock_unix_ms = 2;
        state
    }

    fn revisions(page: &[Watched<crate::auction::AuctionEvent>]) -> Vec<u64> {
        page.iter().map(|event| event.event().revision).collect()
    }

    /// The publisher fills the ring once for every watch; each reads it
    /// in pages cut at a revision, in its own scope; one further behind
    /// than the ring is told to catch up from the state.
    #[test]
    fn watches_share_one_ring_read_in_pages_of_their_scope() {
        let watchers = Watchers::<AuctionBook>::default();
        let mut publisher = Publisher::default();
        // Nobody watches: no ring.
        publisher.publish(&watchers, &book(1), Some(1));
        assert!(matches!(watchers.ring_page(None, 1), RingPage::Behind));

        let (_watch, _events) = watchers.open(EventScope::All, 0, 1).expect("a watch");
        // The first publication with a watch starts the ring where it is.
        publisher.publish(&watchers, &book(1), Some(1));
        assert!(matches!(watchers.ring_page(None, 1), RingPage::Current));
        assert_eq!(*watchers.head.borrow(), Some(1));

        // 500 bids commit: each event once, into the ring.
        let state = book(501);
        publisher.publish(&watchers, &state, Some(501));
        assert_eq!(*watchers.head.borrow(), Some(501));
        let RingPage::Events(first, end) = watchers.ring_page(None, 1) else { panic!("events") };
        assert!(first.len() < 500, "a page is bounded in bytes: {} events", first.len());
        assert_eq!(revisions(&first), (2..=end).collect::<Vec<_>>(), "whole revisions, in order");
        let RingPage::Events(rest, last) = watchers.ring_page(None, end) else { panic!("events") };
        assert_eq!(rest.first().map(|event| event.event().revision), Some(end + 1), "the next page goes on from it");
        assert!(last > end);
        assert!(rest.iter().all(|event| matches!(event.event().kind, EventKind::BidAccepted(_))));

        // Another auction's watch gets none of them, and moves on to the head.
        let other = ["a7".to_string()];
        let RingPage::Events(none, head) = watchers.ring_page(Some(&other), 1) else { panic!("a page") };
        assert!(none.is_empty());
        assert_eq!(head, 501);
        // Older than the ring: the state's to serve.
        assert!(matches!(watchers.ring_page(None, 0), RingPage::Behind));
    }

    /// Whether `bell` was rung since it was last heard.
    fn rung(bell: &Bell<AuctionBook>) -> bool {
        let notified = std::pin::pin!(bell.bell.notify.notified());
        notified.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready()
    }

    /// A publication rings only the bells of the watches its events are
    /// for; a watch of several auctions reads their events, in order, and
    /// no other's; a watch of an auction with no events since the ring
    /// started moves on to the head unread, and one from before the ring
    /// started catches up from the state.
    #[test]
    fn a_publication_wakes_only_the_watches_its_events_are_for() {
        let auctions = ["a1", "a2", "a3"];
        let watchers = Arc::new(Watchers::<AuctionBook>::default());
        let share = <AuctionBook as ClientApi>::share_event;
        watchers.extend_ring(&book_of(&auctions, 3).machine, 3, 2, share);
        let a1 = watchers.hang_bell(&EventScope::of(["a1"]));
        let a2_a3 = watchers.hang_bell(&EventScope::of(["a2", "a3"]));
        let quiet = watchers.hang_bell(&EventScope::of(["a9"]));
        let every = watchers.hang_bell(&EventScope::All);
        let bells = [&a1, &a2_a3, &quiet, &every];
        let arm_all = || bells.iter().for_each(|bell| bell.bell.arm());

        // A bid on a1: its watch and the watch of every auction ring.
        arm_all();
        assert_eq!(watchers.extend_ring(&book_of(&auctions, 4).machine, 4, 2, share), 2);
        assert!(rung(&a1) && rung(&every));
        assert!(!rung(&a2_a3) && !rung(&quiet));

        // Bids on a2 and a3: their watch rings once for both.
        arm_all();
        assert_eq!(watchers.extend_ring(&book_of(&auctions, 6).machine, 6, 2, share), 2);
        assert!(rung(&a2_a3) && rung(&every));
        assert!(!rung(&a1) && !rung(&quiet));

        // A bid on a1 again: a1's watch still waits (its bell is armed) and
        // rings; the watch of every auction, busy with its reader since its
        // bell rang (not armed again), is not rung: it looks at the ring
        // before it waits again.
        assert_eq!(watchers.extend_ring(&book_of(&auctions, 7).machine, 7, 2, share), 1);
        assert!(rung(&a1) && !rung(&every));

        let state = book_of(&auctions, 30);
        watchers.extend_ring(&state.machine, 30, 2, share);
        let RingPage::Events(page, end) = watchers.ring_page(a2_a3.topics.as_deref(), 3) else { panic!("events") };
        assert_eq!(revisions(&page), (4..=30).filter(|index| (index - 4) % 3 != 0).collect::<Vec<_>>());
        assert_eq!(end, 30);
        let RingPage::Events(page, _) = watchers.ring_page(a1.topics.as_deref(), 10) else { panic!("events") };
        assert_eq!(revisions(&page), (13..=30).step_by(3).collect::<Vec<_>>());
        let RingPage::Events(page, end) = watchers.ring_page(quiet.topics.as_deref(), 3) else { panic!("a page") };
        assert!(page.is_empty());
        assert_eq!(end, 30, "a quiet watch moves on to the head");
        assert!(matches!(watchers.ring_page(quiet.topics.as_deref(), 2), RingPage::Behind));

        // Each bell is taken down with its watch.
        drop((a1, a2_a3, quiet, every));
        let bells = watchers.bells.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(bells.of_topic.is_empty() && bells.of_everything.is_empty());
    }

    /// Once a ringer runs on the watches' runtime, a publication leaves the
    /// bells to it: the publisher rings none itself, and the ringer rings
    /// those of the events' auctions (and only those), on its own runtime.
    #[tokio::test]
    async fn a_ringer_on_the_watches_runtime_rings_their_bells_for_the_publisher() {
        let auctions = ["a1", "a2"];
        let watchers = Arc::new(Watchers::<AuctionBook>::default());
        let share = <AuctionBook as ClientApi>::share_event;
        watchers.extend_ring(&book_of(&auctions, 2).machine, 2, 2, share);
        let stop = tokio_util::sync::CancellationToken::new();
        let ringer = tokio::spawn(Arc::clone(&watchers).ring_bells(stop.clone()));
        while !watchers.rung_elsewhere.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
        }
        let a1 = watchers.hang_bell(&EventScope::of(["a1"]));
        let a2 = watchers.hang_bell(&EventScope::of(["a2"]));
        a1.bell.arm();
        a2.bell.arm();
        // Revision 3 is a bid on a1.
        assert_eq!(watchers.extend_ring(&book_of(&auctions, 3).machine, 3, 2, share), 0, "the publisher rang none");
        let heard = tokio::time::timeout(std::time::Duration::from_secs(5), a1.bell.notify.notified()).await;
        assert!(heard.is_ok(), "the ringer rang a1's bell");
        assert!(!rung(&a2), "and not a2's");
        stop.cancel();
        ringer.await.expect("the ringer ends");
        assert!(!watchers.rung_elsewhere.load(Ordering::Relaxed), "the publisher rings again");
    }

    /// A node stops serving: its watches are told, and its ring is gone.
    #[test]
    fn a_node_that_stops_serving_ends_its_ring() {
        let watchers = Watchers::<AuctionBook>::default();
        let (_watch, _events) = watchers.open(EventScope::All, 0, 1).expect("a watch");
        let mut publisher = Publisher::default();
        publisher.publish(&watchers, &book(3), Some(3));
        watchers.stop();
        assert_eq!(*watchers.head.borrow(), None);
        assert!(matches!(watchers.ring_page(None, 3), RingPage::Behind));
    }

    /// A watch after a revision its node's log has not reached is refused:
    /// nobody wrote it.
    #[test]
    fn a_watch_ahead_of_the_log_is_refused() {
        let watchers = Watchers::<AuctionBook>::default();
        let refused = watchers.open(EventScope::All, 10, 9).err();
        assert!(matches!(refused, Some(ServiceError::AheadOfLog { asked: 10, .. })), "{refused:?}");
    }
}
