//! The Python client (clients/python/framegate_client.py, driven by
//! tests/devices/native_client.py) against the real daemon: windowed delivery stored byte for
//! byte, device secrets, and a daemon SIGKILLed and restarted while the client streams.
//!
//! The script makes its frames from a seed exactly as [`frames`] does, so the test knows the
//! bytes sent without reading them back from the script. Every wait is bounded: the script has
//! its own deadline and the test kills it after a later one.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The script gives up (exit 5) after this; the test kills it a little later.
const SCRIPT_DEADLINE_SECS: u64 = 150;
const SCRIPT_KILL_AFTER: Duration = Duration::from_secs(SCRIPT_DEADLINE_SECS + 30);

/// A running `python3 tests/devices/native_client.py`, its output going to files in `dir`.
struct Script {
    child: Child,
    out: std::path::PathBuf,
}

/// What the script printed and how it ended.
struct Finished {
    status: ExitStatus,
    output: String,
}

impl Script {
    fn spawn(dir: &Path, name: &str, args: &[String]) -> Script {
        let out = dir.join(format!("{name}.out"));
        let stdout = File::create(&out).expect("create the script's output file");
        let stderr = stdout.try_clone().unwrap();
        let child = Command::new("python3")
            .arg(device_script("native_client.py"))
            .args(args)
            .arg("--deadline")
            .arg(SCRIPT_DEADLINE_SECS.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("python3 must be installed to run the Python client against the daemon");
        Script { child, out }
    }

    /// What the script has printed so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits (bounded by [`SCRIPT_KILL_AFTER`]) for the exit; kills the script and panics after.
    fn wait(mut self) -> Finished {
        let deadline = Instant::now() + SCRIPT_KILL_AFTER;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for python3") {
                return Finished {
                    status,
                    output: self.output(),
                };
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the script did not finish within {SCRIPT_KILL_AFTER:?}; output:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Only after a panic: leave no script behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the script to its end.
fn run_script(dir: &Path, name: &str, args: &[String]) -> Finished {
    Script::spawn(dir, name, args).wait()
}

/// The script's arguments for `count` frames of `lo..=hi` bytes from `seed`, plus `extra`.
fn args(to: &str, device: &str, seed: u64, count: usize, lo: usize, hi: usize) -> Vec<String> {
    [
        "--to",
        to,
        "--device",
        device,
        "--seed",
        &seed.to_string(),
        "--count",
        &count.to_string(),
        "--min-bytes",
        &lo.to_string(),
        "--max-bytes",
        &hi.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn assert_succeeded(what: &str, f: &Finished) {
    assert!(
        f.status.success(),
        "{what}: the script failed ({}):\n{}",
        f.status,
        f.output
    );
}

/// A port nothing listens on right now, for a daemon restarted on a fixed address.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` until it holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn async_frames_within_the_welcome_window_are_all_acked_and_stored_byte_exact() {
    let d = Daemon::start(
        &[
            listener("native", "native", "max_in_flight = 3"),
            FILE_SINK.into(),
        ]
        .concat(),
    );
    let to = d.addr("native").to_string();
    // 10 frames from 100 B to 300 KB, JPEG and PNG.
    let (seed, count, lo, hi) = (801, 10, 100, 300_000);
    let sent = frames(seed, count, lo, hi);
    let f = run_script(&d.dir, "async", &args(&to, "py-cam", seed, count, lo, hi));
    assert_succeeded("10 frames", &f);
    assert!(
        f.output.contains("window 3 from WELCOME"),
        "the window is the WELCOME's:\n{}",
        f.output
    );
    assert!(
        f.output
            .contains("ok: 10 of 10 frames acknowledged over 1 connection(s), seqs 1..10"),
        "{}",
        f.output
    );
    // Exit 0 means every frame was ACKed, and an ACK means stored: no waiting needed.
    let stored = d.frames("py-cam", "native");
    assert_eq!(
        assert_frames_eq(&stored, &sent),
        (1..=10).collect::<Vec<u64>>()
    );
    assert_no_tmp(&d.frames_root());
}

#[test]
fn a_device_secret_is_required_and_checked() {
    let d = Daemon::start(
        &[
            listener("locked", "native", "require_auth = true"),
            "\n[device.\"cam\"]\nsecret = \"s3cret-py\"\n".into(),
            FILE_SINK.into(),
        ]
        .concat(),
    );
    let to = d.addr("locked").to_string();
    let (seed, count, lo, hi) = (802, 3, 1000, 20_000);
    let sent = frames(seed, count, lo, hi);
    let base = args(&to, "cam", seed, count, lo, hi);

    let right = run_script(
        &d.dir,
        "right",
        &with(base.clone(), &["--secret", "s3cret-py"]),
    );
    assert_succeeded("the right secret", &right);
    assert_frames_eq(&d.frames("cam", "locked"), &sent);

    // Refusals end the session for good: no retrying, a clear message, a failing exit status.
    let fast = ["--max-retries", "2", "--timeout", "10"];
    for (name, extra) in [("wrong", vec!["--secret", "guess"]), ("none", vec![])] {
        let mut extra = extra.clone();
        extra.extend(fast);
        let f = run_script(&d.dir, name, &with(base.clone(), &extra));
        assert_eq!(
            f.status.code(),
            Some(2),
            "{name} secret: expected exit 2 (refused):\n{}",
            f.output
        );
        assert!(
            f.output.contains("refused:") && f.output.contains("not authorised"),
            "{name} secret: the script says why:\n{}",
            f.output
        );
        assert!(
            !f.output.contains("window"),
            "{name} secret: no WELCOME expected:\n{}",
            f.output
        );
    }
    // A device known by a secret, on a listener that requires one, with a different id and no
    // secret: refused too.
    let other = run_script(
        &d.dir,
        "other",
        &with(args(&to, "stranger", seed, 1, lo, hi), &fast),
    );
    assert_eq!(other.status.code(), Some(2), "{}", other.output);
    assert!(other.output.contains("not authorised"), "{}", other.output);

    // Nothing more was stored than the right secret's frames.
    let files: Vec<_> = walk(&d.frames_root());
    assert_eq!(files.len(), count, "stored: {files:?}");
}

#[test]
fn the_client_outlives_sigkilled_daemons_and_every_frame_is_stored_exactly_once() {
    let dir = tempfile::Builder::new()
        .prefix("framegate-it-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let to = format!("127.0.0.1:{port}");
    let config = format!(
        "\n[[listener]]\nname = \"native\"\nbind = \"{to}\"\nframing = \"native\"\nmax_in_flight = 8\n{FILE_SINK}"
    );
    let (seed, count, lo, hi) = (803, 60, 20_000, 60_000);
    let hold_after = 45;
    let sent = frames(seed, count, lo, hi);
    let gate = dir.path().join("gate");
    let stored_now = |d: &Daemon| d.stored_files().iter().filter(|p| !is_tmp(p)).count();

    let mut first = Daemon::start_in(dir.path(), &config);
    // Paced so the first kill lands mid-stream; held after frame 45 without reading (so ACKs of
    // committed frames stay unread) until the test lets it go. Patient enough (31 attempts,
    // backoff up to 1 s) to outlast a restart.
    let script = Script::spawn(
        dir.path(),
        "crash",
        &with(
            args(&to, "cam", seed, count, lo, hi),
            &[
                "--interval",
                "0.03",
                "--gate-after",
                &hold_after.to_string(),
                "--gate-file",
                &gate.display().to_string(),
                "--max-retries",
                "30",
                "--backoff",
                "0.1",
                "--backoff-max",
                "1.0",
                "--timeout",
                "10",
            ],
        ),
    );

    // Crash 1: SIGKILL while frames are arriving.
    wait_until("10 frames stored before the first crash", WAIT, || {
        stored_now(&first) >= 10
    });
    first.kill9();
    let at_first_kill = stored_now(&first);
    let mid_stream = !script.output().contains("holding after");
    let mut second = Daemon::start_in(dir.path(), &config);

    // Crash 2: the device wrote frame 45 and holds without reading its ACKs; once the daemon
    // stored everything written, SIGKILL it. The device then resends frames that are already
    // committed (their ACKs were lost), which must be ACKed without a second file.
    wait_until("the device holds after frame 45", WAIT * 2, || {
        script.output().contains("holding after")
    });
    let reconnected_before_hold = script.output().contains("connected (#2)");
    if reconnected_before_hold {
        wait_until("45 frames stored before the second crash", WAIT, || {
            stored_now(&second) >= hold_after
        });
    }
    second.kill9();
    let at_second_kill = stored_now(&second);
    eprintln!(
        "first SIGKILL with {at_first_kill} of {count} frames stored (mid-stream: {mid_stream}); \
         second with {at_second_kill} stored (device reconnected before holding: \
         {reconnected_before_hold})"
    );

    let d = Daemon::start_in(dir.path(), &config);
    std::fs::write(&gate, b"go").unwrap();
    let f = script.wait();
    eprintln!("script output:\n{}", f.output);
    assert_succeeded("streaming across two daemon crashes", &f);
    assert!(
        f.output.contains(&format!("ok: {count} of {count} frames")),
        "{}",
        f.output
    );
    assert!(
        f.output.contains("connected (#2)"),
        "the client reconnected after the crash:\n{}",
        f.output
    );

    // Every frame exactly once, byte for byte: no `~1` names (Stored::read refuses them), no
    // extra files, nothing temporary left.
    let all = walk(&d.frames_root());
    assert_eq!(all.len(), count, "exactly one file per frame: {all:?}");
    let stored = d.frames("cam", "native");
    assert_eq!(
        assert_frames_eq(&stored, &sent),
        (1..=count as u64).collect::<Vec<u64>>()
    );
    assert_no_tmp(&d.frames_root());
    // The frames the device held unacknowledged at the second crash had all been stored by
    // then; it resent them to the last daemon, which ACKed them without a second file (checked
    // above).
    if reconnected_before_hold {
        let line = f
            .output
            .lines()
            .find(|l| l.starts_with("holding after"))
            .unwrap();
        let unacked: usize = line
            .split(", ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no unacknowledged count in {line:?}"));
        assert!(unacked >= 1, "{line}");
    }
}
