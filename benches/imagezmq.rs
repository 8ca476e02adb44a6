//! imagezmq senders against framegate vs against imagezmq's own Python `ImageHub`, same machine,
//! same run, interleaved rounds (issue 3's benchmark). The senders are the real `imagezmq`
//! package in a venv (tests/devices/imagezmq_venv.sh); each `send_jpg` waits for its `OK`, so
//! frames/s is how fast each hub answers. framegate stores into a `discard` sink.
//!
//! `cargo bench --bench imagezmq`; `FG_BENCH_ROUNDS=N` (default 3). Results: docs/BENCHMARKS.md.

#[path = "../tests/devices/venv.rs"]
mod venv;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// (senders, frames per sender, JPEG bytes).
const SCENARIOS: [(usize, usize, usize); 3] =
    [(1, 1000, 200_000), (4, 500, 50_000), (16, 200, 20_000)];

fn main() {
    let rounds: usize = std::env::var("FG_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let python = venv::imagezmq_python();
    let work = tempfile::tempdir().expect("a temp dir");
    let mut rows = Vec::new();
    for (senders, frames, size) in SCENARIOS {
        let jpg = work.path().join(format!("{size}.jpg"));
        let mut bytes = vec![0x5a; size];
        bytes[..4].copy_from_slice(b"\xff\xd8\xff\xe0");
        std::fs::write(&jpg, &bytes).unwrap();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let fg = framegate_round(&python, work.path(), &jpg, senders, frames);
            let hub = imagehub_round(&python, &jpg, senders, frames);
            eprintln!(
                "{senders}x{frames}x{size}B round {round}: framegate {fg:.0} frames/s, ImageHub {hub:.0} frames/s"
            );
            ours.push(fg);
            theirs.push(hub);
        }
        rows.push((
            senders,
            frames,
            size,
            median(&mut ours),
            median(&mut theirs),
        ));
    }
    println!("| senders × frames × JPEG | framegate frames/s | ImageHub frames/s | framegate / ImageHub |");
    println!("|---|---:|---:|---:|");
    for (senders, frames, size, fg, hub) in rows {
        println!(
            "| {senders} × {frames} × {} KB | {fg:.0} | {hub:.0} | {:.2}× |",
            size / 1000,
            fg / hub
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench_script(name: &str) -> String {
    format!("{}/benches/imagezmq/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Starts the senders, lets them connect, releases them together; frames/s over the slowest.
fn run_senders(python: &Path, to: &str, jpg: &Path, senders: usize, frames: usize) -> f64 {
    let mut children: Vec<(Child, ChildStdin)> = (0..senders)
        .map(|i| {
            let mut child = Command::new(python)
                .arg(bench_script("sender.py"))
                .arg(to)
                .arg(format!("bench-{i}"))
                .arg(jpg)
                .arg(frames.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a sender");
            let stdin = child.stdin.take().unwrap();
            (child, stdin)
        })
        .collect();
    // Imports and connects take a moment; the clock starts at the go line.
    std::thread::sleep(Duration::from_millis(1500));
    for (_, stdin) in &mut children {
        stdin.write_all(b"go\n").unwrap();
    }
    let mut slowest: f64 = 0.0;
    for (child, _) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a sender failed");
        let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        slowest = slowest.max(secs);
    }
    (senders * frames) as f64 / slowest
}

fn framegate_round(python: &Path, work: &Path, jpg: &Path, senders: usize, frames: usize) -> f64 {
    let config = work.join("framegate.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}/state\"\n[log]\nlevel = \"warn\"\n[[listener]]\nname = \"hub\"\nbind = \"127.0.0.1:0\"\nframing = \"imagezmq\"\n[[sink]]\nname = \"drop\"\ntype = \"discard\"\n",
            work.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_framegate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("FRAMEGATE_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start framegate");
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(at) = line.split("listening on ").nth(1) {
            addr = Some(at.trim().to_string());
        }
        if line.contains("framegate ready") {
            break;
        }
    }
    // Keep draining the log so the daemon never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    let to = format!("tcp://{}", addr.expect("framegate printed its address"));
    let rate = run_senders(python, &to, jpg, senders, frames);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().unwrap().success(), "framegate failed");
    rate
}

fn imagehub_round(python: &Path, jpg: &Path, senders: usize, frames: usize) -> f64 {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut hub = Command::new(python)
        .arg(bench_script("hub.py"))
        .arg(port.to_string())
        .arg((senders * frames).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start ImageHub");
    let mut ready = String::new();
    BufReader::new(hub.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let rate = run_senders(
        python,
        &format!("tcp://127.0.0.1:{port}"),
        jpg,
        senders,
        frames,
    );
    assert!(hub.wait().unwrap().success(), "ImageHub failed");
    rate
}
