//! The leader's half of the protocol: sequencing, commit and reply release.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::machine::StateMachine;
use super::record::{Member, MembershipRecord, UNKNOWN_INCARNATION};
use super::state::{Entry, LogPosition, Payload, ReplicatedState, Snapshot};
use super::{NodeId, Now};

/// Tunables of the leader; `S`, what it stamps into the state machine's
/// commands.
#[derive(Clone, Debug)]
pub struct LeaderSettings<S> {
    /// A backup that acks nothing for this long, while it owes acks, is lost.
    pub ack_timeout: Duration,
    /// Recent entries kept in memory, so a backup that was briefly away
    /// catches up by a suffix rather than a whole snapshot.
    pub tail_capacity: usize,
    /// A learner (a joiner catching up) that owes acks for this long is
    /// dropped. Longer than the ack timeout: loading a large snapshot takes
    /// time, and a learner gates nothing while it does.
    pub learner_timeout: Duration,
    /// Whether entries go to a disk of its own: the leader then emits
    /// [`Action::Persist`] and counts an entry only once
    /// [`Event::Persisted`] says its disk holds it, as a backup acks only
    /// what its disk holds.
    pub durable: bool,
    /// What the leader stamps into commands besides the time.
    pub machine: S,
}

impl<S: Default> Default for LeaderSettings<S> {
    fn default() -> Self {
        LeaderSettings {
            ack_timeout: Duration::from_millis(1000),
            tail_capacity: 4096,
            learner_timeout: Duration::from_secs(30),
            durable: false,
            machine: S::default(),
        }
    }
}

/// An input to the leader.
#[derive(Clone, Debug)]
pub enum Event<M: StateMachine> {
    /// A command to sequence, already checked for malformed input; its
    /// output is released as [`Reply::Applied`] once it is committed.
    /// Without a token nobody waits for it (the bootstrap's own commands).
    Propose { token: Option<u64>, command: M::Command },
    /// A read, answered from everything sequenced so far and released as
    /// [`Reply::Read`] once that is committed.
    Read { token: u64, query: M::Query },
    /// A backup opened a stream (`connection` tells this stream from the
    /// node's earlier ones) and holds a log ending at `last`; `incarnation`
    /// names the copy of the node's state it speaks for.
    BackupConnected { node: NodeId, incarnation: u64, connection: u64, last: LogPosition },
    /// A backup applied everything up to `index`.
    Ack { node: NodeId, connection: u64, index: u64 },
    /// A backup's stream ended or failed.
    BackupLost { node: NodeId, connection: u64 },
    /// Time passed: check ack timeouts and deadlines.
    Tick,
    /// This node's own disk holds every entry up to `index` (durable only).
    Persisted { index: u64 },
    /// An operator removes a member for good.
    RemoveMember { token: u64, node: NodeId },
    /// The coordinator stored the membership record of this version, the
    /// one [`Action::StoreRecord`] asked for.
    RecordStored { version: u64 },
}

/// A message for one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<M: StateMachine> {
    Snapshot(Box<Snapshot<M>>),
    /// Shared between the backups it goes to.
    Entries(Arc<Vec<Entry<M::Command>>>),
}

/// The answer to a client, released once what it depends on is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<M: StateMachine> {
    /// A proposed command was applied at `index` and yielded `output`.
    Applied {
        index: u64,
        output: M::Output,
    },
    Read(M::Answer),
    /// The index of the member's committed removal; `None` if it was not a
    /// member (or is this leader, which cannot remove itself).
    MemberRemoved(Option<u64>),
}

/// What the node layer must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<M: StateMachine> {
    Send {
        to: NodeId,
        connection: u64,
        message: Message<M>,
    },
    Reply {
        token: u64,
        reply: Reply<M>,
    },
    /// Every entry up to `index` is committed and may be shown to
    /// watchers: held by every member, whoever leads next (a new leader's
    /// inherited entries count only once its takeover commits). Emitted
    /// each time the index moves on.
    Publish {
        index: u64,
    },
    /// Close the stream of a backup that left the membership.
    Disconnect {
        node: NodeId,
        connection: u64,
    },
    /// Write these entries to this node's own disk (durable only), in
    /// parallel with sending them: the same batch the backups get.
    Persist {
        entries: Arc<Vec<Entry<M::Command>>>,
    },
    /// Store this membership record with the coordinator, by compare-and-set
    /// of the version before it; answer with [`Event::RecordStored`]. One
    /// write at a time: the next waits for that event.
    StoreRecord {
        record: MembershipRecord,
    },
}

/// What the leader knows of one backup: a member, or a learner catching up.
#[derive(Clone, Debug)]
struct BackupProgress {
    /// The copy of its state it speaks for: a stream under its name with
    /// another incarnation is another member.
    incarnation: u64,
    /// The stream it is on; `None` for a backup a new leader expects back.
    connection: Option<u64>,
    /// The highest index sent on that stream. An ack counts only up to
    /// here: a peer that acks more than it was sent is lying, and is dropped.
    sent: u64,
    /// The highest index it has acked on that stream.
    acked: u64,
    /// When the oldest entry it has not acked was appended (or its stream
    /// opened): it is lost once that is older than its timeout, however
    /// often it acks a little, so a peer that cannot keep up is removed.
    owing_since: Option<Instant>,
    /// For a learner: the index of its catch-up. It joins the membership
    /// (the leaderQueue) only once it has acked that far, so that every
    /// member holds every committed entry, which the takeover rule relies
    /// on. Until then it gates no commit.
    join_once_acked: Option<u64>,
    /// Whether new entries are streamed to it. A learner gets its catch-up
    /// first and the entries since only once it acks the catch-up: one that
    /// never acks costs the leader one catch-up, not a stream.
    streaming: bool,
}

impl BackupProgress {
    fn is_learner(&self) -> bool {
        self.join_once_acked.is_some()
    }
}

/// A removed backup, until the stored membership record no longer lists
/// it and the remaining backups hold its removal.
///
/// Entries it never acked may be committed only once the record without it
/// is stored: until then it may lead after this leader dies, and it lacks
/// them. Waiting for the remaining backups to hold its removal as well lets
/// their logs agree with the record, so that the staleness rule of
/// `takeover` still holds where no record can be read.
#[derive(Clone, Debug)]
struct Departure {
    /// The member it was, as the record lists it (if known).
    member: Option<Member>,
    /// The index of its Remove entry.
    removed_at: u64,
    /// The highest index it acked.
    acked: u64,
}

/// A reply held back until `index` is committed.
#[derive(Debug)]
struct HeldReply<M: StateMachine> {
    index: u64,
    token: u64,
    reply: Reply<M>,
}

/// The leader's half of the protocol, over the state machine `M`.
#[derive(Debug)]
pub struct Leader<M: StateMachine> {
    id: NodeId,
    /// The copy of this node's state that leads, as the record lists it.
    incarnation: u64,
    epoch: u64,
    /// The membership record as the coordinator holds it: every member it
    /// lists gates every commit, removed or not.
    record: MembershipRecord,
    /// The record being written, if a write is in flight (one at a time).
    record_in_flight: Option<MembershipRecord>,
    state: ReplicatedState<M>,
    settings: LeaderSettings<M::Settings>,
    /// Recent entries, oldest first, for catch-up by suffix, each with when
    /// it was appended (for the backups' ack deadlines).
    tail: VecDeque<(Entry<M::Command>, Instant)>,
    /// The position just before the tail's first entry: a backup that holds
    /// exactly this log (every backup, right after a takeover) needs only
    /// the tail, not a snapshot.
    tail_base: LogPosition,
    backups: BTreeMap<NodeId, BackupProgress>,
    /// Every entry up to here is applied by every backup in the membership
    /// (and, when durable, held by every member's disk, this one's too).
    commit_index: u64,
    /// The highest index this node's own disk holds: a commit never goes
    /// beyond it. Without a disk, every entry counts as held.
    persisted_index: u64,
    /// The index of this leadership's first entry (its takeover): entries
    /// it inherited count as committed for watchers only once this one is,
    /// since a successor may lack them until then.
    first_index: u64,
    /// The index last announced by [`Action::Publish`].
    published: Option<u64>,
    /// Removed backups (they never ack their own removal), until every remaining
    /// backup has applied their removal.
    departing: Vec<Departure>,
    held: VecDeque<HeldReply<M>>,
    /// Entries appended since the last flush, sent as one message each.
    outbox: Vec<Entry<M::Command>>,
    actions: Vec<Action<M>>,
}

impl<M: StateMachine> Leader<M> {
    /// Bootstraps a new cluster: the first leader, alone. `record` is the
    /// stored record that names the cluster and lists this node, and
    /// `epoch` the one its epoch number gives (see [`super::epoch_of_record`]).
    pub fn bootstrap(record: MembershipRecord, epoch: u64, settings: LeaderSettings<M::Settings>, now: Now) -> Self {
        let id = record.members.first().map(|member| member.node.clone()).unwrap_or_default();
        let cluster_id = record.cluster_id.clone();
        let mut leader = Leader::new(id.clone(), epoch, record, ReplicatedState::default(), settings);
        leader.append(Payload::Takeover { leader: id, backups: Vec::new(), cluster_id }, now);
        leader
    }

    /// Takes over from a lost leader with the state this node holds, in
    /// `epoch`. `record` is the takeover record already stored: this node
    /// first, then the backups it expects back, which the record lists, not
    /// its log (a removal stored but not yet spread is in the record only).
    /// It waits for each, up to the ack timeout, before it commits anything:
    /// a backup that missed entries must get them before a command is
    /// acknowledged without it.
    pub fn take_over(
        state: ReplicatedState<M>,
        record: MembershipRecord,
        epoch: u64,
        settings: LeaderSettings<M::Settings>,
        now: Now,
    ) -> Self {
        let id = record.members.first().map(|member| member.node.clone()).unwrap_or_default();
        let expected: Vec<Member> = record.members.iter().skip(1).cloned().collect();
        let cluster_id = state.cluster_id.clone();
        let mut leader = Leader::new(id.clone(), epoch, record, state, settings);
        for member in &expected {
            let progress = BackupProgress {
                incarnation: member.incarnation,
                connection: None,
                sent: 0,
                acked: 0,
                owing_since: Some(now.instant),
                join_once_acked: None,
                streaming: true,
            };
            leader.backups.insert(member.node.clone(), progress);
        }
        let backups = expected.into_iter().map(|member| member.node).collect();
        leader.append(Payload::Takeover { leader: id, backups, cluster_id }, now);
        leader
    }

    fn new(
        id: NodeId,
        epoch: u64,
        record: MembershipRecord,
        state: ReplicatedState<M>,
        settings: LeaderSettings<M::Settings>,
    ) -> Self {
        Leader {
            id,
            incarnation: record.members.first().map_or(0, |member| member.incarnation),
            epoch,
            record,
            record_in_flight: None,
            commit_index: state.last.index,
            persisted_index: if settings.durable { 0 } else { u64::MAX },
            first_index: state.last.index + 1,
            published: None,
            tail_base: state.last,
            state,
            settings,
            tail: VecDeque::new(),
            backups: BTreeMap::new(),
            departing: Vec::new(),
            held: VecDeque::new(),
            outbox: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream `node` is followed on, if it has one: after a
    /// `BackupConnected`, whether that stream was taken or refused.
    pub fn connection_of(&self, node: &str) -> Option<u64> {
        self.backups.get(node).and_then(|progress| progress.connection)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn state(&self) -> &ReplicatedState<M> {
        &self.state
    }

    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    /// The membership record as stored.
    pub fn record(&self) -> &MembershipRecord {
        &self.record
    }

    /// The commit index watchers may be shown: once this leadership's first
    /// entry is committed, every entry up to the commit index is held by
    /// every member, whoever leads next.
    pub fn published_index(&self) -> Option<u64> {
        (self.commit_index >= self.first_index).then_some(self.commit_index)
    }

    /// Client requests sequenced or read, whose replies wait for a commit.
    pub fn pending_replies(&self) -> usize {
        self.held.len()
    }

    /// The backups that gate commits, and the learners catching up.
    pub fn members_and_learners(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let (learners, members): (Vec<_>, Vec<_>) =
            self.backups.iter().partition(|(_, progress)| progress.is_learner());
        (
            members.into_iter().map(|(node, _)| node.clone()).collect(),
            learners.into_iter().map(|(node, _)| node.clone()).collect(),
        )
    }

    /// Handles one event. Call [`Leader::take_actions`] after one or more.
    pub fn handle(&mut self, event: Event<M>, now: Now) {
        match event {
            Event::Propose { token, command } => self.on_propose(token, command, now),
            Event::Read { token, query } => {
                // The answer covers every entry sequenced so far; it is
                // released only once they are all committed, so it never
                // shows what could still be lost, and shows everything
                // acknowledged before it.
                let answer = self.state.machine.read(&query, self.stamp(now));
                self.held.push_back(HeldReply { index: self.state.last.index, token, reply: Reply::Read(answer) });
            }
            Event::BackupConnected { node, incarnation, connection, last } => {
                self.on_backup_connected(Member { node, incarnation }, connection, last, now);
            }
            Event::Ack { node, connection, index } => self.on_ack(&node, connection, index, now),
            Event::BackupLost { node, connection } => {
                if self.backups.get(&node).is_some_and(|progress| progress.connection == Some(connection)) {
                    self.remove_backup(&node, now);
                }
            }
            Event::Tick => self.on_tick(now),
            Event::RemoveMember { token, node } => {
                let removed_at = if node == self.id { None } else { self.remove_backup(&node, now) };
                // Released once the removal (or, if there was none, every
                // entry so far) is committed.
                let index = removed_at.unwrap_or(self.state.last.index);
                self.held.push_back(HeldReply { index, token, reply: Reply::MemberRemoved(removed_at) });
            }
            Event::Persisted { index } => {
                if self.settings.durable {
                    self.persisted_index = self.persisted_index.max(index);
                }
            }
            Event::RecordStored { version } => {
                if self.record_in_flight.as_ref().is_some_and(|record| record.version == version) {
                    self.record = self.record_in_flight.take().unwrap_or_default();
                }
            }
        }
        self.advance_commit();
        self.admit_caught_up_learners(now);
        self.store_record_if_changed();
        self.publish_if_moved();
    }

    /// Announces the published index when it moved on.
    fn publish_if_moved(&mut self) {
        if let Some(index) = self.published_index()
            && self.published != Some(index)
        {
            self.published = Some(index);
            self.actions.push(Action::Publish { index });
        }
    }

    /// The members that gate commits, as (node, incarnation): this node,
    /// then the member backups in leaderQueue order.
    fn gating_members(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        let backups = self.state.leader_queue().iter().filter_map(|node| {
            let progress = self.backups.get(node).filter(|progress| !progress.is_learner())?;
            Some((node, progress.incarnation))
        });
        std::iter::once((&self.id, self.incarnation)).chain(backups)
    }

    /// Whether the stored record lists exactly the members that gate
    /// commits, in order. Checked after every event, so compared in place:
    /// building the list each time cost a clone of every member's name
    /// per event.
    fn record_lists_gating_members(&self) -> bool {
        let mut listed = self.record.members.iter();
        self.gating_members().all(|(node, incarnation)| {
            listed.next().is_some_and(|member| member.node == *node && member.incarnation == incarnation)
        }) && listed.next().is_none()
    }

    /// Starts the write of the record when the members that gate commits
    /// (this node, then the member backups in leaderQueue order) are no
    /// longer the ones the record lists, and no write is in flight.
    fn store_record_if_changed(&mut self) {
        if self.record_in_flight.is_some() || self.record_lists_gating_members() {
            return;
        }
        let members =
            self.gating_members().map(|(node, incarnation)| Member { node: node.clone(), incarnation }).collect();
        let record = MembershipRecord {
            cluster_id: self.state.cluster_id.clone(),
            version: self.record.version + 1,
            epoch: self.record.epoch,
            members,
        };
        self.actions.push(Action::StoreRecord { record: record.clone() });
        self.record_in_flight = Some(record);
    }

    /// The actions to perform, in order, with new entries flushed to every
    /// connected backup as one message.
    pub fn take_actions(&mut self) -> Vec<Action<M>> {
        self.flush();
        std::mem::take(&mut self.actions)
    }

    fn on_propose(&mut self, token: Option<u64>, mut command: M::Command, now: Now) {
        // A retry of a request whose first execution is not yet committed
        // must not be answered before it is; sequencing the retry as an entry
        // of its own gets the remembered outcome, released after the first.
        M::stamp(&mut command, self.stamp(now), &self.settings.machine);
        let (index, output) = self.append(Payload::Command(command), now);
        if let (Some(token), Some(output)) = (token, output) {
            self.held.push_back(HeldReply { index, token, reply: Reply::Applied { index, output } });
        }
    }

    fn on_backup_connected(&mut self, member: Member, connection: u64, last: LogPosition, now: Now) {
        let Member { node, incarnation } = member;
        if node == self.id {
            return;
        }
        if let Some(progress) = self.backups.get(&node) {
            let live = progress.connection.is_some();
            let other_copy = progress.incarnation != UNKNOWN_INCARNATION && progress.incarnation != incarnation;
            // Another copy of a member whose own stream is live (an impostor;
            // the member cannot restart while its process holds its port) is
            // refused: the driver drops its stream, and the member stays. A
            // learner's place is not held that way, so that an impostor
            // that said Hello first cannot keep the real node out.
            if live && other_copy && !progress.is_learner() {
                return;
            }
            // A member a takeover expected without knowing its incarnation
            // (no record knew it) that comes back with an empty log lost its
            // state (a restart without its disk): it starts over as a
            // learner. A log that is merely short (entries in flight when
            // every node died) is caught up as a member's.
            let lost_state = progress.incarnation == UNKNOWN_INCARNATION
                && !live
                && last == LogPosition::default()
                && self.state.last.index > 0;
            if live || other_copy || lost_state {
                self.remove_backup(&node, now);
            }
        }
        // Entries sequenced before the catch-up go out first, to the backups
        // that were already connected; the joiner gets them in its catch-up.
        self.flush();
        let message = match self.suffix_after(last) {
            Some(entries) => Message::Entries(Arc::new(entries)),
            None => {
                let snapshot = Snapshot { epoch: self.epoch, state: self.state.clone() };
                Message::Snapshot(Box::new(snapshot))
            }
        };
        // Entries stream to it from now on only if its catch-up is short: a
        // snapshot takes a while to send and load, and what the leader
        // appends meanwhile would pile up in its queue; it gets that once it
        // acks the snapshot.
        let snapshot = matches!(message, Message::Snapshot(_));
        self.actions.push(Action::Send { to: node.clone(), connection, message });
        // What the Hello claims chose the catch-up; only acks on this stream
        // count, and only up to what was sent on it.
        let join_once_acked = (!self.state.membership.contains(&node)).then_some(self.state.last.index);
        let progress = BackupProgress {
            incarnation,
            connection: Some(connection),
            sent: self.state.last.index,
            acked: 0,
            owing_since: Some(now.instant),
            streaming: join_once_acked.is_none() && !snapshot,
            join_once_acked,
        };
        self.backups.insert(node, progress);
    }

    /// Appends the join of each learner that has acked its catch-up and
    /// every committed entry: a member then holds every committed entry from
    /// the moment it counts as one, and gates every later commit.
    fn admit_caught_up_learners(&mut self, now: Now) {
        let commit_index = self.commit_index;
        let caught_up: Vec<NodeId> = self
            .backups
            .iter_mut()
            .filter(|(_, progress)| {
                progress.join_once_acked.is_some_and(|catch_up| progress.acked >= catch_up.max(commit_index))
            })
            .map(|(node, progress)| {
                progress.join_once_acked = None;
                node.clone()
            })
            .collect();
        for node in caught_up {
            self.append(Payload::Join { node }, now);
        }
    }

    /// The entries a backup whose log ends at `last` lacks, if its log is a
    /// prefix of this one and the tail still holds them.
    fn suffix_after(&self, last: LogPosition) -> Option<Vec<Entry<M::Command>>> {
        if last == self.state.last {
            return Some(Vec::new());
        }
        if last.index == 0 {
            // A fresh node: a snapshot is smaller than the whole log.
            return None;
        }
        if last == self.tail_base {
            return Some(self.tail.iter().map(|(entry, _)| entry.clone()).collect());
        }
        let first_kept = self.tail.front()?.0.index;
        if last.index < first_kept || last.index > self.state.last.index {
            return None;
        }
        let offset = (last.index - first_kept) as usize;
        if self.tail[offset].0.position() != last {
            return None;
        }
        Some(self.tail.iter().skip(offset + 1).map(|(entry, _)| entry.clone()).collect())
    }

    fn on_ack(&mut self, node: &str, connection: u64, index: u64, now: Now) {
        let last_index = self.state.last.index;
        // The next entry it owes was appended at a known time, unless it is
        // older than the tail: then it has owed since before.
        let next_owed_since = if index >= last_index { None } else { self.appended_at(index + 1) };
        let Some(progress) = self.backups.get_mut(node) else { return };
        if progress.connection != Some(connection) {
            return;
        }
        if index > progress.sent {
            // It claims entries it was never sent on this stream.
            self.remove_backup(node, now);
            return;
        }
        if index <= progress.acked {
            return;
        }
        progress.acked = index;
        progress.owing_since = if index >= last_index { None } else { next_owed_since.or(progress.owing_since) };
        if !progress.streaming && index >= progress.sent {
            self.send_entries_since(node, connection, index);
        }
    }

    /// Starts streaming to a learner that acked its catch-up at `acked`:
    /// the entries since, from the tail, or a new snapshot if the tail no
    /// longer holds them.
    fn send_entries_since(&mut self, node: &str, connection: u64, acked: u64) {
        // What was appended before goes out to the others first; this
        // learner's share below covers it, and it streams from the next flush.
        self.flush();
        let last_index = self.state.last.index;
        let first_kept = self.tail.front().map_or(last_index + 1, |(entry, _)| entry.index);
        let message = if acked == last_index {
            None
        } else if acked + 1 >= first_kept {
            let entries = self.tail.iter().filter(|(entry, _)| entry.index > acked).map(|(entry, _)| entry.clone());
            Some(Message::Entries(Arc::new(entries.collect())))
        } else {
            // The tail moved on while it loaded: a newer snapshot, and the
            // stream again once it acks that.
            Some(Message::Snapshot(Box::new(Snapshot { epoch: self.epoch, state: self.state.clone() })))
        };
        if let Some(progress) = self.backups.get_mut(node) {
            progress.streaming = !matches!(message, Some(Message::Snapshot(_)));
            progress.sent = last_index;
        }
        let Some(message) = message else { return };
        self.actions.push(Action::Send { to: node.to_string(), connection, message });
    }

    /// When the entry at `index` was appended, if the tail still holds it.
    fn appended_at(&self, index: u64) -> Option<Instant> {
        let first_kept = self.tail.front()?.0.index;
        let offset = usize::try_from(index.checked_sub(first_kept)?).ok()?;
        self.tail.get(offset).map(|(_, appended)| *appended)
    }

    fn on_tick(&mut self, now: Now) {
        let timed_out: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, progress)| {
                let timeout =
                    if progress.is_learner() { self.settings.learner_timeout } else { self.settings.ack_timeout };
                progress.owing_since.is_some_and(|since| now.instant.duration_since(since) >= timeout)
            })
            .map(|(node, _)| node.clone())
            .collect();
        for node in timed_out {
            self.remove_backup(&node, now);
        }
        for command in self.state.machine.due(self.stamp(now), &self.settings.machine) {
            self.append(Payload::Command(command), now);
        }
    }

    /// Drops a backup's stream and, if it is a member, appends its removal;
    /// returns the removal's index.
    fn remove_backup(&mut self, node: &str, now: Now) -> Option<u64> {
        let progress = self.backups.remove(node);
        if let Some(connection) = progress.as_ref().and_then(|progress| progress.connection) {
            self.actions.push(Action::Disconnect { node: node.to_string(), connection });
        }
        if !self.state.membership.iter().any(|member| member == node) {
            return None;
        }
        // The removal is a new entry, so the backup cannot have acked it.
        // A member this leader never heard from holds no more than what
        // is committed already.
        let acked = progress.as_ref().map_or(self.commit_index, |progress| progress.acked);
        let incarnation = match &progress {
            Some(progress) => Some(progress.incarnation),
            None => self.record.incarnation_of(node),
        };
        let member = incarnation.map(|incarnation| Member { node: node.to_string(), incarnation });
        let (removed_at, _) = self.append(Payload::Remove { node: node.to_string() }, now);
        self.departing.push(Departure { member, removed_at, acked });
        Some(removed_at)
    }

    /// Commits what every backup has acked and releases the replies that
    /// waited for it, in index order.
    fn advance_commit(&mut self) {
        // Learners gate nothing: a joiner, or anyone who merely says Hello,
        // cannot hold up a commit.
        let acked_by_all = self
            .backups
            .values()
            .filter(|progress| !progress.is_learner())
            .map(|progress| progress.acked)
            .min()
            .unwrap_or(u64::MAX);
        let mut committable = acked_by_all.min(self.state.last.index).min(self.persisted_index);
        // A departed member the record still lists gates commits as if
        // present, unless it is back as a member (its own acks gate them).
        let (record, backups) = (&self.record, &self.backups);
        let still_listed = |member: &Member| {
            let rejoined = backups
                .get(&member.node)
                .is_some_and(|progress| !progress.is_learner() && progress.incarnation == member.incarnation);
            record.lists(member) && !rejoined
        };
        self.departing.retain(|departure| {
            committable < departure.removed_at || departure.member.as_ref().is_some_and(still_listed)
        });
        for departure in &self.departing {
            committable = committable.min(departure.acked);
        }
        self.commit_index = self.commit_index.max(committable);
        while self.held.front().is_some_and(|held| held.index <= self.commit_index) {
            if let Some(held) = self.held.pop_front() {
                self.actions.push(Action::Reply { token: held.token, reply: held.reply });
            }
        }
    }

    /// The time to stamp: never earlier than a time already in the log.
    fn stamp(&self, now: Now) -> i64 {
        now.unix_ms.max(self.state.clock_unix_ms)
    }

    /// Sequences and applies one entry, and queues it for the backups.
    fn append(&mut self, payload: Payload<M::Command>, now: Now) -> (u64, Option<M::Output>) {
        let entry = Entry { epoch: self.epoch, index: self.state.last.index + 1, payload };
        let output = self.state.apply(&entry);
        for progress in self.backups.values_mut() {
            progress.owing_since.get_or_insert(now.instant);
        }
        if self.tail.len() == self.settings.tail_capacity
            && let Some((dropped, _)) = self.tail.pop_front()
        {
            self.tail_base = dropped.position();
        }
        self.tail.push_back((entry.clone(), now.instant));
        self.outbox.push(entry);
        (self.state.last.index, output)
    }

    /// Sends the entries appended since the last flush to every connected
    /// backup, as one message shared between them.
    fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let entries = Arc::new(std::mem::take(&mut self.outbox));
        if self.settings.durable {
            self.actions.push(Action::Persist { entries: Arc::clone(&entries) });
        }
        let last_sent = self.state.last.index;
        for (node, progress) in &mut self.backups {
            if let Some(connection) = progress.connection
                && progress.streaming
            {
                progress.sent = last_sent;
                self.actions.push(Action::Send {
                    to: node.clone(),
                    connection,
                    message: Message::Entries(Arc::clone(&entries)),
                });
            }
        }
    }
}
