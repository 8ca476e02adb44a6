//! Idle connections: the daemon's RSS before and after 10,000 devices connect and stay
//! silent (connected, no bytes sent), the "held in < 64 MiB RSS".

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::daemon::{Daemon, SinkKind};
use super::system;

/// The target for [`IDLE_CONNECTIONS`] idle connections.
pub const RSS_TARGET: u64 = 64 << 20;
/// Connections held open.
pub const IDLE_CONNECTIONS: usize = 10_000;
/// How long the daemon gets to accept them all.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Settling time before RSS is read, so the reading is not mid-accept.
const SETTLE: Duration = Duration::from_millis(500);

/// What the idle measurement found.
#[derive(Debug)]
pub struct IdleResult {
    /// Connections the daemon held at the measurement.
    pub connections: usize,
    /// VmRSS after start, before any connection.
    pub rss_start: u64,
    /// VmRSS with every connection open and silent.
    pub rss_idle: u64,
    /// VmHWM (peak RSS) at that point.
    pub hwm_idle: u64,
    /// VmRSS after one small frame on every 10th connection, which then fell silent again.
    pub rss_after_frames: u64,
}

/// Runs the measurement with a discard-sink daemon whose files live in `dir`.
pub fn measure(dir: &Path) -> Result<IdleResult, String> {
    let limit = framegate::net::limits::raise_nofile()
        .map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    if limit < IDLE_CONNECTIONS as u64 + 100 {
        return Err(format!(
            "RLIMIT_NOFILE hard limit {limit} is below {} + 100; raise it (ulimit -Hn)",
            IDLE_CONNECTIONS
        ));
    }
    let daemon = Daemon::start(dir, SinkKind::Discard)?;
    let pid = daemon.pid();
    thread::sleep(SETTLE);
    let read = |field| system::status_bytes(pid, field).ok_or(format!("cannot read {field}"));
    let rss_start = read("VmRSS:")?;
    let fds_start = system::open_fds(pid).ok_or("cannot list the daemon's fds")?;

    let mut devices = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let stream = TcpStream::connect_timeout(&daemon.addr, Duration::from_secs(10))
            .map_err(|e| format!("idle connection {i}: {e}"))?;
        devices.push(stream);
    }
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    let mut held = 0;
    while Instant::now() < deadline {
        held = system::open_fds(pid).unwrap_or(0).saturating_sub(fds_start);
        if held >= IDLE_CONNECTIONS {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if held < IDLE_CONNECTIONS {
        return Err(format!(
            "the daemon holds {held} of {IDLE_CONNECTIONS} connections after {ACCEPT_TIMEOUT:?}"
        ));
    }
    thread::sleep(SETTLE);
    let rss_idle = read("VmRSS:")?;
    let hwm_idle = read("VmHWM:")?;

    // A second look: connections that each carried one small frame and went quiet again
    // should cost no more than fresh ones (nothing per-frame may stay behind).
    let mut frame = 1024u32.to_le_bytes().to_vec();
    frame.extend([0xFF, 0xD8, 0xFF, 0xE0]);
    frame.resize(4 + 1024, 0x55);
    for (i, stream) in devices.iter_mut().enumerate().step_by(10) {
        stream
            .write_all(&frame)
            .map_err(|e| format!("frame on idle connection {i}: {e}"))?;
    }
    thread::sleep(SETTLE * 2);
    let rss_after_frames = read("VmRSS:")?;

    drop(devices);
    let stopped = daemon.stop()?;
    if !stopped.status.success() {
        return Err(format!("framegate exited with {}", stopped.status));
    }
    let (frames, _, failed) = stopped.log.committed.unwrap_or_default();
    let want = (IDLE_CONNECTIONS / 10) as u64;
    if frames != want || failed != 0 {
        return Err(format!(
            "idle run: the sink committed {frames} frames ({failed} failed), expected {want}"
        ));
    }
    Ok(IdleResult {
        connections: held,
        rss_start,
        rss_idle,
        hwm_idle,
        rss_after_frames,
    })
}
