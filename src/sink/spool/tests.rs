use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::protocol::ContentType;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        fsync_interval: Duration::from_millis(10),
        committers: 8,
    }
}

fn head(device: &str, seq: u64) -> RecordHead {
    RecordHead {
        device: device.into(),
        seq,
        captured_us: 1_700_000_000_000_000 + seq,
        received_us: 1_700_000_000_500_000 + seq,
        listener: "lan".into(),
        content_type: ContentType::Jpeg,
        meta: vec![("exp".into(), format!("{seq}ms"))],
    }
}

fn payload(device: &str, seq: u64, len: usize) -> Vec<u8> {
    let seed = device
        .bytes()
        .fold(seq, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    (0..len).map(|i| (seed as usize + i * 7) as u8).collect()
}

fn append(spool: &Spool, device: &str, seq: u64, len: usize) -> Result<(), SpoolError> {
    let device: Arc<str> = Arc::from(device);
    spool
        .reserve(&device, seq)
        .append(&head(&device, seq), &payload(&device, seq, len))
}

/// Claims every claimable record of `device`, checks it reads back intact, and returns the
/// sequence numbers in claim order.
fn drain(spool: &Spool, device: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(claim) = spool.claim_next(device) {
        let read = spool.read(claim.id).unwrap();
        assert_eq!(read.head, head(device, claim.seq));
        assert_eq!(read.payload().len() % 1000, 0);
        assert_eq!(
            read.payload(),
            payload(device, claim.seq, read.payload().len())
        );
        seqs.push(claim.seq);
    }
    seqs
}

fn segment_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".spool")
        })
        .count()
}

#[test]
fn records_come_back_per_device_in_sequence_order_and_leave_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    for (device, seq) in [("a", 3), ("b", 1), ("a", 1), ("a", 2), ("b", 9)] {
        append(&spool, device, seq, 2000).unwrap();
    }
    let mut fresh = spool.take_fresh();
    fresh.sort();
    assert_eq!(fresh, [Arc::from("a"), Arc::from("b")]);
    assert_eq!(spool.stats().frames, 5);
    assert_eq!(drain(&spool, "a"), [1, 2, 3]);
    assert_eq!(drain(&spool, "b"), [1, 9]);
    assert!(spool.claim_next("a").is_none(), "everything is claimed");

    // A closed link gives its claims back; they come again in order.
    spool.release("a");
    assert_eq!(spool.take_fresh(), [Arc::from("a")]);
    assert_eq!(drain(&spool, "a"), [1, 2, 3]);

    for (device, seq) in [("a", 1), ("a", 2), ("a", 3), ("b", 1)] {
        assert!(spool.ack(device, seq));
    }
    assert!(!spool.ack("a", 1), "acknowledged once only");
    assert!(spool.reject("b", 9));
    let stats = spool.stats();
    assert_eq!((stats.frames, stats.forwarded, stats.rejected), (0, 4, 1));
    drop(spool);

    // Nothing left to forward: the next start finds nothing and deletes the segment.
    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(spool.stats().frames, 0);
    assert_eq!(spool.stats().bytes, 0);
    assert_eq!(segment_files(dir.path()), 0);
}

#[test]
fn a_restart_brings_back_exactly_the_unacknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    for seq in 1..=6 {
        append(&spool, "cam", seq, 1000 * seq as usize).unwrap();
    }
    assert_eq!(drain(&spool, "cam"), [1, 2, 3, 4, 5, 6]);
    for seq in [1, 2, 4] {
        assert!(spool.ack("cam", seq));
    }
    drop(spool);
    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(spool.stats().frames, 3);
    assert_eq!(spool.take_fresh(), [Arc::from("cam")]);
    assert_eq!(drain(&spool, "cam"), [3, 5, 6]);
    // New records go to a new segment, after the recovered ones.
    append(&spool, "cam", 7, 1000).unwrap();
    assert_eq!(drain(&spool, "cam"), [7]);
    assert_eq!(segment_files(dir.path()), 2);
}

#[test]
fn a_torn_tail_is_cut_off_and_the_records_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    for seq in 1..=3 {
        append(&spool, "cam", seq, 3000).unwrap();
    }
    drop(spool);
    let path = segment::segment_path(dir.path(), 1);
    let full = fs::metadata(&path).unwrap().len();
    let record = full / 3;
    // The crash cut the third record short and left garbage after it.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(full - 100).unwrap();
    file.write_all_at(&[0xAB; 500], full - 100).unwrap();
    drop(file);

    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(drain(&spool, "cam"), [1, 2]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 2 * record);
    append(&spool, "cam", 3, 3000).unwrap();
    drop(spool);
    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(drain(&spool, "cam"), [1, 2, 3]);
}

#[test]
fn a_flipped_bit_ends_the_segment_there() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    for seq in 1..=3 {
        append(&spool, "cam", seq, 3000).unwrap();
    }
    drop(spool);
    let path = segment::segment_path(dir.path(), 1);
    let record = fs::metadata(&path).unwrap().len() / 3;
    let mut bytes = fs::read(&path).unwrap();
    bytes[(record + record / 2) as usize] ^= 0x10; // inside the second record's payload
    fs::write(&path, bytes).unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(drain(&spool, "cam"), [1]);
}

#[test]
fn a_full_spool_refuses_new_records_until_acknowledgements_free_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&SpoolConfig {
        max_bytes: 200_000, // segments of 64 KiB
        ..config(dir.path())
    })
    .unwrap();
    let mut seq = 0;
    let err = loop {
        seq += 1;
        assert!(seq < 100, "never full");
        if let Err(e) = append(&spool, "cam", seq, 10_000) {
            break e;
        }
    };
    let SpoolError::Full { used, max, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*max, 200_000);
    assert!(*used <= 200_000);
    assert!(err.to_string().contains("spool full"), "{err}");
    let stored = seq - 1;
    assert_eq!(spool.stats().frames, stored);
    // Nothing already spooled was dropped, and the refused frame is not half there.
    assert_eq!(drain(&spool, "cam"), (1..=stored).collect::<Vec<_>>());
    // Acknowledging the first segment's records deletes it and makes room.
    let before = spool.stats().bytes;
    for s in 1..=6 {
        spool.ack("cam", s);
    }
    assert!(spool.stats().bytes < before, "a whole segment was freed");
    append(&spool, "cam", seq, 10_000).unwrap();
    // A frame larger than the whole spool is told so, not "full".
    let err = append(&spool, "cam", seq + 1, 300_000).unwrap_err();
    assert!(matches!(err, SpoolError::Unfit(_)), "{err:?}");
    assert!(err.to_string().contains("can never be spooled"), "{err}");
}

#[test]
fn a_frame_spooled_twice_is_forwarded_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    append(&spool, "cam", 5, 1000).unwrap();
    append(&spool, "cam", 5, 1000).unwrap();
    assert_eq!(spool.stats().frames, 1);
    assert_eq!(drain(&spool, "cam"), [5]);
    drop(spool);
    let spool = Spool::open(&config(dir.path())).unwrap();
    assert_eq!(drain(&spool, "cam"), [5]);
}

#[test]
fn a_frame_still_being_committed_holds_back_higher_numbers_of_its_device() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&SpoolConfig {
        fsync_interval: Duration::from_millis(20),
        ..config(dir.path())
    })
    .unwrap();
    spool.assume_sync_cost(Duration::from_secs(5));
    let cam: Arc<str> = Arc::from("cam");
    let five = spool.reserve(&cam, 5);
    append(&spool, "cam", 6, 1000).unwrap();
    append(&spool, "other", 1, 1000).unwrap();
    assert!(spool.claim_next("cam").is_none(), "6 waits for 5");
    assert_eq!(drain(&spool, "other"), [1], "other devices do not wait");
    five.append(&head("cam", 5), &payload("cam", 5, 1000))
        .unwrap();
    assert_eq!(drain(&spool, "cam"), [5, 6]);

    // A reservation given up (the frame was refused) lifts the hold-back too.
    let seven = spool.reserve(&cam, 7);
    append(&spool, "cam", 8, 1000).unwrap();
    assert!(spool.claim_next("cam").is_none());
    drop(seven);
    assert_eq!(drain(&spool, "cam"), [8]);
}

#[test]
fn a_frame_announced_while_queued_holds_back_higher_numbers_without_delaying_syncs() {
    let dir = tempfile::tempdir().unwrap();
    // A long fsync_interval: if the announcement made a group commit wait for it, the
    // appends below would take 5 s each.
    let spool = Spool::open(&SpoolConfig {
        fsync_interval: Duration::from_secs(5),
        committers: 1,
        ..config(dir.path())
    })
    .unwrap();
    let cam: Arc<str> = Arc::from("cam");
    // Frame 5 is queued, its worker not started yet; 6 overtakes it and is spooled first.
    spool.announce(&cam, 5);
    let started = Instant::now();
    append(&spool, "cam", 6, 1000).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the sync did not wait for 5"
    );
    assert!(
        spool.claim_next("cam").is_none(),
        "6 waits for the announced 5"
    );
    // 5's worker reserves it (that holds back from now on) and ends the announcement.
    let five = spool.reserve(&cam, 5);
    spool.unannounce(&cam, 5);
    assert!(
        spool.claim_next("cam").is_none(),
        "still held back by the reservation"
    );
    five.append(&head("cam", 5), &payload("cam", 5, 1000))
        .unwrap();
    assert_eq!(drain(&spool, "cam"), [5, 6]);

    // A frame dropped from the queue is withdrawn: the hold-back lifts.
    spool.announce(&cam, 7);
    append(&spool, "cam", 8, 1000).unwrap();
    assert!(spool.claim_next("cam").is_none());
    spool.unannounce(&cam, 7);
    assert_eq!(drain(&spool, "cam"), [8]);
}

#[test]
fn frames_committed_together_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(
        Spool::open(&SpoolConfig {
            fsync_interval: Duration::from_secs(5),
            ..config(dir.path())
        })
        .unwrap(),
    );
    spool.assume_sync_cost(Duration::from_secs(5));
    let started = Instant::now();
    let cam: Arc<str> = Arc::from("cam");
    let first = spool.reserve(&cam, 1);
    let leader = {
        let spool = spool.clone();
        // Becomes the leader and waits for the reserved frame 1 before it syncs.
        thread::spawn(move || append(&spool, "other", 1, 1000))
    };
    thread::sleep(Duration::from_millis(100));
    first
        .append(&head("cam", 1), &payload("cam", 1, 1000))
        .unwrap();
    leader.join().unwrap().unwrap();
    assert_eq!(spool.stats().syncs, 1, "one fsync for both");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "nobody waited out the interval"
    );
    // Alone, a frame does not wait for the interval at all.
    let alone = Instant::now();
    append(&spool, "cam", 2, 1000).unwrap();
    assert!(alone.elapsed() < Duration::from_secs(4));
    assert_eq!(spool.stats().syncs, 2);
}

#[test]
fn the_forwarder_is_told_when_records_become_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&config(dir.path())).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    spool.set_on_ready(Some(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })));
    append(&spool, "cam", 1, 1000).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_second_user_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _spool = Spool::open(&config(dir.path())).unwrap();
    let err = lock_dir(dir.path(), Duration::from_millis(50)).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}

/// What a test does to a spool.
#[derive(Debug, Clone)]
enum Op {
    Append { device: u8, seq: u64, len: usize },
    Ack { device: u8, nth: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..3, 1u64..40, 1usize..20).prop_map(|(device, seq, k)| Op::Append { device, seq, len: k * 1000 }),
        3 => (0u8..3, 0usize..5).prop_map(|(device, nth)| Op::Ack { device, nth }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the order of appends, acknowledgements and restarts, the spool holds exactly
    /// the frames appended and not acknowledged, once each, byte for byte, and hands each
    /// device's frames out in sequence order.
    #[test]
    fn the_spool_holds_what_was_appended_and_not_acknowledged(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        // Small segments, so rotation and segment deletion happen too.
        let cfg = SpoolConfig { max_bytes: 1 << 20, fsync_interval: Duration::ZERO, committers: 1, dir: dir.path().to_path_buf() };
        let mut spool = Spool::open(&cfg).unwrap();
        let mut model: BTreeMap<(String, u64), usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append { device, seq, len } => {
                    let device = format!("dev-{device}");
                    // A frame appended twice is the same frame (same device, seq and bytes).
                    let len = *model.get(&(device.clone(), seq)).unwrap_or(&len);
                    match append(&spool, &device, seq, len) {
                        Ok(()) => { model.insert((device, seq), len); }
                        Err(SpoolError::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Ack { device, nth } => {
                    let device = format!("dev-{device}");
                    let seq = model.keys().filter(|(d, _)| *d == device).nth(nth).map(|(_, s)| *s);
                    if let Some(seq) = seq {
                        prop_assert!(spool.ack(&device, seq));
                        model.remove(&(device, seq));
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(&cfg).unwrap();
                }
            }
            prop_assert_eq!(spool.stats().frames as usize, model.len());
        }
        for device in ["dev-0", "dev-1", "dev-2"] {
            spool.release(device);
            let want: Vec<u64> = model.keys().filter(|(d, _)| d == device).map(|(_, s)| *s).collect();
            prop_assert_eq!(drain(&spool, device), want);
        }
    }
}
