//! `cargo bench --bench ingest`: framegate's ingest throughput against a minimal blocking
//! reader of the same framing, measured in the same run; the native protocol with ACKs against
//! u32le, both into `discard`; and the RSS of 10,000 idle connections. Results go to
//! docs/BENCHMARKS.md.
//!
//! Options: `FG_BENCH_QUICK=1` (a tenth of the data, one round: a smoke run),
//! `FG_BENCH_ROUNDS=N` (rounds per scenario, default 5), `FG_BENCH_FRAMEGATE=PATH` (another
//! build of the daemon, for A/B runs), and filter words after `--`
//! (`cargo bench --bench ingest -- 64x idle`) that select scenarios by substring. The native
//! comparison is selected by `native` (every shape) or `native-64x` and the like (one shape);
//! the plain shape words (`1x`, `64x`, `1000x`) select only the u32le scenarios.
//!
//! The native comparison runs 1000x20KB at 64 frames per connection (four of the native
//! window's 16) and, as `1000x20KB-first-window`, at the 20 of the other tables: see
//! `native_scenarios`. It runs each pair twice per round: devices driven by a poller thread per
//! CPU (`events.rs`: closer to devices on their own machines) and by a blocking thread per
//! device (`load.rs`, `native.rs`: the generator of the other tables). `FG_BENCH_DEVICES=
//! pollers` or `threads` keeps one; `FG_BENCH_POLLERS=N` sets the number of pollers.
//!
//! `benches/netns.sh` runs this bench with the daemon and the devices in two network namespaces
//! joined by a veth link (`FG_BENCH_DAEMON_NETNS=NAME` runs the daemon in that namespace,
//! `FG_BENCH_BIND=ADDR` is where it listens) instead of on loopback.
//!
//! A benchmark reports; it does not assert speed. It exits non-zero only when a correctness
//! check fails (a frame missing, a file missing, a daemon error).

#[path = "ingest/baseline.rs"]
mod baseline;
#[path = "ingest/daemon.rs"]
mod daemon;
#[path = "ingest/events.rs"]
mod events;
#[path = "ingest/idle.rs"]
mod idle;
#[path = "ingest/load.rs"]
mod load;
#[path = "ingest/native.rs"]
mod native;
#[path = "ingest/report.rs"]
mod report;
#[path = "ingest/run.rs"]
mod run;
#[path = "ingest/system.rs"]
mod system;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use daemon::SinkKind;
use load::Load;
use run::{Generator, Receiver, Timing};

/// Where the file sink writes, if it is a tmpfs.
const TMPFS: &str = "/dev/shm";

/// One traffic shape from the issue.
struct Scenario {
    name: &'static str,
    load: Load,
}

/// ~400 MB each: long enough to dwarf start-up noise, short enough for a few-minute run.
fn scenarios(quick: bool) -> Vec<Scenario> {
    let shape = |name, connections, frame_bytes, frames_per_connection: usize| Scenario {
        name,
        load: Load {
            connections,
            frame_bytes,
            frames_per_connection: if quick {
                (frames_per_connection / 10).max(2)
            } else {
                frames_per_connection
            },
        },
    };
    vec![
        shape("1x200KB", 1, 200_000, 2000),
        shape("64x50KB", 64, 50_000, 120),
        shape("1000x20KB", 1000, 20_000, 20),
    ]
}

/// WELCOME's `max_in_flight` in the native runs: the daemon's default, or
/// `FG_BENCH_MAX_IN_FLIGHT` (see `daemon::config`).
fn native_window() -> usize {
    std::env::var("FG_BENCH_MAX_IN_FLIGHT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
}

/// The shapes of the native comparison. A native device first sends a whole window of frames
/// at once; a shape with fewer than four windows per connection (1000x20KB: 20 frames against
/// 16) would mostly measure how that first burst is absorbed, not the throughput a stream
/// keeps up. Such a shape runs at four windows per connection under its own name, and as it
/// is under `NAME-first-window`.
fn native_scenarios(quick: bool) -> Vec<Scenario> {
    let steady = 4 * native_window();
    let mut shapes = Vec::new();
    for s in scenarios(quick) {
        if quick || s.load.frames_per_connection >= steady {
            shapes.push(s);
            continue;
        }
        // Which shapes are short depends on FG_BENCH_MAX_IN_FLIGHT.
        let first_window = match s.name {
            "1x200KB" => "1x200KB-first-window",
            "64x50KB" => "64x50KB-first-window",
            "1000x20KB" => "1000x20KB-first-window",
            other => panic!("no first-window name for the shape {other}"),
        };
        shapes.push(Scenario {
            name: s.name,
            load: Load {
                frames_per_connection: steady,
                ..s.load
            },
        });
        shapes.push(Scenario {
            name: first_window,
            load: s.load,
        });
    }
    shapes
}

/// The native comparison: u32le and native listeners, both into `discard`.
const NATIVE_PAIR: [Receiver; 2] = [
    Receiver::Daemon(SinkKind::Discard),
    Receiver::Native(SinkKind::Discard),
];

/// The device generators the native comparison runs: `FG_BENCH_DEVICES=pollers` or
/// `threads` picks one; by default both, pollers first.
fn native_generators() -> Vec<Generator> {
    match std::env::var("FG_BENCH_DEVICES").as_deref() {
        Ok("pollers") => vec![Generator::Pollers],
        Ok("threads") => vec![Generator::Threads],
        _ => vec![Generator::Pollers, Generator::Threads],
    }
}

const RECEIVERS: [Receiver; 4] = [
    Receiver::Baseline,
    Receiver::Daemon(SinkKind::Discard),
    Receiver::Daemon(SinkKind::File { fsync: true }),
    Receiver::Daemon(SinkKind::File { fsync: false }),
];

fn main() -> ExitCode {
    let quick = std::env::var("FG_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let rounds: usize = std::env::var("FG_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { 5 })
        // Up to 45: a 15-round median of the 1000-device shapes still moves ±8 points here.
        .clamp(1, 45);
    // cargo passes `--bench`; every other word is a filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    let native_selected = |name: &str| {
        let name = format!("native-{name}");
        filters.is_empty()
            || filters
                .iter()
                .any(|f| f.starts_with("native") && name.contains(f.as_str()))
    };

    let (root_parent, on_tmpfs) = if system::is_tmpfs(Path::new(TMPFS)) {
        (PathBuf::from(TMPFS), true)
    } else {
        (std::env::temp_dir(), false)
    };
    let root = match tempfile::Builder::new()
        .prefix("fg-bench-")
        .tempdir_in(&root_parent)
    {
        Ok(root) => root,
        Err(e) => {
            eprintln!(
                "error: cannot create a work directory in {}: {e}",
                root_parent.display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("# framegate ingest benchmark");
    println!();
    println!("- machine: {}", system::machine());
    println!(
        "- work directory (file sink output, sequence state): {} — {}",
        root.path().display(),
        if on_tmpfs {
            "tmpfs (per /proc/mounts)"
        } else {
            "NOT tmpfs: /dev/shm is not a tmpfs mount here"
        }
    );
    println!(
        "- mode: {}, {rounds} round(s) per scenario, receivers interleaved within each round; medians reported",
        if quick { "QUICK (a tenth of the data)" } else { "full" }
    );
    println!("- sizes: KB = 1000 bytes, MB = 10^6 bytes of payload (length headers not counted)");
    println!();

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut run_index = 0;
    for scenario in scenarios(quick).iter().filter(|s| selected(s.name)) {
        let l = &scenario.load;
        eprintln!(
            "== {}: {} connection(s) x {} frames x {} bytes = {:.0} MB",
            scenario.name,
            l.connections,
            l.frames_per_connection,
            l.frame_bytes,
            l.bytes() as f64 / 1e6
        );
        let mut timings: Vec<Vec<Timing>> = vec![Vec::new(); RECEIVERS.len()];
        for round in 0..rounds {
            for (i, receiver) in RECEIVERS.iter().enumerate() {
                run_index += 1;
                let generator = Generator::Threads;
                match measure(root.path(), run_index, l, *receiver, generator, round, cpus) {
                    Ok(t) => timings[i].push(t),
                    Err(e) => {
                        failures.push(format!("{} / {}: {e}", scenario.name, receiver.label()))
                    }
                }
            }
        }
        rows.push((scenario.name, *l, timings));
    }

    if !rows.is_empty() {
        report::throughput_table(&rows, &RECEIVERS);
    }

    let generators = native_generators();
    // Per generator: its rows.
    let mut native_rows: Vec<Vec<report::NativeRow>> = vec![Vec::new(); generators.len()];
    for scenario in native_scenarios(quick)
        .iter()
        .filter(|s| native_selected(s.name))
    {
        let l = &scenario.load;
        eprintln!(
            "== native vs u32le, {}: {} connection(s) x {} frames x {} bytes = {:.0} MB",
            scenario.name,
            l.connections,
            l.frames_per_connection,
            l.frame_bytes,
            l.bytes() as f64 / 1e6
        );
        // Per generator, per round: [u32le, native]. Within a round every generator runs
        // its pair, so all of them see the same state of a shared machine; the order within
        // a pair alternates between rounds.
        let mut pairs: Vec<Vec<[Option<Timing>; 2]>> = vec![Vec::new(); generators.len()];
        for round in 0..rounds {
            for (g, generator) in generators.iter().enumerate() {
                let mut pair = [None, None];
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for i in order {
                    let receiver = NATIVE_PAIR[i];
                    run_index += 1;
                    match measure(root.path(), run_index, l, receiver, *generator, round, cpus) {
                        Ok(t) => pair[i] = Some(t),
                        Err(e) => failures.push(format!(
                            "native vs u32le {} / {} / {}: {e}",
                            scenario.name,
                            receiver.label(),
                            generator.label()
                        )),
                    }
                }
                pairs[g].push(pair);
            }
        }
        for (g, pairs) in pairs.into_iter().enumerate() {
            native_rows[g].push((scenario.name, *l, pairs));
        }
    }
    for (generator, rows) in generators.iter().zip(&native_rows) {
        if !rows.is_empty() {
            report::native_table(*generator, rows);
        }
    }

    if selected("idle") {
        eprintln!("== idle: {} silent connections", idle::IDLE_CONNECTIONS);
        let dir = root.path().join("idle");
        let result = fs::create_dir(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| idle::measure(&dir));
        match result {
            Ok(r) => report::idle(&r),
            Err(e) => {
                eprintln!("  FAILED: {e}");
                failures.push(format!("idle: {e}"));
            }
        }
    }

    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!();
        println!("## Correctness failures");
        println!();
        for f in &failures {
            println!("- {f}");
        }
        ExitCode::FAILURE
    }
}

/// One run of `load` into `receiver` in a fresh directory under `root`, with its progress line
/// on stderr. An error means a correctness check failed.
fn measure(
    root: &Path,
    run_index: usize,
    l: &Load,
    receiver: Receiver,
    generator: Generator,
    round: usize,
    cpus: usize,
) -> Result<Timing, String> {
    let dir = root.join(format!("run-{run_index}"));
    let result = fs::create_dir(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
        .and_then(|()| run::once(l, receiver, generator, &dir));
    // Free the tmpfs memory before the next run.
    let _ = fs::remove_dir_all(&dir);
    match &result {
        Ok(t) => {
            let cores = t.cpu_seconds / t.to_eof.as_secs_f64().max(1e-9);
            let event_loop = t.cpu.map_or(String::new(), |c| {
                format!(", event loop {:.0}%", c.event_loop * 100.0)
            });
            let last = match receiver {
                Receiver::Native(_) => "last ACK",
                _ => "last EOF",
            };
            let devices = match generator {
                Generator::Threads => "",
                Generator::Pollers => " (pollers)",
            };
            eprintln!(
                "  round {}{devices} {:<28} {:>8.1} MB/s  ({last} {:>7.1} ms, done {:>7.1} ms; receiver CPU {cores:.2} cores{event_loop})",
                round + 1,
                receiver.label(),
                report::mb_per_s(l.bytes(), t.total),
                report::ms(t.to_eof),
                report::ms(t.total),
            );
            // More CPU than the machine has means the clock or the CPU accounting missed part
            // of the run: say so rather than report it silently.
            if cores > cpus as f64 * 1.1 {
                eprintln!("    suspect measurement: {cores:.2} cores used on a {cpus}-CPU machine");
            }
        }
        Err(e) => eprintln!("  round {} {}: FAILED: {e}", round + 1, receiver.label()),
    }
    result
}
