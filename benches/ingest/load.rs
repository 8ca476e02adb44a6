//! The load generator: N device threads, each sending M u32le frames over one 127.0.0.1
//! connection, then the zero-length end marker, then waiting for the receiver to close.
//!
//! The same generator drives the daemon and the baseline reader, so the two see identical
//! traffic. Connections are opened before the clock starts: the timed part is moving frames.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a device waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write or read may block before the run counts as failed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the generator waits for every device thread to connect.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Device threads only copy from a shared buffer; they need little stack.
const DEVICE_STACK: usize = 256 * 1024;

/// What every device sends.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent connections (one thread each).
    pub connections: usize,
    /// Frames each connection sends before the end marker.
    pub frames_per_connection: usize,
    /// Payload bytes per frame.
    pub frame_bytes: usize,
}

impl Load {
    /// Frames sent over all connections.
    pub fn frames(&self) -> u64 {
        (self.connections * self.frames_per_connection) as u64
    }

    /// Payload bytes sent over all connections (headers not counted).
    pub fn bytes(&self) -> u64 {
        self.frames() * self.frame_bytes as u64
    }

    /// One frame on the wire: the u32le length, then a JPEG-looking payload (SOI + APP0
    /// marker first, so the daemon names it `.jpg`).
    pub fn wire_frame(&self) -> Arc<[u8]> {
        let len = u32::try_from(self.frame_bytes).expect("frame size fits u32");
        let mut wire = Vec::with_capacity(4 + self.frame_bytes);
        wire.extend_from_slice(&len.to_le_bytes());
        let magic = [0xFF, 0xD8, 0xFF, 0xE0];
        wire.extend((0..self.frame_bytes).map(|i| match magic.get(i) {
            Some(b) => *b,
            // Not constant, so nothing along the way can shortcut runs of equal bytes.
            None => (i.wrapping_mul(31) ^ (i >> 7)) as u8,
        }));
        Arc::from(wire)
    }
}

/// The result of one load run, with the caller's samples (e.g. CPU counters) taken just
/// before the devices were released and just after the last one finished.
#[derive(Debug)]
pub struct Outcome<S> {
    /// The sample at the start, after every device connected.
    pub at_start: S,
    /// The sample at the end.
    pub at_end: S,
    /// When the devices were released (the clock's start).
    pub started: Instant,
    /// When the last device saw the receiver close its connection.
    pub finished: Instant,
    /// One line per device that failed; empty when every device succeeded.
    pub failures: Vec<String>,
}

impl<S> Outcome<S> {
    /// Start to last EOF.
    pub fn elapsed(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}

/// Releases every device thread at once. Unlike `std::sync::Barrier` it cannot hang: waits
/// are bounded and the generator can call the run off if a thread could not be started.
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    ready: usize,
    /// `None` while closed; `Some(true)` to go, `Some(false)` to abandon the run.
    verdict: Option<bool>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        }
    }

    /// Called by each device once connected (or failed to): true to start sending.
    pub fn arrive_and_wait(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        s.ready += 1;
        self.changed.notify_all();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, READY_TIMEOUT * 2, |s| s.verdict.is_none())
            .unwrap();
        s.verdict == Some(true)
    }

    /// Waits (bounded) until `count` devices arrived; true if they all did.
    fn all_arrived(&self, count: usize) -> bool {
        let s = self.state.lock().unwrap();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, READY_TIMEOUT, |s| s.ready < count)
            .unwrap();
        s.ready >= count
    }

    /// Lets every device go.
    fn open(&self) {
        self.state.lock().unwrap().verdict = Some(true);
        self.changed.notify_all();
    }

    /// Calls the run off: every device returns without sending.
    fn abandon(&self) {
        self.state.lock().unwrap().verdict = Some(false);
        self.changed.notify_all();
    }
}

/// Runs `load` against `addr`; returns once every device finished or failed. Once every
/// device is connected, `settle` waits for the receiver to take the connections up; then
/// `sample` is called, the clock starts and the devices go; `sample` is called again right
/// after the last device finished. Setup stays outside the clock and the samples.
pub fn run<S>(
    addr: SocketAddr,
    load: &Load,
    settle: impl FnOnce(),
    sample: impl Fn() -> S,
) -> Outcome<S> {
    let wire = load.wire_frame();
    let frames = load.frames_per_connection;
    run_devices(load, settle, sample, move |_, gate| {
        device(addr, frames, &wire, gate)
    })
}

/// [`run`] with another device: `device(index, gate)` runs on each device thread; it must
/// call `gate.arrive_and_wait()` exactly once (after connecting, before the timed part) and
/// return when it is done (`Some(when)`), called off (`None`), or failed.
pub fn run_devices<S, D>(
    load: &Load,
    settle: impl FnOnce(),
    sample: impl Fn() -> S,
    device: D,
) -> Outcome<S>
where
    D: Fn(usize, &Gate) -> Result<Option<Instant>, String> + Send + Sync + 'static,
{
    run_threads(load.connections, "device", settle, sample, device)
}

/// [`run_devices`] with `count` threads named `{name}-N`, whatever the load's connection
/// count: each thread may drive several connections (see `events.rs`).
pub fn run_threads<S, D>(
    count: usize,
    name: &str,
    settle: impl FnOnce(),
    sample: impl Fn() -> S,
    device: D,
) -> Outcome<S>
where
    D: Fn(usize, &Gate) -> Result<Option<Instant>, String> + Send + Sync + 'static,
{
    let device = Arc::new(device);
    let gate = Arc::new(Gate::new());
    let mut devices = Vec::with_capacity(count);
    let mut failures = Vec::new();
    for i in 0..count {
        let (device, gate) = (device.clone(), gate.clone());
        let spawned = thread::Builder::new()
            .name(format!("{name}-{i}"))
            .stack_size(DEVICE_STACK)
            .spawn(move || device(i, &gate));
        match spawned {
            Ok(handle) => devices.push(handle),
            Err(e) => {
                failures.push(format!("cannot start {name} thread {i}: {e}"));
                break;
            }
        }
    }
    if failures.is_empty() && !gate.all_arrived(devices.len()) {
        failures.push(format!(
            "not every {name} thread reported within {READY_TIMEOUT:?}"
        ));
    }
    if failures.is_empty() {
        settle();
    }
    let at_start = sample();
    // The clock starts before the gate opens: once it does, this thread competes with every
    // woken device for the CPUs and might read the clock only after many of them finished.
    let started = Instant::now();
    if failures.is_empty() {
        gate.open();
    } else {
        gate.abandon();
    }
    let mut finished = started;
    for (i, handle) in devices.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(Some(at))) => finished = finished.max(at),
            Ok(Ok(None)) => {} // the run was called off; the reason is already recorded
            Ok(Err(e)) => failures.push(format!("{name} {i}: {e}")),
            Err(_) => failures.push(format!("{name} {i}: thread panicked")),
        }
    }
    let at_end = sample();
    Outcome {
        at_start,
        at_end,
        started,
        finished,
        failures,
    }
}

/// One device: connect, wait for the start, send, end, wait for the receiver to close.
/// Returns when it saw EOF, or `None` when the run was called off.
fn device(
    addr: SocketAddr,
    frames: usize,
    wire: &[u8],
    gate: &Gate,
) -> Result<Option<Instant>, String> {
    // Arrive at the gate whatever happened, so the generator never waits for a lost thread.
    let connected = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
    if !gate.arrive_and_wait() {
        return Ok(None);
    }
    let mut stream = connected.map_err(|e| format!("connect to {addr}: {e}"))?;
    let step = |what: &str, r: io::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    step("set timeout", stream.set_write_timeout(Some(IO_TIMEOUT)))?;
    step("set timeout", stream.set_read_timeout(Some(IO_TIMEOUT)))?;
    for n in 0..frames {
        step(&format!("write frame {n}"), stream.write_all(wire))?;
    }
    step("write end marker", stream.write_all(&0u32.to_le_bytes()))?;
    step("shutdown(Write)", stream.shutdown(Shutdown::Write))?;
    // The receiver sends nothing; its close after the end marker proves it read every byte.
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Some(Instant::now())),
            Ok(n) => return Err(format!("receiver sent {n} unexpected bytes")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("waiting for the receiver to close: {e}")),
        }
    }
    Err("read interrupted too often".to_string())
}
