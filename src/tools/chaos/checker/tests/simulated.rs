//! Simulated runs: histories linearizable by construction, from a real
//! sequential execution spread over concurrent clients.

use super::*;

/// Deterministic pseudo-random numbers (Knuth's MMIX LCG), so failures reproduce.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

pub(super) struct Simulation {
    pub(super) seed: u64,
    pub(super) operations: usize,
    pub(super) clients: usize,
    /// Each step of an operation in flight gives up with probability 1/this.
    pub(super) give_up_one_in: u64,
    pub(super) max_in_doubt: usize,
    /// Smallest clock advance per event; 0 makes events share timestamps.
    pub(super) min_tick: u64,
    /// Amounts from {10, 20, 30, 40} and two bidders, so tiny histories collide often.
    pub(super) tiny_domain: bool,
    /// Every `.0` microseconds the servers are down for `.1`: clients give up on what
    /// they have in flight far more often, as when a primary crashes.
    pub(super) outages: Option<(u64, u64)>,
}

pub(super) struct Simulated {
    pub(super) history: History,
    pub(super) final_state: ModelState,
    /// For each bid that took effect, the state just before it did.
    pub(super) state_before: HashMap<u64, ModelState>,
}

/// A real sequential execution spread over concurrent clients: each operation takes
/// effect at one instant strictly inside [invocation, completion], so the history is
/// linearizable by construction. Clients give up on some operations (Unknown), whose
/// effect happened already, happens later, or never.
pub(super) fn simulate(config: &Simulation) -> Simulated {
    let names: &[&str] = if config.tiny_domain { &["a", "b"] } else { &["alice", "bob", "carol", "dave", "erin"] };
    let mut rng = Lcg(config.seed);
    let mut current = ModelState::default();
    let mut operations: Vec<Operation> = Vec::new();
    // Per client: the operation in flight and whether it has taken effect.
    let mut in_flight: Vec<Option<(usize, bool)>> = vec![None; config.clients];
    let mut delayed_effects: Vec<(u64, usize)> = Vec::new();
    let mut state_before = HashMap::new();
    let mut in_doubt = 0;
    let mut now = 0;

    let take_effect =
        |current: &mut ModelState, state_before: &mut HashMap<u64, ModelState>, operation: &Operation| -> Outcome {
            match &operation.kind {
                OperationKind::Bid { bidder, amount } => {
                    let succeeds = *amount > current.highest_amount;
                    if succeeds {
                        state_before.insert(operation.id, current.clone());
                        *current = ModelState {
                            highest_amount: *amount,
                            highest_bidder: bidder.clone(),
                            accepted_bids: current.accepted_bids + 1,
                        };
                    }
                    Outcome::Bid {
                        verdict: if succeeds { BidVerdict::Success } else { BidVerdict::Fail },
                        highest_amount: current.highest_amount,
                        highest_bidder: current.highest_bidder.clone(),
                    }
                }
                OperationKind::Result => Outcome::Result {
                    highest_amount: current.highest_amount,
                    highest_bidder: current.highest_bidder.clone(),
                    accepted_bids: current.accepted_bids,
                },
            }
        };

    while operations.len() < config.operations || in_flight.iter().any(Option::is_some) {
        now += config.min_tick + rng.below(3);
        let mut index = 0;
        while index < delayed_effects.len() {
            if delayed_effects[index].0 <= now {
                let (_, op) = delayed_effects.swap_remove(index);
                take_effect(&mut current, &mut state_before, &operations[op]);
            } else {
                index += 1;
            }
        }

        let client = rng.below(config.clients as u64) as usize;
        match in_flight[client] {
            None => {
                if operations.len() >= config.operations {
                    continue;
                }
                let kind = if rng.below(10) < 3 {
                    OperationKind::Result
                } else {
                    let amount = if config.tiny_domain {
                        10 * (1 + rng.below(4))
                    } else {
                        (current.highest_amount + rng.below(150)).saturating_sub(50).max(1)
                    };
                    OperationKind::Bid { bidder: names[rng.below(names.len() as u64) as usize].to_string(), amount }
                };
                in_flight[client] = Some((operations.len(), false));
                operations.push(Operation {
                    id: operations.len() as u64,
                    client: client as u32,
                    kind,
                    invoked_us: now,
                    completed_us: None,
                    outcome: Outcome::Unknown,
                });
            }
            Some((op, taken_effect)) => {
                let down = config.outages.is_some_and(|(every, length)| now % every < length);
                let give_up_one_in = if down { 4 } else { config.give_up_one_in };
                if in_doubt < config.max_in_doubt && rng.below(give_up_one_in) == 0 {
                    in_doubt += 1;
                    operations[op].outcome = Outcome::Unknown;
                    let is_bid = matches!(operations[op].kind, OperationKind::Bid { .. });
                    if !taken_effect && is_bid && rng.below(2) == 0 {
                        delayed_effects.push((now + 1 + rng.below(3_000), op));
                    }
                    in_flight[client] = None;
                } else if !taken_effect {
                    let outcome = take_effect(&mut current, &mut state_before, &operations[op]);
                    operations[op].outcome = outcome;
                    in_flight[client] = Some((op, true));
                } else {
                    operations[op].completed_us = Some(now);
                    in_flight[client] = None;
                }
            }
        }
    }
    for (_, op) in delayed_effects {
        take_effect(&mut current, &mut state_before, &operations[op]);
    }
    Simulated { history: History { operations }, final_state: current, state_before }
}
