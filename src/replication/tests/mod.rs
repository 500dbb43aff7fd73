//! Unit tests of the replication core, driven synchronously.
//!
//! A [`Cluster`] is an in-memory network in the manner of raft-rs's test
//! harness: one [`Leader`], its [`Backup`]s keyed by node id, and per backup a
//! queue of messages in flight from the leader and a queue of acks in flight
//! back. Tests deliver, hold, drop or reorder them one at a time, move a fake
//! clock by hand, and assert on the exact actions the leader emits and on the
//! state of every replica. No sockets, tasks or sleeps.
//!
//! The tests are one file per topic; this module holds the harness and the
//! helpers more than one topic uses.

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

mod ack_timeout;
mod backup_core;
mod backup_lost;
mod catch_up;
mod choose_successor;
mod deadline;
mod dishonest_peers;
mod durability;
mod exactly_once;
mod failover;
mod membership_record;
mod normal_operation;
mod pipelining;
mod randomized;
mod takeover;

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
        machine: AuctionSettings { retain_closed: DEFAULT_RETAIN_CLOSED, ..AuctionSettings::default() },
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
            waiting: None,
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
        name_digest: None,
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

/// Opens the default auction, with a minimum of 1 and no deadline in reach.
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

/// The decision to take over, with `live_backups` as the new backups.
fn take_over(live_backups: &[&str]) -> Succession {
    Succession::TakeOver { live_backups: members(live_backups) }
}

/// The decision to wait for `node` to take over.
fn wait_for(node: &str) -> Succession {
    Succession::Wait { for_node: Some(node.to_string()) }
}

/// A rogue's stream: the leader hears from it only what the test sends.
const ROGUE: &str = "127.0.0.1:9";
const ROGUE_CONNECTION: u64 = 1_000_000;
/// A rogue cannot know a member's incarnation: it never leaves the peers.
const ROGUE_INCARNATION: u64 = 666;

/// A Hello from the rogue's connection under the name `node`.
fn rogue_hello(cluster: &mut Cluster, node: &str, last: LogPosition) -> Vec<Action> {
    cluster.step(Event::BackupConnected {
        node: node.to_string(),
        incarnation: ROGUE_INCARNATION,
        connection: ROGUE_CONNECTION,
        last,
    })
}
