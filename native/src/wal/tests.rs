use super::*;
use crate::codec::{encode_entry, Records};

fn batch(lo: u64, hi: u64, term: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in lo..hi {
        encode_entry(&mut buf, i, term, 0, format!("entry-{i:0>100}").as_bytes());
    }
    buf
}

fn indexes(data: &[u8]) -> Vec<u64> {
    Records::new(data).map(|r| r.unwrap().1.index).collect()
}

fn small() -> WalOptions {
    WalOptions { segment_size: 8192 }
}

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        for lo in (1..91).step_by(10) {
            wal.append(batch(lo, lo + 10, 1), None).unwrap();
        }
        let seq = wal
            .append(
                batch(91, 101, 1),
                Some(HardState {
                    term: 1,
                    vote: 2,
                    commit: 50,
                }),
            )
            .unwrap();
        wal.wait(seq).unwrap();
        assert_eq!(
            indexes(&wal.read(1, 101, u64::MAX).unwrap()),
            (1..101).collect::<Vec<_>>()
        );
        assert!(
            wal.stats().segments_created > 0,
            "small segments must rotate"
        );
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(
        wal.bounds(),
        Bounds {
            first: 1,
            last: 100
        }
    );
    assert_eq!(
        wal.hard_state(),
        HardState {
            term: 1,
            vote: 2,
            commit: 50
        }
    );
    assert_eq!(
        indexes(&wal.read(40, 60, u64::MAX).unwrap()),
        (40..60).collect::<Vec<_>>()
    );
    assert_eq!(wal.term(77).unwrap(), 1);
}

#[test]
fn read_respects_byte_limit_but_returns_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), small()).unwrap();
    wal.append(batch(1, 11, 1), None).unwrap();
    assert_eq!(indexes(&wal.read(1, 11, 1).unwrap()), vec![1]);
    let one = wal.read(1, 2, u64::MAX).unwrap().len() as u64;
    assert_eq!(indexes(&wal.read(1, 11, one * 3).unwrap()), vec![1, 2, 3]);
}

#[test]
fn overwrite_and_truncate_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        wal.append(batch(1, 11, 1), None).unwrap();
        wal.append(batch(6, 9, 2), None).unwrap(); // conflict: replaces 6..10
        assert!(
            wal.append(batch(10, 11, 2), None).is_err(),
            "gap must be refused"
        );
        wal.truncate_suffix(8).unwrap();
        let seq = wal.append(batch(8, 9, 3), None).unwrap();
        wal.wait(seq).unwrap();
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(wal.bounds(), Bounds { first: 1, last: 8 });
    assert_eq!(wal.term(5).unwrap(), 1);
    assert_eq!(wal.term(7).unwrap(), 2);
    assert_eq!(wal.term(8).unwrap(), 3);
}

#[test]
fn release_deletes_old_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        let mut seq = 0;
        for lo in (1..1000).step_by(50) {
            seq = wal.append(batch(lo, lo + 50, 1), None).unwrap();
        }
        wal.wait(seq).unwrap();
        let before = wal.stats().segments;
        let seq = wal.release_before(900).unwrap();
        wal.wait(seq).unwrap();
        let after = wal.stats();
        assert!(
            after.segments < before,
            "{} segments before, {} after",
            before,
            after.segments
        );
        assert!(after.segments_released > 0);
        assert!(wal.read(899, 901, u64::MAX).is_err());
        wal.save_hard_state(HardState {
            term: 4,
            vote: 1,
            commit: 950,
        })
        .unwrap();
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(
        wal.bounds(),
        Bounds {
            first: 900,
            last: 1000
        }
    );
    assert_eq!(
        indexes(&wal.read(900, 1001, u64::MAX).unwrap()),
        (900..1001).collect::<Vec<_>>()
    );
    assert_eq!(wal.hard_state().commit, 950);
}

#[test]
fn release_past_the_end_restarts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), small()).unwrap();
        wal.append(batch(1, 300, 1), None).unwrap();
        wal.release_before(5000).unwrap();
        assert!(wal.append(batch(4999, 5000, 2), None).is_err());
        let seq = wal.append(batch(5000, 5010, 2), None).unwrap();
        wal.wait(seq).unwrap();
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), small()).unwrap();
    assert_eq!(
        wal.bounds(),
        Bounds {
            first: 5000,
            last: 5009
        }
    );
    assert_eq!(wal.stats().segments, 1);
}

#[test]
fn suspended_writer_groups_everything_into_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.suspend_writer();
    let mut last = 0;
    for i in 1..=100 {
        last = wal.append(batch(i, i + 1, 1), None).unwrap();
    }
    assert_eq!(
        wal.synced_seq().unwrap(),
        0,
        "nothing is durable while suspended"
    );
    wal.resume_writer();
    wal.wait(last).unwrap();
    let s = wal.stats();
    assert_eq!((s.batches, s.syncs), (100, 1));
}

#[test]
fn torn_tail_is_cut_and_middle_damage_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (seg_path, end) = {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let seq = wal.append(batch(1, 21, 1), None).unwrap();
        wal.wait(seq).unwrap();
        wal.close().unwrap();
        let path = segment::segment_path(dir.path(), 1);
        let data = fs::read(&path).unwrap();
        let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
        (path, end)
    };
    // A torn last record: its final 5 bytes never reached the disk.
    let file = OpenOptions::new().write(true).open(&seg_path).unwrap();
    file.write_all_at(&[0u8; 5], (end - 5) as u64).unwrap();
    drop(file);
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(wal.bounds().last, 19);
        assert!(wal.recovery().torn_bytes > 0);
        // The log continues cleanly after the cut.
        let seq = wal.append(batch(20, 31, 1), None).unwrap();
        wal.wait(seq).unwrap();
        wal.close().unwrap();
    }
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(wal.bounds().last, 30);
        assert_eq!(wal.recovery().torn_bytes, 0);
        wal.close().unwrap();
    }
    // A flipped byte in an early record, with valid records after it.
    let mut data = fs::read(&seg_path).unwrap();
    data[segment::header_len() as usize + 30] ^= 0x40;
    fs::write(&seg_path, &data).unwrap();
    match Wal::open(dir.path(), WalOptions::default()) {
        Err(WalError::Corrupt(msg)) => assert!(msg.contains("followed by a valid record"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("corruption not detected"),
    }
}
