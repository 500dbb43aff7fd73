//! The leader's event loop: feeds client calls and backup events to the
//! replication core and performs its actions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::replication::{
    Action, Event, Leader, LeaderSettings, MembershipRecord, NodeId, Now, ReplicatedState, Role, epoch_number,
};
use crate::transport::{self, ClientApi, Incoming, ServiceError, Services};

use super::NodeConfig;
use super::backend::{BackupStream, LeaderHandle, LeaderInput, MAX_QUEUED_INPUTS, ReplySender, Shared};
use super::coordinator::RecordStore;
use super::durable::{NodeDisk, persisted_changed};
use super::limits::RateLimiter;
use super::watchers::Publisher;

/// Inputs handled before the actions are performed: batching them lets
/// many bids share one message to each backup.
const MAX_INPUTS_PER_ROUND: usize = 1024;
/// How often the leader checks ack timeouts and deadlines.
const TICK_INTERVAL: Duration = Duration::from_millis(10);
/// Client requests whose replies may wait for a commit at once; past this,
/// new ones are refused with `RESOURCE_EXHAUSTED` until the backups catch up.
const MAX_PENDING_REPLIES: usize = 64 * 1024;
/// How long the server tasks get to close their connections once the node
/// stops serving: a client that keeps its connection open must not hold a
/// stopping node up.
pub(super) const SERVER_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the node brings to its leadership.
pub(super) struct Start<M: ClientApi> {
    /// This leadership's epoch, from the takeover record's version.
    pub epoch: u64,
    /// The takeover record, stored: this node first, then the backups to
    /// expect (the members that answered the takeover probe).
    pub record: MembershipRecord,
    /// Empty when the node bootstraps a new cluster.
    pub state: ReplicatedState<M>,
    pub lost_leader: Option<NodeId>,
    /// This node's disk, if it keeps one: the leader counts an entry only
    /// once it holds it.
    pub disk: Option<NodeDisk<M>>,
}

/// Leads until shutdown. The client port is already bound: holding it is
/// what makes this node the leader.
pub(super) async fn lead<M: ClientApi>(
    shared: &Arc<Shared<M>>,
    config: &NodeConfig<M>,
    coordinator: &dyn RecordStore,
    start: Start<M>,
    client_listener: Incoming,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let now = shared.network().now();
    let mut disk = start.disk;
    let settings = LeaderSettings {
        ack_timeout: config.ack_timeout,
        durable: disk.is_some(),
        machine: config.machine.clone(),
        ..LeaderSettings::default()
    };
    let mut leader = if start.state.last.index == 0 {
        let mut leader = Leader::bootstrap(start.record, start.epoch, settings, now);
        for command in M::genesis(&config.machine, now.unix_ms) {
            leader.handle(Event::Propose { token: None, command }, now);
        }
        info!(
            epoch = epoch_number(leader.epoch()),
            client_port = %config.client_address,
            cluster = %leader.state().cluster_id,
            "bootstrapped a new cluster; became leader"
        );
        leader
    } else {
        // Only the members that answered are waited for (the takeover
        // record lists them); the others rejoin later, as new backups, if
        // they are alive after all.
        let expecting: Vec<NodeId> = start.record.nodes().into_iter().skip(1).collect();
        let leader = Leader::take_over(start.state, start.record, start.epoch, settings, now);
        info!(
            epoch = epoch_number(leader.epoch()),
            client_port = %config.client_address,
            lost_leader = start.lost_leader.as_deref().unwrap_or("?"),
            ?expecting,
            "took over; became leader"
        );
        leader
    };

    let (inputs, mut input_receiver) = mpsc::channel(MAX_QUEUED_INPUTS);
    let published_to_backups = watch::channel(0).0;
    let cluster_id = leader.state().cluster_id.clone();
    let serving_clients = Arc::new(AtomicBool::new(true));
    let handle = LeaderHandle {
        inputs,
        epoch: leader.epoch(),
        cluster_id,
        serving_clients: Arc::clone(&serving_clients),
        published: published_to_backups.clone(),
        limiter: Arc::new(RateLimiter::new(config.machine.clone())),
    };
    shared.set_leader(Some(handle)).await;
    shared.set_status(Role::Leader, leader.epoch(), Some(shared.id()), leader.state());
    // Its own token: a graceful stop closes the client port first, while
    // the loop still releases the replies of requests in flight.
    let client_port_open = shutdown.child_token();
    let client_server = tokio::spawn(transport::serve(
        Arc::clone(shared),
        transport::limit_connections(client_listener, transport::MAX_CLIENT_CONNECTIONS),
        Services::Clients,
        config.transport(),
        shared.network().tls().cloned(),
        client_port_open.clone(),
    ));

    let mut persisted = disk.as_ref().map(NodeDisk::persisted);
    if let (Some(disk), Some(persisted)) = (&disk, &persisted)
        && let Some(index) = disk.holds(&persisted.borrow())
    {
        // What the disk held when it stopped following: its own log so far.
        leader.handle(Event::Persisted { index }, shared.network().now());
    }
    let mut driver = Driver::new(disk.take(), published_to_backups);
    driver.perform(&mut leader, coordinator, shared, shared.network().now());
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_until = None;
    let mut publisher = Publisher::default();
    loop {
        // Biased, so that a simulation replays exactly; a stop first.
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if drain_until.is_none() => {
                // A graceful stop: no new requests; the ones in flight are
                // answered once committed; then the backups' streams end and
                // the first of the leaderQueue takes over.
                info!(pending = leader.pending_replies(), "stopping: handing leadership over");
                serving_clients.store(false, Ordering::Relaxed);
                client_port_open.cancel();
                driver.draining = true;
                drain_until = Some(shared.network().now().instant + 2 * config.ack_timeout);
            }
            held = persisted_changed(&mut persisted) => {
                if let Some(failure) = &held.failure {
                    driver.disk_failure.get_or_insert_with(|| format!("the disk failed: {failure}"));
                } else if let Some(index) = driver.disk.as_ref().and_then(|disk| disk.holds(&held)) {
                    leader.handle(Event::Persisted { index }, shared.network().now());
                }
            }
            _ = ticker.tick() => {
                let now = shared.network().now();
                // What this tick will apply, for the log.
                let due = leader.state().machine.due(now.unix_ms.max(leader.state().clock_unix_ms), &config.machine);
                leader.handle(Event::Tick, now);
                if !due.is_empty() {
                    leader.state().machine.log_due(&due);
                }
            }
            input = input_receiver.recv() => {
                let Some(input) = input else { break };
                let now = shared.network().now();
                driver.handle(&mut leader, input, now);
                for _ in 1..MAX_INPUTS_PER_ROUND {
                    match input_receiver.try_recv() {
                        Ok(input) => driver.handle(&mut leader, input, now),
                        Err(_) => break,
                    }
                }
            }
        }
        // After every round, not only on ticks, and before any entry leaves:
        // a status read must never show the leader behind its backups.
        shared.set_status(Role::Leader, leader.epoch(), Some(shared.id()), leader.state());
        driver.perform(&mut leader, coordinator, shared, shared.network().now());
        if let Some(failure) = driver.disk_failure.take() {
            // Nothing more may be acknowledged: the node stops, and the
            // first of the leaderQueue takes over.
            shared.set_leader(None).await;
            shared.stop_watches();
            return Err(anyhow::anyhow!("{failure}; this node stops leading and exits"));
        }
        publisher.publish(shared.watchers(), leader.state(), driver.published);
        if let Some(deadline) = drain_until
            && (leader.pending_replies() == 0 || shared.network().now().instant >= deadline)
        {
            break;
        }
    }
    shared.set_leader(None).await;
    shared.stop_watches();
    // Ends every backup's stream: they take the leader for lost at once.
    drop(driver);
    client_port_open.cancel();
    if tokio::time::timeout(SERVER_CLOSE_TIMEOUT, client_server).await.is_err() {
        debug!("client connections still open; closing them");
    }
    info!("stepped down");
    Ok(())
}

/// The leader loop's bookkeeping of replies and backup streams.
struct Driver<M: ClientApi> {
    replies: HashMap<u64, ReplySender<M>>,
    streams: HashMap<NodeId, BackupStream<M>>,
    next_token: u64,
    /// Backups whose queue was full: they cannot keep up, and are removed.
    overflowed: Vec<(NodeId, u64)>,
    /// This node's disk, if it keeps one.
    disk: Option<NodeDisk<M>>,
    /// Why the disk (or the record's store) can take no more: the leader
    /// must stop.
    disk_failure: Option<String>,
    /// Records stored since the leader last heard of it: their versions.
    records_stored: Vec<u64>,
    /// A graceful stop is under way: a draining leader writes no record.
    draining: bool,
    /// The index the leader last announced as published.
    published: Option<u64>,
    /// The same, for the backups' streams: every message carries it.
    published_to_backups: watch::Sender<u64>,
}

impl<M: ClientApi> Driver<M> {
    fn new(disk: Option<NodeDisk<M>>, published_to_backups: watch::Sender<u64>) -> Self {
        Driver {
            replies: HashMap::new(),
            streams: HashMap::new(),
            next_token: 0,
            overflowed: Vec::new(),
            disk,
            disk_failure: None,
            records_stored: Vec::new(),
            draining: false,
            published: None,
            published_to_backups,
        }
    }

    fn handle(&mut self, leader: &mut Leader<M>, input: LeaderInput<M>, now: Now) {
        let event = match input {
            LeaderInput::Propose { command, reply } => match self.hold(leader, reply) {
                Some(token) => Event::Propose { token: Some(token), command },
                None => return,
            },
            LeaderInput::Read { query, reply } => match self.hold(leader, reply) {
                Some(token) => Event::Read { token, query },
                None => return,
            },
            LeaderInput::BackupConnected { node, incarnation, last, stream } => {
                let connection = stream.connection;
                leader.handle(Event::BackupConnected { node: node.clone(), incarnation, connection, last }, now);
                if leader.connection_of(&node) == Some(connection) {
                    info!(backup = %node, last_index = last.index, "backup connected");
                    self.streams.insert(node, stream);
                } else {
                    // Dropping the stream ends it.
                    warn!(backup = %node, "refused a stream under a connected member's name with another incarnation");
                }
                return;
            }
            LeaderInput::Ack { node, connection, index } => Event::Ack { node, connection, index },
            LeaderInput::BackupLost { node, connection } => Event::BackupLost { node, connection },
            LeaderInput::RemoveMember { node, reply } => match self.hold(leader, reply) {
                Some(token) => {
                    info!(member = %node, "an operator removes a member");
                    Event::RemoveMember { token, node }
                }
                None => return,
            },
        };
        leader.handle(event, now);
    }

    /// Keeps the reply channel until the answer is released, or refuses
    /// the request when too many wait already.
    fn hold(&mut self, leader: &Leader<M>, reply: ReplySender<M>) -> Option<u64> {
        if leader.pending_replies() >= MAX_PENDING_REPLIES {
            let _ = reply.send(Err(ServiceError::Overloaded(MAX_PENDING_REPLIES)));
            return None;
        }
        self.next_token += 1;
        self.replies.insert(self.next_token, reply);
        Some(self.next_token)
    }

    /// Performs the leader's actions; a backup whose queue overflowed is
    /// reported lost, a stored record reported stored, and the actions
    /// that causes performed in turn.
    fn perform(&mut self, leader: &mut Leader<M>, coordinator: &dyn RecordStore, shared: &Shared<M>, now: Now) {
        loop {
            for action in leader.take_actions() {
                match action {
                    Action::StoreRecord { record } => self.store_record(coordinator, shared, record),
                    action => self.perform_one(action),
                }
            }
            if let Some(disk) = &mut self.disk
                && let Err(error) = disk.maybe_snapshot(leader.epoch(), leader.state())
            {
                self.disk_failure.get_or_insert_with(|| format!("writing a snapshot failed: {error}"));
            }
            let stored = std::mem::take(&mut self.records_stored);
            let overflowed = std::mem::take(&mut self.overflowed);
            // Done once nothing performed asks for more; otherwise what the
            // leader does next is performed in the next round.
            if stored.is_empty() && overflowed.is_empty() {
                return;
            }
            for version in stored {
                leader.handle(Event::RecordStored { version }, now);
            }
            for (node, connection) in overflowed {
                warn!(backup = %node, "backup cannot keep up; removing it");
                leader.handle(Event::BackupLost { node, connection }, now);
            }
        }
    }

    /// Stores the membership record: a synced write, on the loop itself,
    /// at membership changes only (never per bid). A failure ends this
    /// leadership: the record is what a successor trusts.
    fn store_record(&mut self, coordinator: &dyn RecordStore, shared: &Shared<M>, record: MembershipRecord) {
        if self.draining {
            debug!(version = record.version, "draining: the record is left to the next leader");
            return;
        }
        match coordinator.store_record(record.version.checked_sub(1), &record) {
            Ok(()) => {
                info!(version = record.version, members = ?record.nodes(), "membership record stored");
                shared.set_record(Some(&record));
                self.records_stored.push(record.version);
            }
            Err(error) => {
                self.disk_failure.get_or_insert_with(|| format!("storing the membership record failed: {error}"));
            }
        }
    }

    fn perform_one(&mut self, action: Action<M>) {
        match action {
            Action::Send { to, connection, message } => {
                if let Some(stream) = self.streams.get(&to)
                    && stream.connection == connection
                {
                    match stream.messages.try_send(message) {
                        // A closed stream shows up as the backup's loss.
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => self.overflowed.push((to, connection)),
                    }
                }
            }
            Action::Reply { token, reply } => match self.replies.remove(&token) {
                // The client may have gone; its answer stays in the log.
                Some(sender) => {
                    let _ = sender.send(Ok(reply));
                }
                None => error!(token, "reply for an unknown request"),
            },
            Action::Disconnect { node, connection } => {
                if self.streams.get(&node).is_some_and(|stream| stream.connection == connection) {
                    self.streams.remove(&node);
                    info!(backup = %node, "backup removed");
                }
            }
            Action::StoreRecord { .. } => unreachable!("performed by Driver::perform"),
            Action::Publish { index } => {
                self.published = Some(index);
                self.published_to_backups.send_replace(index);
                // Each writer in the order of its backup's id: the same in
                // every run (a simulation replays a seed exactly).
                let mut backups: Vec<&NodeId> = self.streams.keys().collect();
                backups.sort();
                for backup in backups {
                    self.streams[backup].published_wake.notify_one();
                }
            }
            Action::Persist { entries } => {
                if let Some(disk) = &mut self.disk
                    && let Err(error) = disk.append(&entries)
                {
                    self.disk_failure.get_or_insert_with(|| format!("writing the log failed: {error}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::auction::AuctionBook;
    use crate::node::coordinator::{Presence, RecordError};
    use crate::replication::Reply;
    use crate::replication::{LogPosition, Member};

    /// A record kept in memory, stored as asked.
    #[derive(Default)]
    struct MemoryRecord(Mutex<Option<MembershipRecord>>);

    impl RecordStore for MemoryRecord {
        fn load_record(&self) -> Result<Option<MembershipRecord>, RecordError> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn store_record(&self, _expected: Option<u64>, record: &MembershipRecord) -> Result<(), RecordError> {
            *self.0.lock().unwrap() = Some(record.clone());
            Ok(())
        }
        fn presence(&self, _member: &Member) -> Presence {
            Presence::Running
        }
    }

    /// A backup whose queue is full cannot keep up: it is removed, not
    /// buffered, and the leader's memory for it stays bounded.
    #[test]
    fn a_backup_whose_queue_is_full_is_removed() {
        let now = Now::read();
        let me = Member { node: "127.0.0.1:1".into(), incarnation: 1 };
        let record = MembershipRecord { cluster_id: "c".into(), version: 1, epoch: 1, members: vec![me] };
        let mut leader = Leader::<AuctionBook>::bootstrap(record, 1 << 32, LeaderSettings::default(), now);
        let records = MemoryRecord::default();
        let shared = Shared::new(
            &crate::node::NodeConfig::new("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()),
            crate::transport::Network::tcp(),
        );
        let mut driver = Driver::new(None, watch::channel(0).0);
        let node = "127.0.0.1:2".to_string();
        // Room for one message: its catch-up. It never reads.
        let (messages, _never_read) = mpsc::channel(1);
        let closed = CancellationToken::new();
        let stream =
            BackupStream { connection: 1, messages, closed: closed.clone(), published_wake: Default::default() };
        let connected =
            LeaderInput::BackupConnected { node: node.clone(), incarnation: 2, last: LogPosition::default(), stream };
        driver.handle(&mut leader, connected, now);
        driver.perform(&mut leader, &records, &shared, now);
        assert!(driver.streams.contains_key(&node));
        // It acks its catch-up, so entries are streamed to it: the next
        // message finds its queue full.
        let acked = LeaderInput::Ack { node: node.clone(), connection: 1, index: leader.state().last.index };
        driver.handle(&mut leader, acked, now);
        driver.perform(&mut leader, &records, &shared, now);

        assert!(!driver.streams.contains_key(&node), "removed once its queue overflowed");
        assert!(closed.is_cancelled(), "its stream's tasks are told to end");
        let (members, learners) = leader.members_and_learners();
        assert!(!members.contains(&node) && !learners.contains(&node));
    }

    /// What a stored record lets the leader do (admit the member, commit,
    /// reply) is performed before `perform` returns, not left for the next
    /// event.
    #[test]
    fn what_a_stored_record_releases_is_performed_at_once() {
        let now = Now::read();
        let me = Member { node: "127.0.0.1:1".into(), incarnation: 1 };
        let record = MembershipRecord { cluster_id: "c".into(), version: 1, epoch: 1, members: vec![me] };
        let mut leader = Leader::<AuctionBook>::bootstrap(record, 1 << 32, LeaderSettings::default(), now);
        let records = MemoryRecord::default();
        let shared = Shared::new(
            &crate::node::NodeConfig::new("127.0.0.1:1".parse().unwrap(), "127.0.0.1:2".parse().unwrap()),
            crate::transport::Network::tcp(),
        );
        let mut driver = Driver::new(None, watch::channel(0).0);
        let node = "127.0.0.1:2".to_string();
        let (messages, _kept) = mpsc::channel(64);
        let stream = BackupStream {
            connection: 1,
            messages,
            closed: CancellationToken::new(),
            published_wake: Default::default(),
        };
        let connected =
            LeaderInput::BackupConnected { node: node.clone(), incarnation: 2, last: LogPosition::default(), stream };
        driver.handle(&mut leader, connected, now);
        driver.perform(&mut leader, &records, &shared, now);
        // Its catch-up acked, it is admitted: a join entry and a record
        // that lists it.
        let acked = LeaderInput::Ack { node: node.clone(), connection: 1, index: leader.state().last.index };
        driver.handle(&mut leader, acked, now);
        driver.perform(&mut leader, &records, &shared, now);

        let stored = records.load_record().unwrap().expect("a record stored");
        assert!(stored.nodes().contains(&node), "{stored:?}");

        // A bid waits for the member's ack; the member is lost: the bid
        // commits once the record without it is stored, in this round.
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let bid = crate::auction::Bid {
            name_digest: None,
            auction_id: String::new(),
            bidder: "ann".into(),
            amount: 10,
            client_id: String::new(),
            request_id: 0,
            at_unix_ms: 0,
        };
        driver.handle(&mut leader, LeaderInput::Propose { command: crate::auction::Command::Bid(bid), reply }, now);
        driver.perform(&mut leader, &records, &shared, now);
        assert!(answer.try_recv().is_err(), "the bid waits for the member");
        driver.handle(&mut leader, LeaderInput::BackupLost { node: node.clone(), connection: 1 }, now);
        driver.perform(&mut leader, &records, &shared, now);

        let stored = records.load_record().unwrap().expect("a record stored");
        assert!(!stored.nodes().contains(&node), "{stored:?}");
        let Ok(Ok(Reply::Applied { index: bid_index, .. })) = answer.try_recv() else { panic!("the bid is answered") };
        let published = *driver.published_to_backups.borrow();
        assert_eq!(Some(published), leader.published_index(), "the backups' streams carry what it published");
        assert!(published >= bid_index, "the bid among it: {published} < {bid_index}");
        let left = leader.take_actions();
        assert!(left.is_empty(), "nothing left undone: {left:?}");
    }
}
