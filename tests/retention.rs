//! Retention (`keep`) for file sinks: 1,000 frames into `max_files = 100` leave exactly the
//! newest 100; the files on disk count after a restart; `max_age` removes old files even while
//! no frames arrive.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn kept_seqs(d: &Daemon) -> Vec<u64> {
    let mut seqs: Vec<u64> = d
        .stored_files()
        .iter()
        .filter(|p| !is_tmp(p))
        .map(|p| p.file_stem().unwrap().to_string_lossy().parse().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs
}

fn sink(keep: &str) -> String {
    format!(
        "\n[[sink]]\nname = \"files\"\ntype = \"file\"\nfsync = false\npath = \"@DIR@/frames/{{device}}/{{seq:08}}.{{ext}}\"\nkeep = {{ {keep} }}\n"
    )
}

#[test]
fn the_newest_files_are_kept_across_restarts() {
    let dir = tempfile::TempDir::new().unwrap();
    let config = [listener("le", "u32le", ""), sink("max_files = 100")].concat();
    let mut d = Daemon::start_in(dir.path(), &config);
    let file = write_frames(&dir.path().join("send"), &[jpeg(970, 2000)]);
    let out = Command::new(BIN)
        .args(["send", "--framing", "u32le", "--repeat", "1000", "--to"])
        .arg(d.addr("le").to_string())
        .arg(&file[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    let deadline = Instant::now() + WAIT;
    while kept_seqs(&d).last() != Some(&1000) {
        assert!(Instant::now() < deadline, "frame 1000 not stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.terminate().success());
    assert_eq!(
        kept_seqs(&d),
        (901..=1000).collect::<Vec<_>>(),
        "exactly the newest 100"
    );

    // A restart with a tighter limit counts what is on disk: one more frame leaves 50.
    let config = [listener("le", "u32le", ""), sink("max_files = 50")].concat();
    let mut d = Daemon::start_in(dir.path(), &config);
    let stream = connect(d.addr("le"));
    send_and_finish(stream, &encode(Wire::U32Le, &[jpeg(971, 2000)]));
    let deadline = Instant::now() + WAIT;
    while kept_seqs(&d).len() != 50 {
        assert!(
            Instant::now() < deadline,
            "still {} files",
            kept_seqs(&d).len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.terminate().success());
    let kept = kept_seqs(&d);
    assert_eq!(kept.len(), 50);
    assert_eq!(kept[..49], (952..=1000).collect::<Vec<_>>()[..], "{kept:?}");
}

#[test]
fn max_age_removes_old_files_without_new_frames() {
    let mut d = Daemon::start(&[listener("le", "u32le", ""), sink("max_age = \"1s\"")].concat());
    let stream = connect(d.addr("le"));
    send_and_finish(stream, &encode(Wire::U32Le, &frames(972, 5, 100, 1000)));
    d.wait_for_files(5, WAIT);
    // Nothing more arrives; the janitor removes them once they are older than a second.
    let deadline = Instant::now() + WAIT;
    while !kept_seqs(&d).is_empty() {
        assert!(Instant::now() < deadline, "old files were not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.terminate().success());
}
