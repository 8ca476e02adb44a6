//! The forward sink: frames go to another framegate over the native protocol, through a
//! durable spool, exactly once.
//!
//! A frame is committed when it is in the spool and fsynced ([`crate::sink::spool`]); a
//! native device's ACK then goes out as usual (after every matching sink). A forwarder thread
//! ([`forwarder`]) sends spooled frames upstream, per device in sequence order over a link per
//! device ([`link`]), failing over along `to` ([`upstream`]), and removes each frame from the
//! spool when the upstream ACKs it. Frames keep their device id, sequence number (a native
//! device's own, or the number this gateway gave a legacy frame), capture time and metadata
//! (plus `via`, if configured). After a lost link or a restart, unacknowledged frames are sent
//! again; the upstream stores a (device, seq) once, so each frame ends up stored exactly once.
//!
//! The spool and its forwarder belong to the spool directory, not to one sink instance: when
//! a reload rebuilds the sink while the old instance still finishes its queue, both append to
//! the same spool and one forwarder (with the new settings) sends.

pub mod forwarder;
pub mod link;
#[cfg(test)]
mod tests;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use self::forwarder::{Forwarder, Settings};
use super::spool::record::RecordHead;
use super::spool::{Spool, SpoolConfig, SpoolError, SpoolStats};
use super::{Committed, Sink, SinkError};
use crate::config::{SinkConfig, SinkKind};
use crate::frame::Frame;
use crate::protocol::wire::MAX_DEVICE_ID;
use crate::protocol::ContentType;

/// Default `spool_max_bytes`.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Default `spool_fsync_interval`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(10);
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `workers`: frames committed at once, which share a group commit's fsync. An fsync
/// takes milliseconds on real disks, so throughput is about `workers` frames per fsync; the
/// threads mostly sleep.
pub const DEFAULT_WORKERS: usize = 32;

/// Settings of one `type = "forward"` sink.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardSinkConfig {
    /// Upstream `host:port` addresses, in preference order.
    pub to: Vec<String>,
    /// Secret for the challenge–response of every device forwarded.
    pub secret: Option<Vec<u8>>,
    /// Value of the `via` metadata entry added to every frame, if any.
    pub via: Option<String>,
    /// How long a TCP connect, and then the handshake, may take.
    pub connect_timeout: Duration,
    /// The spool's directory: `state_dir/spool/<sink name>` ([`spool_dir`]).
    pub spool_dir: PathBuf,
    /// Most bytes the spool may take on disk.
    pub spool_max_bytes: u64,
    /// How long a group commit waits for frames committed at the same moment.
    pub spool_fsync_interval: Duration,
}

impl std::fmt::Debug for ForwardSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and debug output.
        f.debug_struct("ForwardSinkConfig")
            .field("to", &self.to)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("via", &self.via)
            .field("connect_timeout", &self.connect_timeout)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("spool_fsync_interval", &self.spool_fsync_interval)
            .finish()
    }
}

/// Where the spool of sink `sink` lives under `state_dir`.
pub fn spool_dir(state_dir: &Path, sink: &str) -> PathBuf {
    state_dir.join("spool").join(sink)
}

/// Puts every forward sink's spool under `state_dir`. The daemon calls it again on reload
/// with the `state_dir` it runs with, which only a restart changes.
pub fn place_spools(sinks: &mut [SinkConfig], state_dir: &Path) {
    for sink in sinks {
        if let SinkKind::Forward(f) = &mut sink.kind {
            f.spool_dir = spool_dir(state_dir, &sink.name);
        }
    }
}

/// Checks that the upstream can take `device` as a HELLO device id: 1 to 64 bytes, no
/// control characters.
pub fn check_device(device: &str) -> Result<(), String> {
    if device.is_empty() || device.len() > MAX_DEVICE_ID {
        return Err(format!(
            "a native device id is 1 to {MAX_DEVICE_ID} bytes, this one is {}",
            device.len()
        ));
    }
    if device.chars().any(char::is_control) {
        return Err("a native device id has no control characters".into());
    }
    Ok(())
}

/// Spools frames for the upstream; see the module docs.
pub struct ForwardSink {
    name: String,
    shared: Arc<Shared>,
}

/// One spool directory's spool and forwarder, shared by the sink instances that use it.
struct Shared {
    name: Mutex<String>,
    spool: Arc<Spool>,
    forwarder: Mutex<Option<Forwarder>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Stops and joins the forwarder, which hands its claims back; the spool (and its
        // lock) goes right after.
        self.forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let name = self.name.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = self.spool.stats();
        log::info!(
            "forward sink {name:?}: {} frame(s) forwarded, {} refused upstream, {} left in the spool ({} bytes); {} group commit(s)",
            stats.forwarded,
            stats.rejected,
            stats.frames,
            stats.bytes,
            stats.syncs
        );
    }
}

/// Every spool open in this process. A reload that rebuilds a forward sink builds the new
/// instance while the old one may still be committing its queue: both must use one spool, or
/// two writers would share its files. (Another process is kept out by the spool's lock.)
static OPEN: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

impl ForwardSink {
    /// Opens (recovering) the sink's spool, or joins the instance already using it, and
    /// (re)starts its forwarder with these settings. `workers` is how many frames the sink
    /// commits at once (a group commit with all of them syncs at once).
    pub fn open(
        name: &str,
        workers: usize,
        config: &ForwardSinkConfig,
    ) -> Result<ForwardSink, SpoolError> {
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|weak| weak.strong_count() > 0);
        let running = open
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.spool.dir() == config.spool_dir);
        let shared = match running {
            Some(shared) => {
                shared.spool.set_limits(
                    config.spool_max_bytes,
                    config.spool_fsync_interval,
                    workers,
                );
                *shared.name.lock().unwrap_or_else(PoisonError::into_inner) = name.to_string();
                shared
            }
            None => {
                let spool = Spool::open(&SpoolConfig {
                    dir: config.spool_dir.clone(),
                    max_bytes: config.spool_max_bytes,
                    fsync_interval: config.spool_fsync_interval,
                    committers: workers,
                })?;
                let shared = Arc::new(Shared {
                    name: Mutex::new(name.to_string()),
                    spool: Arc::new(spool),
                    forwarder: Mutex::new(None),
                });
                open.push(Arc::downgrade(&shared));
                shared
            }
        };
        drop(open);
        let settings = Settings {
            sink: name.to_string(),
            to: config.to.clone(),
            secret: config.secret.clone(),
            via: config.via.clone(),
            connect_timeout: config.connect_timeout,
        };
        let mut forwarder = shared
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The old forwarder stops (returning its claims) before the new one starts.
        forwarder.take();
        *forwarder = Some(
            Forwarder::start(settings, shared.spool.clone()).map_err(|e| {
                SpoolError::Io(format!(
                    "forward sink {name:?}: cannot start its forwarder: {e}"
                ))
            })?,
        );
        drop(forwarder);
        Ok(ForwardSink {
            name: name.to_string(),
            shared,
        })
    }
}

impl Sink for ForwardSink {
    fn accepted(&self, frame: &Frame) {
        self.shared.spool.announce(&frame.device, frame.seq);
    }

    fn withdrawn(&self, frame: &Frame) {
        self.shared.spool.unannounce(&frame.device, frame.seq);
    }

    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError> {
        // The reservation holds the device's higher-numbered frames back from now on; the
        // announcement made when the frame was queued did until here.
        let reservation = self.shared.spool.reserve(&frame.device, frame.seq);
        self.shared.spool.unannounce(&frame.device, frame.seq);
        check_device(&frame.device).map_err(|why| {
            SinkError::new(format!(
                "forward sink {:?}: device {:?} cannot be forwarded: {why}",
                self.name, &*frame.device
            ))
        })?;
        let head = RecordHead {
            device: frame.device.to_string(),
            seq: frame.seq,
            captured_us: micros(frame.stamp()),
            received_us: micros(frame.received_at),
            listener: frame.listener.to_string(),
            content_type: ContentType::of_format(frame.format),
            meta: frame
                .native
                .as_ref()
                .map(|n| n.meta.clone())
                .unwrap_or_default(),
        };
        reservation
            .append(&head, &frame.payload)
            .map_err(|e| SinkError::new(format!("forward sink {:?}: {e}", self.name)))?;
        Ok(Committed::default())
    }
}

/// The spool of the forward sink called `sink`, if one is open.
pub fn spool_stats(sink: &str) -> Option<SpoolStats> {
    let open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    open.iter()
        .filter_map(Weak::upgrade)
        .find(|s| *s.name.lock().unwrap_or_else(PoisonError::into_inner) == sink)
        .map(|s| s.spool.stats())
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
