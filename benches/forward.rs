//! `cargo bench --bench forward`: frames/s of a forward chain — devices → gateway (a forward
//! sink, spool on disk) → central — against the same devices sending straight to the central
//! daemon, both framegate, in the same run. Results go to docs/BENCHMARKS.md.
//!
//! Devices are the native load generator of `--bench ingest` (one connection and device id per
//! thread, `max_in_flight` frames unanswered, done at the last ACK). The central daemon has a
//! native listener and a `discard` sink, so what is measured is the path, not a disk sink.
//! The clock runs from the devices' release until the central daemon has committed every frame:
//! for "direct" that is the devices' last ACK; for "chain" the gateway ACKs once a frame is in
//! its spool, and the run ends when the central daemon's `framegate status` counts every frame.
//!
//! Options: `FG_BENCH_QUICK=1` (a tenth of the frames, one round), `FG_BENCH_ROUNDS=N`
//! (default 3), `FG_BENCH_FORWARD_WORKERS=N` (the forward sink's `workers`), filter words after
//! `--` selecting scenarios by substring (`1x`, `16x`).
//! A benchmark reports; it exits non-zero only when a correctness check fails.

#[allow(dead_code)]
#[path = "ingest/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "ingest/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "ingest/native.rs"]
mod native;
#[allow(dead_code)]
#[path = "ingest/system.rs"]
mod system;

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use daemon::Daemon;
use framegate::status::Status;
use load::Load;

/// How long the central daemon may take to commit what the gateway spooled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a daemon may take to take up the devices' connections.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

struct Scenario {
    name: &'static str,
    load: Load,
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let shape = |name, connections, frame_bytes, frames: usize| Scenario {
        name,
        load: Load {
            connections,
            frame_bytes,
            frames_per_connection: if quick { (frames / 10).max(2) } else { frames },
        },
    };
    vec![
        shape("1x200KB", 1, 200_000, 1000),
        shape("16x50KB", 16, 50_000, 400),
    ]
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Release to every frame committed by the central daemon.
    end_to_end: Duration,
    /// Release to the devices' last ACK (for the chain: every frame in the gateway's spool).
    acked: Duration,
}

/// A scenario's runs: per round, [direct, chain] (`None`: that run failed).
type Row<'a> = (&'a str, Load, Vec<[Option<Run>; 2]>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Chain,
}

fn main() -> ExitCode {
    let quick = std::env::var("FG_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let rounds: usize = std::env::var("FG_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 })
        .clamp(1, 15);
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // The spool is meant to be on a disk: the system temp dir, unless it is a tmpfs.
    let parent = std::env::temp_dir();
    let on_tmpfs = system::is_tmpfs(&parent);
    let root = match tempfile::Builder::new()
        .prefix("fg-fwd-bench-")
        .tempdir_in(&parent)
    {
        Ok(root) => root,
        Err(e) => {
            eprintln!(
                "error: cannot create a work directory in {}: {e}",
                parent.display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("# framegate forward-chain benchmark");
    println!();
    println!("- machine: {}", system::machine());
    println!(
        "- work directory (both daemons' state, the gateway's spool): {} ({})",
        root.path().display(),
        if on_tmpfs {
            "a tmpfs: NOT a disk"
        } else {
            "not a tmpfs"
        }
    );
    println!(
        "- {} mode, {rounds} round(s) per scenario, direct and chain alternating; medians reported",
        if quick { "QUICK" } else { "full" }
    );
    println!();
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut index = 0;
    for s in scenarios(quick)
        .into_iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
    {
        let l = s.load;
        eprintln!(
            "== {}: {} device(s) x {} frames x {} bytes",
            s.name, l.connections, l.frames_per_connection, l.frame_bytes
        );
        let mut runs: Vec<[Option<Run>; 2]> = Vec::new();
        for round in 0..rounds {
            let mut pair = [None, None];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let path = [Route::Direct, Route::Chain][i];
                index += 1;
                let dir = root.path().join(format!("run-{index}"));
                let result = fs::create_dir(&dir)
                    .map_err(|e| e.to_string())
                    .and_then(|()| once(&l, path, &dir));
                let _ = fs::remove_dir_all(&dir);
                match result {
                    Ok(run) => {
                        eprintln!(
                            "  round {} {:<7} {:>8.0} frames/s end to end ({:.2} s; devices' last ACK {:.2} s)",
                            round + 1,
                            format!("{path:?}"),
                            l.frames() as f64 / run.end_to_end.as_secs_f64(),
                            run.end_to_end.as_secs_f64(),
                            run.acked.as_secs_f64()
                        );
                        pair[i] = Some(run);
                    }
                    Err(e) => {
                        eprintln!("  round {} {path:?}: FAILED: {e}", round + 1);
                        failures.push(format!("{} {path:?}: {e}", s.name));
                    }
                }
            }
            runs.push(pair);
        }
        rows.push((s.name, l, runs));
    }
    report(&rows);
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\n## Correctness failures\n");
        for f in &failures {
            println!("- {f}");
        }
        ExitCode::FAILURE
    }
}

fn report(rows: &[Row]) {
    println!("| scenario | path | frames/s end to end (median) | min–max | devices' ACK frames/s | chain / direct |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, l, runs) in rows {
        let fps = |d: Duration| l.frames() as f64 / d.as_secs_f64();
        let mut medians = [0.0; 2];
        for (i, label) in ["direct", "chain (via the gateway)"].iter().enumerate() {
            let mut e2e: Vec<f64> = runs
                .iter()
                .filter_map(|p| p[i])
                .map(|r| fps(r.end_to_end))
                .collect();
            let mut acked: Vec<f64> = runs
                .iter()
                .filter_map(|p| p[i])
                .map(|r| fps(r.acked))
                .collect();
            if e2e.is_empty() {
                continue;
            }
            e2e.sort_by(f64::total_cmp);
            acked.sort_by(f64::total_cmp);
            medians[i] = e2e[e2e.len() / 2];
            let ratio = if i == 1 && medians[0] > 0.0 {
                format!("{:.0}%", medians[1] / medians[0] * 100.0)
            } else {
                "—".into()
            };
            println!(
                "| {name} | {label} | {:.0} | {:.0}–{:.0} | {:.0} | {ratio} |",
                medians[i],
                e2e[0],
                e2e[e2e.len() - 1],
                acked[acked.len() / 2],
            );
        }
        let per_round: Vec<String> = runs
            .iter()
            .filter_map(|p| Some(fps(p[1]?.end_to_end) / fps(p[0]?.end_to_end)))
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect();
        println!(
            "| {name} | chain / direct per round | {} | | | |",
            per_round.join(", ")
        );
    }
}

/// A daemon with state in `state_dir`, one native listener on 127.0.0.1:0 and the sink
/// `out` described by `sink` (its `type` and settings).
fn native_config(state_dir: &Path, sink: &str) -> String {
    format!(
        r#"state_dir = "{}"
max_connections = 12000

[[listener]]
name = "bench"
bind = "127.0.0.1:0"
framing = "native"
idle_timeout = "10m"

[[sink]]
name = "out"
{sink}"#,
        state_dir.display()
    )
}

fn central_config(dir: &Path) -> String {
    native_config(&dir.join("central"), "type = \"discard\"\n")
}

fn gateway_config(dir: &Path, central: SocketAddr) -> String {
    // `FG_BENCH_FORWARD_WORKERS=N`: the forward sink's workers (frames per group commit).
    let workers = std::env::var("FG_BENCH_FORWARD_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .map_or(String::new(), |w| format!("workers = {w}\n"));
    native_config(
        &dir.join("gateway"),
        &format!("type = \"forward\"\nto = [\"{central}\"]\n{workers}"),
    )
}

/// The daemon's status from its control socket.
fn status(state_dir: &Path) -> Result<Status, String> {
    let mut body = Vec::new();
    UnixStream::connect(state_dir.join("control.sock"))
        .and_then(|mut s| s.read_to_end(&mut body))
        .map_err(|e| format!("status of {}: {e}", state_dir.display()))?;
    serde_json::from_slice(&body).map_err(|e| format!("status: {e}"))
}

fn once(l: &Load, path: Route, dir: &Path) -> Result<Run, String> {
    let central_dir = dir.join("c");
    let gateway_dir = dir.join("g");
    fs::create_dir_all(&central_dir).map_err(|e| e.to_string())?;
    fs::create_dir_all(&gateway_dir).map_err(|e| e.to_string())?;
    let central = Daemon::start_config(&central_dir, &central_config(&central_dir))?;
    let gateway = match path {
        Route::Direct => None,
        Route::Chain => Some(Daemon::start_config(
            &gateway_dir,
            &gateway_config(&gateway_dir, central.addr),
        )?),
    };
    let target = gateway.as_ref().unwrap_or(&central);
    let pid = target.pid();
    let idle_fds = system::open_fds(pid).unwrap_or(0);
    let settle = || {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while system::open_fds(pid).unwrap_or(0) < idle_fds + l.connections
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(1));
        }
    };
    let outcome = native::run(target.addr, l, settle, || ());
    let mut problems: Vec<String> = outcome.failures.iter().take(3).cloned().collect();
    // The chain is done when the central daemon has committed every frame.
    let central_state = central_dir.join("central");
    let mut done = outcome.finished;
    if path == Route::Chain && problems.is_empty() {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let committed = status(&central_state)?.sinks[0].committed;
            if committed >= l.frames() {
                done = Instant::now();
                break;
            }
            if Instant::now() > deadline {
                problems.push(format!(
                    "the central daemon committed {committed} of {} frames within {DRAIN_TIMEOUT:?}",
                    l.frames()
                ));
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        // The upstream ACKs a frame a moment after committing it (once it is recorded).
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let spool = status(&gateway_dir.join("gateway"))?.sinks[0].spool;
            match spool {
                Some(s) if s.frames == 0 && s.forwarded == l.frames() && s.rejected == 0 => break,
                other if Instant::now() > deadline => {
                    problems.push(format!(
                        "the gateway's spool is {other:?}; expected empty, {} forwarded",
                        l.frames()
                    ));
                    break;
                }
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    let mut check = |name: &str, daemon: Daemon| -> Result<(), String> {
        let stopped = daemon.stop()?;
        if !stopped.status.success() {
            problems.push(format!("{name} exited with {}", stopped.status));
        }
        if stopped.log.error_count > 0 {
            problems.push(format!("{name} logged errors: {:?}", stopped.log.problems));
        }
        let want = (l.frames(), l.bytes(), 0);
        if stopped.log.committed != Some(want) {
            problems.push(format!(
                "{name}'s sink reported {:?}, expected {want:?}",
                stopped.log.committed
            ));
        }
        Ok(())
    };
    if let Some(gateway) = gateway {
        check("the gateway", gateway)?;
    }
    check("the central daemon", central)?;
    // Every device's frames 1..=M are in the central daemon's commit record, once.
    let committed = framegate::identity::committed::Committed::load(&central_state)
        .map_err(|e| format!("reading the commit record: {e}"))?;
    let last = l.frames_per_connection as u64;
    for i in 0..l.connections {
        let device = format!("bench-{i}");
        if committed.highest(&device) != last || !(1..=last).all(|s| committed.contains(&device, s))
        {
            problems.push(format!(
                "the central daemon's record lacks frames of {device}"
            ));
            break;
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Run {
        end_to_end: done.saturating_duration_since(outcome.started),
        acked: outcome.elapsed(),
    })
}
