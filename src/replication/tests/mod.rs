//! Unit tests of the replication core, driven synchronously.
//!
//! A [`Cluster`] is an in-memory network in the manner of raft-rs's test
//! harness: one [`Leader`], its [`Backup`]s keyed by node id, and per backup a
//! queue of messages in flight from the leader and a queue of acks in flight
//! back. Tests deliver, hold, drop or reorder them one at a time, move a fake
//! clock by hand, and assert on the exact actions the leader emits and on the
//! state of every replica. No sockets, tasks or sleeps.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use crate::auction::machine::{
    Action, AuctionSettings, Backup, DEFAULT_RETAIN_CLOSED, Entry, Event, Leader, LeaderSettings, Message, Payload,
    ReplicatedState, Reply, Snapshot,
};
use crate::auction::{
    Applied, Auction, AuctionView, Bid, BidOutcome, Command, DEFAULT_AUCTION, OpenAuction, Placed, Query, QueryAnswer,
    QueryError, ReadError, Reason, Verdict,
};

use super::*;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

const LEADER: &str = "node-1";
const NODE_2: &str = "node-2";
const NODE_3: &str = "node-3";
const NODE_4: &str = "node-4";

const ACK_TIMEOUT_MS: u64 = 1_000;
const LEARNER_TIMEOUT_MS: u64 = 5_000;
const CLUSTER_ID: &str = "test-cluster";
/// How long the test auction runs, counted from the cluster's start.
const AUCTION_MS: u64 = 60_000;

fn settings() -> LeaderSettings {
    LeaderSettings {
        ack_timeout: Duration::from_millis(ACK_TIMEOUT_MS),
        tail_capacity: 64,
        learner_timeout: Duration::from_millis(LEARNER_TIMEOUT_MS),
        durable: false,
        machine: AuctionSettings { retain_closed: DEFAULT_RETAIN_CLOSED },
    }
}

/// One replication stream, seen from the network between leader and backup.
#[derive(Debug)]
struct Stream {
    connection: u64,
    /// Sent by the leader, not yet applied by the backup.
    in_flight: VecDeque<Message>,
    /// Indexes the backup acked, not yet seen by the leader.
    acks: VecDeque<u64>,
}

/// A leader, its backups and the network between them.
struct Cluster {
    leader: Leader,
    settings: LeaderSettings,
    /// Every backup process, connected or not: a node keeps its log when its
    /// stream ends, and reports it when it connects again.
    backups: BTreeMap<NodeId, Backup>,
    /// The open stream of each connected backup.
    streams: BTreeMap<NodeId, Stream>,
    /// Every entry the leader sent, by index (the latest epoch's wins): the
    /// leader does not expose its log, so tests read it here.
    sent_log: BTreeMap<u64, Entry>,
    /// When the cluster started: the auction's deadline is set from it.
    start: Now,
    now: Now,
    next_token: u64,
    next_connection: u64,
    /// Replies, in the order the leader released them.
    released: Vec<(u64, Reply)>,
    /// The incarnation each node speaks for when it connects (1 unless a
    /// test sets another: a node restarted without its disk, an impostor).
    incarnations: BTreeMap<NodeId, u64>,
    /// Every membership record the leader asked to store, in order.
    records: Vec<MembershipRecord>,
    /// While set, record writes are not answered: the coordinator is slow.
    hold_records: bool,
    /// Writes asked for and not yet answered, while held.
    held_records: VecDeque<u64>,
    /// The indexes the leader announced as published, in order: tests of
    /// publishing look here.
    published: Vec<u64>,
}

/// The incarnation every node speaks for unless a test says otherwise.
const INCARNATION: u64 = 1;

/// A stored record listing `nodes` (the leader first), of `version`.
fn record_of(nodes: &[&str], version: u64) -> MembershipRecord {
    MembershipRecord {
        cluster_id: CLUSTER_ID.to_string(),
        version,
        epoch: 1,
        members: nodes.iter().map(|node| Member { node: node.to_string(), incarnation: INCARNATION }).collect(),
    }
}

impl Cluster {
    /// A leader alone, with the default auction open for `auction_ms`.
    fn bootstrap(settings: LeaderSettings, auction_ms: u64) -> Self {
        let start = Now::read();
        let leader = Leader::bootstrap(record_of(&[LEADER], 1), epoch_of_record(1, 0), settings.clone(), start);
        let mut cluster = Cluster {
            leader,
            settings,
            backups: BTreeMap::new(),
            streams: BTreeMap::new(),
            sent_log: BTreeMap::new(),
            start,
            now: start,
            next_token: 1,
            next_connection: 1,
            released: Vec::new(),
            incarnations: BTreeMap::new(),
            records: Vec::new(),
            hold_records: false,
            held_records: VecDeque::new(),
            published: Vec::new(),
        };
        let open = OpenAuction {
            auction_id: DEFAULT_AUCTION.to_string(),
            description: "a test auction".to_string(),
            minimum_amount: 1,
            ends_at_unix_ms: start.advanced(auction_ms).unix_ms,
            at_unix_ms: start.unix_ms,
        };
        cluster.step(Event::Propose { token: None, command: Command::Open(open) });
        cluster
    }

    /// A leader whose `backups` joined one after the other and caught up.
    fn start(settings: LeaderSettings, auction_ms: u64, backups: &[&str]) -> Self {
        let mut cluster = Cluster::bootstrap(settings, auction_ms);
        for node in backups {
            cluster.connect(node);
            cluster.settle();
        }
        cluster
    }

    fn with_backups(backups: &[&str]) -> Self {
        Cluster::start(settings(), AUCTION_MS, backups)
    }

    // The leader's side.

    /// Hands one event to the leader without flushing its actions, as the
    /// node does for each input of a round.
    fn handle(&mut self, event: Event) {
        self.leader.handle(event, self.now);
    }

    /// Takes the leader's actions and performs them on the network. A
    /// record write is answered at once (unless `hold_records`), and kept in
    /// `records` rather than returned: tests of the record look there.
    fn take_actions(&mut self) -> Vec<Action> {
        let mut performed = Vec::new();
        loop {
            let actions = self.leader.take_actions();
            self.route(&actions);
            let mut stored = Vec::new();
            for action in actions {
                match action {
                    Action::StoreRecord { record } => {
                        stored.push(record.version);
                        self.records.push(record);
                    }
                    Action::Publish { index } => self.published.push(index),
                    other => performed.push(other),
                }
            }
            if self.hold_records {
                self.held_records.extend(stored);
                return performed;
            }
            if stored.is_empty() {
                return performed;
            }
            for version in stored {
                self.leader.handle(Event::RecordStored { version }, self.now);
            }
        }
    }

    /// Answers the record writes held so far.
    fn release_records(&mut self) -> Vec<Action> {
        self.hold_records = false;
        for version in std::mem::take(&mut self.held_records) {
            self.leader.handle(Event::RecordStored { version }, self.now);
        }
        self.take_actions()
    }

    fn step(&mut self, event: Event) -> Vec<Action> {
        self.handle(event);
        self.take_actions()
    }

    fn route(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Send { to, connection, message } => {
                    if let Message::Entries(entries) = message {
                        for entry in entries.iter() {
                            self.sent_log.insert(entry.index, entry.clone());
                        }
                    }
                    // A message for a stream that is already gone is lost.
                    if let Some(stream) = self.streams.get_mut(to)
                        && stream.connection == *connection
                    {
                        stream.in_flight.push_back(message.clone());
                    }
                }
                Action::Reply { token, reply } => self.released.push((*token, reply.clone())),
                // Tests say what the disk holds with `Event::Persisted`.
                Action::Persist { .. } => {}
                // Answered, or kept, by `take_actions`.
                Action::StoreRecord { .. } | Action::Publish { .. } => {}
                Action::Disconnect { node, connection } => {
                    if self.streams.get(node).is_some_and(|stream| stream.connection == *connection) {
                        self.streams.remove(node);
                    }
                }
            }
        }
    }

    fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn bid_event(&mut self, bid: Bid) -> (u64, Event) {
        let token = self.next_token();
        (token, Event::Propose { token: Some(token), command: Command::Bid(bid) })
    }

    fn send_bid(&mut self, bid: Bid) -> u64 {
        let (token, event) = self.bid_event(bid);
        self.step(event);
        token
    }

    /// A bid from a client session of its own.
    fn bid(&mut self, bidder: &str, amount: u64) -> u64 {
        let client_id = format!("client-{}", self.next_token);
        self.send_bid(bid(bidder, amount, &client_id, 1))
    }

    fn read_auction(&mut self, auction_id: &str) -> u64 {
        let token = self.next_token();
        self.step(Event::Read { token, query: Query::View { auction_id: auction_id.to_string() } });
        token
    }

    fn read(&mut self) -> u64 {
        self.read_auction(DEFAULT_AUCTION)
    }

    fn tick(&mut self) -> Vec<Action> {
        self.step(Event::Tick)
    }

    fn advance(&mut self, millis: u64) {
        self.now = self.now.advanced(millis);
    }

    // The network.

    /// Opens a new stream from `node` (a fresh node if it never ran), which
    /// reports the end of its log.
    fn connect(&mut self, node: &str) -> Vec<Action> {
        let connection = self.next_connection;
        self.next_connection += 1;
        let last = self.backups.entry(node.to_string()).or_default().last();
        let stream = Stream { connection, in_flight: VecDeque::new(), acks: VecDeque::new() };
        self.streams.insert(node.to_string(), stream);
        let incarnation = self.incarnation(node);
        self.step(Event::BackupConnected { node: node.to_string(), incarnation, connection, last })
    }

    fn incarnation(&self, node: &str) -> u64 {
        self.incarnations.get(node).copied().unwrap_or(INCARNATION)
    }

    fn connection(&self, node: &str) -> u64 {
        self.streams.get(node).map(|stream| stream.connection).expect("the backup is connected")
    }

    /// The stream of `node` ends: what is in flight on it is lost, and the
    /// leader hears of it.
    fn lose_stream(&mut self, node: &str) -> Vec<Action> {
        let stream = self.streams.remove(node).expect("the backup is connected");
        self.step(Event::BackupLost { node: node.to_string(), connection: stream.connection })
    }

    fn in_flight(&self, node: &str) -> usize {
        self.streams.get(node).map_or(0, |stream| stream.in_flight.len())
    }

    /// Applies the next message in flight to `node`; false if there is none.
    fn deliver_one(&mut self, node: &str) -> Result<bool, ReplicationError> {
        let Some(stream) = self.streams.get_mut(node) else { return Ok(false) };
        let Some(message) = stream.in_flight.pop_front() else { return Ok(false) };
        let backup = self.backups.get_mut(node).expect("a connected backup has a state");
        let acked = match message {
            Message::Snapshot(snapshot) => backup.install(*snapshot)?,
            Message::Entries(entries) => backup.apply(entries.iter())?,
        };
        stream.acks.push_back(acked);
        Ok(true)
    }

    /// Applies every message in flight to `node`.
    fn deliver(&mut self, node: &str) -> Result<(), ReplicationError> {
        while self.deliver_one(node)? {}
        Ok(())
    }

    fn drop_in_flight(&mut self, node: &str) {
        if let Some(stream) = self.streams.get_mut(node) {
            stream.in_flight.clear();
        }
    }

    fn reverse_in_flight(&mut self, node: &str) {
        if let Some(stream) = self.streams.get_mut(node) {
            stream.in_flight.make_contiguous().reverse();
        }
    }

    fn ack_event(&mut self, node: &str, pick: impl FnOnce(&mut VecDeque<u64>) -> Option<u64>) -> Option<Event> {
        let stream = self.streams.get_mut(node)?;
        let index = pick(&mut stream.acks)?;
        Some(Event::Ack { node: node.to_string(), connection: stream.connection, index })
    }

    /// Hands the leader the oldest ack in flight from `node`.
    fn deliver_next_ack(&mut self, node: &str) -> Vec<Action> {
        match self.ack_event(node, VecDeque::pop_front) {
            Some(event) => self.step(event),
            None => Vec::new(),
        }
    }

    /// Hands the leader every ack in flight from `node`, one step each.
    fn deliver_acks(&mut self, node: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        while self.streams.get(node).is_some_and(|stream| !stream.acks.is_empty()) {
            actions.extend(self.deliver_next_ack(node));
        }
        actions
    }

    /// Only the newest ack from `node` gets through: acks are cumulative.
    fn deliver_latest_ack(&mut self, node: &str) -> Vec<Action> {
        let latest = self.ack_event(node, |acks| {
            let latest = acks.pop_back();
            acks.clear();
            latest
        });
        latest.map(|event| self.step(event)).unwrap_or_default()
    }

    fn drop_acks(&mut self, node: &str) {
        if let Some(stream) = self.streams.get_mut(node) {
            stream.acks.clear();
        }
    }

    fn reverse_acks(&mut self, node: &str) {
        if let Some(stream) = self.streams.get_mut(node) {
            stream.acks.make_contiguous().reverse();
        }
    }

    /// Delivers every message and ack until nothing is in flight.
    fn settle(&mut self) {
        loop {
            let busy: Vec<NodeId> = self
                .streams
                .iter()
                .filter(|(_, stream)| !stream.in_flight.is_empty() || !stream.acks.is_empty())
                .map(|(node, _)| node.clone())
                .collect();
            if busy.is_empty() {
                return;
            }
            for node in busy {
                self.deliver(&node).expect("a backup accepts what its leader sends in order");
                self.deliver_acks(&node);
            }
        }
    }

    // Failover.

    /// The leader crashes, taking its streams and held replies with it, and
    /// `successor` takes over with the state it holds.
    fn crash_leader_and_take_over(&mut self, successor: &str) -> Vec<Action> {
        let lost_leader = self.leader.id().to_string();
        let (epoch, state) = self.backups.remove(successor).expect("the successor is a backup").into_parts();
        self.streams.clear();
        let expected: Vec<NodeId> = state.membership.iter().filter(|member| **member != lost_leader).cloned().collect();
        self.leader = self.taking_over(successor, epoch, state, &expected, 0);
        self.take_actions()
    }

    /// The leader `successor` becomes, as the node makes it: its takeover
    /// record (itself, then the `expected` backups) stored first, with a
    /// version above the record and every epoch it has seen.
    fn taking_over(
        &mut self,
        successor: &str,
        highest_epoch: u64,
        state: ReplicatedState,
        expected: &[NodeId],
        nonce: u32,
    ) -> Leader {
        let number = takeover_epoch_number(Some(self.leader.record()), highest_epoch.max(state.last.epoch));
        let version = self.leader.record().version + 1;
        let mut members = vec![Member { node: successor.to_string(), incarnation: self.incarnation(successor) }];
        for node in expected.iter().filter(|node| node.as_str() != successor) {
            members.push(Member { node: node.clone(), incarnation: self.incarnation(node) });
        }
        let record = MembershipRecord { cluster_id: state.cluster_id.clone(), version, epoch: number, members };
        self.records.push(record.clone());
        Leader::take_over(state, record, epoch_of_record(number, nonce), self.settings.clone(), self.now)
    }

    /// `successor` takes over as the node does (node/leader.rs): with the
    /// state and the highest epoch it holds, its membership cut down to itself
    /// and the `live_backups` that answered its probe.
    fn take_over_as(&mut self, successor: &str, lost_leader: &str, live_backups: &[NodeId]) -> Vec<Action> {
        // Each node draws its own nonce, as a real node draws a random one.
        let nonce = successor.bytes().map(u32::from).sum();
        let (epoch, state) = self.backups.remove(successor).expect("the successor is a backup").into_parts();
        let expected: Vec<NodeId> = state
            .membership
            .iter()
            .filter(|member| *member != successor && *member != lost_leader && live_backups.contains(member))
            .cloned()
            .collect();
        self.streams.clear();
        self.leader = self.taking_over(successor, epoch, state, &expected, nonce);
        self.take_actions()
    }

    /// What `node` answers to a probe once the leader is gone.
    fn status(&self, node: &str) -> NodeStatus {
        let backup = self.backup(node);
        NodeStatus {
            node: node.to_string(),
            role: Role::Joining,
            epoch: backup.epoch(),
            leader: None,
            membership: backup.state().membership.clone(),
            last: backup.last(),
            pid: 0,
            cluster_id: backup.state().cluster_id.clone(),
            disk: None,
            http: None,
            record: None,
        }
    }

    // Observations.

    fn backup(&self, node: &str) -> &Backup {
        self.backups.get(node).expect("the backup exists")
    }

    fn released_tokens(&self) -> Vec<u64> {
        self.released.iter().map(|(token, _)| *token).collect()
    }

    fn is_released(&self, token: u64) -> bool {
        self.released.iter().any(|(released, _)| *released == token)
    }

    fn reply(&self, token: u64) -> &Reply {
        self.released
            .iter()
            .find(|(released, _)| *released == token)
            .map(|(_, reply)| reply)
            .unwrap_or_else(|| panic!("reply {token} was not released"))
    }

    /// An accepted bid's outcome with its place in the log, as the leader's
    /// history of the default auction shows the bid of that amount.
    fn placed(&self, outcome: BidOutcome) -> BidOutcome {
        let history = &default_auction(self.leader.state()).history;
        let accepted = history.iter().find(|bid| bid.amount == outcome.highest_amount);
        let accepted =
            accepted.unwrap_or_else(|| panic!("no accepted bid of {} in the history", outcome.highest_amount));
        let placed = Placed { revision: accepted.revision, at_unix_ms: accepted.at_unix_ms };
        BidOutcome { placed: Some(placed), ..outcome }
    }

    fn outcome(&self, token: u64) -> &BidOutcome {
        match self.reply(token) {
            Reply::Applied { output: Applied::Bid(outcome), .. } => outcome,
            other => panic!("reply {token} is not a bid's: {other:?}"),
        }
    }

    fn view(&self, token: u64) -> &AuctionView {
        match self.reply(token) {
            Reply::Read(Ok(QueryAnswer::View(view))) => view,
            other => panic!("reply {token} is not a view: {other:?}"),
        }
    }

    fn sent_entries(&self, indexes: RangeInclusive<u64>) -> Vec<Entry> {
        indexes.map(|index| self.sent_log[&index].clone()).collect()
    }
}

fn bid(bidder: &str, amount: u64, client_id: &str, request_id: u64) -> Bid {
    Bid {
        auction_id: DEFAULT_AUCTION.to_string(),
        bidder: bidder.to_string(),
        amount,
        client_id: client_id.to_string(),
        request_id,
        at_unix_ms: 0,
    }
}

/// The reply that releases a bid's outcome, applied at `index`.
fn bid_replied(token: u64, index: u64, outcome: BidOutcome) -> Action {
    Action::Reply { token, reply: Reply::Applied { index, output: Applied::Bid(outcome) } }
}

/// The outcome of a bid that became the highest, before its place in the
/// log is known (see `Cluster::placed`).
fn success(bidder: &str, amount: u64, registered: bool) -> BidOutcome {
    BidOutcome {
        verdict: Verdict::Success,
        reason: registered.then(|| Reason::Registered { bidder: bidder.to_string() }),
        highest_amount: amount,
        highest_bidder: bidder.to_string(),
        placed: None,
    }
}

fn auction_over(highest_bidder: &str, highest_amount: u64) -> BidOutcome {
    BidOutcome {
        verdict: Verdict::Fail,
        reason: Some(Reason::AuctionOver),
        highest_amount,
        highest_bidder: highest_bidder.to_string(),
        placed: None,
    }
}

fn default_auction(state: &ReplicatedState) -> &Auction {
    &state.machine.auctions[DEFAULT_AUCTION]
}

fn entries_message(entries: Vec<Entry>) -> Message {
    Message::Entries(Arc::new(entries))
}

/// The state a fresh node reaches by applying `catch_up`, whatever its form:
/// a snapshot, or the whole log while the leader still holds it all.
fn state_after_catch_up(catch_up: &Message) -> ReplicatedState {
    let mut backup = Backup::default();
    match catch_up {
        Message::Snapshot(snapshot) => backup.install((**snapshot).clone()),
        Message::Entries(entries) => backup.apply(entries.iter()),
    }
    .expect("a fresh node accepts a catch-up");
    backup.into_parts().1
}

fn members(nodes: &[&str]) -> Vec<NodeId> {
    nodes.iter().map(|node| node.to_string()).collect()
}

/// The messages among `actions`, as `(to, message)`.
fn sends(actions: &[Action]) -> Vec<(&str, &Message)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, message, .. } => Some((to.as_str(), message)),
            _ => None,
        })
        .collect()
}

fn replies(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Reply { token, .. } => Some(*token),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Normal operation
// ---------------------------------------------------------------------------

#[test]
fn lone_leader_answers_a_bid_at_once() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);

    let (alice, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);

    let index = cluster.leader.state().last.index;
    assert_eq!(actions, vec![bid_replied(alice, index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn the_published_index_is_announced_as_commits_move_and_a_new_leader_announces_none_before_its_takeover_commits() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.published.clear();
    cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;
    assert_eq!(cluster.published, Vec::<u64>::new(), "nothing new is committed yet");
    cluster.settle();
    assert_eq!(cluster.published, vec![alice_index]);
    assert_eq!(cluster.leader.published_index(), Some(alice_index));
    cluster.tick();
    assert_eq!(cluster.published, vec![alice_index], "announced once, not again while it stays");

    // node-2 takes over with an entry nobody else holds: what it inherited
    // is published only once its takeover commits, with node-3 holding it.
    cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.published.clear();
    let takeover_index = cluster.leader.state().last.index;
    cluster.tick();
    assert_eq!(cluster.published, Vec::<u64>::new());
    assert_eq!(cluster.leader.published_index(), None);
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.published, vec![takeover_index]);
    assert_eq!(cluster.backup(NODE_3).state().last.index, takeover_index);
}

#[test]
fn bid_reply_waits_for_every_backup_to_ack() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bid_index = cluster.leader.state().last.index;

    // Both backups apply the entry, but only node-2's ack has arrived.
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    assert_eq!(cluster.leader.commit_index(), bid_index - 1);
    assert!(!cluster.is_released(alice));

    // node-3's ack commits the entry and releases exactly alice's reply.
    let actions = cluster.deliver_acks(NODE_3);
    assert_eq!(actions, vec![bid_replied(alice, bid_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), bid_index);
}

// ---------------------------------------------------------------------------
// Durability: the leader's own disk gates its commits
// ---------------------------------------------------------------------------

/// The entries of the `Persist` actions among `actions`.
fn persisted_entries(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Persist { entries } => Some(entries.iter().map(|entry| entry.index).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_durable_leader_persists_each_batch_and_commits_only_what_its_disk_holds() {
    let durable = LeaderSettings { durable: true, ..settings() };
    let mut cluster = Cluster::start(durable, AUCTION_MS, &[NODE_2]);
    let settled = cluster.leader.state().last.index;
    // Its disk holds everything so far; the backup acked it too.
    cluster.step(Event::Persisted { index: settled });
    assert_eq!(cluster.leader.commit_index(), settled);

    let (alice, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);
    let bid_index = cluster.leader.state().last.index;
    // The batch goes to the disk and to the backup at once.
    assert_eq!(persisted_entries(&actions), vec![bid_index]);
    assert_eq!(sends(&actions).len(), 1);

    // The backup acks it, but the leader's own disk does not hold it yet.
    cluster.deliver(NODE_2).expect("node-2 applies");
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    assert_eq!(cluster.leader.commit_index(), settled);
    assert!(!cluster.is_released(alice));

    let actions = cluster.step(Event::Persisted { index: bid_index });
    assert_eq!(actions, vec![bid_replied(alice, bid_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.commit_index(), bid_index);
}

#[test]
fn a_leader_without_a_disk_emits_no_persist_and_counts_every_entry_held() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);
    let (_, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    let actions = cluster.step(event);
    assert_eq!(persisted_entries(&actions), Vec::<u64>::new());
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn an_operator_removes_a_member_with_a_committed_entry_and_nobody_else() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let token = cluster.next_token();
    let actions = cluster.step(Event::RemoveMember { token, node: NODE_3.to_string() });
    let removed_at = cluster.leader.state().last.index;
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { node, .. } if node == NODE_3)));
    // Answered once node-2 holds the removal.
    assert!(!cluster.is_released(token));
    cluster.deliver(NODE_2).expect("node-2 applies");
    let actions = cluster.deliver_acks(NODE_2);
    assert_eq!(actions, vec![Action::Reply { token, reply: Reply::MemberRemoved(Some(removed_at)) }]);

    // Neither the leader itself nor a stranger is removed.
    let last = cluster.leader.state().last.index;
    for node in [LEADER, NODE_4, NODE_3] {
        let token = cluster.next_token();
        let actions = cluster.step(Event::RemoveMember { token, node: node.to_string() });
        assert_eq!(actions, vec![Action::Reply { token, reply: Reply::MemberRemoved(None) }], "{node}");
    }
    assert_eq!(cluster.leader.state().last.index, last);
}

#[test]
fn replies_are_released_in_index_order() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    let carol = cluster.bid("carol", 30);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");

    // node-2 has acked all three; node-3's acks arrive one by one.
    assert_eq!(cluster.deliver_latest_ack(NODE_2), vec![]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![alice]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![bob]);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![carol]);

    assert_eq!(cluster.outcome(bob), &cluster.placed(success("bob", 20, true)));
    assert_eq!(cluster.outcome(carol), &cluster.placed(success("carol", 30, true)));
}

#[test]
fn read_waits_for_the_bids_sequenced_before_it_and_shows_only_those() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(alice));

    // bob's bid is sequenced but not acked; the read comes next, carol's bid
    // after it. Each step's entries travel as a message of their own.
    let bob = cluster.bid("bob", 20);
    let bob_index = cluster.leader.state().last.index;
    let read = cluster.read();
    let carol = cluster.bid("carol", 30);
    assert_eq!(cluster.in_flight(NODE_2), 2);

    // Alice's bid is committed, but the read waits for bob's, sequenced before it.
    assert!(!cluster.is_released(read));

    // Both backups apply and ack bob's entry only: bob and the read go out,
    // in that order, and carol's bid stays held.
    for node in [NODE_2, NODE_3] {
        assert!(cluster.deliver_one(node).expect("the backup applies bob's entry"));
        cluster.deliver_acks(node);
    }
    assert_eq!(cluster.leader.commit_index(), bob_index);
    assert_eq!(cluster.released_tokens(), vec![alice, bob, read]);

    // The view was taken when the read was sequenced: it shows bob's bid,
    // committed by the time it is released, and not carol's, which is not.
    let view = cluster.view(read);
    assert_eq!((view.highest_bidder.as_str(), view.highest_amount, view.accepted_bids), ("bob", 20, 2));
    assert!(!view.over);

    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob, read, carol]);
}

#[test]
fn read_of_an_unknown_auction_keeps_its_place_in_line() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let alice = cluster.bid("alice", 10);
    let read = cluster.read_auction("no-such-auction");
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![alice, read]);
    let unknown = ReadError::UnknownAuction("no-such-auction".to_string());
    assert_eq!(cluster.reply(read), &Reply::Read(Err(QueryError::Read(unknown))));
}

// ---------------------------------------------------------------------------
// Pipelining and batching
// ---------------------------------------------------------------------------

#[test]
fn bids_are_sent_before_any_ack_and_one_cumulative_ack_releases_them_all() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Three bids, each sent as soon as it is sequenced: nothing waits for acks.
    let tokens = [cluster.bid("alice", 10), cluster.bid("bob", 20), cluster.bid("carol", 30)];
    assert_eq!(cluster.in_flight(NODE_2), 3);
    assert_eq!(cluster.in_flight(NODE_3), 3);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");

    // node-2's three acks arrive; of node-3's only the last gets through,
    // and that one ack releases the three replies, in order.
    assert_eq!(cluster.deliver_acks(NODE_2), vec![]);
    let actions = cluster.deliver_latest_ack(NODE_3);

    assert_eq!(replies(&actions), tokens.to_vec());
    assert_eq!(actions.len(), 3);
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
}

#[test]
fn entries_of_several_events_are_flushed_as_one_message_per_backup() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.leader.state().last.index + 1;

    // Three bids handled in one round, before the node performs any action.
    for (bidder, amount) in [("alice", 10), ("bob", 20), ("carol", 30)] {
        let (_, event) = cluster.bid_event(bid(bidder, amount, bidder, 1));
        cluster.handle(event);
    }
    let actions = cluster.take_actions();

    // One message per backup, the same shared list of the three entries.
    let sent = sends(&actions);
    assert_eq!(actions.len(), 2, "no reply before any ack: {actions:?}");
    let [(NODE_2, Message::Entries(to_node_2)), (NODE_3, Message::Entries(to_node_3))] = sent[..] else {
        panic!("expected one Entries message to each backup, got {sent:?}");
    };
    assert!(Arc::ptr_eq(to_node_2, to_node_3));
    let indexes: Vec<u64> = to_node_2.iter().map(|entry| entry.index).collect();
    assert_eq!(indexes, vec![first, first + 1, first + 2]);

    cluster.settle();
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).accepted_bids, 3);
}

#[test]
fn an_ack_arriving_after_a_higher_one_changes_nothing() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_2);

    // node-3's acks are reordered: the higher one arrives first.
    cluster.reverse_acks(NODE_3);
    assert_eq!(replies(&cluster.deliver_next_ack(NODE_3)), vec![alice, bob]);
    let commit_index = cluster.leader.commit_index();

    assert_eq!(cluster.deliver_next_ack(NODE_3), vec![]);
    assert_eq!(cluster.leader.commit_index(), commit_index);

    // And the late ack did not lower node-3's progress: the next bid needs
    // only its next ack.
    let carol = cluster.bid("carol", 30);
    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob, carol]);
}

// ---------------------------------------------------------------------------
// Backup lost
// ---------------------------------------------------------------------------

#[test]
fn backup_lost_by_stream_end_is_removed_and_bidding_goes_on() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let remove_index = cluster.leader.state().last.index + 1;

    // node-2 acks alice's bid; node-3's stream ends before it does.
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    let node_3_connection = cluster.connection(NODE_3);
    let actions = cluster.lose_stream(NODE_3);

    // The leader closes the stream and sends the removal to node-2 alone.
    let removal =
        Entry { epoch: epoch_of(1), index: remove_index, payload: Payload::Remove { node: NODE_3.to_string() } };
    assert_eq!(
        actions,
        vec![
            Action::Disconnect { node: NODE_3.to_string(), connection: node_3_connection },
            Action::Send {
                to: NODE_2.to_string(),
                connection: cluster.connection(NODE_2),
                message: entries_message(vec![removal]),
            },
        ]
    );
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));

    // Alice's reply waits for node-2 to hold the removal, not for node-3: had
    // it gone out on node-2's ack alone, node-3 (perhaps alive) could still
    // take over without her bid.
    cluster.deliver(NODE_2).expect("node-2 applies the removal");
    assert_eq!(replies(&cluster.deliver_acks(NODE_2)), vec![alice]);
    assert_eq!(cluster.leader.commit_index(), remove_index);
    assert_eq!(cluster.outcome(alice), &cluster.placed(success("alice", 10, true)));

    // Bidding goes on with node-2 alone.
    let bob = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.released_tokens(), vec![alice, bob]);
    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn removal_of_a_backup_that_acked_an_entry_does_not_hold_that_entry_back() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);

    // node-3 acks alice's bid, then its stream ends; node-2 has not acked yet.
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_3);
    cluster.lose_stream(NODE_3);

    // node-2's ack of alice's entry alone releases her reply: node-3 held it.
    assert!(cluster.deliver_one(NODE_2).expect("node-2 applies alice's entry"));
    assert_eq!(replies(&cluster.deliver_acks(NODE_2)), vec![alice]);
    assert_eq!(cluster.in_flight(NODE_2), 1, "the removal is still on its way");
}

#[test]
fn backup_lost_with_a_stale_connection_is_ignored() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let old_connection = cluster.connection(NODE_3);

    // node-3 reconnects before the leader noticed its old stream's end. A
    // second stream under a name that has one ends that name's membership
    // (it may be an impostor): the old stream is closed, node-3 is removed,
    // and the newcomer catches up as a learner.
    let actions = cluster.connect(NODE_3);
    let new_connection = cluster.connection(NODE_3);
    assert!(actions.contains(&Action::Disconnect { node: NODE_3.to_string(), connection: old_connection }));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));
    assert!(
        sends(&actions).iter().any(|(to, message)| *to == NODE_3 && matches!(message, Message::Entries(_))),
        "the catch-up goes to the new stream ({new_connection}): {actions:?}"
    );
    cluster.settle();

    // The old stream's end arrives late: no removal.
    let state = cluster.leader.state().clone();
    let lost = cluster.step(Event::BackupLost { node: NODE_3.to_string(), connection: old_connection });
    assert_eq!(lost, vec![]);
    assert_eq!(cluster.leader.state(), &state);

    // An ack on the old stream does not count either.
    let alice = cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    let stale_ack = Event::Ack { node: NODE_3.to_string(), connection: old_connection, index: alice_index };
    assert_eq!(cluster.step(stale_ack), vec![]);
    assert!(!cluster.is_released(alice));

    cluster.settle();
    assert!(cluster.is_released(alice));
}

// ---------------------------------------------------------------------------
// Ack timeout
// ---------------------------------------------------------------------------

#[test]
fn silent_backup_is_removed_after_the_ack_timeout_and_not_before() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    // node-3 holds everything sent to it and never acks.

    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
    assert!(!cluster.is_released(alice));

    cluster.advance(1);
    let node_3_connection = cluster.connection(NODE_3);
    let actions = cluster.tick();
    assert!(actions.contains(&Action::Disconnect { node: NODE_3.to_string(), connection: node_3_connection }));
    let removal = Payload::Remove { node: NODE_3.to_string() };
    assert!(
        sends(&actions).iter().any(|(to, message)| *to == NODE_2
            && matches!(message, Message::Entries(entries) if entries[0].payload == removal)),
        "the removal goes to node-2: {actions:?}"
    );
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));
    assert!(!cluster.is_released(alice), "node-2 does not hold the removal yet");

    cluster.settle();
    assert!(cluster.is_released(alice));
}

#[test]
fn caught_up_backup_is_never_timed_out_while_the_leader_is_idle() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();

    cluster.advance(10 * ACK_TIMEOUT_MS);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}

#[test]
fn ack_timeout_counts_from_the_oldest_entry_owed_so_a_backup_that_acks_a_little_is_removed() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.bid("bob", 20);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);

    // node-3 is slow: its first ack arrives just before the timeout.
    cluster.advance(ACK_TIMEOUT_MS - 100);
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_next_ack(NODE_3);
    // Its second ack is lost: it made some progress, but bob's entry, which
    // it still owes, was appended a whole ack timeout ago.
    cluster.drop_acks(NODE_3);

    cluster.advance(99);
    assert_eq!(cluster.tick(), vec![], "not before the timeout");
    cluster.advance(1);
    let actions = cluster.tick();
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { node, .. } if node == NODE_3)));
}

#[test]
fn a_backup_that_acks_everything_it_owes_starts_its_deadline_afresh() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.advance(ACK_TIMEOUT_MS - 100);
    cluster.settle();

    // A new entry, owed from now: no timeout until a full ack timeout later.
    cluster.bid("bob", 20);
    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    cluster.advance(1);
    let actions = cluster.tick();
    assert!(actions.iter().any(|action| matches!(action, Action::Disconnect { .. })), "{actions:?}");
}

// ---------------------------------------------------------------------------
// Join and catch-up
// ---------------------------------------------------------------------------

#[test]
fn fresh_backup_gets_a_snapshot_and_joins_once_it_acks_it() {
    let mut cluster = Cluster::bootstrap(settings(), AUCTION_MS);
    let alice = cluster.bid("alice", 10);
    assert!(cluster.is_released(alice));
    let state_before = cluster.leader.state().clone();

    // A fresh node connects with an empty log. It gets a snapshot of the
    // state so far (smaller than the whole log, which this leader still
    // holds), and nothing else yet: it is not a member until it holds it.
    let actions = cluster.connect(NODE_2);
    let [(NODE_2, catch_up)] = sends(&actions)[..] else {
        panic!("expected only the catch-up, to node-2: {actions:?}");
    };
    assert_eq!(catch_up, &Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(1), state: state_before.clone() })));
    assert_eq!(cluster.leader.state().membership, members(&[LEADER]));

    // A learner gates nothing: bob's bid commits without it, and is not
    // streamed to it before it acks its catch-up.
    let bob = cluster.bid("bob", 20);
    assert!(cluster.is_released(bob));
    assert_eq!(cluster.in_flight(NODE_2), 1, "only the catch-up");

    // Its ack of the catch-up starts the stream with what it missed: bob's
    // entry. It joins once it holds every committed entry.
    cluster.deliver(NODE_2).expect("node-2 installs");
    let actions = cluster.deliver_acks(NODE_2);
    let bob_entry = cluster.sent_entries(state_before.last.index + 1..=state_before.last.index + 1);
    assert_eq!(sends(&actions), vec![(NODE_2, &entries_message(bob_entry))]);
    assert_eq!(cluster.leader.state().membership, members(&[LEADER]), "it lacks bob's committed entry");
    cluster.deliver(NODE_2).expect("node-2 applies bob's entry");
    let actions = cluster.deliver_acks(NODE_2);
    let join_index = state_before.last.index + 2;
    let join = Entry { epoch: epoch_of(1), index: join_index, payload: Payload::Join { node: NODE_2.to_string() } };
    assert!(sends(&actions).contains(&(NODE_2, &entries_message(vec![join]))), "{actions:?}");
    assert_eq!(cluster.leader.state().membership, members(&[LEADER, NODE_2]));

    let carol = cluster.bid("carol", 30);
    assert!(!cluster.is_released(carol));
    cluster.settle();
    assert!(cluster.is_released(carol));

    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn fresh_backup_gets_a_snapshot_once_the_log_outgrew_the_tail() {
    let short_tail = LeaderSettings { tail_capacity: 2, ..settings() };
    let mut cluster = Cluster::start(short_tail, AUCTION_MS, &[]);
    cluster.bid("alice", 10);
    cluster.bid("bob", 20);
    let state_before = cluster.leader.state().clone();

    let actions = cluster.connect(NODE_2);

    let snapshot = Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(1), state: state_before }));
    assert_eq!(sends(&actions)[0], (NODE_2, &snapshot));
    cluster.settle();
    assert_eq!(cluster.backup(NODE_2).state(), cluster.leader.state());
}

#[test]
fn fresh_backup_joining_a_new_leader_gets_a_snapshot() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    cluster.bid("alice", 10);
    cluster.settle();
    cluster.crash_leader_and_take_over(NODE_2);
    let state_before = cluster.leader.state().clone();

    let actions = cluster.connect(NODE_3);

    let snapshot = Message::Snapshot(Box::new(Snapshot { epoch: epoch_of(2), state: state_before }));
    assert_eq!(sends(&actions)[0], (NODE_3, &snapshot));
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn entries_sequenced_in_the_round_of_a_join_reach_the_joiner_once_through_its_catch_up() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let bid_index = cluster.leader.state().last.index + 1;

    // A bid and node-3's connection handled in one round.
    let (_, event) = cluster.bid_event(bid("alice", 10, "client-a", 1));
    cluster.handle(event);
    let connection = cluster.next_connection;
    cluster
        .streams
        .insert(NODE_3.to_string(), Stream { connection, in_flight: VecDeque::new(), acks: VecDeque::new() });
    cluster.backups.insert(NODE_3.to_string(), Backup::default());
    cluster.handle(Event::BackupConnected {
        node: NODE_3.to_string(),
        incarnation: INCARNATION,
        connection,
        last: LogPosition::default(),
    });
    let actions = cluster.take_actions();

    // node-2 gets the bid first; node-3 gets it in its catch-up, once.
    let bid_entry = cluster.sent_entries(bid_index..=bid_index);
    let sent = sends(&actions);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], (NODE_2, &entries_message(bid_entry)));
    let (NODE_3, catch_up) = sent[1] else { panic!("node-3's catch-up second: {sent:?}") };
    assert_eq!(state_after_catch_up(catch_up).last.index, bid_index);

    // Once node-3 acks its catch-up, both get its join.
    cluster.deliver(NODE_3).expect("node-3 installs");
    let actions = cluster.deliver_acks(NODE_3);
    let join = cluster.sent_entries(bid_index + 1..=bid_index + 1);
    assert_eq!(join[0].payload, Payload::Join { node: NODE_3.to_string() });
    assert_eq!(sends(&actions), [(NODE_2, &entries_message(join.clone())), (NODE_3, &entries_message(join))]);

    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn backup_whose_log_is_a_prefix_of_the_tail_gets_only_the_suffix() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();

    // node-3's stream ends; it keeps its log while bidding goes on.
    cluster.lose_stream(NODE_3);
    cluster.bid("bob", 20);
    cluster.bid("carol", 30);
    cluster.settle();
    let node_3_last = cluster.backup(NODE_3).last();
    let leader_last = cluster.leader.state().last;

    let actions = cluster.connect(NODE_3);

    // It gets what it lacks (its removal and the two bids); once it acks
    // them, its join.
    let suffix = cluster.sent_entries(node_3_last.index + 1..=leader_last.index);
    assert_eq!(suffix[0].payload, Payload::Remove { node: NODE_3.to_string() });
    assert_eq!(sends(&actions), [(NODE_3, &entries_message(suffix))]);
    cluster.deliver(NODE_3).expect("node-3 applies the suffix");
    let actions = cluster.deliver_acks(NODE_3);
    let join = entries_message(cluster.sent_entries(leader_last.index + 1..=leader_last.index + 1));
    assert_eq!(sends(&actions), [(NODE_2, &join), (NODE_3, &join)]);

    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}

#[test]
fn backup_behind_the_tail_gets_a_snapshot() {
    let tail_capacity = LeaderSettings { tail_capacity: 3, ..settings() };
    let mut cluster = Cluster::start(tail_capacity, AUCTION_MS, &[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    // More entries than the tail holds: the removal and three bids.
    for (bidder, amount) in [("alice", 10), ("bob", 20), ("carol", 30)] {
        cluster.bid(bidder, amount);
    }
    cluster.settle();

    let actions = cluster.connect(NODE_3);

    let sent = sends(&actions);
    assert!(matches!(sent[0], (NODE_3, Message::Snapshot(_))), "got {sent:?}");
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn backup_whose_last_entry_has_another_epoch_at_the_same_index_gets_a_snapshot() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Alice's bid reaches node-3 only; the leader crashes and node-2 takes
    // over: its takeover entry takes the same index in epoch 2.
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_3).expect("node-3 applies");
    let divergent = cluster.backup(NODE_3).last();
    cluster.crash_leader_and_take_over(NODE_2);
    assert_eq!(cluster.leader.state().last, LogPosition { epoch: epoch_of(2), index: divergent.index });

    let actions = cluster.connect(NODE_3);

    let snapshot = Snapshot { epoch: epoch_of(2), state: cluster.leader.state().clone() };
    assert_eq!(sends(&actions), vec![(NODE_3, &Message::Snapshot(Box::new(snapshot)))]);
    cluster.settle();
    // The bid nobody acknowledged is gone from node-3 too.
    assert!(!cluster.is_released(alice));
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).accepted_bids, 0);
}

#[test]
fn backup_that_holds_the_new_leaders_log_up_to_the_takeover_gets_a_suffix() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).last(), cluster.backup(NODE_2).last());

    // node-3 holds exactly node-2's log: a prefix of node-2's log once it leads.
    cluster.crash_leader_and_take_over(NODE_2);
    let actions = cluster.connect(NODE_3);

    let sent = sends(&actions);
    assert!(
        matches!(sent[..], [(NODE_3, Message::Entries(_))]),
        "ARCHITECTURE.md: unless its log is a prefix of the leader's, it gets a snapshot; got {sent:?}"
    );
}

#[test]
fn reordered_entries_are_refused_as_a_gap_and_a_new_stream_repairs_the_log() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    let bob = cluster.bid("bob", 20);
    let bob_index = cluster.leader.state().last.index;

    cluster.reverse_in_flight(NODE_3);
    let refusal = cluster.deliver(NODE_3).expect_err("bob's entry arrives before alice's");
    assert_eq!(refusal, ReplicationError::Gap { got: bob_index, last: bob_index - 2 });

    // As the node does on a refusal: drop the stream and connect again.
    cluster.lose_stream(NODE_3);
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![alice, bob]);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}

// ---------------------------------------------------------------------------
// The backup's core
// ---------------------------------------------------------------------------

/// An entry of the leadership numbered `epoch` (see `epoch_of`).
fn entry(epoch: u64, index: u64, payload: Payload) -> Entry {
    Entry { epoch: epoch_of(epoch), index, payload }
}

/// The epoch of the `number`th leadership, as the harness draws them: with
/// nonce 0, so the tests can name epochs by their number.
fn epoch_of(number: u64) -> u64 {
    number << 32
}

/// A bid with deduplication disabled, so applying it twice would count twice.
fn anonymous_bid(bidder: &str, amount: u64) -> Payload {
    Payload::Command(Command::Bid(bid(bidder, amount, "", 0)))
}

fn open_default_auction() -> Payload {
    Payload::Command(Command::Open(OpenAuction {
        auction_id: DEFAULT_AUCTION.to_string(),
        description: String::new(),
        minimum_amount: 1,
        ends_at_unix_ms: i64::MAX,
        at_unix_ms: 0,
    }))
}

/// A backup holding a takeover, an open and a bid, all of epoch `epoch`.
fn backup_with_three_entries(epoch: u64) -> (Backup, Vec<Entry>) {
    let entries = vec![
        entry(
            epoch,
            1,
            Payload::Takeover {
                leader: LEADER.to_string(),
                backups: members(&[NODE_2]),
                cluster_id: CLUSTER_ID.to_string(),
            },
        ),
        entry(epoch, 2, open_default_auction()),
        entry(epoch, 3, anonymous_bid("alice", 10)),
    ];
    let mut backup = Backup::default();
    assert_eq!(backup.apply(&entries), Ok(3));
    (backup, entries)
}

#[test]
fn backup_refuses_entries_from_an_older_epoch() {
    let (mut backup, _) = backup_with_three_entries(2);
    let state = backup.state().clone();

    let refusal = backup.apply(&[entry(1, 4, anonymous_bid("bob", 20))]);

    assert_eq!(refusal, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(backup.state(), &state);
    assert_eq!(backup.epoch(), epoch_of(2));
}

#[test]
fn backup_refuses_a_snapshot_from_an_older_epoch() {
    let (mut backup, _) = backup_with_three_entries(2);
    let state = backup.state().clone();

    let state_of_this_cluster = ReplicatedState { cluster_id: CLUSTER_ID.to_string(), ..ReplicatedState::default() };
    let refusal = backup.install(Snapshot { epoch: epoch_of(1), state: state_of_this_cluster });

    assert_eq!(refusal, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(backup.state(), &state);
}

#[test]
fn backup_refuses_a_gap() {
    let (mut backup, _) = backup_with_three_entries(1);
    let state = backup.state().clone();

    let refusal = backup.apply(&[entry(1, 5, anonymous_bid("bob", 20))]);

    assert_eq!(refusal, Err(ReplicationError::Gap { got: 5, last: 3 }));
    assert_eq!(backup.state(), &state);
}

#[test]
fn backup_skips_entries_it_already_holds() {
    let (mut backup, entries) = backup_with_three_entries(1);
    let state = backup.state().clone();

    // The same message again changes nothing.
    assert_eq!(backup.apply(&entries), Ok(3));
    assert_eq!(backup.state(), &state);

    // An overlapping message applies only what is new.
    let overlapping = [entries[2].clone(), entry(1, 4, anonymous_bid("bob", 20))];
    assert_eq!(backup.apply(&overlapping), Ok(4));
    let auction = default_auction(backup.state());
    assert_eq!((auction.accepted_bids, auction.highest_bidder.as_str()), (2, "bob"));
}

#[test]
fn backup_adopts_a_newer_epoch_and_then_refuses_the_old_leader() {
    let (mut backup, _) = backup_with_three_entries(1);

    assert_eq!(backup.apply(&[entry(2, 4, anonymous_bid("bob", 20))]), Ok(4));
    assert_eq!(backup.epoch(), epoch_of(2));

    // A late message of the old leader is refused.
    let late = backup.apply(&[entry(1, 5, anonymous_bid("carol", 30))]);
    assert_eq!(late, Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) }));
    assert_eq!(
        backup.observe_epoch(epoch_of(1)),
        Err(ReplicationError::StaleEpoch { got: epoch_of(1), seen: epoch_of(2) })
    );
    assert_eq!(backup.last(), LogPosition { epoch: epoch_of(2), index: 4 });
}

// ---------------------------------------------------------------------------
// Exactly once
// ---------------------------------------------------------------------------

#[test]
fn retried_bid_returns_its_first_outcome_and_counts_once() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();

    // The client did not hear back and retries the same request.
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(retry), cluster.outcome(first));
    assert_eq!(cluster.outcome(first), &cluster.placed(success("alice", 10, true)));

    // Even once outbid, a retry gets the remembered outcome, not a new verdict.
    cluster.bid("bob", 20);
    let late_retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(late_retry), &cluster.placed(success("alice", 10, true)));

    for state in [cluster.leader.state(), cluster.backup(NODE_2).state(), cluster.backup(NODE_3).state()] {
        assert_eq!(default_auction(state).accepted_bids, 2, "alice once, bob once");
    }
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn retry_of_an_uncommitted_bid_is_released_after_the_first() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![first, retry]);
    assert_eq!(cluster.outcome(retry), cluster.outcome(first));
    assert_eq!(default_auction(cluster.backup(NODE_2).state()).accepted_bids, 1);
}

#[test]
fn retry_after_a_takeover_returns_the_acknowledged_first_outcome() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert_eq!(cluster.outcome(first), &cluster.placed(success("alice", 10, true)));

    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();

    assert_eq!(cluster.outcome(retry), &cluster.placed(success("alice", 10, true)));
    assert_eq!(default_auction(cluster.leader.state()).accepted_bids, 1);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn retry_after_a_takeover_returns_the_outcome_of_a_first_execution_nobody_heard_of() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // Alice's bid reaches node-2 only: her reply is never released.
    let first = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    assert!(!cluster.is_released(first));

    // node-2 takes over, and the client retries there.
    cluster.crash_leader_and_take_over(NODE_2);
    let retry = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(cluster.outcome(retry), &cluster.placed(success("alice", 10, true)));
    assert_eq!(default_auction(cluster.leader.state()).accepted_bids, 1);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

// ---------------------------------------------------------------------------
// Takeover
// ---------------------------------------------------------------------------

#[test]
fn takeover_raises_the_epoch_and_its_entry_sets_the_membership() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.bid("alice", 10);
    cluster.settle();
    let old_epoch = cluster.leader.epoch();
    let old_last = cluster.leader.state().last;

    let actions = cluster.crash_leader_and_take_over(NODE_2);

    assert_eq!(actions, vec![], "nobody is connected yet");
    assert!(cluster.leader.epoch() > old_epoch);
    assert_eq!(cluster.leader.epoch(), epoch_of(2));
    assert_eq!(cluster.leader.state().last, LogPosition { epoch: epoch_of(2), index: old_last.index + 1 });
    assert_eq!(cluster.leader.state().membership, members(&[NODE_2, NODE_3]));
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_3]));

    // node-3 catches up: the same membership, the new epoch.
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.backup(NODE_3).epoch(), epoch_of(2));
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn takeover_epoch_is_above_every_epoch_the_successor_has_seen() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // A leader of epoch 3 came and went, leaving only its heartbeats behind:
    // both backups saw epoch 3, but their logs still end in epoch 1.
    for node in [NODE_2, NODE_3] {
        let backup = cluster.backups.get_mut(node).expect("the backup exists");
        backup.observe_epoch(epoch_of(3)).expect("a newer epoch is accepted");
        assert_eq!(backup.last().epoch, epoch_of(1));
    }

    cluster.crash_leader_and_take_over(NODE_2);
    assert_eq!(cluster.leader.epoch(), epoch_of(4));

    // So node-3 accepts what the new leader sends.
    cluster.connect(NODE_3);
    cluster.deliver(NODE_3).expect("node-3 accepts epoch 4");
    assert_eq!(cluster.backup(NODE_3).epoch(), epoch_of(4));
}

#[test]
fn new_leader_holds_replies_until_the_expected_backups_connect_and_ack() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.crash_leader_and_take_over(NODE_2);

    // A read, a bid and a read on the new leader: node-3 is expected but not
    // back. The first read waits too: the new leader's log may hold entries
    // of the old epoch that node-3 lacks.
    let first_read = cluster.read();
    let alice = cluster.bid("alice", 10);
    let read = cluster.read();
    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());

    // node-3 connects: still nothing until it acks.
    cluster.connect(NODE_3);
    assert_eq!(cluster.released_tokens(), Vec::<u64>::new());
    cluster.settle();

    assert_eq!(cluster.released_tokens(), vec![first_read, alice, read]);
    assert_eq!(cluster.view(first_read).accepted_bids, 0);
    assert_eq!(cluster.view(read).highest_bidder, "alice");
    assert_eq!(cluster.leader.commit_index(), cluster.leader.state().last.index);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

#[test]
fn new_leader_removes_an_expected_backup_that_never_comes_back_after_the_ack_timeout() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.crash_leader_and_take_over(NODE_2);
    let alice = cluster.bid("alice", 10);
    let alice_index = cluster.leader.state().last.index;

    cluster.advance(ACK_TIMEOUT_MS - 1);
    assert_eq!(cluster.tick(), vec![]);

    // node-3 never had a stream to close: its removal is all, and the leader,
    // now alone, answers alice.
    cluster.advance(1);
    let actions = cluster.tick();
    assert_eq!(actions, vec![bid_replied(alice, alice_index, cluster.placed(success("alice", 10, true)))]);
    assert_eq!(cluster.leader.state().membership, members(&[NODE_2]));
}

#[test]
fn deadline_passed_during_failover_is_closed_by_the_first_tick_of_the_new_leader() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(alice));

    // The leader crashes; node-2 takes over at 6 s, past the 5 s deadline,
    // with no tick of the old leader in between.
    cluster.advance(6_000);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    let node_3_connection = cluster.connection(NODE_3);
    cluster.settle();
    assert!(!default_auction(cluster.leader.state()).closed);

    // Its first tick appends the close, stamped now.
    let close_index = cluster.leader.state().last.index + 1;
    let actions = cluster.tick();
    let close = Entry {
        epoch: epoch_of(2),
        index: close_index,
        payload: Payload::Command(Command::Close {
            auction_id: DEFAULT_AUCTION.to_string(),
            at_unix_ms: cluster.now.unix_ms,
            retain_ms: DEFAULT_RETAIN_CLOSED.as_millis() as u64,
        }),
    };
    assert_eq!(
        actions,
        vec![Action::Send {
            to: NODE_3.to_string(),
            connection: node_3_connection,
            message: entries_message(vec![close])
        }]
    );

    // A bid now fails, and the close is on node-3 too.
    let bob = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.outcome(bob), &auction_over("alice", 10));
    assert!(default_auction(cluster.backup(NODE_3).state()).closed);
    assert_eq!(cluster.backup(NODE_3).state(), cluster.leader.state());
}

// ---------------------------------------------------------------------------
// Deadline
// ---------------------------------------------------------------------------

#[test]
fn leader_closes_the_auction_on_the_first_tick_at_its_deadline() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2]);

    cluster.advance(4_999);
    assert_eq!(cluster.tick(), vec![]);
    assert!(!default_auction(cluster.leader.state()).closed);

    cluster.advance(1);
    let close_index = cluster.leader.state().last.index + 1;
    let actions = cluster.tick();
    let close = Entry {
        epoch: epoch_of(1),
        index: close_index,
        payload: Payload::Command(Command::Close {
            auction_id: DEFAULT_AUCTION.to_string(),
            at_unix_ms: cluster.start.unix_ms + 5_000,
            retain_ms: DEFAULT_RETAIN_CLOSED.as_millis() as u64,
        }),
    };
    assert_eq!(sends(&actions), vec![(NODE_2, &entries_message(vec![close]))]);

    // Closed once: later ticks append nothing.
    cluster.settle();
    cluster.advance(1_000);
    assert_eq!(cluster.tick(), vec![]);
    assert!(default_auction(cluster.backup(NODE_2).state()).closed);
}

#[test]
fn bids_at_or_after_the_deadline_fail() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2]);

    cluster.advance(4_999);
    let just_in_time = cluster.bid("alice", 10);
    // At the deadline, before any tick closed the auction.
    cluster.advance(1);
    let at_deadline = cluster.bid("bob", 20);
    cluster.tick();
    cluster.advance(1);
    let after_close = cluster.bid("carol", 30);
    cluster.settle();

    assert_eq!(cluster.outcome(just_in_time), &cluster.placed(success("alice", 10, true)));
    assert_eq!(cluster.outcome(at_deadline), &auction_over("alice", 10));
    assert_eq!(cluster.outcome(after_close), &auction_over("alice", 10));
    assert_eq!(default_auction(cluster.backup(NODE_2).state()).accepted_bids, 1);
}

#[test]
fn deadline_is_identical_after_a_takeover() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    let ends_at = cluster.start.unix_ms + 5_000;
    assert_eq!(default_auction(cluster.leader.state()).ends_at_unix_ms, ends_at);

    cluster.advance(1_000);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    cluster.settle();

    assert_eq!(default_auction(cluster.leader.state()).ends_at_unix_ms, ends_at);
    assert_eq!(default_auction(cluster.backup(NODE_3).state()).ends_at_unix_ms, ends_at);

    // The new leader judges bids against the same deadline.
    cluster.advance(3_999);
    let in_time = cluster.bid("alice", 10);
    cluster.advance(1);
    let too_late = cluster.bid("bob", 20);
    cluster.settle();
    assert_eq!(cluster.outcome(in_time), &cluster.placed(success("alice", 10, true)));
    assert_eq!(cluster.outcome(too_late), &auction_over("alice", 10));
}

#[test]
fn new_leader_with_a_slow_clock_never_stamps_a_time_earlier_than_the_log() {
    let mut cluster = Cluster::start(settings(), 5_000, &[NODE_2, NODE_3]);
    cluster.advance(3_000);
    cluster.bid("alice", 10);
    cluster.settle();
    let latest_stamp = cluster.leader.state().clock_unix_ms;

    // node-2's wall clock is 10 s behind the old leader's.
    cluster.now.unix_ms -= 10_000;
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_3);
    cluster.settle();
    cluster.bid("bob", 20);

    let bob_index = cluster.leader.state().last.index;
    let Payload::Command(Command::Bid(bob)) = &cluster.sent_entries(bob_index..=bob_index)[0].payload else {
        panic!("bob's entry is a bid");
    };
    assert_eq!(bob.at_unix_ms, latest_stamp);
}

// ---------------------------------------------------------------------------
// choose_successor
// ---------------------------------------------------------------------------

const QUEUE: [&str; 4] = [LEADER, NODE_2, NODE_3, NODE_4];

fn position(epoch: u64, index: u64) -> LogPosition {
    LogPosition { epoch, index }
}

fn answer(node: &str, last: LogPosition, membership: &[&str]) -> NodeStatus {
    NodeStatus {
        node: node.to_string(),
        role: Role::Joining,
        epoch: last.epoch,
        leader: None,
        membership: members(membership),
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    }
}

/// The decision of `me`, whose log ends at `last`, after the loss of `LEADER`.
fn decide(me: &str, last: LogPosition, membership: &[&str], answers: &[NodeStatus]) -> Succession {
    decide_passing_over(me, last, membership, answers, &[])
}

fn decide_passing_over(
    me: &str,
    last: LogPosition,
    membership: &[&str],
    answers: &[NodeStatus],
    passed_over: &[&str],
) -> Succession {
    let membership = members(membership);
    let passed_over: HashSet<NodeId> = passed_over.iter().map(|node| node.to_string()).collect();
    choose_successor(
        &SelfView {
            id: me,
            epoch: last.epoch,
            last,
            membership: &membership,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(LEADER),
        answers,
        &passed_over,
    )
}

fn take_over(live_backups: &[&str]) -> Succession {
    Succession::TakeOver { live_backups: members(live_backups) }
}

fn wait_for(node: &str) -> Succession {
    Succession::Wait { for_node: Some(node.to_string()) }
}

#[test]
fn first_live_member_of_the_leader_queue_takes_over() {
    let last = position(1, 10);
    let node_3 = answer(NODE_3, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    let decision = decide(NODE_2, last, &QUEUE, &[node_3, node_4]);

    assert_eq!(decision, take_over(&[NODE_3, NODE_4]));
}

#[test]
fn later_members_wait_for_the_first_live_one() {
    let last = position(1, 10);
    let node_2 = answer(NODE_2, last, &QUEUE);
    let node_3 = answer(NODE_3, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    assert_eq!(decide(NODE_3, last, &QUEUE, &[node_2.clone(), node_4]), wait_for(NODE_2));
    assert_eq!(decide(NODE_4, last, &QUEUE, &[node_2, node_3]), wait_for(NODE_2));
}

#[test]
fn dead_member_that_does_not_answer_is_skipped() {
    let last = position(1, 10);
    let node_4 = answer(NODE_4, last, &QUEUE);

    // node-2 does not answer.
    let decision = decide(NODE_3, last, &QUEUE, &[node_4]);

    assert_eq!(decision, take_over(&[NODE_4]));
}

/// The decision of `me`, restarted from its disk after every node died
/// (no leader was lost that it knows of).
fn decide_recovered(
    me: &str,
    last: LogPosition,
    membership: &[&str],
    answers: &[NodeStatus],
    released: &[&str],
) -> Succession {
    let membership = members(membership);
    let released = members(released);
    let view = SelfView {
        id: me,
        epoch: last.epoch,
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: true,
        released: &released,
    };
    choose_successor(&view, None, answers, &HashSet::new())
}

fn await_members(missing: &[&str]) -> Succession {
    Succession::AwaitMembers { missing: members(missing) }
}

#[test]
fn after_a_full_restart_a_node_leads_only_once_every_member_it_knows_has_answered() {
    let last = position(1, 10);
    let trio = [LEADER, NODE_2, NODE_3];
    // The old leader restarts first, alone: it waits, and says for whom.
    assert_eq!(decide_recovered(LEADER, last, &trio, &[], &[]), await_members(&[NODE_2, NODE_3]));
    let node_2 = answer(NODE_2, last, &trio);
    assert_eq!(decide_recovered(LEADER, last, &trio, std::slice::from_ref(&node_2), &[]), await_members(&[NODE_3]));
    // Everyone answered: the first of the membership leads, as ever.
    let node_3 = answer(NODE_3, last, &trio);
    assert_eq!(
        decide_recovered(LEADER, last, &trio, &[node_2.clone(), node_3.clone()], &[]),
        take_over(&[NODE_2, NODE_3])
    );
    assert_eq!(decide_recovered(NODE_3, last, &trio, &[answer(LEADER, last, &trio), node_2], &[]), wait_for(LEADER));
}

#[test]
fn a_node_removed_before_the_others_died_and_restarted_first_never_leads() {
    // The leader removed node-2 at index 10 and committed more with node-3;
    // then every node died. node-2's log ends at 9 and still counts itself.
    let before_removal = [LEADER, NODE_2, NODE_3];
    let after_removal = [LEADER, NODE_3];
    let stale = position(1, 9);
    // Alone, with a log that says it is a member: it does not lead.
    assert_eq!(decide_recovered(NODE_2, stale, &before_removal, &[], &[]), await_members(&[LEADER, NODE_3]));
    // Even the one member that does not lead is not enough to decide.
    let node_3 = answer(NODE_3, position(1, 14), &after_removal);
    assert_eq!(
        decide_recovered(NODE_2, stale, &before_removal, std::slice::from_ref(&node_3), &[]),
        await_members(&[LEADER])
    );
    // Once the others answer, their logs show it stale: it waits, for good.
    let leader = answer(LEADER, position(1, 14), &after_removal);
    assert_eq!(
        decide_recovered(NODE_2, stale, &before_removal, &[node_3.clone(), leader.clone()], &[]),
        Succession::Wait { for_node: None }
    );
    // The real members decide among themselves, without it.
    assert_eq!(decide_recovered(LEADER, position(1, 14), &after_removal, &[node_3], &[]), take_over(&[NODE_3]));
}

#[test]
fn a_member_whose_disk_is_gone_is_waited_for_until_an_operator_releases_it() {
    let last = position(1, 10);
    let trio = [LEADER, NODE_2, NODE_3];
    // node-3 came back with nothing: it answers, but with an empty log.
    let node_2 = answer(NODE_2, last, &trio);
    let wiped = answer(NODE_3, LogPosition::default(), &[]);
    assert_eq!(decide_recovered(LEADER, last, &trio, &[node_2.clone(), wiped.clone()], &[]), await_members(&[NODE_3]));
    assert_eq!(decide_recovered(LEADER, last, &trio, &[node_2, wiped], &[NODE_3]), take_over(&[NODE_2]));
}

#[test]
fn every_candidate_of_one_succession_draws_an_epoch_number_of_its_own() {
    let membership = members(&QUEUE);
    let highest = epoch_of(7) | 0x1234;
    let view = |id| SelfView {
        id,
        epoch: highest,
        last: position(highest, 10),
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    // After the leader's loss, node-2 is first in line, then node-3, node-4.
    let numbers: Vec<u64> = [NODE_2, NODE_3, NODE_4]
        .iter()
        .map(|node| epoch_number(next_epoch(successor_epoch_floor(&view(node), Some(LEADER), highest), 0)))
        .collect();
    assert_eq!(numbers, vec![8, 9, 10]);
    // After a full restart nobody was lost: the old leader is first in line.
    let after_restart = epoch_number(next_epoch(successor_epoch_floor(&view(LEADER), None, highest), 0));
    assert_eq!(after_restart, 8);
}

/// node-2, first in line, takes over and crashes before anyone joined it:
/// its takeover entry is on its disk only. node-3 takes over next and
/// commits bids. node-2 restarted from its disk must rank below node-3's
/// leadership: take its snapshot, and never lead without its bids.
#[test]
fn a_takeover_only_its_crashed_node_saw_ranks_below_the_next_leadership() {
    let queue = [LEADER, NODE_2, NODE_3];
    let membership = members(&queue);
    let base = epoch_of(1) | 7;
    let before = position(base, 20);
    let view = |id| SelfView {
        id,
        epoch: base,
        last: before,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    // The nonces favour node-2: they do not decide any more.
    let node_2_epoch = next_epoch(successor_epoch_floor(&view(NODE_2), Some(LEADER), base), u32::MAX);
    let node_3_epoch = next_epoch(successor_epoch_floor(&view(NODE_3), Some(LEADER), base), 1);
    assert!(epoch_number(node_3_epoch) > epoch_number(node_2_epoch));

    // node-2's disk: its lone takeover entry at 21, expecting node-3 back.
    let node_2_last = position(node_2_epoch, 21);
    let node_2_state = ReplicatedState {
        cluster_id: CLUSTER_ID.into(),
        membership: members(&[NODE_2, NODE_3]),
        last: node_2_last,
        ..ReplicatedState::default()
    };
    // node-3's leadership: without node-2, and bids committed up to 40.
    let node_3_state = ReplicatedState {
        cluster_id: CLUSTER_ID.into(),
        membership: members(&[NODE_3]),
        last: position(node_3_epoch, 40),
        ..ReplicatedState::default()
    };

    // Rejoining node-3, node-2 takes its snapshot (a lower epoch would be
    // refused, and node-2 could never rejoin).
    let mut restarted = Backup::new(node_2_epoch, node_2_state.clone());
    let snapshot = Snapshot { epoch: node_3_epoch, state: node_3_state.clone() };
    assert_eq!(restarted.install(snapshot), Ok(40));

    // Or, every node having died, node-2 restarted from its disk hears
    // node-3 and knows itself stale.
    let node_3_answer = NodeStatus {
        epoch: node_3_epoch,
        membership: node_3_state.membership.clone(),
        ..answer(NODE_3, node_3_state.last, &[NODE_3])
    };
    let node_2_view = SelfView {
        id: NODE_2,
        epoch: node_2_epoch,
        last: node_2_last,
        membership: &node_2_state.membership,
        cluster_id: CLUSTER_ID,
        recovered: true,
        released: &[],
    };
    assert_eq!(
        choose_successor(&node_2_view, None, &[node_3_answer], &HashSet::new()),
        Succession::Wait { for_node: None }
    );
}

#[test]
fn stale_candidate_never_takes_over_and_the_others_skip_it() {
    // The lost leader removed node-2 at index 10; node-3 applied the removal,
    // node-2 and node-4 did not.
    let after_removal = [LEADER, NODE_3, NODE_4];
    let node_2 = answer(NODE_2, position(1, 9), &QUEUE);
    let node_3 = answer(NODE_3, position(1, 10), &after_removal);
    let node_4 = answer(NODE_4, position(1, 9), &QUEUE);

    let by_node_2 = decide(NODE_2, position(1, 9), &QUEUE, &[node_3.clone(), node_4.clone()]);
    let by_node_3 = decide(NODE_3, position(1, 10), &after_removal, &[node_2.clone(), node_4]);
    let by_node_4 = decide(NODE_4, position(1, 9), &QUEUE, &[node_2, node_3]);

    assert_eq!(by_node_2, Succession::Wait { for_node: None });
    assert_eq!(by_node_3, take_over(&[NODE_4]));
    assert_eq!(by_node_4, wait_for(NODE_3));
}

#[test]
fn answer_from_a_leader_means_wait() {
    let last = position(1, 10);
    let mut node_3 = answer(NODE_3, position(2, 11), &[NODE_3, NODE_4]);
    node_3.role = Role::Leader;

    // Even the head of the leaderQueue waits: someone already leads.
    let decision = decide(NODE_2, last, &QUEUE, &[node_3]);

    assert_eq!(decision, wait_for(NODE_3));
}

#[test]
fn fresh_node_waits_for_an_existing_cluster_and_bootstraps_only_where_none_is() {
    let empty = LogPosition::default();
    let member = answer(NODE_2, position(1, 10), &QUEUE);
    let other_fresh_node = answer(NODE_3, empty, &[]);

    assert_eq!(decide(NODE_4, empty, &[], std::slice::from_ref(&member)), wait_for(NODE_2));
    assert_eq!(decide(NODE_4, empty, &[], &[other_fresh_node.clone(), member]), wait_for(NODE_2));
    // A member that lost its log but saw an epoch still counts as a cluster.
    let restarted = NodeStatus { epoch: epoch_of(1), ..answer(NODE_2, empty, &[]) };
    assert_eq!(decide(NODE_4, empty, &[], &[restarted]), wait_for(NODE_2));

    assert_eq!(decide(NODE_4, empty, &[], &[other_fresh_node]), take_over(&[]));
    assert_eq!(decide(NODE_4, empty, &[], &[]), take_over(&[]));
}

#[test]
fn passed_over_candidate_is_skipped() {
    let last = position(1, 10);
    let node_2 = answer(NODE_2, last, &QUEUE);
    let node_4 = answer(NODE_4, last, &QUEUE);

    // node-2 answered but did not take over in time.
    let decision = decide_passing_over(NODE_3, last, &QUEUE, &[node_2.clone(), node_4.clone()], &[NODE_2]);
    assert_eq!(decision, take_over(&[NODE_2, NODE_4]));

    // node-4 skips it too, and waits for node-3.
    let node_3 = answer(NODE_3, last, &QUEUE);
    let decision = decide_passing_over(NODE_4, last, &QUEUE, &[node_2, node_3], &[NODE_2]);
    assert_eq!(decision, wait_for(NODE_3));
}

#[test]
fn node_no_longer_in_its_own_membership_never_takes_over() {
    let without_node_4 = [LEADER, NODE_2, NODE_3];

    // node-4 applied its own removal; node-2 and node-3 are dead.
    let decision = decide(NODE_4, position(1, 10), &without_node_4, &[]);

    assert_eq!(decision, Succession::Wait { for_node: None });
}

// ---------------------------------------------------------------------------
// Failover after the loss of a lagging backup
// ---------------------------------------------------------------------------

#[test]
fn acknowledged_bid_survives_the_removal_of_a_lagging_backup_and_then_the_leaders_crash() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // node-2, first in the leaderQueue, freezes: it applies nothing more.
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.deliver_acks(NODE_3);

    // After the ack timeout the leader removes node-2; the removal is on its
    // way to node-3 when the leader crashes.
    cluster.advance(ACK_TIMEOUT_MS);
    cluster.tick();
    cluster.drop_in_flight(NODE_3);

    // node-2 wakes up, alive, with its old log. Each survivor decides.
    let survivors = [NODE_2, NODE_3];
    let mut successors = Vec::new();
    for me in survivors {
        let backup = cluster.backup(me);
        let view = SelfView {
            id: me,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &backup.state().membership,
            cluster_id: &backup.state().cluster_id,
            recovered: false,
            released: &[],
        };
        let answers: Vec<NodeStatus> =
            survivors.iter().filter(|peer| **peer != me).map(|peer| cluster.status(peer)).collect();
        if let Succession::TakeOver { .. } = choose_successor(&view, Some(LEADER), &answers, &HashSet::new()) {
            successors.push(me);
        }
    }
    assert_eq!(successors.len(), 1, "exactly one survivor takes over: {successors:?}");
    cluster.crash_leader_and_take_over(successors[0]);

    // A bid acknowledged to its client survives the failover. (The leader
    // may not have answered alice yet: node-3 had not applied node-2's
    // removal when it crashed.)
    if cluster.is_released(alice) {
        let remembered = cluster.leader.state().machine.remembered("client-a", 1);
        assert_eq!(
            remembered,
            Some(&cluster.placed(success("alice", 10, true))),
            "alice was told SUCCESS, but {} took over without her bid",
            successors[0]
        );
    }
}

#[test]
fn a_backup_that_rejoined_but_has_not_acked_its_catch_up_never_takes_over() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);

    // node-2, first in the leaderQueue, is cut off and removed; alice's bid
    // commits with node-3 alone.
    cluster.lose_stream(NODE_2);
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.settle();
    assert!(cluster.is_released(alice));

    // node-2 comes back with its old log and gets the suffix; node-3 applies
    // whatever the leader sent it; the leader crashes before node-2 applies
    // its suffix.
    cluster.connect(NODE_2);
    cluster.deliver(NODE_3).expect("node-3 applies");
    cluster.drop_in_flight(NODE_2);

    // node-2 is not a member again until it acks its catch-up, so it is
    // stale in node-3's eyes: it waits, and node-3 takes over with alice's bid.
    let decide = |me: &str, peer: &str| {
        let backup = cluster.backup(me);
        let view = SelfView {
            id: me,
            epoch: backup.epoch(),
            last: backup.last(),
            membership: &backup.state().membership,
            cluster_id: &backup.state().cluster_id,
            recovered: false,
            released: &[],
        };
        choose_successor(&view, Some(LEADER), &[cluster.status(peer)], &HashSet::new())
    };
    assert!(matches!(decide(NODE_2, NODE_3), Succession::Wait { .. }));
    assert!(matches!(decide(NODE_3, NODE_2), Succession::TakeOver { .. }));
    cluster.crash_leader_and_take_over(NODE_3);
    assert_eq!(
        cluster.leader.state().machine.remembered("client-a", 1),
        Some(&cluster.placed(success("alice", 10, true)))
    );
}

#[test]
fn successor_never_reuses_the_epoch_of_a_short_lived_leader() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3, NODE_4]);

    // node-1 crashes. node-2 takes over in epoch 2, expecting node-3 and
    // node-4; node-4 catches up and applies alice's bid, node-3 is slow to
    // come back, so nothing commits.
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.connect(NODE_4);
    let alice = cluster.send_bid(bid("alice", 10, "client-a", 1));
    cluster.deliver(NODE_4).expect("node-4 applies");
    cluster.deliver_acks(NODE_4);
    assert!(!cluster.is_released(alice));

    // node-2 crashes too. node-3, first in its leaderQueue, takes over; it
    // never saw epoch 2, node-4 did.
    let node_3 = cluster.status(NODE_3);
    let node_4 = cluster.status(NODE_4);
    let view_of = |status: &NodeStatus| (status.last, status.membership.clone());
    let (node_3_last, node_3_members) = view_of(&node_3);
    let (node_4_last, node_4_members) = view_of(&node_4);
    let by_node_3 = choose_successor(
        &SelfView {
            id: NODE_3,
            epoch: node_3_last.epoch,
            last: node_3_last,
            membership: &node_3_members,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(LEADER),
        std::slice::from_ref(&node_4),
        &HashSet::new(),
    );
    let by_node_4 = choose_successor(
        &SelfView {
            id: NODE_4,
            epoch: node_4_last.epoch,
            last: node_4_last,
            membership: &node_4_members,
            cluster_id: CLUSTER_ID,
            recovered: false,
            released: &[],
        },
        Some(NODE_2),
        std::slice::from_ref(&node_3),
        &HashSet::new(),
    );
    assert_eq!(by_node_3, take_over(&[NODE_4]));
    assert_eq!(by_node_4, wait_for(NODE_3));
    cluster.take_over_as(NODE_3, LEADER, &members(&[NODE_4]));

    // bob bids on node-3 before node-4 is back; then node-4 connects.
    let bob = cluster.send_bid(bid("bob", 20, "client-b", 1));
    cluster.connect(NODE_4);
    cluster.settle();

    // bob was told SUCCESS: node-4 must hold his bid, and the leader's state.
    assert_eq!(cluster.outcome(bob), &cluster.placed(success("bob", 20, true)));
    assert_eq!(
        cluster.backup(NODE_4).state().machine.remembered("client-b", 1),
        Some(&cluster.placed(success("bob", 20, true))),
        "node-4 kept node-2's epoch-2 entries and acked bob's index without his bid"
    );
    assert_eq!(cluster.backup(NODE_4).state(), cluster.leader.state());
}

// ---------------------------------------------------------------------------
// Randomized schedules
// ---------------------------------------------------------------------------

/// A tiny deterministic PRNG (xorshift64): a failing seed replays exactly.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        if items.is_empty() { None } else { Some(items[self.below(items.len() as u64) as usize]) }
    }
}

/// What a random schedule went through, to check the seeds cover the paths.
#[derive(Default)]
struct Coverage {
    successes: usize,
    timeouts: usize,
    rejoins_by_snapshot: usize,
    rejoins_by_suffix: usize,
    possible_successors: usize,
}

#[test]
fn random_bids_acks_and_lost_backups_keep_replicas_equal_and_acknowledged_bids_safe() {
    let mut coverage = Coverage::default();
    for seed in 1..=50 {
        run_random_schedule(seed, 300, &mut coverage);
    }
    assert!(coverage.successes > 0);
    assert!(coverage.timeouts > 0);
    assert!(coverage.rejoins_by_snapshot > 0);
    assert!(coverage.rejoins_by_suffix > 0);
    assert!(coverage.possible_successors > 0);
}

fn run_random_schedule(seed: u64, steps: u64, coverage: &mut Coverage) {
    const BACKUPS: [&str; 3] = [NODE_2, NODE_3, NODE_4];
    const BIDDERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
    let mut rng = XorShift::new(seed);
    let mut cluster = Cluster::with_backups(&BACKUPS);
    // Every bid a client sent, by token, and every token handed out.
    let mut bids: BTreeMap<u64, Bid> = BTreeMap::new();
    let mut tokens: Vec<u64> = Vec::new();
    // The replies released while the leader still had at least one backup.
    let mut backed: HashSet<u64> = HashSet::new();
    let lose_at = rng.below(steps);
    let mut checked = cluster.released.len();

    for step in 0..steps {
        let connected: Vec<&str> = BACKUPS.iter().copied().filter(|node| cluster.streams.contains_key(*node)).collect();
        if step == lose_at
            && let Some(node) = rng.pick(&connected)
        {
            cluster.lose_stream(node);
        }
        match rng.below(100) {
            0..35 => {
                let bidder = BIDDERS[rng.below(BIDDERS.len() as u64) as usize];
                let request = bid(bidder, 1 + rng.below(100), &format!("client-{step}"), 1);
                let token = cluster.send_bid(request.clone());
                bids.insert(token, request);
                tokens.push(token);
            }
            35..40 => {
                // A client retries its request (the latest one, as clients do).
                if let Some((_, latest)) = bids.last_key_value() {
                    let request = latest.clone();
                    let token = cluster.send_bid(request.clone());
                    bids.insert(token, request);
                    tokens.push(token);
                }
            }
            40..45 => tokens.push(cluster.read()),
            45..70 => {
                if let Some(node) = rng.pick(&BACKUPS) {
                    for _ in 0..=rng.below(3) {
                        cluster.deliver_one(node).expect("in-order entries are accepted");
                    }
                }
            }
            70..90 => {
                if let Some(node) = rng.pick(&BACKUPS) {
                    match rng.below(3) {
                        0 => cluster.deliver_acks(node),
                        1 => cluster.deliver_latest_ack(node),
                        _ => {
                            cluster.reverse_acks(node);
                            cluster.deliver_acks(node)
                        }
                    };
                }
            }
            90..95 => {
                cluster.advance(1 + rng.below(400));
                let actions = cluster.tick();
                if actions.iter().any(|action| matches!(action, Action::Disconnect { .. })) {
                    coverage.timeouts += 1;
                }
            }
            _ => {
                let away: Vec<&str> =
                    BACKUPS.iter().copied().filter(|node| !cluster.streams.contains_key(*node)).collect();
                if let Some(node) = rng.pick(&away) {
                    match sends(&cluster.connect(node)).first() {
                        Some((_, Message::Snapshot(_))) => coverage.rejoins_by_snapshot += 1,
                        Some((_, Message::Entries(_))) => coverage.rejoins_by_suffix += 1,
                        None => {}
                    }
                }
            }
        }

        // Whenever a reply goes out, every backup still in the membership
        // holds what it reports.
        for (token, reply) in &cluster.released[checked..] {
            for member in cluster.leader.state().leader_queue() {
                let state = cluster.backup(member).state();
                match reply {
                    Reply::Applied { output: Applied::Bid(outcome), .. } => {
                        let request = &bids[token];
                        let remembered = state.machine.remembered(&request.client_id, request.request_id);
                        assert_eq!(remembered, Some(outcome), "seed {seed}, step {step}: {member} lacks bid {token}");
                    }
                    Reply::Read(Ok(QueryAnswer::View(view))) => {
                        assert!(
                            default_auction(state).accepted_bids >= view.accepted_bids,
                            "seed {seed}, step {step}: {member} lacks bids read by {token}"
                        );
                    }
                    Reply::Read(Err(error)) => panic!("seed {seed}: read {token} failed: {error}"),
                    Reply::Applied { .. } | Reply::Read(_) | Reply::MemberRemoved(_) => {
                        panic!("seed {seed}: this run creates, cancels, lists and removes nothing")
                    }
                }
            }
        }
        if !cluster.leader.state().leader_queue().is_empty() {
            backed.extend(cluster.released[checked..].iter().map(|(token, _)| *token));
        }
        checked = cluster.released.len();

        // Were the leader to crash now, whoever takes over holds every bid
        // acknowledged while the leader still had a backup; removed backups
        // are alive too and have a say. (A bid acknowledged after the leader
        // lost every backup rests on the leader alone: nothing can keep it.)
        for me in BACKUPS {
            let backup = cluster.backup(me);
            let view = SelfView {
                id: me,
                epoch: backup.epoch(),
                last: backup.last(),
                membership: &backup.state().membership,
                cluster_id: &backup.state().cluster_id,
                recovered: false,
                released: &[],
            };
            let answers: Vec<NodeStatus> =
                BACKUPS.iter().filter(|peer| **peer != me).map(|peer| cluster.status(peer)).collect();
            if !matches!(choose_successor(&view, Some(LEADER), &answers, &HashSet::new()), Succession::TakeOver { .. })
            {
                continue;
            }
            coverage.possible_successors += 1;
            for (token, reply) in &cluster.released {
                if let Reply::Applied { output: Applied::Bid(outcome), .. } = reply
                    && outcome.verdict == Verdict::Success
                    && backed.contains(token)
                {
                    let request = &bids[token];
                    assert_eq!(
                        backup.state().machine.remembered(&request.client_id, request.request_id),
                        Some(outcome),
                        "seed {seed}, step {step}: {me} would take over without acknowledged bid {token}"
                    );
                }
            }
        }
    }

    cluster.settle();

    // Every request was answered, in the order it was sequenced.
    let released = cluster.released_tokens();
    let answered: Vec<u64> = released.iter().copied().filter(|token| tokens.contains(token)).collect();
    assert_eq!(answered, tokens, "seed {seed}: replies released out of order or missing");

    // Every remaining backup holds the leader's state.
    let leader_state = cluster.leader.state();
    for member in leader_state.leader_queue() {
        assert_eq!(cluster.backup(member).state(), leader_state, "seed {seed}: {member} differs from the leader");
    }

    // Every acknowledged SUCCESS is in it, each request counted once, and
    // retries got their first outcome.
    let mut first_outcomes: BTreeMap<&str, &BidOutcome> = BTreeMap::new();
    let mut highest = 0;
    for (token, request) in &bids {
        let outcome = cluster.outcome(*token);
        let first = *first_outcomes.entry(request.client_id.as_str()).or_insert(outcome);
        assert_eq!(outcome, first, "seed {seed}: retry {token} got another outcome");
        if outcome.verdict == Verdict::Success {
            coverage.successes += 1;
            highest = highest.max(request.amount);
            for member in leader_state.leader_queue() {
                let auction = default_auction(cluster.backup(member).state());
                assert!(auction.bidders[&request.bidder] >= request.amount, "seed {seed}: {member} lacks bid {token}");
            }
        }
    }
    let successes = first_outcomes.values().filter(|outcome| outcome.verdict == Verdict::Success).count() as u64;
    let auction = default_auction(leader_state);
    assert_eq!(auction.accepted_bids, successes, "seed {seed}");
    assert_eq!(auction.highest_amount, highest, "seed {seed}");
}

// ---------------------------------------------------------------------------
// Dishonest peers: what a connection that says Hello can and cannot do
// ---------------------------------------------------------------------------

/// A rogue's stream: the leader hears from it only what the test sends.
const ROGUE: &str = "127.0.0.1:9";
const ROGUE_CONNECTION: u64 = 1_000_000;
/// A rogue cannot know a member's incarnation: it never leaves the peers.
const ROGUE_INCARNATION: u64 = 666;

fn rogue_hello(cluster: &mut Cluster, node: &str, last: LogPosition) -> Vec<Action> {
    cluster.step(Event::BackupConnected {
        node: node.to_string(),
        incarnation: ROGUE_INCARNATION,
        connection: ROGUE_CONNECTION,
        last,
    })
}

#[test]
fn a_hello_that_never_acks_holds_up_no_commit() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    rogue_hello(&mut cluster, ROGUE, LogPosition::default());

    // It is a learner: bids commit on the members' acks alone, again and again.
    for amount in 1..=5 {
        let token = cluster.bid("alice", amount);
        cluster.settle();
        assert!(cluster.is_released(token), "bid {amount} waits for a learner");
    }
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2]));

    // Past the learner timeout it is dropped, still without a removal entry.
    let last = cluster.leader.state().last;
    cluster.advance(LEARNER_TIMEOUT_MS);
    let actions = cluster.tick();
    assert!(actions.contains(&Action::Disconnect { node: ROGUE.to_string(), connection: ROGUE_CONNECTION }));
    assert_eq!(cluster.leader.state().last, last, "a learner leaves no entry behind");
}

#[test]
fn an_ack_beyond_what_was_sent_on_the_stream_is_a_lie_and_ends_the_stream() {
    let mut cluster = Cluster::with_backups(&[NODE_2]);
    rogue_hello(&mut cluster, ROGUE, LogPosition::default());

    let actions = cluster.step(Event::Ack { node: ROGUE.to_string(), connection: ROGUE_CONNECTION, index: u64::MAX });

    assert!(actions.contains(&Action::Disconnect { node: ROGUE.to_string(), connection: ROGUE_CONNECTION }));
    assert!(!cluster.leader.state().membership.contains(&ROGUE.to_string()), "it never joins");
    let token = cluster.bid("alice", 10);
    cluster.settle();
    assert!(cluster.is_released(token));
}

#[test]
fn a_second_hello_under_a_members_name_is_refused_and_its_acks_do_not_count() {
    // node-3 is a member, frozen: it holds alice's entry but acks nothing.
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let alice = cluster.bid("alice", 10);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.deliver_acks(NODE_2);
    assert!(!cluster.is_released(alice));

    // An impostor says Hello as node-3 (it cannot know node-3's
    // incarnation) and acks everything there could be: refused, node-3
    // stays, and the lie counts for nothing.
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]), "node-3 stays a member");
    let lie = Event::Ack { node: NODE_3.to_string(), connection: ROGUE_CONNECTION, index: u64::MAX };
    cluster.step(lie);
    cluster.take_actions();
    assert!(!cluster.is_released(alice), "an impostor's ack released a bid");

    // The frozen node-3 is removed by the ack timeout alone; alice commits
    // once node-2 holds its removal: node-3, which lacks what follows, is
    // now stale in node-2's eyes.
    cluster.advance(ACK_TIMEOUT_MS);
    cluster.tick();
    cluster.settle();
    assert!(cluster.is_released(alice));
    let node_2 = cluster.status(NODE_2);
    assert!(!node_2.membership.contains(&NODE_3.to_string()));
    assert!(more_advanced(node_2.last, cluster.backup(NODE_3).last()));
}

#[test]
fn epochs_never_wrap_and_an_impossible_one_is_refused() {
    assert!(epoch_number(next_epoch(u64::MAX, 7)) < MAX_EPOCH_NUMBER);
    assert!(next_epoch(u64::MAX, 7) > next_epoch(epoch_of(5), 7));
    let (mut backup, _) = backup_with_three_entries(2);
    assert_eq!(backup.observe_epoch(u64::MAX), Err(ReplicationError::ImpossibleEpoch(u64::MAX)));
    assert_eq!(backup.epoch(), epoch_of(2));
}

#[test]
fn a_takeover_ignores_a_leader_claim_from_a_non_member_and_an_absurd_epoch() {
    let membership = members(&[LEADER, NODE_2, NODE_3]);
    let last = LogPosition { epoch: epoch_of(1), index: 10 };
    let me = SelfView {
        id: NODE_2,
        epoch: epoch_of(1),
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    let rogue_leader = NodeStatus {
        node: ROGUE.to_string(),
        role: Role::Leader,
        epoch: epoch_of(1),
        leader: Some(ROGUE.to_string()),
        membership: vec![ROGUE.to_string()],
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let poisoned_member = NodeStatus {
        node: NODE_3.to_string(),
        role: Role::Joining,
        epoch: u64::MAX,
        leader: None,
        membership: membership.clone(),
        last,
        pid: 0,
        cluster_id: CLUSTER_ID.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let answers = [rogue_leader, poisoned_member];
    assert_eq!(
        choose_successor(&me, Some(LEADER), &answers, &HashSet::new()),
        Succession::TakeOver { live_backups: vec![] },
        "neither answer is credible: node-2 leads, expecting nobody"
    );
    assert_eq!(highest_credible_epoch(&me, &answers), epoch_of(1));
}

#[test]
fn a_node_never_installs_another_clusters_snapshot() {
    let (mut backup, _) = backup_with_three_entries(1);
    let state = backup.state().clone();
    let other = ReplicatedState { cluster_id: "another".to_string(), ..ReplicatedState::default() };

    let refusal = backup.install(Snapshot { epoch: epoch_of(2), state: other });

    assert!(matches!(refusal, Err(ReplicationError::OtherCluster { .. })), "{refusal:?}");
    assert_eq!(backup.state(), &state);
}

#[test]
fn an_answer_from_another_cluster_or_with_an_impossible_log_cannot_make_a_member_stale() {
    let membership = members(&[LEADER, NODE_2, NODE_3]);
    let last = LogPosition { epoch: epoch_of(1), index: 10 };
    let me = SelfView {
        id: NODE_2,
        epoch: epoch_of(1),
        last,
        membership: &membership,
        cluster_id: CLUSTER_ID,
        recovered: false,
        released: &[],
    };
    let ahead_without_me = |cluster_id: &str, last_epoch: u64| NodeStatus {
        node: ROGUE.to_string(),
        role: Role::Joining,
        epoch: epoch_of(1),
        leader: None,
        membership: vec![ROGUE.to_string()],
        last: LogPosition { epoch: last_epoch, index: 1_000 },
        pid: 0,
        cluster_id: cluster_id.to_string(),
        disk: None,
        http: None,
        record: None,
    };
    let not_credible = [
        ahead_without_me("another-cluster", epoch_of(1)),
        ahead_without_me("", epoch_of(1)),
        ahead_without_me(CLUSTER_ID, epoch_of(7)),
    ];
    for answer in not_credible {
        assert_eq!(
            choose_successor(&me, Some(LEADER), std::slice::from_ref(&answer), &HashSet::new()),
            Succession::TakeOver { live_backups: vec![] },
            "{answer:?} must not stop node-2"
        );
    }
    // A node of this cluster that counts itself a member and is ahead is
    // evidence, as a joiner after node-2's removal would be. (Telling such
    // a node from an impostor needs authenticated peers.)
    let evidence = ahead_without_me(CLUSTER_ID, epoch_of(1));
    assert_eq!(choose_successor(&me, Some(LEADER), &[evidence], &HashSet::new()), Succession::Wait { for_node: None });
}

// ---------------------------------------------------------------------------
// The membership record: the in-sync set the coordinator holds
// ---------------------------------------------------------------------------

/// The leader commits without a member only once the record without it is
/// stored: until then the removed member may lead after the leader dies,
/// and it lacks what the others acked.
#[test]
fn a_removed_member_gates_commits_until_the_record_without_it_is_stored() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let listed = cluster.leader.record().nodes();
    assert_eq!(listed, vec![LEADER.to_string(), NODE_2.to_string(), NODE_3.to_string()]);

    // node-3 goes silent; the coordinator is slow to store its removal.
    cluster.hold_records = true;
    cluster.lose_stream(NODE_3);
    let token = cluster.bid("alice", 10);
    cluster.settle();
    assert!(!cluster.is_released(token), "a bid committed while the record still lists node-3");
    let pending = cluster.records.last().expect("a record write was asked for");
    assert_eq!(pending.nodes(), vec![LEADER.to_string(), NODE_2.to_string()]);

    // Stored: the bid commits on node-2's ack alone.
    cluster.release_records();
    cluster.settle();
    assert!(cluster.is_released(token), "the bid waits although the record no longer lists node-3");
    assert_eq!(cluster.outcome(token).verdict, Verdict::Success);
}

/// A stream under a member's name with another incarnation (the node
/// restarted without its disk, once its old stream ended) is not that
/// member: the member's removal is stored before anything commits without
/// it, and the newcomer starts as a learner, listed only once caught up.
#[test]
fn a_hello_under_a_members_name_with_another_incarnation_ends_that_membership_in_the_record() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    cluster.incarnations.insert(NODE_3.to_string(), 2);
    cluster.connect(NODE_3);
    cluster.settle();
    let record = cluster.leader.record().clone();
    let listed = record.members.iter().find(|member| member.node == NODE_3).expect("node-3 listed again");
    assert_eq!(listed.incarnation, 2, "the record lists the new copy, not the old one");
    let removal_stored =
        cluster.records.iter().any(|record| record.nodes() == vec![LEADER.to_string(), NODE_2.to_string()]);
    assert!(removal_stored, "the old copy's removal was stored first: {:?}", cluster.records);
}

/// Each takeover's epoch number is the one its record stores, above the
/// record's before it: two leaderships never share one. Membership writes
/// keep it.
#[test]
fn a_takeover_epoch_is_above_the_record_before_it() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let before = cluster.leader.record().clone();
    assert_eq!(before.epoch, 1, "joins keep the leadership's epoch number");
    cluster.crash_leader_and_take_over(NODE_2);
    let after = cluster.leader.record();
    assert!(after.version > before.version && after.epoch > before.epoch);
    assert_eq!(epoch_number(cluster.leader.epoch()), after.epoch);
}

/// While a member's own stream is live, a Hello under its name with
/// another incarnation (an impostor: the member cannot restart while its
/// process holds its port) is refused: the member stays, and its acks go
/// on committing bids.
#[test]
fn a_hello_under_a_connected_members_name_with_another_incarnation_is_refused() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let connection = cluster.connection(NODE_3);
    let record = cluster.leader.record().clone();
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    cluster.settle();
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(connection), "the member's own stream stays");
    assert_eq!(cluster.leader.record(), &record, "the record is unchanged");
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
    let token = cluster.bid("alice", 7);
    cluster.settle();
    assert!(cluster.is_released(token));
    assert_eq!(cluster.outcome(token).verdict, Verdict::Success);
}

/// After a takeover where no record knew the members' incarnations, an
/// expected member that comes back with less than what is committed (it
/// lost its state) is not listed as a member: it starts over as a learner,
/// and the record lists it only once it has caught up.
#[test]
fn an_expected_member_of_unknown_incarnation_that_lost_its_state_starts_as_a_learner() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    for amount in 1..=3 {
        let token = cluster.bid("alice", amount);
        cluster.settle();
        assert!(cluster.is_released(token));
    }
    cluster.incarnations.insert(NODE_3.to_string(), UNKNOWN_INCARNATION);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.release_records();
    let committed = cluster.leader.state().last.index;
    // Node 3 restarted without its disk: an empty log, a new incarnation.
    cluster.backups.insert(NODE_3.to_string(), Backup::default());
    cluster.incarnations.insert(NODE_3.to_string(), 9);
    cluster.hold_records = true;
    cluster.connect(NODE_3);
    cluster.take_actions();
    let the_new_copy = |member: &Member| member.node == NODE_3 && member.incarnation == 9;
    assert!(
        !cluster.records.iter().any(|record| record.members.iter().any(the_new_copy)),
        "a copy with less than index {committed} was listed: {:?}",
        cluster.records
    );
    // Once it has caught up it is admitted and listed.
    cluster.hold_records = false;
    cluster.release_records();
    cluster.settle();
    assert!(cluster.leader.record().members.iter().any(the_new_copy), "{:?}", cluster.leader.record());
}

/// The same takeover without incarnations: an expected member whose log
/// is merely short (an entry in flight when every node died) is caught up
/// as a member, not started over.
#[test]
fn an_expected_member_of_unknown_incarnation_whose_log_is_short_stays_a_member() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    let token = cluster.bid("alice", 1);
    cluster.settle();
    assert!(cluster.is_released(token));
    // A bid reaches node-2 only; then the leader dies.
    cluster.bid("bob", 2);
    cluster.deliver(NODE_2).expect("node-2 applies");
    cluster.incarnations.insert(NODE_3.to_string(), UNKNOWN_INCARNATION);
    cluster.crash_leader_and_take_over(NODE_2);
    cluster.release_records();
    assert!(cluster.backup(NODE_3).last().index < cluster.leader.state().last.index, "node-3 is short");
    cluster.incarnations.insert(NODE_3.to_string(), 4);
    let written = cluster.records.len();
    cluster.connect(NODE_3);
    cluster.settle();
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_3]), "node-3 stays a member");
    let dropped = cluster.records[written..].iter().any(|record| !record.nodes().contains(&NODE_3.to_string()));
    assert!(!dropped, "node-3 was removed on the way: {:?}", &cluster.records[written..]);
    let listed = cluster.leader.record().members.iter().any(|member| member.node == NODE_3 && member.incarnation == 4);
    assert!(listed, "{:?}", cluster.leader.record());
}

/// An impostor that said Hello under a member's name while the member was
/// between streams holds only a learner's place: the real node, coming
/// back, takes it over instead of being refused.
#[test]
fn an_impostor_in_a_learners_place_does_not_keep_the_real_node_out() {
    let mut cluster = Cluster::with_backups(&[NODE_2, NODE_3]);
    cluster.lose_stream(NODE_3);
    rogue_hello(&mut cluster, NODE_3, LogPosition::default());
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(ROGUE_CONNECTION), "the impostor is a learner");
    cluster.connect(NODE_3);
    let real = cluster.connection(NODE_3);
    assert_eq!(cluster.leader.connection_of(NODE_3), Some(real), "the real node took its place back");
    cluster.settle();
    assert_eq!(cluster.leader.state().leader_queue(), members(&[NODE_2, NODE_3]));
}
