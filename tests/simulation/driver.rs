//! The fault driver: between two steps of the simulation it injects faults
//! at seeded random times, within the failure model, and heals them; after
//! the bidding it heals everything and waits for the cluster to settle. A
//! node's disk crashes with the node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gavel::replication::Role;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::network::ClientPortLock;
use super::run::{NODE_PORT, Scenario, Shared, locked};

/// A node counts as a healthy member only this long after its last fault
/// was healed (and once seen as a member since): time to notice the heal
/// and rejoin. See [`Driver::healthy`].
const RECOVERY_GAP: Duration = Duration::from_millis(1500);
/// After the bidding, how long the healed cluster has to settle (one leader,
/// every node a member at the same position) before the final read.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(15);
/// At most this many faults that impair server hosts at once.
const MAX_ACTIVE_FAULTS: usize = 2;
/// At an injection, the chance of a full-cluster crash instead of the fault
/// drawn, when the run has one left and no other fault touches a server:
/// about three runs in five get one.
const FULL_CRASH_CHANCE: f64 = 0.2;
/// The first restart after a full-cluster crash comes this soon at the
/// earliest: time for the crash to be a crash of every node at once.
const FIRST_RESTART_AFTER: Duration = Duration::from_millis(50);

/// A fault the driver injects, and undoes later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The node's host crashes: every task dropped, every socket gone, what
    /// was in flight to or from it lost, its disk keeping what it synced
    /// (see [`Driver::crash`]); healing restarts it on that disk.
    Crash(usize),
    /// Every node crashes at once, as [`Fault::Crash`]; they restart one by
    /// one in a random order, at random times within the fault's duration.
    /// Only disks carry the auction over: it is within the failure model
    /// when they sync what they acknowledge.
    CrashAll,
    /// Messages between the two groups of servers are dropped; a TCP
    /// connection that lost a segment never recovers, as if it timed out.
    Partition(Vec<usize>, Vec<usize>),
    /// Messages between the two groups are held and delivered, in order,
    /// when released: a stalled link, or a frozen process as its peers see it.
    Hold(Vec<usize>, Vec<usize>),
    /// A client host cannot reach a server (the leader, when injected).
    ClientPartition { client_host: usize, node: usize },
}

impl Fault {
    /// The server hosts the fault may cost their place in the membership,
    /// with `leader` leading: a crashed node; of a partition or held link,
    /// the side without the leader (the leader drops the backups it cannot
    /// reach, and no one else can take the client port while it holds it),
    /// or both sides when the leader is on neither.
    fn impairs(&self, leader: Option<usize>, nodes: usize) -> Vec<usize> {
        match self {
            Fault::Crash(node) => vec![*node],
            Fault::CrashAll => (0..nodes).collect(),
            Fault::Partition(a, b) | Fault::Hold(a, b) => match leader {
                Some(leader) if a.contains(&leader) => b.clone(),
                Some(leader) if b.contains(&leader) => a.clone(),
                _ => a.iter().chain(b).copied().collect(),
            },
            Fault::ClientPartition { .. } => Vec::new(),
        }
    }

    /// Every server host the fault touches, of `nodes`.
    fn touches(&self, nodes: usize) -> Vec<usize> {
        match self {
            Fault::Crash(node) => vec![*node],
            Fault::CrashAll => (0..nodes).collect(),
            Fault::Partition(a, b) | Fault::Hold(a, b) => a.iter().chain(b).copied().collect(),
            Fault::ClientPartition { .. } => Vec::new(),
        }
    }
}

struct ActiveFault {
    fault: Fault,
    heal_at: Duration,
}

/// Injects and heals the faults of one run, and watches the client port.
pub struct Driver {
    /// The driver's own random numbers: which fault, when, for how long.
    rng: StdRng,
    scenario: Scenario,
    node_names: Vec<String>,
    node_ips: Vec<IpAddr>,
    client_names: Vec<String>,
    /// Every host of the simulation, servers, clients and the observer.
    all_hosts: Vec<String>,
    lock: Arc<ClientPortLock>,
    shared: Arc<Shared>,
    active: Vec<ActiveFault>,
    crashed: BTreeSet<usize>,
    /// When each node's last fault was healed.
    impaired_until: Vec<Duration>,
    next_fault_at: Duration,
    bidding_ends: Duration,
    /// When every fault was healed after the bidding.
    healed_at: Option<Duration>,
    /// What it did, one line per fault or heal, with its time.
    pub events: Vec<String>,
    /// The kind of each fault injected, e.g. "crash leader".
    pub fault_kinds: Vec<String>,
    /// What it found wrong: a lock held by a crashed host, a cluster that
    /// did not settle, a simulation that failed.
    pub violations: Vec<String>,
    /// The next step of the scenario's script to apply.
    next_scripted: usize,
    /// When a partition or held link between servers was last healed.
    last_cut_healed: Option<Duration>,
    /// Full-cluster crashes injected so far.
    full_crashes: usize,
}

impl Driver {
    pub fn new(
        seed: u64,
        scenario: &Scenario,
        node_names: Vec<String>,
        node_ips: Vec<IpAddr>,
        client_names: Vec<String>,
        lock: Arc<ClientPortLock>,
        shared: Arc<Shared>,
    ) -> Self {
        let all_hosts = node_names.iter().chain(&client_names).cloned().chain(["observer".to_string()]).collect();
        Driver {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_d41e_f00d_cafe),
            scenario: scenario.clone(),
            node_names,
            node_ips,
            client_names,
            all_hosts,
            lock,
            shared,
            active: Vec::new(),
            crashed: BTreeSet::new(),
            impaired_until: vec![Duration::ZERO; scenario.nodes],
            next_fault_at: scenario.bidding_starts + Duration::from_millis(200),
            bidding_ends: scenario.bidding_starts + scenario.bidding_for,
            healed_at: None,
            events: Vec::new(),
            fault_kinds: Vec::new(),
            violations: Vec::new(),
            next_scripted: 0,
            last_cut_healed: None,
            full_crashes: 0,
        }
    }

    /// Runs between two steps of the simulation.
    pub fn after_step(&mut self, sim: &mut turmoil::Sim<'_>) {
        let now = sim.elapsed();
        self.check_lock(sim, now);
        // Heal what is due.
        let mut index = 0;
        while index < self.active.len() {
            if self.active[index].heal_at <= now || (now >= self.bidding_ends && self.healed_at.is_none()) {
                let fault = self.active.remove(index).fault;
                self.heal(sim, &fault, now);
            } else {
                index += 1;
            }
        }
        if now >= self.bidding_ends {
            self.settle(now);
            return;
        }
        while let Some(step) = self.scenario.script.get(self.next_scripted)
            && step.at <= now
        {
            let step = step.clone();
            self.next_scripted += 1;
            self.apply(sim, step.fault, step.lasting, now);
        }
        if self.scenario.faults && now >= self.next_fault_at && now >= self.scenario.bidding_starts {
            self.next_fault_at = now + Duration::from_millis(self.rng.random_range(150..700));
            self.inject(sim, now);
        }
    }

    /// The lock must never be held by a crashed host: a crash drops the
    /// host's tasks, and the listener's guard with them.
    fn check_lock(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        if let Some(holder) = self.lock.holder()
            && !sim.is_host_running(holder)
        {
            self.violations.push(format!("{now:?}: the client port is held by {holder}, which is down"));
            self.lock.release_held_by(holder);
        }
    }

    fn log(&mut self, now: Duration, what: String) {
        self.events.push(format!("{:>7.3}s {what}", now.as_secs_f64()));
    }

    fn leader(&self) -> Option<usize> {
        let holder = self.lock.holder()?;
        self.node_ips.iter().position(|ip| *ip == holder)
    }

    fn impaired(&self) -> BTreeSet<usize> {
        let leader = self.leader();
        self.active.iter().flat_map(|active| active.fault.impairs(leader, self.scenario.nodes)).collect()
    }

    /// A node the cluster can count on: not impaired now nor for the last
    /// [`RECOVERY_GAP`], and seen since its last fault as a leader or backup
    /// in the current leader's membership, at the leader's epoch.
    ///
    /// The gap matters: the observer's statuses are up to a probe interval
    /// old, and a leader drops a backup it cannot reach within its ack
    /// timeout; a node that has not been impaired for longer than that
    /// cannot have been dropped for being unreachable.
    fn healthy(&self, node: usize, now: Duration, impaired: &BTreeSet<usize>) -> bool {
        if impaired.contains(&node) || now < self.impaired_until[node] + RECOVERY_GAP {
            return false;
        }
        let Some(leader) = self.leader() else { return false };
        let observed = locked(&self.shared.observed);
        let status_of = |index: usize| {
            observed[index]
                .as_ref()
                .filter(|observation| observation.at >= self.impaired_until[index])
                .and_then(|observation| observation.status.clone())
        };
        let (Some(leader_status), Some(status)) = (status_of(leader), status_of(node)) else { return false };
        let id = format!("{}:{NODE_PORT}", self.node_ips[node]);
        leader_status.role == Role::Leader
            && leader_status.membership.contains(&id)
            && matches!(status.role, Role::Leader | Role::Backup)
            && status.epoch == leader_status.epoch
    }

    /// Whether the failure model still holds once `fault` is added: some
    /// healthy member is left outside everything impaired.
    fn allowed(&self, fault: &Fault, now: Duration) -> bool {
        if fault.touches(self.scenario.nodes).is_empty() {
            return true;
        }
        if *fault == Fault::CrashAll {
            // Beyond "every node but one", and within the model only with
            // disks that sync (the negative control runs it without them).
            // Alone, so that no held message meets the crash.
            return self.active_server_faults() == 0;
        }
        if self.active_server_faults() >= MAX_ACTIVE_FAULTS {
            return false;
        }
        if !self.scenario.leader_crash_while_cut_off
            && *fault == Fault::Crash(self.leader().unwrap_or(usize::MAX))
            && (self.servers_cut_off() || self.last_cut_healed.is_some_and(|healed| now < healed + RECOVERY_GAP))
        {
            return false;
        }
        let mut impaired = self.impaired();
        impaired.extend(fault.impairs(self.leader(), self.scenario.nodes));
        (0..self.scenario.nodes).any(|node| self.healthy(node, now, &impaired))
    }

    /// Whether a partition or held link stands between two servers now.
    fn servers_cut_off(&self) -> bool {
        self.active.iter().any(|active| matches!(active.fault, Fault::Partition(..) | Fault::Hold(..)))
    }

    fn active_server_faults(&self) -> usize {
        self.active.iter().filter(|active| !active.fault.touches(self.scenario.nodes).is_empty()).count()
    }

    fn inject(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        let Some(leader) = self.leader() else { return };
        let nodes = self.scenario.nodes;
        let live: Vec<usize> = (0..nodes).filter(|node| !self.crashed.contains(node)).collect();
        let pick_node = |rng: &mut StdRng| {
            // The leader half the time: its loss is the interesting one.
            if rng.random_bool(0.5) { leader } else { live[rng.random_range(0..live.len())] }
        };
        let full_crash_allowed = self.full_crashes < self.scenario.full_crashes && self.active_server_faults() == 0;
        let fault = if full_crash_allowed && self.rng.random_bool(FULL_CRASH_CHANCE) {
            Fault::CrashAll
        } else {
            match self.rng.random_range(0..100) {
                0..35 => Fault::Crash(pick_node(&mut self.rng)),
                35..60 => {
                    let a = pick_node(&mut self.rng);
                    let others: Vec<usize> = (0..nodes).filter(|node| *node != a).collect();
                    if self.rng.random_bool(0.3) {
                        Fault::Partition(vec![a], others)
                    } else {
                        Fault::Partition(vec![a], vec![others[self.rng.random_range(0..others.len())]])
                    }
                }
                60..85 => {
                    let a = pick_node(&mut self.rng);
                    let others: Vec<usize> = (0..nodes).filter(|node| *node != a).collect();
                    if self.rng.random_bool(0.5) {
                        Fault::Hold(vec![a], others)
                    } else {
                        Fault::Hold(vec![a], vec![others[self.rng.random_range(0..others.len())]])
                    }
                }
                _ => Fault::ClientPartition {
                    client_host: self.rng.random_range(0..self.client_names.len()),
                    node: leader,
                },
            }
        };
        let lasting = Duration::from_millis(match fault {
            Fault::Crash(_) | Fault::CrashAll => self.rng.random_range(100..1500),
            Fault::Partition(..) => self.rng.random_range(100..2000),
            Fault::Hold(..) => self.rng.random_range(50..1200),
            Fault::ClientPartition { .. } => self.rng.random_range(100..1500),
        });
        if self.crashed.contains(&match fault {
            Fault::Crash(node) => node,
            _ => usize::MAX,
        }) || self.overlaps(&fault)
            || !self.allowed(&fault, now)
        {
            return;
        }
        self.apply(sim, fault, lasting, now);
    }

    /// Injects `fault` now, to be healed `lasting` later.
    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, fault: Fault, lasting: Duration, now: Duration) {
        let leader = self.leader().unwrap_or(usize::MAX);
        let role = |node: usize| if node == leader { "leader" } else { "backup" };
        let describe = |group: &[usize]| {
            group
                .iter()
                .map(|node| format!("{}({})", self.node_names[*node], role(*node)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let what = match &fault {
            Fault::Crash(node) => {
                let what = format!("crash {}", describe(&[*node]));
                self.crash(sim, *node);
                what
            }
            Fault::CrashAll => {
                let what = format!("crash all: {}", describe(&(0..self.scenario.nodes).collect::<Vec<_>>()));
                self.crash_all(sim, lasting, now);
                what
            }
            Fault::Partition(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.partition(x, y), sim);
                format!("partition {} | {}", describe(a), describe(b))
            }
            Fault::Hold(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.hold(x, y), sim);
                format!("hold {} | {}", describe(a), describe(b))
            }
            Fault::ClientPartition { client_host, node } => {
                sim.partition(self.client_names[*client_host].as_str(), self.node_names[*node].as_str());
                format!("partition {} | {}", self.client_names[*client_host], describe(&[*node]))
            }
        };
        let kind = match &fault {
            Fault::Crash(node) => format!("crash {}", role(*node)),
            Fault::CrashAll => "crash all".to_string(),
            Fault::Partition(a, b) | Fault::Hold(a, b) => {
                let verb = if matches!(fault, Fault::Partition(..)) { "partition" } else { "hold" };
                if b.len() > 1 {
                    format!("{verb} {} from all", role(a[0]))
                } else {
                    let mut roles = [role(a[0]), role(b[0])];
                    roles.sort();
                    format!("{verb} {}|{}", roles[0], roles[1])
                }
            }
            Fault::ClientPartition { .. } => "partition client|leader".to_string(),
        };
        self.fault_kinds.push(kind);
        if fault == Fault::CrashAll {
            // Healed node by node: see `crash_all`.
            self.log(now, format!("{what}, restarting within {lasting:?}"));
            return;
        }
        self.log(now, format!("{what} for {lasting:?}"));
        self.active.push(ActiveFault { fault, heal_at: now + lasting });
    }

    /// Crashes every node at once, then restarts each at its own random
    /// time within `lasting`: one crash fault per node, healed as any other.
    fn crash_all(&mut self, sim: &mut turmoil::Sim<'_>, lasting: Duration, now: Duration) {
        self.full_crashes += 1;
        let first_restart = FIRST_RESTART_AFTER.min(lasting);
        for node in 0..self.scenario.nodes {
            if self.crashed.contains(&node) {
                continue;
            }
            self.crash(sim, node);
            let restart_after = self.rng.random_range(first_restart..=lasting);
            self.active.push(ActiveFault { fault: Fault::Crash(node), heal_at: now + restart_after });
        }
    }

    /// Crashes `node` with its links cut, so what its sockets send as they
    /// close is lost, and the peers find out by their timeouts or by a
    /// reset when they next send to it: a crashed host, seen from outside.
    /// Its disk crashes with it: what it did not sync is lost, and its last
    /// write may be torn. The node restarts on what is left.
    ///
    /// Why not let the closing sockets send their FIN and RST: tokio drops a
    /// crashed runtime's tasks in an order that depends on their task ids,
    /// which are global to the test process, so the order of those messages,
    /// and with it every later random latency, would differ between two runs
    /// of one seed. Dropped messages draw no random number.
    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, node: usize) {
        let name = self.node_names[node].clone();
        let cut: Vec<String> = self
            .all_hosts
            .iter()
            .filter(|other| **other != name && !self.link_faulted(&name, other))
            .cloned()
            .collect();
        for other in &cut {
            sim.partition(name.as_str(), other.as_str());
        }
        sim.crash(name.as_str());
        self.shared.disks[node].crash(&mut self.rng);
        for other in &cut {
            sim.repair(name.as_str(), other.as_str());
        }
        self.crashed.insert(node);
    }

    /// Whether an active fault holds or cuts the link between two hosts.
    fn link_faulted(&self, x: &str, y: &str) -> bool {
        let link = if x < y { (x.to_string(), y.to_string()) } else { (y.to_string(), x.to_string()) };
        self.active.iter().any(|active| self.links(&active.fault).contains(&link))
    }

    fn links(&self, fault: &Fault) -> Vec<(String, String)> {
        match fault {
            Fault::Crash(_) | Fault::CrashAll => Vec::new(),
            Fault::Partition(a, b) | Fault::Hold(a, b) => {
                let mut links = Vec::new();
                for x in a {
                    for y in b {
                        let (x, y) = (self.node_names[*x].clone(), self.node_names[*y].clone());
                        links.push(if x < y { (x, y) } else { (y, x) });
                    }
                }
                links
            }
            Fault::ClientPartition { client_host, node } => {
                let (x, y) = (self.client_names[*client_host].clone(), self.node_names[*node].clone());
                vec![if x < y { (x, y) } else { (y, x) }]
            }
        }
    }

    /// Two faults on the same link would heal each other early.
    ///
    /// A crash must not meet held messages either: released at once, they
    /// would be delivered in the order the crash closed the sockets.
    fn overlaps(&self, fault: &Fault) -> bool {
        if *fault == Fault::CrashAll {
            // `allowed` lets it in only when nothing else touches a server.
            return false;
        }
        if let Fault::Crash(node) = fault {
            return self.active.iter().any(|active| match &active.fault {
                Fault::Hold(a, b) => a.contains(node) || b.contains(node),
                _ => false,
            });
        }
        let new_links = self.links(fault);
        self.active.iter().any(|active| self.links(&active.fault).iter().any(|link| new_links.contains(link)))
    }

    fn for_pairs(
        &self,
        a: &[usize],
        b: &[usize],
        mut apply: impl FnMut(&mut turmoil::Sim<'_>, &str, &str),
        sim: &mut turmoil::Sim<'_>,
    ) {
        for x in a {
            for y in b {
                apply(sim, self.node_names[*x].as_str(), self.node_names[*y].as_str());
            }
        }
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
        let what = match fault {
            Fault::Crash(node) => {
                sim.bounce(self.node_names[*node].as_str());
                self.crashed.remove(node);
                format!("heal: restart {}", self.node_names[*node])
            }
            Fault::CrashAll => unreachable!("a full-cluster crash is healed node by node"),
            Fault::Partition(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.repair(x, y), sim);
                format!("heal: repair {:?} | {:?}", self.names(a), self.names(b))
            }
            Fault::Hold(a, b) => {
                self.for_pairs(a, b, |sim, x, y| sim.release(x, y), sim);
                format!("heal: release {:?} | {:?}", self.names(a), self.names(b))
            }
            Fault::ClientPartition { client_host, node } => {
                sim.repair(self.client_names[*client_host].as_str(), self.node_names[*node].as_str());
                format!("heal: repair {} | {}", self.client_names[*client_host], self.node_names[*node])
            }
        };
        if matches!(fault, Fault::Partition(..) | Fault::Hold(..)) {
            self.last_cut_healed = Some(now);
        }
        for node in fault.touches(self.scenario.nodes) {
            self.impaired_until[node] = now;
        }
        self.log(now, what);
    }

    fn names(&self, group: &[usize]) -> Vec<String> {
        group.iter().map(|node| self.node_names[*node].clone()).collect()
    }

    /// After the bidding: once every node is a member of one leader at the
    /// same log position, let the final read go.
    fn settle(&mut self, now: Duration) {
        if self.shared.healed.load(Ordering::Relaxed) {
            return;
        }
        let healed_at = *self.healed_at.get_or_insert(now);
        let settled = self.leader().is_some_and(|leader| {
            let observed = locked(&self.shared.observed);
            let status_of = |index: usize| {
                observed[index]
                    .as_ref()
                    .filter(|observation| observation.at > healed_at)
                    .and_then(|observation| observation.status.clone())
            };
            let Some(leader_status) = status_of(leader).filter(|status| status.role == Role::Leader) else {
                return false;
            };
            (0..self.scenario.nodes).all(|node| {
                let id = format!("{}:{NODE_PORT}", self.node_ips[node]);
                status_of(node).is_some_and(|status| {
                    matches!(status.role, Role::Leader | Role::Backup)
                        && status.epoch == leader_status.epoch
                        && status.last == leader_status.last
                        && leader_status.membership.contains(&id)
                })
            })
        });
        if settled {
            self.log(now, "settled: one leader, every node a member at the same position".into());
            self.shared.healed.store(true, Ordering::Relaxed);
        } else if now >= healed_at + SETTLE_DEADLINE {
            let statuses: Vec<String> = locked(&self.shared.observed)
                .iter()
                .enumerate()
                .map(|(index, observation)| match observation.as_ref().and_then(|o| o.status.as_ref()) {
                    Some(status) => format!(
                        "{}: {:?} epoch {} last {}/{} members {:?}",
                        self.node_names[index],
                        status.role,
                        status.epoch,
                        status.last.epoch,
                        status.last.index,
                        status.membership
                    ),
                    None => format!("{}: no answer", self.node_names[index]),
                })
                .collect();
            self.violations
                .push(format!("the healed cluster did not settle within {SETTLE_DEADLINE:?}: {}", statuses.join("; ")));
            self.log(now, "not settled; reading anyway".into());
            self.shared.healed.store(true, Ordering::Relaxed);
        }
    }
}
