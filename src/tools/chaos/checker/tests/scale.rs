//! Scale: a large simulated run, the search budget, and bursts of lost bids.

use super::*;

fn large_run() -> Simulated {
    simulate(&Simulation {
        seed: 2024,
        operations: 20_000,
        clients: 8,
        give_up_one_in: 500,
        max_in_doubt: 40,
        min_tick: 1,
        tiny_domain: false,
        outages: Some((25_000, 200)),
    })
}

#[test]
fn large_random_history_passes_and_one_tampered_read_is_rejected() {
    let simulated = large_run();
    let h = &simulated.history;
    let summary = h.summary();
    assert_eq!(summary.total(), 20_000);
    assert!(summary.unknown >= 20, "{summary}");
    assert!(summary.success > 1_000 && summary.fail > 1_000, "{summary}");

    let started = Instant::now();
    let order = expect_order(check_linearizable(h, &empty()));
    let good_time = started.elapsed();
    assert_valid_order(h, &empty(), &order);
    assert_eq!(check_durability(h, &empty(), &simulated.final_state), Ok(()));
    assert_eq!(check_exactly_once(h, &empty(), &simulated.final_state), Ok(()));

    // Tamper with a read half way through: make it return the state from just before
    // the last SUCCESS bid that finished before the read started, which it must see.
    let mut tampered = h.clone();
    let read_index = (h.operations.len() / 2..h.operations.len())
        .find(|i| matches!(h.operations[*i].outcome, Outcome::Result { .. }))
        .expect("some read in the second half");
    let read_invoked = h.operations[read_index].invoked_us;
    let overtaken = h
        .operations
        .iter()
        .filter(|op| {
            matches!(op.outcome, Outcome::Bid { verdict: BidVerdict::Success, .. })
                && op.answered_at().is_some_and(|t| t < read_invoked)
        })
        .max_by_key(|op| op.answered_at())
        .expect("some SUCCESS before the read");
    let stale = &simulated.state_before[&overtaken.id];
    tampered.operations[read_index].outcome = Outcome::Result {
        highest_amount: stale.highest_amount,
        highest_bidder: stale.highest_bidder.clone(),
        accepted_bids: stale.accepted_bids,
    };
    let tampered_id = h.operations[read_index].id;

    let started = Instant::now();
    let violation = expect_violation(check_linearizable(&tampered, &empty()));
    let bad_time = started.elapsed();
    assert!(violation.message.starts_with(&format!("read at op {tampered_id} ")), "{}", violation.message);
    assert!(violation.operations.contains(&tampered_id));
    assert!(violation.operations.len() <= 1 + MAX_LISTED + IN_DOUBT_LISTED + PREDECESSORS_LISTED);
    eprintln!("{summary}");
    eprintln!("good history of 20,000 operations checked in {good_time:?}");
    eprintln!("tampered history rejected in {bad_time:?}");
    eprintln!("{}\n{}", violation.message, render_violation(&tampered, &violation));
}

#[test]
fn small_budget_gives_inconclusive() {
    let simulated = large_run();
    assert_eq!(
        check_linearizable_with_budget(&simulated.history, &empty(), 1_000),
        Verdict::Inconclusive { explored: 1_000 }
    );
}

#[test]
fn burst_of_lost_bids_above_everything_stays_cheap() {
    // Bids that timed out and never took effect, far above anything bid later: each
    // can "take effect" at any point, and chains of them could be tried at every
    // point. The search prunes them because a later answer needs a lower highest.
    let mut h = large_run().history;
    let good_steps = search(&Prepared::new(&h, &empty()), DEFAULT_SEARCH_BUDGET).1;
    let mut rng = Lcg(99);
    let mut next_id = h.operations.len() as u64;
    for burst in 1..=4u64 {
        let invoked = h.operations[h.operations.len() * burst as usize / 5].invoked_us;
        for client in 0..8 {
            let amount = 1_000_000_000 + rng.below(1_000);
            h.operations.push(in_doubt_bid(next_id, 100 + client, "mallory", amount, invoked + u64::from(client)));
            next_id += 1;
        }
    }
    let started = Instant::now();
    let (end, steps) = search(&Prepared::new(&h, &empty()), DEFAULT_SEARCH_BUDGET);
    assert!(matches!(end, SearchEnd::Found(_)));
    // Stepping over the 32 pruned bids at each point is the only extra work.
    assert!(steps < good_steps * 10, "{steps} steps against {good_steps} without the burst");
    eprintln!("with 32 lost bids: {steps} steps (against {good_steps}) in {:?}", started.elapsed());
}
