//! Determinism: replicas applying the same commands reach the same book.

use super::*;

/// A small deterministic generator, so the sequence is the same on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A mixed sequence of opens, bids (good, low, late, malformed, retried,
/// anonymous) and closes over three auctions, with the clock moving forward.
fn command_sequence(seed: u64, length: usize) -> Vec<Command> {
    let mut random = SplitMix64(seed);
    let auctions = ["", DEFAULT_AUCTION, "vase", "clock", "missing"];
    let bidders = ["alice", "bob", "carol", "", "bad\nname"];
    let clients = ["", "client-1", "client-2", "client-3"];
    let mut commands =
        vec![open_command(DEFAULT_AUCTION, 1, ENDS_AT_MS), open_command("vase", 100, ENDS_AT_MS + 30_000)];
    let mut now = OPENED_AT_MS;
    let mut request_ids = [0_u64; 4];
    for _ in 0..length {
        now += random.below(1_000) as i64;
        let command = match random.below(20) {
            0 => open_command("clock", random.below(50), now + random.below(60_000) as i64),
            1 => close_command(auctions[random.below(5) as usize], now),
            _ => {
                let client = random.below(clients.len() as u64) as usize;
                // Mostly a new request; sometimes a retry of an earlier one.
                if random.below(4) != 0 {
                    request_ids[client] += 1;
                }
                let request_id = request_ids[client].saturating_sub(random.below(12));
                Command::Bid(Bid {
                    name_digest: None,
                    auction_id: auctions[random.below(5) as usize].to_string(),
                    bidder: bidders[random.below(5) as usize].to_string(),
                    amount: random.below(400),
                    client_id: clients[client].to_string(),
                    request_id,
                    at_unix_ms: now,
                })
            }
        };
        commands.push(command);
    }
    commands
}

#[test]
fn the_same_commands_applied_to_two_books_give_equal_books_and_outcomes() {
    for seed in 0..20 {
        let commands = command_sequence(seed, 300);
        let mut replica_a = AuctionBook::default();
        let mut replica_b = AuctionBook::default();

        for command in &commands {
            let applied_a = replica_a.apply(command);
            let applied_b = replica_b.apply(command);
            assert_eq!(applied_a, applied_b, "seed {seed}, command {command:?}");
        }

        assert_eq!(replica_a, replica_b, "seed {seed}");
        // A backup that starts from a copy of the state part-way through and
        // applies the rest reaches the same book as well.
        let mut late_replica = AuctionBook::default();
        let (head, tail) = commands.split_at(commands.len() / 2);
        for command in head {
            late_replica.apply(command);
        }
        let mut from_snapshot = late_replica.clone();
        for command in tail {
            from_snapshot.apply(command);
        }
        assert_eq!(from_snapshot, replica_a, "seed {seed}");
    }
}

#[test]
fn random_command_sequences_keep_the_auction_invariants() {
    for seed in 100..120 {
        let mut book = AuctionBook::default();
        for command in command_sequence(seed, 300) {
            let previous = book.clone();
            let applied = book.apply(&command);

            if let (Command::Bid(bid), Applied::Bid(outcome)) = (&command, &applied) {
                let auction_id = resolve_auction_id(&bid.auction_id);
                let changed = book.auctions != previous.auctions;
                // Only a first-time success changes an auction; a retry
                // answered from memory changes nothing at all.
                let retried = previous.remembered(&bid.client_id, bid.request_id).is_some();
                assert_eq!(
                    changed,
                    outcome.verdict == Verdict::Success && !retried,
                    "seed {seed}, {bid:?} -> {outcome:?}"
                );
                if changed {
                    let before = &previous.auctions[auction_id];
                    let after = &book.auctions[auction_id];
                    assert!(bid.amount > before.highest_amount);
                    assert!(bid.amount >= before.minimum_amount);
                    assert!(!before.is_over(bid.at_unix_ms));
                    assert_eq!(after.accepted_bids, before.accepted_bids + 1);
                }
                if retried {
                    assert_eq!(book, previous, "seed {seed}: a retry changed the book");
                }
            }

            for auction in book.auctions.values() {
                // The highest bid is the best of the registered bidders' bests.
                let best = auction.bidders.values().copied().max().unwrap_or(0);
                assert_eq!(auction.highest_amount, best, "seed {seed}");
                if best > 0 {
                    assert_eq!(auction.bidders[&auction.highest_bidder], best, "seed {seed}");
                }
                assert!(auction.accepted_bids >= auction.bidders.len() as u64, "seed {seed}");
            }
            for (_, session) in book.sessions() {
                assert!(session.outcomes.len() <= REMEMBERED_PER_CLIENT, "seed {seed}");
            }
        }
    }
}
