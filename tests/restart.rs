//! Sequence numbers survive restarts: after SIGTERM the next run continues exactly where the
//! last one stopped; after SIGKILL it may skip ahead, but never reuses a number (a reused one
//! would show as a `~1` file next to the earlier frame).

mod common;

use std::path::Path;

use common::*;

fn config() -> String {
    [listener("cams", "auto", ""), FILE_SINK.to_string()].concat()
}

/// Starts a daemon in `dir`, sends `sent` on one u32le connection and one ascii one, and waits
/// until every frame sent so far (`total`) is stored. Returns the daemon.
fn run_and_send(dir: &Path, sent: &[Vec<u8>], total: usize) -> Daemon {
    let d = Daemon::start_in(dir, &config());
    let (first, second) = sent.split_at(sent.len() / 2);
    send_and_finish(connect(d.addr("cams")), &encode(Wire::U32Le, first));
    send_and_finish(connect(d.addr("cams")), &encode(Wire::Ascii, second));
    d.wait_for_files(total, WAIT);
    d
}

/// Every stored frame of device 127.0.0.1, in sequence order.
fn stored(d: &Daemon, total: usize) -> Vec<Stored> {
    d.wait_for_frames("127.0.0.1", "cams", total)
}

#[test]
fn sigterm_then_restart_continues_the_sequence() {
    let dir = tempfile::TempDir::new().unwrap();
    let before = frames(1, 6, 8, 80_000);
    let after = frames(2, 6, 8, 80_000);

    let mut d = run_and_send(dir.path(), &before, 6);
    assert_eq!(
        assert_frames_eq(&stored(&d, 6), &before),
        [1, 2, 3, 4, 5, 6]
    );
    let status = d.terminate();
    assert!(status.success(), "first run exited with {status}");
    assert!(d.log_lines(&["framegate stopped"]).len() == 1);
    drop(d);

    let mut d = run_and_send(dir.path(), &after, 12);
    let all = stored(&d, 12);
    let seqs = assert_frames_eq(&all, &[before, after].concat());
    // A clean stop records the exact next number: no gap.
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert!(d.terminate().success());
    assert_eq!(d.stored_files().len(), 12);
    assert_no_tmp(&d.frames_root());
}

#[test]
fn sigkill_then_restart_never_reuses_a_number() {
    let dir = tempfile::TempDir::new().unwrap();
    let runs: Vec<Vec<Vec<u8>>> = (0..3).map(|i| frames(10 + i, 5, 8, 60_000)).collect();

    let mut sent = Vec::new();
    let mut seqs_before: Vec<u64> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        sent.extend(run.iter().cloned());
        let mut d = run_and_send(dir.path(), run, sent.len());
        let all = stored(&d, sent.len());
        // Byte-exact, no `~N` names (Stored::read refuses them), in the order sent.
        let seqs = assert_frames_eq(&all, &sent);
        let (old, new) = seqs.split_at(seqs_before.len());
        assert_eq!(old, seqs_before, "run {i}: earlier frames changed");
        assert_strictly_increasing(new);
        if let Some(last) = seqs_before.last() {
            assert!(
                new[0] > *last,
                "run {i}: after a crash, {} reuses or precedes {last}",
                new[0]
            );
        }
        seqs_before = seqs;
        let status = d.kill9();
        assert!(
            !status.success(),
            "SIGKILL should not look like a clean exit"
        );
        assert!(d.log_lines(&["framegate stopped"]).is_empty());
        assert_eq!(d.stored_files().len(), sent.len(), "run {i}");
    }
    assert_eq!(seqs_before.len(), 15);
    // The first run starts at 1.
    assert_eq!(&seqs_before[..5], [1, 2, 3, 4, 5]);
}

#[test]
fn sigkill_mid_stream_leaves_no_partial_frame_under_a_final_name() {
    let dir = tempfile::TempDir::new().unwrap();
    let sent = frames(20, 60, 1_000, 200_000);
    let mut d = Daemon::start_in(dir.path(), &config());

    // A device streams frames; the daemon is killed while it does.
    let to = d.addr("cams");
    let stream_all = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut stream = connect(to);
            for f in &sent {
                let bytes = encode(Wire::U32Be, std::slice::from_ref(f));
                if std::io::Write::write_all(&mut stream, &bytes).is_err() {
                    return; // the daemon is gone
                }
            }
        })
    };
    d.wait_for_files(10, WAIT);
    assert!(!d.kill9().success());
    stream_all.join().unwrap();

    // Whatever has a final name is a complete frame, the one its number says (one connection:
    // seq k is the k-th frame sent). Temporary files may remain; they are hidden.
    let survivors: Vec<Stored> = d
        .stored_files()
        .iter()
        .filter(|p| !is_tmp(p))
        .map(|p| Stored::read(p))
        .collect();
    assert!(survivors.len() >= 10);
    for s in &survivors {
        let frame = &sent[(s.seq - 1) as usize];
        assert!(s.bytes == *frame, "{:?} is not frame #{}", s.path, s.seq);
    }
    let max_before = survivors.iter().map(|s| s.seq).max().unwrap();
    drop(d);

    // The next run numbers past everything the crashed one may have handed out.
    let more = frames(21, 4, 8, 50_000);
    let mut d = Daemon::start_in(dir.path(), &config());
    send_and_finish(connect(d.addr("cams")), &encode(Wire::Ascii, &more));
    let all = d.wait_for_files(survivors.len() + more.len(), WAIT);
    let mut new: Vec<Stored> = all
        .iter()
        .filter(|p| !is_tmp(p))
        .map(|p| Stored::read(p))
        .filter(|s| s.seq > max_before)
        .collect();
    new.sort_by_key(|s| s.seq);
    assert_frames_eq(&new, &more);
    assert!(d.terminate().success());
}
