//! Cross-checks of the search against the brute-force checker on small
//! random histories.

use super::*;

#[test]
fn small_random_histories_agree_with_brute_force() {
    let mut rng = Lcg(7);
    let (mut agreed_good, mut agreed_bad) = (0, 0);
    for seed in 0..2_000 {
        let simulated = simulate(&Simulation {
            seed,
            operations: 2 + (seed % 6) as usize,
            clients: 3,
            give_up_one_in: 6,
            max_in_doubt: 2,
            min_tick: 0,
            tiny_domain: true,
            outages: None,
        });
        let mut h = simulated.history;
        // Half the time, corrupt one answer; some corruptions are still explainable.
        if seed % 2 == 1 {
            let answered: Vec<usize> =
                (0..h.operations.len()).filter(|i| h.operations[*i].answered_at().is_some()).collect();
            if !answered.is_empty() {
                let target = answered[rng.below(answered.len() as u64) as usize];
                let choice = rng.below(4);
                match &mut h.operations[target].outcome {
                    Outcome::Result { highest_amount, highest_bidder, accepted_bids } => match choice {
                        0 => *highest_amount += 10,
                        1 => *highest_amount = highest_amount.saturating_sub(10),
                        2 => *accepted_bids += 1,
                        _ => *highest_bidder = if highest_bidder == "a" { "b" } else { "a" }.into(),
                    },
                    Outcome::Bid { verdict, highest_amount, highest_bidder } => match choice {
                        0 => *verdict = BidVerdict::Fail,
                        1 => *verdict = BidVerdict::Success,
                        2 => *highest_amount += 10,
                        _ => *highest_bidder = if highest_bidder == "a" { "b" } else { "a" }.into(),
                    },
                    Outcome::Unknown => {}
                }
            }
        }
        // Sometimes start from an auction that already has bids (the simulation does
        // not know, so some of those histories are wrong, which is fine here).
        let initial = if seed % 3 == 0 { state(20, "b", 5) } else { empty() };
        let expected = brute_force_linearizable(&h, &initial);
        match check_linearizable(&h, &initial) {
            Verdict::Linearizable { order } => {
                assert!(expected, "seed {seed}: checker accepted, brute force did not: {h:?}");
                assert_valid_order(&h, &initial, &order);
                agreed_good += 1;
            }
            Verdict::Violation(violation) => {
                assert!(!expected, "seed {seed}: checker rejected ({}): {h:?}", violation.message);
                agreed_bad += 1;
            }
            Verdict::Inconclusive { .. } => {
                panic!("seed {seed}: inconclusive on a tiny history")
            }
        }
    }
    // Both answers must actually be exercised.
    assert!(agreed_good > 200 && agreed_bad > 50, "{agreed_good} good, {agreed_bad} bad");
}
