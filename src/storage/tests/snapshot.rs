//! Snapshots and metadata files: round trips, atomic replacement under a
//! crash at every step, damage and unknown versions refused.

use rand::SeedableRng;

use super::*;

fn snapshot_names(disk: &Arc<dyn Disk>) -> Vec<String> {
    let mut names: Vec<String> =
        disk.list(&data_dir()).unwrap().into_iter().filter(|name| name.starts_with("snapshot-")).collect();
    names.sort();
    names
}

#[test]
fn no_snapshot_yet_is_none() {
    let (_, disk) = sim_disk();
    assert_eq!(latest_snapshot(&*disk, &data_dir()).unwrap(), None);
}

#[test]
fn the_newest_snapshot_is_read_back_and_older_ones_removed() {
    let (_, disk) = sim_disk();
    write_snapshot(&*disk, &data_dir(), 5, b"state through 5").unwrap();
    write_snapshot(&*disk, &data_dir(), 9, b"state through 9").unwrap();
    assert_eq!(latest_snapshot(&*disk, &data_dir()).unwrap(), Some((9, b"state through 9".to_vec())));
    assert_eq!(snapshot_names(&disk), [format!("snapshot-{:020}.snap", 9)]);
}

/// A node that installs a leader's snapshot behind its own (divergent)
/// state writes a snapshot numbered below the one it had: that one must go,
/// or it would be read back as the newest.
#[test]
fn a_snapshot_below_the_newest_replaces_it() {
    let (_, disk) = sim_disk();
    write_snapshot(&*disk, &data_dir(), 9, b"a divergent state through 9").unwrap();
    write_snapshot(&*disk, &data_dir(), 7, b"the leader's state through 7").unwrap();
    assert_eq!(latest_snapshot(&*disk, &data_dir()).unwrap(), Some((7, b"the leader's state through 7".to_vec())));
    assert_eq!(snapshot_names(&disk), [format!("snapshot-{:020}.snap", 7)]);
}

/// The disk fails after every possible number of writes during a snapshot,
/// then the machine crashes: the old snapshot or the new one is there, never
/// a torn one, and the new one whenever the write had returned Ok.
#[test]
fn a_snapshot_is_replaced_atomically_under_a_crash_at_any_step() {
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (sim, disk) = sim_disk();
        let old = (5, vec![b'o'; rng.random_range(0..300)]);
        let new = (9, vec![b'n'; rng.random_range(0..300)]);
        write_snapshot(&*disk, &data_dir(), old.0, &old.1).unwrap();

        sim.fail_writes_after(rng.random_range(0..8));
        let written = write_snapshot(&*disk, &data_dir(), new.0, &new.1);
        sim.crash(&mut rng);
        sim.fail_writes(false);

        let latest = latest_snapshot(&*disk, &data_dir()).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        if written.is_ok() {
            assert_eq!(latest, Some(new.clone()), "seed {seed}");
        } else {
            assert!(latest == Some(old.clone()) || latest == Some(new.clone()), "seed {seed}: {latest:?}");
        }
        // A leftover temporary file is harmless and cleared by the next write.
        write_snapshot(&*disk, &data_dir(), 12, b"later").unwrap();
        assert_eq!(snapshot_names(&disk), [format!("snapshot-{:020}.snap", 12)], "seed {seed}");
    }
}

#[test]
fn a_damaged_newest_snapshot_is_an_error_naming_it() {
    let (sim, disk) = sim_disk();
    write_snapshot(&*disk, &data_dir(), 9, b"state through 9").unwrap();
    let path = data_dir().join(format!("snapshot-{:020}.snap", 9));
    sim.corrupt_byte(&path, 40).unwrap();

    let error = latest_snapshot(&*disk, &data_dir()).unwrap_err();
    assert!(
        matches!(&error, StorageError::Corrupt { path: p, damage: Damage::BadChecksum, .. } if *p == path),
        "{error}"
    );
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[test]
fn a_snapshot_of_an_unknown_version_is_refused() {
    let (_, disk) = sim_disk();
    let path = data_dir().join(format!("snapshot-{:020}.snap", 3));
    let mut file = b"GAVELSNP".to_vec();
    file.extend(7u32.to_le_bytes());
    file.extend([0; 20]);
    disk.create(&path).unwrap().append(&file).unwrap();

    let error = latest_snapshot(&*disk, &data_dir()).unwrap_err();
    assert!(matches!(&error, StorageError::UnknownVersion { found: 7, supported: 1, .. }), "{error}");
}

#[test]
fn metadata_round_trips_and_is_replaced() {
    let (_, disk) = sim_disk();
    assert_eq!(read_meta(&*disk, &data_dir(), "cluster").unwrap(), None);
    write_meta(&*disk, &data_dir(), "cluster", b"cluster-a").unwrap();
    write_meta(&*disk, &data_dir(), "highest_epoch", &7u64.to_le_bytes()).unwrap();
    write_meta(&*disk, &data_dir(), "cluster", b"cluster-b").unwrap();
    assert_eq!(read_meta(&*disk, &data_dir(), "cluster").unwrap(), Some(b"cluster-b".to_vec()));
    assert_eq!(read_meta(&*disk, &data_dir(), "highest_epoch").unwrap(), Some(7u64.to_le_bytes().to_vec()));
}

#[test]
fn metadata_is_replaced_atomically_under_a_crash_at_any_step() {
    for seed in 0..100 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (sim, disk) = sim_disk();
        write_meta(&*disk, &data_dir(), "epoch", b"old").unwrap();
        sim.fail_writes_after(rng.random_range(0..6));
        let written = write_meta(&*disk, &data_dir(), "epoch", b"new");
        sim.crash(&mut rng);
        sim.fail_writes(false);

        let read = read_meta(&*disk, &data_dir(), "epoch").unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        match written {
            Ok(()) => assert_eq!(read.as_deref(), Some(&b"new"[..]), "seed {seed}"),
            Err(_) => assert!(matches!(read.as_deref(), Some(b"old" | b"new")), "seed {seed}: {read:?}"),
        }
    }
}

#[test]
fn damaged_metadata_and_bad_names_are_refused() {
    let (sim, disk) = sim_disk();
    write_meta(&*disk, &data_dir(), "cluster", b"cluster-a").unwrap();
    sim.corrupt_byte(&data_dir().join("cluster.meta"), 25).unwrap();
    let error = read_meta(&*disk, &data_dir(), "cluster").unwrap_err();
    assert!(matches!(error, StorageError::Corrupt { damage: Damage::BadChecksum, .. }), "{error}");

    for name in ["", "../escape", "a.b", "with space"] {
        let error = write_meta(&*disk, &data_dir(), name, b"x").unwrap_err();
        assert!(matches!(error, StorageError::InvalidMetaName(_)), "{name:?}: {error}");
    }
}
