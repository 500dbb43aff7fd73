//! The log through crashes and failing disks: whatever was synced survives,
//! and what comes back is always a prefix of what was appended.

use rand::SeedableRng;

use super::*;

/// Checks that the records recovered are `expected[..n]` for some `n` of at
/// least `synced`, and returns `n`.
fn check_prefix(seed: u64, recovered: &[(u64, Vec<u8>)], expected: &[Vec<u8>], synced: usize) -> usize {
    assert!(recovered.len() >= synced, "seed {seed}: {} records recovered but {synced} were synced", recovered.len());
    assert!(recovered.len() <= expected.len(), "seed {seed}: more records recovered than appended");
    for (position, (index, payload)) in recovered.iter().enumerate() {
        assert_eq!(*index, position as u64 + 1, "seed {seed}: indices are contiguous from 1");
        assert_eq!(payload, &expected[position], "seed {seed}: record {index} is what was appended");
    }
    recovered.len()
}

#[test]
fn a_crash_after_sync_loses_nothing_synced() {
    let (sim, disk) = sim_disk();
    let mut rng = StdRng::seed_from_u64(1);
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let synced = append_records(&mut wal, 50, &mut rng);
    wal.sync().unwrap();
    append_records(&mut wal, 3, &mut rng);
    drop(wal);

    sim.crash_losing_unsynced();
    let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, synced);
}

/// Rounds of appends, syncs and truncations, each ended by a crash that may
/// tear the last write anywhere (or zero it): every round recovers a prefix of
/// what was appended that holds everything synced.
#[test]
fn crashes_recover_a_prefix_holding_every_synced_record() {
    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (sim, disk) = sim_disk();
        let options = WalOptions { segment_bytes: rng.random_range(200..2_000) };
        // expected[i] is the payload of index i + 1.
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        for _round in 0..6 {
            let (mut wal, recovered) = open_collecting(&disk, &data_dir(), options.clone())
                .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
            let kept = check_prefix(seed, &recovered, &expected, synced);
            // What was recovered is durable now, the rest is gone.
            expected.truncate(kept);
            synced = kept;

            for _operation in 0..rng.random_range(1..8) {
                match rng.random_range(0..10) {
                    0 if !expected.is_empty() => {
                        let from = rng.random_range(1..=expected.len() as u64);
                        wal.truncate_from(from).unwrap();
                        expected.truncate(from as usize - 1);
                        synced = synced.min(expected.len());
                    }
                    1..=3 => {
                        wal.sync().unwrap();
                        synced = expected.len();
                    }
                    _ => {
                        let count = rng.random_range(1..20);
                        let appended = append_records(&mut wal, count, &mut rng);
                        expected.extend(appended.into_iter().map(|(_, payload)| payload));
                    }
                }
            }
            drop(wal);
            sim.crash(&mut rng);
        }
    }
}

/// A disk that fills up after a random number of writes: the log fails and
/// refuses more, and a crash after that still keeps every synced record.
#[test]
fn a_failing_disk_never_loses_synced_records() {
    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (sim, disk) = sim_disk();
        let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
        sim.fail_writes_after(rng.random_range(0..60));
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        let failure = loop {
            let result = if rng.random_bool(0.3) {
                wal.sync().map(|()| synced = expected.len())
            } else {
                let index = expected.len() as u64 + 1;
                let payload = payload(index, &mut rng);
                // A record whose append failed may still have reached the disk.
                expected.push(payload.clone());
                wal.append(index, &payload)
            };
            if let Err(error) = result {
                break error;
            }
        };
        assert!(matches!(failure, StorageError::Io { .. }), "seed {seed}: {failure}");
        let index = expected.len() as u64 + 1;
        assert!(matches!(wal.append(index, b"more"), Err(StorageError::Poisoned)), "seed {seed}");
        drop(wal);

        sim.crash(&mut rng);
        sim.fail_writes(false);
        let (_, recovered) = open_collecting(&disk, &data_dir(), small_segments())
            .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        check_prefix(seed, &recovered, &expected, synced);
    }
}
