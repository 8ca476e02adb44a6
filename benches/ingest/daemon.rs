//! The daemon under test: the real `framegate` binary with a generated config, its stderr
//! drained on a thread, stopped with SIGTERM so its sinks finish what they were given.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the daemon may take to log `framegate ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM (its own drain limit is 30 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Warning and error lines kept for the report; more are only counted.
const KEEP_LINES: usize = 20;

/// The sink every frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `type = "discard"`.
    Discard,
    /// `type = "file"` under the run's directory, with this `fsync`.
    File {
        /// The `fsync` setting.
        fsync: bool,
    },
}

impl SinkKind {
    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            SinkKind::Discard => "discard",
            SinkKind::File { fsync: true } => "file (fsync)",
            SinkKind::File { fsync: false } => "file (no fsync)",
        }
    }
}

/// What the daemon's log said, collected by the drain thread.
#[derive(Debug, Default)]
pub struct LogSummary {
    /// `WARN` and `ERROR` lines (the first few).
    pub problems: Vec<String>,
    /// How many `WARN` or `ERROR` lines there were.
    pub problem_count: usize,
    /// `ERROR` lines among them.
    pub error_count: usize,
    /// From the final `sink NAME: N frames (B bytes) committed, F failed` line.
    pub committed: Option<(u64, u64, u64)>,
}

/// How a stopped daemon ended.
#[derive(Debug)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// When it exited.
    pub exited: Instant,
    /// Its log, summarised.
    pub log: LogSummary,
}

/// A running daemon; killed if dropped without [`Daemon::stop`].
pub struct Daemon {
    child: Child,
    /// Where devices connect.
    pub addr: SocketAddr,
    log: Arc<Mutex<LogSummary>>,
    drain: Option<JoinHandle<()>>,
}

enum Startup {
    Listening(String),
    Ready,
}

/// How the bench listener frames its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `framing = "u32le"`: length-prefixed frames, no answers.
    U32Le,
    /// `framing = "native"`: HELLO/WELCOME, an ACK per frame once committed and recorded.
    Native,
}

impl Framing {
    fn config_name(self) -> &'static str {
        match self {
            Framing::U32Le => "u32le",
            Framing::Native => "native",
        }
    }
}

/// The address the daemon listens on: 127.0.0.1, or `FG_BENCH_BIND` (set by
/// `benches/netns.sh` to the daemon's end of a veth link).
pub fn bind_address() -> String {
    std::env::var("FG_BENCH_BIND")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// The network namespace the daemon runs in: `FG_BENCH_DAEMON_NETNS` (set by
/// `benches/netns.sh`), or none (the bench's own).
fn daemon_netns() -> Option<String> {
    std::env::var("FG_BENCH_DAEMON_NETNS")
        .ok()
        .filter(|ns| !ns.is_empty())
}

/// Where the devices reach the daemon, for the reports: loopback, or (`benches/netns.sh`)
/// a veth link between two network namespaces.
pub fn network() -> String {
    match daemon_netns() {
        Some(ns) => format!(
            "a veth link with threaded NAPI: the daemon in network namespace {ns:?} on {}, the devices in another",
            bind_address()
        ),
        None => "loopback".to_string(),
    }
}

/// The config for one run in `dir`: one listener on 127.0.0.1:0 (or [`bind_address`]) with
/// `framing`, one sink.
/// Native sessions keep the defaults (`max_in_flight` 16, heartbeat 10 s) unless
/// `FG_BENCH_MAX_IN_FLIGHT=N` sets `max_in_flight` (to see whether the window limits a run).
pub fn config(dir: &Path, sink: SinkKind, framing: Framing) -> String {
    let window = match (framing, std::env::var("FG_BENCH_MAX_IN_FLIGHT")) {
        (Framing::Native, Ok(n)) if !n.is_empty() => format!("max_in_flight = {n}\n"),
        _ => String::new(),
    };
    let sink = match sink {
        SinkKind::Discard => "type = \"discard\"".to_string(),
        SinkKind::File { fsync } => format!(
            "type = \"file\"\npath = \"{}/frames/{{device}}/{{seq}}.{{ext}}\"\nfsync = {fsync}",
            dir.display()
        ),
    };
    format!(
        r#"state_dir = "{state}"
max_connections = 12000

[log]
level = "info"

[[listener]]
name = "bench"
bind = "{bind}:0"
framing = "{framing}"
idle_timeout = "10m"
{window}
[[sink]]
name = "out"
{sink}
"#,
        state = dir.join("state").display(),
        framing = framing.config_name(),
        bind = bind_address(),
    )
}

impl Daemon {
    /// Writes the config into `dir` (a u32le listener), starts the daemon, waits for
    /// `framegate ready`.
    pub fn start(dir: &Path, sink: SinkKind) -> Result<Daemon, String> {
        Daemon::start_with(dir, sink, Framing::U32Le)
    }

    /// Like [`Daemon::start`], with the listener's framing chosen.
    pub fn start_with(dir: &Path, sink: SinkKind, framing: Framing) -> Result<Daemon, String> {
        Daemon::start_config(dir, &config(dir, sink, framing))
    }

    /// Writes `config` as `dir/framegate.toml` and starts a daemon on it; [`Daemon::addr`] is
    /// its (one) listener's address, and [`Stopped::log`]'s `committed` comes from a sink
    /// named `out`.
    pub fn start_config(dir: &Path, config: &str) -> Result<Daemon, String> {
        let config_path: PathBuf = dir.join("framegate.toml");
        fs::write(&config_path, config)
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        // FG_BENCH_FRAMEGATE runs another build (an A/B comparison of two commits).
        let binary = std::env::var_os("FG_BENCH_FRAMEGATE")
            .filter(|b| !b.is_empty())
            .map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_framegate")),
                PathBuf::from,
            );
        // FG_BENCH_DAEMON_NETNS runs it in that network namespace; `ip netns exec` execs
        // in place, so the pid the bench samples stays the daemon's.
        let mut command = match daemon_netns() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env_remove("FRAMEGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting framegate: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(LogSummary::default()));
        let (tx, rx) = mpsc::channel();
        let drain = {
            let log = log.clone();
            thread::Builder::new()
                .name("daemon-stderr".into())
                .spawn(move || drain_log(BufReader::new(stderr), &log, &tx))
                .map_err(|e| format!("starting the log thread: {e}"))?
        };
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            drain: Some(drain),
        };
        daemon.addr = wait_ready(&rx)?;
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM, waits (bounded) for the exit, and returns how it went.
    pub fn stop(mut self) -> Result<Stopped, String> {
        let sent = Instant::now();
        // SAFETY: kill(2) with our own child's pid; the child is not reaped yet, so the pid
        // cannot have been reused.
        if unsafe { libc::kill(self.pid(), libc::SIGTERM) } != 0 {
            return Err(format!("SIGTERM: {}", std::io::Error::last_os_error()));
        }
        let deadline = sent + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
                Ok(None) => {
                    return Err(format!(
                        "framegate still running {STOP_TIMEOUT:?} after SIGTERM"
                    ))
                }
                Err(e) => return Err(format!("waiting for framegate: {e}")),
            }
        };
        let exited = Instant::now();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        Ok(Stopped {
            status,
            exited,
            log,
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only reached without a clean stop (a failed run or a panic): leave nothing behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_ready(rx: &Receiver<Startup>) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut addr = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Startup::Listening(a)) => {
                addr = Some(
                    a.parse::<SocketAddr>()
                        .map_err(|e| format!("bad listening address {a:?}: {e}"))?,
                )
            }
            Ok(Startup::Ready) => {
                return addr.ok_or_else(|| "ready without a `listening on` line".to_string())
            }
            Err(_) => {
                return Err(format!(
                    "framegate did not log `framegate ready` within {START_TIMEOUT:?}"
                ))
            }
        }
    }
}

/// Reads the daemon's stderr to its end, so the daemon never blocks on a full pipe.
fn drain_log(stderr: impl BufRead, log: &Mutex<LogSummary>, startup: &Sender<Startup>) {
    for line in stderr.lines() {
        let Ok(line) = line else { return };
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            let _ = startup.send(Startup::Listening(addr.to_string()));
        } else if line.contains("framegate ready") {
            let _ = startup.send(Startup::Ready);
        }
        let level = line.split_whitespace().nth(1).unwrap_or_default();
        let mut log = log.lock().unwrap();
        if level == "WARN" || level == "ERROR" {
            log.problem_count += 1;
            log.error_count += usize::from(level == "ERROR");
            if log.problems.len() < KEEP_LINES {
                log.problems.push(line.clone());
            }
        }
        if let Some(counts) = committed_counts(&line) {
            log.committed = Some(counts);
        }
    }
}

/// Parses `sink out: N frames (B bytes) committed, F failed`.
fn committed_counts(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.split(" sink out: ").nth(1)?;
    let mut words = rest.split_whitespace();
    let frames = words.next()?.parse().ok()?;
    let _ = words.next()?; // "frames"
    let bytes = words.next()?.trim_start_matches('(').parse().ok()?;
    let failed = rest
        .split("committed, ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((frames, bytes, failed))
}
