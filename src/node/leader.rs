//! The leader's event loop: feeds client calls and backup events to the
//! replication core and performs its actions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::auction::{DEFAULT_AUCTION, OpenAuction};
use crate::replication::{
    Action, Event, Leader, LeaderSettings, Message, NodeId, Now, ReplicatedState, Reply, Role, epoch_number,
};
use crate::transport::{self, Incoming};

use super::NodeConfig;
use super::backend::{LeaderHandle, LeaderInput, Shared};

/// Inputs handled before the actions are performed: batching them lets
/// many bids share one message to each backup.
const MAX_INPUTS_PER_ROUND: usize = 1024;
/// How often the leader checks ack timeouts and deadlines.
const TICK_INTERVAL: Duration = Duration::from_millis(10);

/// What the node brings to its leadership.
pub(super) struct Start {
    /// The highest epoch seen.
    pub epoch: u64,
    /// Empty when the node bootstraps a new cluster.
    pub state: ReplicatedState,
    pub lost_leader: Option<NodeId>,
    /// The members that answered the takeover probe: the backups to expect.
    pub live_backups: Vec<NodeId>,
}

/// Leads until shutdown. The client port is already bound: holding it is
/// what makes this node the leader.
pub(super) async fn lead(
    shared: &Arc<Shared>,
    config: &NodeConfig,
    start: Start,
    client_listener: Incoming,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let now = shared.network().now();
    let settings = LeaderSettings { ack_timeout: config.ack_timeout, ..LeaderSettings::default() };
    let mut leader = if start.state.last.index == 0 {
        let nonce = shared.network().random() as u32;
        let mut leader = Leader::bootstrap(shared.id().to_string(), settings, now, nonce);
        let ends_at_unix_ms = now.unix_ms + config.auction_duration.as_millis() as i64;
        leader.handle(
            Event::Open(OpenAuction {
                auction_id: DEFAULT_AUCTION.to_string(),
                description: "the default auction".to_string(),
                minimum_amount: 1,
                ends_at_unix_ms,
                at_unix_ms: now.unix_ms,
            }),
            now,
        );
        info!(epoch = epoch_number(leader.epoch()), client_port = %config.client_address, "bootstrapped a new cluster; became leader");
        leader
    } else {
        let mut state = start.state;
        // Only the members that answered are waited for; the others rejoin
        // later, as new backups, if they are alive after all.
        let lost = start.lost_leader.clone().unwrap_or_default();
        state
            .membership
            .retain(|member| member == shared.id() || (member != &lost && start.live_backups.contains(member)));
        let nonce = shared.network().random() as u32;
        let leader = Leader::take_over(shared.id().to_string(), start.epoch, state, &lost, settings, now, nonce);
        info!(
            epoch = epoch_number(leader.epoch()),
            client_port = %config.client_address,
            lost_leader = %lost,
            expecting = ?start.live_backups,
            "took over; became leader"
        );
        leader
    };

    let (inputs, mut input_receiver) = mpsc::unbounded_channel();
    shared.set_leader(Some(LeaderHandle { inputs, epoch: leader.epoch() }));
    shared.set_status(Role::Leader, leader.epoch(), Some(shared.id()), leader.state());
    let client_server =
        tokio::spawn(transport::serve(Arc::clone(shared), client_listener, config.transport(), shutdown.clone()));

    let mut driver = Driver { replies: HashMap::new(), streams: HashMap::new(), next_token: 0 };
    driver.perform(leader.take_actions());
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Biased, so that a simulation replays exactly; shutdown first.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let open_before = open_auctions(&leader);
                leader.handle(Event::Tick, shared.network().now());
                log_closed_auctions(&leader, &open_before);
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
        driver.perform(leader.take_actions());
    }
    shared.set_leader(None);
    let _ = client_server.await;
    Ok(())
}

fn open_auctions(leader: &Leader) -> Vec<String> {
    leader
        .state()
        .book
        .auctions
        .values()
        .filter(|auction| !auction.closed)
        .map(|auction| auction.auction_id.clone())
        .collect()
}

/// Logs the auctions among `were_open` that the last tick closed.
fn log_closed_auctions(leader: &Leader, were_open: &[String]) {
    let auctions = &leader.state().book.auctions;
    let closed = were_open.iter().filter_map(|id| auctions.get(id)).filter(|auction| auction.closed);
    for auction in closed {
        info!(
            auction = %auction.auction_id,
            winner = %auction.highest_bidder,
            amount = auction.highest_amount,
            "auction over"
        );
    }
}

/// The leader loop's bookkeeping of replies and backup streams.
struct Driver {
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    streams: HashMap<NodeId, (u64, mpsc::UnboundedSender<Message>)>,
    next_token: u64,
}

impl Driver {
    fn handle(&mut self, leader: &mut Leader, input: LeaderInput, now: Now) {
        let event = match input {
            LeaderInput::Bid { bid, reply } => Event::Bid { token: self.hold(reply), bid },
            LeaderInput::Read { auction_id, reply } => Event::Read { token: self.hold(reply), auction_id },
            LeaderInput::BackupConnected { node, connection, last, messages } => {
                info!(backup = %node, last_index = last.index, "backup connected");
                self.streams.insert(node.clone(), (connection, messages));
                Event::BackupConnected { node, connection, last }
            }
            LeaderInput::Ack { node, connection, index } => Event::Ack { node, connection, index },
            LeaderInput::BackupLost { node, connection } => Event::BackupLost { node, connection },
        };
        leader.handle(event, now);
    }

    fn hold(&mut self, reply: oneshot::Sender<Reply>) -> u64 {
        self.next_token += 1;
        self.replies.insert(self.next_token, reply);
        self.next_token
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, connection, message } => {
                    if let Some((current, stream)) = self.streams.get(&to)
                        && *current == connection
                    {
                        // A closed stream shows up as the backup's loss.
                        let _ = stream.send(message);
                    }
                }
                Action::Reply { token, reply } => match self.replies.remove(&token) {
                    // The client may have gone; its answer stays in the log.
                    Some(sender) => {
                        let _ = sender.send(reply);
                    }
                    None => error!(token, "reply for an unknown request"),
                },
                Action::Disconnect { node, connection } => {
                    if self.streams.get(&node).is_some_and(|(current, _)| *current == connection) {
                        self.streams.remove(&node);
                        info!(backup = %node, "backup removed");
                    }
                }
            }
        }
    }
}
