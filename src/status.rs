//! What `framegate status` shows: per-device and per-sink counters, read from the running
//! daemon over its control socket (one JSON document per connection), or written to the log
//! on SIGUSR1.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The daemon's state, as `framegate status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// framegate's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Open device connections.
    pub connections: usize,
    /// Every device seen since the start, by name.
    pub devices: Vec<DeviceStatus>,
    /// Every sink, in config order.
    pub sinks: Vec<SinkStatus>,
}

/// One device's counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceStatus {
    /// Device id (legacy: its `[devices]` name or IP).
    pub device: String,
    /// Frames accepted from it.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Refused or broken connections, and frames a sink failed to store.
    pub errors: u64,
    /// Frames dropped unfinished: the connection broke, fell silent or was shut down in the
    /// middle of one (never stored, by design).
    pub dropped: u64,
    /// Frames no sink's `match` took.
    pub unmatched: u64,
    /// When its last frame arrived (seconds since the Unix epoch); 0: none yet.
    pub last_seen: u64,
    /// Its connections open now.
    pub connections: usize,
}

/// One sink's counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// Frames committed.
    pub committed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames it failed to commit.
    pub failed: u64,
    /// Frames it dropped because its queue was full (`when_full`).
    pub dropped: u64,
    /// Frames queued for it or being committed now.
    pub queued: usize,
    /// Figures particular to the sink's type, e.g. an exec sink's `hook_runs`,
    /// `hook_failures` and `hook_timeouts`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, u64>,
    /// Forward sinks: what their spool holds and has done; absent for other sinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolStatus>,
}

/// A forward sink's spool, in `framegate status`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpoolStatus {
    /// Frames in the spool, not acknowledged by the upstream yet.
    pub frames: u64,
    /// Bytes the spool's files take on disk.
    pub bytes: u64,
    /// Frames the upstream acknowledged since the start.
    pub forwarded: u64,
    /// Frames the upstream refused for good since the start (removed from the spool).
    pub rejected: u64,
}

impl From<crate::sink::spool::SpoolStats> for SpoolStatus {
    fn from(s: crate::sink::spool::SpoolStats) -> Self {
        SpoolStatus {
            frames: s.frames,
            bytes: s.bytes,
            forwarded: s.forwarded,
            rejected: s.rejected,
        }
    }
}

/// Per-device counters kept by the event loop.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    devices: HashMap<Arc<str>, Counts>,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    frames: u64,
    bytes: u64,
    errors: u64,
    dropped: u64,
    unmatched: u64,
    last: SystemTime,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            frames: 0,
            bytes: 0,
            errors: 0,
            dropped: 0,
            unmatched: 0,
            last: SystemTime::UNIX_EPOCH,
        }
    }
}

impl DeviceCounters {
    /// A frame from `device` was accepted.
    pub fn frame(&mut self, device: &Arc<str>, bytes: usize, at: SystemTime) {
        let entry = self.entry(device);
        entry.frames += 1;
        entry.bytes += bytes as u64;
        entry.last = at;
    }

    /// Something went wrong with `device` (a refused connection, a failed store).
    pub fn error(&mut self, device: &Arc<str>) {
        self.entry(device).errors += 1;
    }

    /// A frame of `device` matched no sink.
    pub fn unmatched(&mut self, device: &Arc<str>) {
        self.entry(device).unmatched += 1;
    }

    /// A frame of `device` was dropped unfinished.
    pub fn dropped(&mut self, device: &Arc<str>) {
        self.entry(device).dropped += 1;
    }

    fn entry(&mut self, device: &Arc<str>) -> &mut Counts {
        self.devices.entry(device.clone()).or_default()
    }

    /// The devices' rows, sorted by name, with `connections(device)` open now.
    pub fn rows(&self, connections: &HashMap<Arc<str>, usize>) -> Vec<DeviceStatus> {
        let mut names: Vec<&Arc<str>> = self.devices.keys().chain(connections.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let c = self.devices.get(name).copied().unwrap_or_default();
                DeviceStatus {
                    device: name.to_string(),
                    frames: c.frames,
                    bytes: c.bytes,
                    errors: c.errors,
                    dropped: c.dropped,
                    unmatched: c.unmatched,
                    last_seen: c
                        .last
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    connections: connections.get(name).copied().unwrap_or(0),
                }
            })
            .collect()
    }
}

impl Status {
    /// The table `framegate status` prints (and SIGUSR1 logs).
    pub fn table(&self, now: SystemTime) -> String {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = format!(
            "framegate {}, up {}, {} connection(s)\n\n",
            self.version,
            humantime::format_duration(std::time::Duration::from_secs(self.uptime_secs)),
            self.connections
        );
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>14} {:>7} {:>7} {:>6} {:>12}",
            "DEVICE", "FRAMES", "BYTES", "ERRORS", "DROPPED", "CONNS", "LAST SEEN"
        );
        for d in &self.devices {
            let seen = if d.last_seen == 0 {
                "never".to_string()
            } else {
                format!("{}s ago", now.saturating_sub(d.last_seen))
            };
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>14} {:>7} {:>7} {:>6} {:>12}",
                d.device, d.frames, d.bytes, d.errors, d.dropped, d.connections, seen
            );
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:>10} {:>14} {:>7} {:>7} {:>6} {:>8} {:>12} {:>10}",
            "SINK",
            "COMMITTED",
            "BYTES",
            "FAILED",
            "DROPPED",
            "QUEUED",
            "SPOOLED",
            "SPOOL BYTES",
            "FORWARDED"
        );
        for s in &self.sinks {
            // Only forward sinks have a spool.
            let (spooled, spool_bytes, forwarded) = match &s.spool {
                Some(p) => (
                    p.frames.to_string(),
                    p.bytes.to_string(),
                    p.forwarded.to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "{:<24} {:>10} {:>14} {:>7} {:>7} {:>6} {:>8} {:>12} {:>10}",
                s.name,
                s.committed,
                s.bytes,
                s.failed,
                s.dropped,
                s.queued,
                spooled,
                spool_bytes,
                forwarded
            );
            if !s.details.is_empty() {
                let details: Vec<String> =
                    s.details.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(out, "{:<24} {}", "", details.join(", "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counters_become_rows_and_a_table() {
        let mut counters = DeviceCounters::default();
        let cam: Arc<str> = Arc::from("cam");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        counters.frame(&cam, 10, at);
        counters.frame(&cam, 5, at);
        counters.error(&cam);
        counters.dropped(&cam);
        let idle: Arc<str> = Arc::from("idle");
        let rows = counters.rows(&HashMap::from([(idle.clone(), 1)]));
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].frames,
                rows[0].bytes,
                rows[0].errors,
                rows[0].dropped,
                rows[0].last_seen
            ),
            (2, 15, 1, 1, 1000)
        );
        assert_eq!((rows[1].device.as_str(), rows[1].connections), ("idle", 1));
        let status = Status {
            version: "0.1.0".into(),
            uptime_secs: 65,
            connections: 1,
            devices: rows,
            sinks: vec![
                SinkStatus {
                    name: "archive".into(),
                    committed: 2,
                    bytes: 15,
                    failed: 0,
                    dropped: 0,
                    queued: 0,
                    spool: None,
                    details: [("hook_runs".to_string(), 3)].into(),
                },
                SinkStatus {
                    name: "central".into(),
                    committed: 2,
                    bytes: 15,
                    failed: 0,
                    dropped: 0,
                    queued: 1,
                    details: Default::default(),
                    spool: Some(SpoolStatus {
                        frames: 3,
                        bytes: 4096,
                        forwarded: 7,
                        rejected: 0,
                    }),
                },
            ],
        };
        let table = status.table(at + Duration::from_secs(7));
        assert!(table.contains("up 1m 5s"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("cam") && l.contains("7s ago")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("idle") && l.contains("never")),
            "{table}"
        );
        assert!(table.contains("hook_runs 3"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("archive")
                && l.split_whitespace().rev().take(3).all(|w| w == "-")),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.starts_with("central")
                && l.split_whitespace().rev().take(3).eq(["7", "4096", "3"])),
            "{table}"
        );
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        // Sinks without a spool have no `spool` key; documents without one still read.
        assert_eq!(json.matches("\"spool\"").count(), 1, "{json}");
    }
}
