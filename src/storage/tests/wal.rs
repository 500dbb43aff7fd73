//! The log without crashes: round trips, torn tails, corruption, truncation,
//! compaction.

use rand::SeedableRng;

use super::*;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// The first index of each segment, from the file names.
fn segment_firsts(disk: &Arc<dyn Disk>, dir: &Path) -> Vec<u64> {
    let paths = segment_paths(disk, dir);
    paths
        .iter()
        .map(|path| path.file_stem().and_then(|stem| stem.to_str()?.parse().ok()).expect("segment name"))
        .collect()
}

#[test]
fn an_empty_directory_opens_an_empty_log_at_index_one() {
    let (_, disk) = sim_disk();
    let (wal, records) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    assert!(records.is_empty());
    assert_eq!((wal.first_index(), wal.last_index(), wal.segment_count()), (1, 0, 1));
}

#[test]
fn records_round_trip_across_segments() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let mut written = append_records(&mut wal, 100, &mut rng);
    wal.sync().unwrap();
    assert!(wal.segment_count() > 5, "small segments roll over: {}", wal.segment_count());
    drop(wal);

    let (mut wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 100));

    // The reopened log goes on where it stopped.
    written.extend(append_records(&mut wal, 30, &mut rng));
    wal.sync().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
}

#[test]
fn a_torn_tail_is_cut_away_and_the_log_goes_on_at_the_right_index() {
    // A record cut short, one whose checksum fails, and zeros past the end.
    let mut short_record = 500u32.to_le_bytes().to_vec();
    short_record.extend([9; 30]);
    let mut bad_checksum = 4u32.to_le_bytes().to_vec();
    bad_checksum.extend(0xdead_beefu32.to_le_bytes());
    bad_checksum.extend(21u64.to_le_bytes());
    bad_checksum.extend(b"tail");
    let tails = [vec![7; 5], short_record, bad_checksum, vec![0; 200]];

    for tail in tails {
        let (_, disk) = sim_disk();
        let mut rng = rng();
        let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
        let mut written = append_records(&mut wal, 20, &mut rng);
        wal.sync().unwrap();
        drop(wal);
        let last_segment = segment_paths(&disk, &data_dir()).pop().unwrap();
        let intact_len = disk.read(&last_segment).unwrap().len();
        let mut file = disk.open_append(&last_segment).unwrap();
        file.append(&tail).unwrap();
        file.sync_data().unwrap();

        let (mut wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
        assert_eq!(records, written, "tail {tail:?}");
        assert_eq!(disk.read(&last_segment).unwrap().len(), intact_len, "the tail is cut away");
        assert_eq!(wal.last_index(), 20);
        written.extend(append_records(&mut wal, 3, &mut rng));
        wal.sync().unwrap();
        drop(wal);
        let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
        assert_eq!(records, written);
    }
}

#[test]
fn a_torn_header_of_the_last_segment_is_rewritten() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let mut written = append_records(&mut wal, 20, &mut rng);
    wal.sync().unwrap();
    drop(wal);
    // A crash right after the next segment was created, its header half written.
    let next_segment = data_dir().join(format!("{:020}.wal", 21));
    disk.create(&next_segment).unwrap().append(b"GAVELW").unwrap();

    let (mut wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
    written.extend(append_records(&mut wal, 5, &mut rng));
    wal.sync().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_open_naming_file_and_offset() {
    let (sim, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    append_records(&mut wal, 60, &mut rng());
    wal.sync().unwrap();
    drop(wal);
    let second_segment = segment_paths(&disk, &data_dir())[1].clone();
    // The second record of the segment: past the header and the first record.
    let data = disk.read(&second_segment).unwrap();
    let second_record = 20 + 16 + u32::from_le_bytes(data[20..24].try_into().unwrap()) as usize;
    sim.corrupt_byte(&second_segment, second_record as u64 + 17).unwrap();

    let error = open_collecting(&disk, &data_dir(), small_segments()).err().expect("refused");
    match &error {
        StorageError::Corrupt { path, offset, damage } => {
            assert_eq!((path, *offset, damage), (&second_segment, second_record as u64, &Damage::BadChecksum));
        }
        other => panic!("unexpected error {other}"),
    }
    let message = error.to_string();
    assert!(message.contains(&second_segment.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {second_record}")), "{message}");
}

#[test]
fn damage_before_a_valid_record_in_the_last_segment_refuses_to_open() {
    let (sim, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    append_records(&mut wal, 50, &mut rng());
    wal.sync().unwrap();
    drop(wal);
    let segment = segment_paths(&disk, &data_dir()).pop().unwrap();
    // Damage the index field of the first record.
    sim.corrupt_byte(&segment, 20 + 8).unwrap();

    let error = open_collecting(&disk, &data_dir(), WalOptions::default()).err().expect("refused");
    assert!(
        matches!(&error, StorageError::Corrupt { offset: 20, damage: Damage::ValidRecordFollows { .. }, .. }),
        "{error}"
    );
    assert!(disk.read(&segment).unwrap().len() > 50 * 16, "nothing was truncated");
}

#[test]
fn a_missing_segment_is_a_gap_that_refuses_to_open() {
    let (_, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    append_records(&mut wal, 60, &mut rng());
    wal.sync().unwrap();
    drop(wal);
    let paths = segment_paths(&disk, &data_dir());
    disk.remove(&paths[2]).unwrap();

    let error = open_collecting(&disk, &data_dir(), small_segments()).err().expect("refused");
    assert!(
        matches!(&error, StorageError::Corrupt { path, offset: 0, damage: Damage::IndexOutOfOrder { .. } } if *path == paths[3]),
        "{error}"
    );
}

#[test]
fn an_unknown_format_version_is_refused_with_both_versions_named() {
    let (_, disk) = sim_disk();
    let path = data_dir().join(format!("{:020}.wal", 1));
    let mut header = b"GAVELWAL".to_vec();
    header.extend(2u32.to_le_bytes());
    header.extend(1u64.to_le_bytes());
    disk.create(&path).unwrap().append(&header).unwrap();

    let error = open_collecting(&disk, &data_dir(), WalOptions::default()).err().expect("refused");
    assert!(matches!(&error, StorageError::UnknownVersion { found: 2, supported: 1, .. }), "{error}");
    assert_eq!(error.to_string(), format!("{} has format version 2; this build reads version 1", path.display()));
}

#[test]
fn truncate_from_then_append_is_what_recovery_sees() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let mut written = append_records(&mut wal, 60, &mut rng);
    wal.sync().unwrap();
    let segments_before = wal.segment_count();

    wal.truncate_from(25).unwrap();
    written.truncate(24);
    assert_eq!(wal.last_index(), 24);
    assert!(wal.segment_count() < segments_before);
    assert_eq!(wal.segment_count(), segment_paths(&disk, &data_dir()).len());
    written.extend(append_records(&mut wal, 16, &mut rng));
    wal.sync().unwrap();
    drop(wal);

    let (wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
    assert_eq!(wal.last_index(), 40);
}

#[test]
fn truncating_at_a_segment_start_leaves_that_segment_empty_and_active() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let mut written = append_records(&mut wal, 60, &mut rng);
    wal.sync().unwrap();
    let third_first = segment_firsts(&disk, &data_dir())[2];

    wal.truncate_from(third_first).unwrap();
    written.truncate(third_first as usize - 1);
    assert_eq!(segment_firsts(&disk, &data_dir()).len(), 3);
    written.extend(append_records(&mut wal, 2, &mut rng));
    wal.sync().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
}

#[test]
fn appending_at_an_earlier_index_replaces_the_tail() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let mut written = append_records(&mut wal, 30, &mut rng);

    wal.append(20, b"from the new leader").unwrap();
    written.truncate(19);
    written.push((20, b"from the new leader".to_vec()));
    assert_eq!(wal.last_index(), 20);
    wal.sync().unwrap();
    drop(wal);
    let (_, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written);
}

#[test]
fn appending_past_the_end_is_refused_and_harmless() {
    let (_, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    wal.append(1, b"one").unwrap();
    let error = wal.append(3, b"three").unwrap_err();
    assert!(matches!(error, StorageError::NotNext { expected: 2, got: 3 }), "{error}");
    wal.append(2, b"two").unwrap();
    wal.sync().unwrap();
}

#[test]
fn compact_through_removes_only_fully_covered_segments() {
    let (_, disk) = sim_disk();
    let mut rng = rng();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    let written = append_records(&mut wal, 60, &mut rng);
    wal.sync().unwrap();
    let firsts = segment_firsts(&disk, &data_dir());

    // The second segment ends at firsts[2] - 1: one short of that covers
    // only the first segment.
    assert_eq!(wal.compact_through(firsts[2] - 2).unwrap(), 1);
    assert_eq!(segment_firsts(&disk, &data_dir()), firsts[1..]);
    assert_eq!(wal.compact_through(firsts[2] - 1).unwrap(), 1);
    assert_eq!(segment_firsts(&disk, &data_dir()), firsts[2..]);
    assert_eq!(wal.first_index(), firsts[2]);

    // Never the active segment, even when every record is covered.
    wal.compact_through(u64::MAX).unwrap();
    assert_eq!(segment_firsts(&disk, &data_dir()), [*firsts.last().unwrap()]);
    drop(wal);

    let (wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, written[*firsts.last().unwrap() as usize - 1..]);
    assert_eq!(wal.last_index(), 60);
}

#[test]
fn truncating_below_the_compacted_start_is_refused() {
    let (_, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    append_records(&mut wal, 60, &mut rng());
    wal.compact_through(30).unwrap();
    let first = wal.first_index();
    assert!(first > 1);
    let error = wal.truncate_from(1).unwrap_err();
    assert!(matches!(error, StorageError::Compacted { index: 1, first: f } if f == first), "{error}");
}

#[test]
fn restart_at_empties_the_log_and_goes_on_from_there() {
    let (_, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    append_records(&mut wal, 60, &mut rng());
    wal.sync().unwrap();

    wal.restart_at(1_001).unwrap();
    assert_eq!((wal.first_index(), wal.last_index(), wal.segment_count()), (1_001, 1_000, 1));
    wal.append(1_001, b"after the snapshot").unwrap();
    wal.sync().unwrap();
    drop(wal);

    let (wal, records) = open_collecting(&disk, &data_dir(), small_segments()).unwrap();
    assert_eq!(records, [(1_001, b"after the snapshot".to_vec())]);
    assert_eq!(wal.first_index(), 1_001);
}

#[test]
fn a_replay_error_stops_the_open_and_comes_back_as_is() {
    #[derive(Debug)]
    enum NodeError {
        Storage,
        Decode(u64),
    }
    impl From<StorageError> for NodeError {
        fn from(_: StorageError) -> Self {
            NodeError::Storage
        }
    }
    let (_, disk) = sim_disk();
    let (mut wal, _) = open_collecting(&disk, &data_dir(), WalOptions::default()).unwrap();
    append_records(&mut wal, 10, &mut rng());
    wal.sync().unwrap();
    drop(wal);

    let result = Wal::open(disk.clone(), data_dir(), WalOptions::default(), |index, _| {
        if index == 4 { Err(NodeError::Decode(index)) } else { Ok(()) }
    });
    assert!(matches!(result, Err(NodeError::Decode(4))));
    assert!(!matches!(result, Err(NodeError::Storage)));
}
