//! The same log, snapshots and metadata on the real file system.

use std::io::Write;
use std::time::Instant;

use rand::SeedableRng;

use super::*;

fn os_disk() -> Arc<dyn Disk> {
    Arc::new(OsDisk)
}

#[test]
fn records_round_trip_across_segments_on_disk() {
    let dir = TempDir::new("round-trip");
    let disk = os_disk();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut wal, _) = open_collecting(&disk, &dir.path, small_segments()).unwrap();
    let mut written = append_records(&mut wal, 200, &mut rng);
    wal.sync().unwrap();
    wal.truncate_from(150).unwrap();
    written.truncate(149);
    written.extend(append_records(&mut wal, 20, &mut rng));
    wal.sync().unwrap();
    drop(wal);

    let (wal, records) = open_collecting(&disk, &dir.path, small_segments()).unwrap();
    assert_eq!(records, written);
    assert_eq!(wal.segment_count(), segment_paths(&disk, &dir.path).len());
}

#[test]
fn a_torn_tail_on_disk_is_cut_away() {
    let dir = TempDir::new("torn-tail");
    let disk = os_disk();
    let mut rng = StdRng::seed_from_u64(12);
    let (mut wal, _) = open_collecting(&disk, &dir.path, WalOptions::default()).unwrap();
    let mut written = append_records(&mut wal, 30, &mut rng);
    wal.sync().unwrap();
    drop(wal);
    let segment = segment_paths(&disk, &dir.path).pop().unwrap();
    let intact_len = std::fs::metadata(&segment).unwrap().len();
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0x5a; 11]).unwrap();
    drop(file);

    let (mut wal, records) = open_collecting(&disk, &dir.path, WalOptions::default()).unwrap();
    assert_eq!(records, written);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), intact_len);
    // The append handle writes at the end of the cut file, with no hole.
    written.extend(append_records(&mut wal, 5, &mut rng));
    wal.sync().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &dir.path, WalOptions::default()).unwrap();
    assert_eq!(records, written);
}

#[test]
fn snapshots_and_metadata_on_disk() {
    let dir = TempDir::new("snapshots");
    let disk = os_disk();
    assert_eq!(latest_snapshot(&*disk, &dir.path.join("missing")).unwrap(), None);
    write_snapshot(&*disk, &dir.path, 5, b"five").unwrap();
    write_snapshot(&*disk, &dir.path, 8, b"eight").unwrap();
    assert_eq!(latest_snapshot(&*disk, &dir.path).unwrap(), Some((8, b"eight".to_vec())));
    let snapshots = disk.list(&dir.path).unwrap().into_iter().filter(|name| name.starts_with("snapshot-")).count();
    assert_eq!(snapshots, 1);

    write_meta(&*disk, &dir.path, "cluster", b"cluster-a").unwrap();
    write_meta(&*disk, &dir.path, "cluster", b"cluster-b").unwrap();
    assert_eq!(read_meta(&*disk, &dir.path, "cluster").unwrap(), Some(b"cluster-b".to_vec()));
    assert_eq!(read_meta(&*disk, &dir.path, "absent").unwrap(), None);
}

/// A timing to run by hand, in release mode:
/// `cargo test --release --lib storage::tests::os_disk::timing -- --ignored --nocapture`.
/// Appends a million records of 100 bytes in batches of 64, each batch
/// synced (then, for comparison, only written), and recovers them.
#[test]
#[ignore = "a timing, run by hand in release mode"]
fn timing_a_million_records() {
    const RECORDS: u64 = 1_000_000;
    const BATCH: u64 = 64;
    let disk = os_disk();
    let payload = [0xab; 100];
    for sync in [true, false] {
        let dir = TempDir::new("timing");
        let started = Instant::now();
        let (mut wal, _) = open_collecting(&disk, &dir.path, WalOptions::default()).unwrap();
        for index in 1..=RECORDS {
            wal.append(index, &payload).unwrap();
            if index % BATCH == 0 {
                if sync { wal.sync().unwrap() } else { wal.flush().unwrap() }
            }
        }
        wal.sync().unwrap();
        let appended = started.elapsed();
        drop(wal);

        let started = Instant::now();
        let mut count = 0u64;
        let wal = Wal::open(disk.clone(), &dir.path, WalOptions::default(), |_, payload| {
            count += payload.len() as u64 / 100;
            Ok::<(), StorageError>(())
        })
        .unwrap();
        let recovered = started.elapsed();
        assert_eq!((count, wal.last_index()), (RECORDS, RECORDS));
        let each_batch = if sync { "synced" } else { "written, one sync at the end" };
        eprintln!(
            "{RECORDS} records in batches of {BATCH}, each {each_batch}: {appended:?}; recovery: {recovered:?} over {} segments",
            wal.segment_count()
        );
    }
}
