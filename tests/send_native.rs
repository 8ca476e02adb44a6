//! `framegate send` over the native protocol against the real daemon: acknowledged delivery,
//! exit status, reconnect with resend across a daemon crash, secrets, and `--watch`.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn send(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("send")
        .args(args)
        .output()
        .expect("run framegate send")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A port nothing listens on right now, for a daemon started later on a fixed address.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn native_on(port: u16, extra: &str) -> String {
    format!(
        "\n[[listener]]\nname = \"native\"\nbind = \"127.0.0.1:{port}\"\nframing = \"native\"\n{extra}\n{FILE_SINK}"
    )
}

#[test]
fn files_are_acknowledged_and_the_exit_status_says_so() {
    let d = Daemon::start(
        &[
            listener("native", "native", "max_frame_bytes = \"50KB\""),
            FILE_SINK.into(),
        ]
        .concat(),
    );
    let to = d.addr("native").to_string();
    let frames = frames(700, 3, 1000, 30_000);
    let files = write_frames(&d.dir.join("send"), &frames);
    let dir = d.dir.join("send").display().to_string();

    let out = send(&["--to", &to, "--device", "cam", &dir]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 of 3 frames"), "{}", text(&out));
    assert_frames_eq(&d.frames("cam", "native"), &frames);

    // Two connections, each its own device, each sending the set twice.
    let out = send(&[
        "--to",
        &to,
        "--device",
        "pair",
        "--connections",
        "2",
        "--repeat",
        "2",
        &dir,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for device in ["pair-0", "pair-1"] {
        assert_eq!(d.frames(device, "native").len(), 6, "{device}");
    }

    // A frame the server refuses for good: the others are delivered, the exit status fails.
    let big = write_frames(&d.dir.join("big"), &[jpeg(701, 60_000), jpeg(702, 1000)]);
    let out = send(&[
        "--to",
        &to,
        "--device",
        "big",
        &big[0].display().to_string(),
        &big[1].display().to_string(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("too large"), "{}", text(&out));
    assert!(text(&out).contains("1 of 2 frames"), "{}", text(&out));
    drop(files);
}

#[test]
fn a_sender_outlives_a_daemon_crash_and_nothing_is_stored_twice() {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let to = format!("127.0.0.1:{port}");
    let sent = frames(710, 40, 20_000, 60_000);
    write_frames(&dir.path().join("send"), &sent);
    let config = native_on(port, "max_in_flight = 4");

    // The sender starts before any daemon: it backs off and retries.
    let sender = Command::new(BIN)
        .args([
            "send",
            "--to",
            &to,
            "--device",
            "cam",
            "--retry-for",
            "60s",
            "--window",
            "4",
        ])
        .arg(dir.path().join("send"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut d = Daemon::start_in(dir.path(), &config);
    // Crash the daemon mid-stream, then bring it back on the same port and state.
    wait_until(|| d.stored_files().iter().any(|p| !is_tmp(p)));
    d.kill9();
    let d = Daemon::start_in(dir.path(), &config);
    let out = sender.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("40 of 40 frames"), "{}", text(&out));
    let stored = d.wait_for_frames("cam", "native", sent.len());
    // Exactly the 40 frames, each once (a resend of a committed frame is not stored again).
    assert_frames_eq(&stored, &sent);
}

#[test]
fn secrets_are_used_and_a_wrong_one_fails() {
    let d = Daemon::start(
        &[
            listener("locked", "native", "require_auth = true"),
            "\n[device.\"cam\"]\nsecret = \"s3cret\"\n".into(),
            FILE_SINK.into(),
        ]
        .concat(),
    );
    let to = d.addr("locked").to_string();
    let file = write_frames(&d.dir.join("send"), &[jpeg(720, 2000)]);
    let secret = d.dir.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let file = file[0].display().to_string();

    let ok = send(&[
        "--to",
        &to,
        "--device",
        "cam",
        "--secret-file",
        &secret.display().to_string(),
        &file,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong = send(&["--to", &to, "--device", "cam", "--secret", "guess", &file]);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("not authorised"), "{}", text(&wrong));
    assert_eq!(d.frames("cam", "locked").len(), 1);
}

#[test]
fn watch_sends_new_files_and_moves_them_after_their_ack() {
    let d = Daemon::start(&[listener("native", "native", ""), FILE_SINK.into()].concat());
    let inbox = d.dir.join("inbox");
    let done = d.dir.join("done");
    let early = jpeg(730, 3000);
    write_frames(&inbox, std::slice::from_ref(&early));
    let mut child: Child = Command::new(BIN)
        .args([
            "send",
            "--to",
            &d.addr("native").to_string(),
            "--device",
            "watcher",
        ])
        .arg("--watch")
        .arg(&inbox)
        .arg("--done-dir")
        .arg(&done)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A file written in place, and one written elsewhere then moved in, as uploaders do.
    let written = png(731, 5000);
    let moved = jpeg(732, 7000);
    wait_until(|| count(&done) == 1);
    std::fs::write(inbox.join("written.png"), &written).unwrap();
    std::fs::write(d.dir.join("staging.jpg"), &moved).unwrap();
    std::fs::rename(d.dir.join("staging.jpg"), inbox.join("moved.jpg")).unwrap();
    wait_until(|| count(&done) == 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(&inbox), 0, "acknowledged files left the inbox");
    // The two later files may be sent in either order; compare them as a set.
    let mut stored: Vec<Vec<u8>> = d
        .wait_for_frames("watcher", "native", 3)
        .into_iter()
        .map(|s| s.bytes)
        .collect();
    let mut sent = vec![early, written, moved];
    stored.sort();
    sent.sort();
    assert!(
        stored == sent,
        "stored frames differ from the files written"
    );
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |r| r.count())
}

/// Polls `cond` (bounded by [`WAIT`]).
fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
