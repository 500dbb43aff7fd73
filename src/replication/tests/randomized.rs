//! Randomized schedules: seeded random bids, acks and lost backups keep the
//! replicas equal and every acknowledged bid safe.

use super::*;

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
