//! The group-commit writer: batching under concurrent appends, a frozen
//! durable index after a failure, requests applied in order.

use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::{Mutex, watch};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// Waits until the published value satisfies `condition`, or fails the test.
async fn wait_for(persisted: &mut watch::Receiver<Persisted>, condition: impl FnMut(&Persisted) -> bool) -> Persisted {
    let outcome = tokio::time::timeout(DEADLINE, persisted.wait_for(condition))
        .await
        .map(|found| found.map(|value| value.clone()));
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(_)) => panic!("the writer stopped"),
        Err(_) => panic!("not published in time: {:?}", *persisted.borrow()),
    }
}

fn open_wal(disk: &Arc<dyn Disk>, options: WalOptions) -> Wal {
    open_collecting(disk, &data_dir(), options).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_queued_behind_a_slow_sync_rides_the_next_one() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();

    // The first record's sync is held, as on a slow disk...
    sim.hold_syncs(true);
    handle.append(vec![(1, b"first".to_vec())]).unwrap();
    assert!(sim.wait_for_held_sync(DEADLINE), "the writer syncs the first record");

    // ...while four tasks append 250 records each, one request per record.
    // The lock only hands out indices in order.
    let next_index = Arc::new(Mutex::new(2u64));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (handle, next_index) = (handle.clone(), next_index.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let mut next = next_index.lock().await;
                handle.append(vec![(*next, format!("record {next}").into_bytes())]).unwrap();
                *next += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    sim.hold_syncs(false);

    wait_for(&mut persisted, |persisted| persisted.index == 1_001).await;
    let stats = handle.stats();
    assert_eq!((stats.syncs, stats.records_synced), (2, 1_001), "one sync for the first, one for the rest");
    assert!(stats.records_per_sync() > 500.0);
    assert_eq!(stats.sync_micros.len(), 2);

    drop(handle);
    let wal = writer.shutdown().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert_eq!(records.len(), 1_001);
}

#[tokio::test]
async fn a_write_failure_freezes_the_durable_index_and_says_why() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, small_segments()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    let mut rng = StdRng::seed_from_u64(3);
    let records = |range: std::ops::RangeInclusive<u64>, rng: &mut StdRng| {
        range.map(|index| (index, payload(index, rng))).collect::<Vec<_>>()
    };
    let synced = records(1..=10, &mut rng);
    handle.append(synced.clone()).unwrap();
    wait_for(&mut persisted, |persisted| persisted.index == 10).await;

    sim.fail_writes(true);
    handle.append(records(11..=20, &mut rng)).unwrap();
    let failed = wait_for(&mut persisted, |persisted| persisted.failure.is_some()).await;
    assert_eq!(failed.index, 10, "the durable index never passes what was synced");
    let failure = failed.failure.unwrap();
    assert!(failure.to_string().contains("simulated full disk"), "{failure}");
    assert!(matches!(handle.append(records(21..=21, &mut rng)), Err(StorageError::WriterFailed(_))));
    drop(writer.shutdown().unwrap());

    sim.fail_writes(false);
    sim.crash(&mut rng);
    let (_, recovered) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert!(recovered.len() >= 10 && recovered[..10] == synced[..], "{} recovered", recovered.len());
}

#[tokio::test]
async fn truncations_and_snapshots_apply_in_order_with_appends() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, small_segments()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    let mut rng = StdRng::seed_from_u64(4);
    let records = |range: std::ops::RangeInclusive<u64>, rng: &mut StdRng| {
        range.map(|index| (index, payload(index, rng))).collect::<Vec<_>>()
    };

    // All queued at once, so that they share batches.
    let mut expected = records(1..=40, &mut rng);
    handle.append(expected.clone()).unwrap();
    handle.truncate_from(31).unwrap();
    expected.truncate(30);
    let replacement = records(31..=35, &mut rng);
    handle.append(replacement.clone()).unwrap();
    expected.extend(replacement);
    handle.snapshot(25, b"state through 25".to_vec(), 0).unwrap();
    let more = records(36..=50, &mut rng);
    handle.append(more.clone()).unwrap();
    expected.extend(more);
    wait_for(&mut persisted, |persisted| persisted.index == 50).await;
    drop(writer.shutdown().unwrap());

    sim.crash_losing_unsynced();
    assert_eq!(latest_snapshot(&*disk, &data_dir()).unwrap(), Some((25, b"state through 25".to_vec())));
    let (wal, recovered) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert!(wal.first_index() > 1 && wal.first_index() <= 26, "compacted up to the snapshot: {}", wal.first_index());
    assert_eq!(recovered, expected[wal.first_index() as usize - 1..]);
}

#[tokio::test]
async fn a_snapshot_past_the_end_of_the_log_starts_it_over() {
    let (_, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    handle.append(vec![(1, b"one".to_vec()), (2, b"two".to_vec())]).unwrap();
    handle.snapshot(100, b"installed from the leader".to_vec(), 0).unwrap();
    handle.append(vec![(101, b"after".to_vec())]).unwrap();
    wait_for(&mut persisted, |persisted| persisted.index == 101).await;
    drop(writer.shutdown().unwrap());

    let (wal, recovered) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert_eq!(recovered, [(101, b"after".to_vec())]);
    assert_eq!(wal.first_index(), 101);
}

/// A node whose log diverged installs a leader's snapshot below its own
/// last index: the log beyond it goes, the snapshot (encoded on the
/// writer's thread) replaces the rest, and the entries after it follow.
/// A snapshot of the node's own old state, encoded meanwhile and handed in
/// late, is skipped rather than written over the leader's.
#[tokio::test]
async fn a_replacement_truncates_the_diverged_tail_and_a_stale_snapshot_is_skipped() {
    let (_, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    let old: Vec<_> = (1..=9).map(|index| (index, format!("old {index}").into_bytes())).collect();
    handle.append(old).unwrap();
    handle.replace(6, Box::new(|| b"the leader's state through 6".to_vec())).unwrap();
    // The node's own snapshot of its old log at 9, taken before the
    // replacement (0 replacements seen), arrives after it.
    handle.snapshot(9, b"a stale state through 9".to_vec(), 0).unwrap();
    handle.append(vec![(7, b"new 7".to_vec())]).unwrap();
    let done = wait_for(&mut persisted, |persisted| persisted.index == 7).await;
    assert_eq!(done.replacements, 1);
    drop(writer.shutdown().unwrap());

    assert_eq!(latest_snapshot(&*disk, &data_dir()).unwrap(), Some((6, b"the leader's state through 6".to_vec())));
    let (_, recovered) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert_eq!(recovered, [(7, b"new 7".to_vec())]);
}

#[tokio::test]
async fn without_fsync_the_index_is_published_after_the_write_alone() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, WalOptions::default()), FsyncPolicy::Never).unwrap();
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    handle.append(vec![(1, b"one".to_vec()), (2, b"two".to_vec())]).unwrap();
    wait_for(&mut persisted, |persisted| persisted.index == 2).await;
    assert_eq!(handle.stats().syncs, 0);
    drop(writer.shutdown().unwrap());

    // Written, not synced: a machine crash loses them.
    sim.crash_losing_unsynced();
    let (_, recovered) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert!(recovered.is_empty());
}

#[test]
fn requests_after_shutdown_are_refused() {
    let (_, disk) = sim_disk();
    let writer = StorageWriter::spawn(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always).unwrap();
    let handle = writer.handle();
    drop(writer.shutdown().unwrap());
    assert!(matches!(handle.append(vec![(1, b"late".to_vec())]), Err(StorageError::WriterStopped)));
}

/// Inline with no latency: each request is synced and published before the
/// call returns, one sync per call, with no runtime at all.
#[test]
fn inline_without_latency_syncs_before_the_call_returns() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::inline(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always, Duration::ZERO);
    let handle = writer.handle();
    let persisted = handle.persisted();
    handle.append(vec![(1, b"one".to_vec()), (2, b"two".to_vec())]).unwrap();
    assert_eq!(persisted.borrow().index, 2);
    handle.append(vec![(3, b"three".to_vec())]).unwrap();
    assert_eq!(persisted.borrow().index, 3);
    assert_eq!((handle.stats().syncs, handle.stats().records_synced), (2, 3));

    // Nothing is left unsynced for a crash to lose.
    sim.crash(&mut StdRng::seed_from_u64(5));
    let (_, recovered) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert_eq!(recovered.len(), 3);
    drop(writer);
}

/// Inline with a latency: the write is on the disk at once, unsynced and
/// unpublished until the sync task runs; a crash before then loses it.
#[tokio::test]
async fn inline_with_latency_leaves_the_write_unsynced_until_the_sync() {
    let (sim, disk) = sim_disk();
    let writer = StorageWriter::inline(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always, DEADLINE * 100);
    let handle = writer.handle();
    let persisted = handle.persisted();
    handle.append(vec![(1, b"one".to_vec())]).unwrap();
    // The runtime has not run the sync task: this test holds its only thread.
    assert_eq!(persisted.borrow().index, 0);
    // Read directly: opening the log would sync what it replays.
    let segment = disk.read(&data_dir().join("00000000000000000001.wal")).unwrap();
    assert!(segment.ends_with(b"one"), "written, as in the operating system's cache");

    sim.crash_losing_unsynced();
    let (_, recovered) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert!(recovered.is_empty(), "a crash before the sync loses the write");
    drop(writer);
}

/// Writes made before the sync task runs share its sync: group commit, in
/// the simulation's time.
#[tokio::test]
async fn inline_writes_before_the_sync_share_it() {
    let (_, disk) = sim_disk();
    let writer =
        StorageWriter::inline(open_wal(&disk, WalOptions::default()), FsyncPolicy::Always, Duration::from_millis(1));
    let handle = writer.handle();
    let mut persisted = handle.persisted();
    for index in 1..=5 {
        handle.append(vec![(index, format!("record {index}").into_bytes())]).unwrap();
    }
    wait_for(&mut persisted, |persisted| persisted.index == 5).await;
    assert_eq!((handle.stats().syncs, handle.stats().records_synced), (1, 5));

    // A stop syncs what was written since.
    handle.append(vec![(6, b"six".to_vec())]).unwrap();
    drop(writer.shutdown().unwrap());
    assert_eq!(persisted.borrow().index, 6);
    assert!(matches!(handle.append(vec![(7, b"late".to_vec())]), Err(StorageError::WriterStopped)));
}
