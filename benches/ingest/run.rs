//! One measured run: the load generator against the baseline reader or against a fresh
//! daemon, with the correctness checks that make its number trustworthy.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::baseline::Reader;
use super::daemon::{Daemon, Framing, SinkKind};
use super::events::{self, Wire};
use super::load::{self, Load};
use super::native;
use super::system;

/// How long a receiver may take to take up connections that are already open; past it the
/// run goes ahead (a missing connection then shows up as a failed device).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What receives the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// The minimal blocking reader in this process.
    Baseline,
    /// The framegate binary with this sink, a u32le listener.
    Daemon(SinkKind),
    /// The framegate binary with this sink, a native listener: devices wait for ACKs.
    Native(SinkKind),
}

impl Receiver {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Receiver::Baseline => "blocking reader (baseline)",
            Receiver::Daemon(sink) => sink.label(),
            Receiver::Native(SinkKind::Discard) => "native + ACKs, discard",
            Receiver::Native(SinkKind::File { fsync: true }) => "native + ACKs, file (fsync)",
            Receiver::Native(SinkKind::File { fsync: false }) => "native + ACKs, file (no fsync)",
        }
    }
}

/// The daemon's CPU counters in ns: its event-loop thread, and the whole process.
struct CpuSample {
    event_loop: Option<u64>,
    daemon: Option<u64>,
    /// This process: the load generator's device threads.
    generator: u64,
}

/// The timings of one successful run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Start until the last device saw EOF (every frame read); over the native protocol, until
    /// the last device had its last ACK (every frame committed).
    pub to_eof: Duration,
    /// Start until the receiver was done: for the daemon, its exit after SIGTERM (sinks
    /// drained, every file committed); for the baseline, the same as `to_eof`.
    pub total: Duration,
    /// For the daemon, until the last EOF: share of the time its event-loop thread (the main
    /// thread) was on a CPU.
    pub cpu: Option<DaemonCpu>,
    /// CPU seconds the receiver used to take the frames: the daemon's whole process from the
    /// start until the last EOF, or the sum of the baseline's reader threads. Other tenants
    /// of a shared machine slow a run down but do not add to this.
    pub cpu_seconds: f64,
    /// CPU seconds the load generator (the devices) used over the same span; it shares the
    /// machine's CPUs with the receiver. Not measured for the baseline.
    pub generator_cpu_seconds: f64,
}

/// How busy the daemon was while frames arrived.
#[derive(Debug, Clone, Copy)]
pub struct DaemonCpu {
    /// Event-loop thread CPU time / wall time (1.0 = one core all the time).
    pub event_loop: f64,
}

/// How the devices are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    /// A blocking thread per device (`load.rs`, `native.rs`).
    Threads,
    /// A few threads polling non-blocking devices (`events.rs`).
    Pollers,
}

impl Generator {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Generator::Threads => "a thread per device",
            Generator::Pollers => "a poller thread per CPU",
        }
    }
}

/// Runs `load` once into `receiver`, its devices driven by `generator`; `dir` is an empty
/// directory for the daemon's files. An error means a correctness check failed, not a slow
/// run.
pub fn once(
    load: &Load,
    receiver: Receiver,
    generator: Generator,
    dir: &Path,
) -> Result<Timing, String> {
    match receiver {
        Receiver::Baseline => baseline(load),
        Receiver::Daemon(sink) => daemon(load, sink, Framing::U32Le, generator, dir),
        Receiver::Native(sink) => daemon(load, sink, Framing::Native, generator, dir),
    }
}

fn baseline(load: &Load) -> Result<Timing, String> {
    let reader = Reader::start(load.connections).map_err(|e| format!("baseline: {e}"))?;
    // Every connection has its reader thread before the clock starts, as every connection is
    // accepted by the daemon before its clock starts (see `daemon`).
    let outcome = load::run(
        reader.addr,
        load,
        || {
            reader.wait_serving(load.connections, SETTLE_TIMEOUT);
        },
        || (),
    );
    let totals = reader.finish()?;
    if let Some(first) = outcome.failures.first() {
        return Err(format!(
            "{} device(s) failed; first: {first}",
            outcome.failures.len()
        ));
    }
    let (got, want) = ((totals.frames, totals.bytes), (load.frames(), load.bytes()));
    if got != want {
        return Err(format!(
            "baseline read (frames, bytes) = {got:?}, expected {want:?}"
        ));
    }
    Ok(Timing {
        to_eof: outcome.elapsed(),
        total: outcome.elapsed(),
        cpu: None,
        cpu_seconds: totals.cpu_ns as f64 / 1e9,
        generator_cpu_seconds: 0.0,
    })
}

fn daemon(
    load: &Load,
    sink: SinkKind,
    framing: Framing,
    generator: Generator,
    dir: &Path,
) -> Result<Timing, String> {
    let daemon = Daemon::start_with(dir, sink, framing)?;
    let pid = daemon.pid();
    let fds_idle = system::open_fds(pid).unwrap_or(0);
    // Accepting (and logging) the connections happens before the clock starts; so does the
    // native handshake.
    let settle = || wait_for_fds(pid, fds_idle + load.connections);
    let sample = || CpuSample {
        event_loop: system::thread_cpu_ns(pid, pid),
        daemon: system::process_cpu_ns(pid),
        generator: system::own_process_cpu_ns(),
    };
    let outcome = match (generator, framing) {
        (Generator::Threads, Framing::U32Le) => load::run(daemon.addr, load, settle, sample),
        (Generator::Threads, Framing::Native) => native::run(daemon.addr, load, settle, sample),
        (Generator::Pollers, Framing::U32Le) => {
            events::run(daemon.addr, load, Wire::U32Le, settle, sample)
        }
        (Generator::Pollers, Framing::Native) => {
            events::run(daemon.addr, load, Wire::Native, settle, sample)
        }
    };
    let (a, b) = (&outcome.at_start, &outcome.at_end);
    let daemon_ns = b
        .daemon
        .zip(a.daemon)
        .map_or(0, |(b, a)| b.saturating_sub(a));
    let wall = outcome.elapsed().as_secs_f64().max(1e-9);
    let share = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / 1e9 / wall);
    let cpu = share(a.event_loop, b.event_loop).map(|event_loop| DaemonCpu { event_loop });
    // Stop even after failures, so the daemon's log can explain them.
    let stopped = daemon.stop()?;
    let mut problems = Vec::new();
    if let Some(first) = outcome.failures.first() {
        problems.push(format!(
            "{} device(s) failed; first: {first}",
            outcome.failures.len()
        ));
    }
    if !stopped.status.success() {
        problems.push(format!("framegate exited with {}", stopped.status));
    }
    if stopped.log.problem_count > 0 {
        // Nothing in a clean run deserves a warning; show what the daemon said.
        eprintln!(
            "    framegate logged {} warning/error line(s), e.g.:",
            stopped.log.problem_count
        );
        for line in &stopped.log.problems {
            eprintln!("      {line}");
        }
        if stopped.log.error_count > 0 {
            problems.push(format!(
                "framegate logged {} error(s)",
                stopped.log.error_count
            ));
        }
    }
    let want = (load.frames(), load.bytes(), 0);
    match stopped.log.committed {
        Some(got) if got == want => {}
        got => problems.push(format!(
            "sink reported (frames, bytes, failed) = {got:?}, expected {want:?}"
        )),
    }
    if framing == Framing::Native {
        if let Err(e) = check_committed(&dir.join("state"), load) {
            problems.push(e);
        }
    }
    if let SinkKind::File { .. } = sink {
        let (files, bytes, temps) = count_files(&dir.join("frames"))?;
        if (files, bytes, temps) != (load.frames(), load.bytes(), 0) {
            problems.push(format!(
                "found {files} files ({bytes} bytes) and {temps} temp files; expected {} files ({} bytes), no temp files",
                load.frames(),
                load.bytes()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(Timing {
        to_eof: outcome.elapsed(),
        total: stopped.exited.saturating_duration_since(outcome.started),
        cpu,
        cpu_seconds: daemon_ns as f64 / 1e9,
        generator_cpu_seconds: b.generator.saturating_sub(a.generator) as f64 / 1e9,
    })
}

/// Checks that the daemon's durable record of native commits (`committed.toml` and
/// `committed.log`, read back the way the daemon reads them at start) holds every frame of
/// every native device: `bench-N` with `1..=frames per connection` and nothing above.
fn check_committed(state_dir: &Path, load: &Load) -> Result<(), String> {
    let committed = framegate::identity::committed::Committed::load(state_dir)
        .map_err(|e| format!("reading the commit record: {e}"))?;
    let last = load.frames_per_connection as u64;
    for i in 0..load.connections {
        let device = format!("bench-{i}");
        if committed.highest(&device) != last || !(1..=last).all(|s| committed.contains(&device, s))
        {
            return Err(format!(
                "the commit record lacks frames of {device} (highest {}, expected 1..={last})",
                committed.highest(&device)
            ));
        }
    }
    Ok(())
}

/// Waits (bounded by [`SETTLE_TIMEOUT`]) until `pid` has at least `count` descriptors open.
fn wait_for_fds(pid: i32, count: usize) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while system::open_fds(pid).unwrap_or(0) < count && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

/// Files, their bytes, and leftover `.framegate-*.tmp` files below `root` (two levels:
/// `{device}/{seq}.{ext}`).
fn count_files(root: &Path) -> Result<(u64, u64, u64), String> {
    let (mut files, mut bytes, mut temps) = (0, 0, 0);
    let list = |d: &Path| fs::read_dir(d).map_err(|e| format!("listing {}: {e}", d.display()));
    for device in list(root)? {
        let device = device.map_err(|e| e.to_string())?.path();
        for entry in list(&device)? {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".framegate-") {
                temps += 1;
            } else if name.ends_with(".jpg") {
                files += 1;
                bytes += entry.metadata().map_err(|e| e.to_string())?.len();
            }
        }
    }
    Ok((files, bytes, temps))
}
