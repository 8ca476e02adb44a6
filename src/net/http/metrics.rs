//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Per-device series are capped at `[metrics] max_device_labels` (the devices with the most
//! frames keep their label, the rest are summed under `device="_other"`), so a fleet of
//! thousands of devices, or devices named by changing IPs, cannot blow up a Prometheus
//! server's series count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::status::{DeviceStatus, SinkStatus, Status};

/// Upper bounds (seconds) of the receive → committed latency buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A per-device series: name, help, and how to read it from a status row.
type DeviceSeries = (&'static str, &'static str, fn(&DeviceStatus) -> u64);
/// A per-listener series.
type ListenerSeries = (&'static str, &'static str, fn(&ListenerCounts) -> u64);
/// A per-spool series (forward sinks): name, type, help, reader.
type SpoolSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::status::SpoolStatus) -> u64,
);
/// A per-sink series: name, type, help, reader.
type SinkSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SinkStatus) -> u64,
);

/// Counters of one listener.
#[derive(Debug, Default, Clone)]
struct ListenerCounts {
    frames: u64,
    bytes: u64,
    errors: u64,
    dropped: u64,
}

/// A latency histogram.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// What the loop counts for `/metrics` beyond `framegate status`.
#[derive(Debug, Default)]
pub struct Metrics {
    listeners: HashMap<Arc<str>, ListenerCounts>,
    latency: HashMap<String, Histogram>,
    responses: HashMap<(Arc<str>, u16), u64>,
    /// MJPEG parts not sent because a viewer was still busy with an older one.
    pub parts_skipped: u64,
    /// MJPEG parts sent.
    pub parts_sent: u64,
}

/// Gauges the HTTP side knows.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Open connections per listener.
    pub open: HashMap<Arc<str>, usize>,
    /// Bytes of newest frames held for the live view.
    pub live_bytes: u64,
    /// Devices with a newest frame held.
    pub live_devices: usize,
    /// MJPEG viewers connected.
    pub viewers: usize,
}

impl Metrics {
    /// A frame from `listener` was done by the sinks.
    pub fn frame(&mut self, listener: &Arc<str>, bytes: usize) {
        let c = self.listeners.entry(listener.clone()).or_default();
        c.frames += 1;
        c.bytes += bytes as u64;
    }

    /// A connection on `listener` ended in an error; `dropped`: with a frame unfinished.
    pub fn error(&mut self, listener: &Arc<str>, dropped: bool) {
        let c = self.listeners.entry(listener.clone()).or_default();
        c.errors += 1;
        c.dropped += u64::from(dropped);
    }

    /// A frame unfinished on `listener` was dropped (without an error of its own).
    pub fn dropped(&mut self, listener: &Arc<str>) {
        self.listeners.entry(listener.clone()).or_default().dropped += 1;
    }

    /// An HTTP response with `status` went out on `listener`.
    pub fn response(&mut self, listener: &Arc<str>, status: u16) {
        *self
            .responses
            .entry((listener.clone(), status))
            .or_default() += 1;
    }

    /// Sink `sink` committed (or failed) a frame `latency` after it was received.
    pub fn committed(&mut self, sink: &str, latency: Duration) {
        if !self.latency.contains_key(sink) {
            self.latency.insert(sink.to_string(), Histogram::default());
        }
        if let Some(h) = self.latency.get_mut(sink) {
            h.observe(latency.as_secs_f64());
        }
    }

    /// The exposition text.
    pub fn render(&self, status: &Status, gauges: &Gauges, max_device_labels: usize) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        family(
            o,
            "framegate_build_info",
            "gauge",
            "framegate's version; always 1.",
        );
        sample(
            o,
            "framegate_build_info",
            &[("version", &status.version)],
            1,
        );
        family(
            o,
            "framegate_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
        );
        sample(o, "framegate_uptime_seconds", &[], status.uptime_secs);

        family(
            o,
            "framegate_connections_open",
            "gauge",
            "Open device and HTTP connections per listener.",
        );
        let mut open: Vec<_> = gauges.open.iter().collect();
        open.sort();
        for (listener, n) in open {
            sample(
                o,
                "framegate_connections_open",
                &[("listener", listener)],
                *n as u64,
            );
        }

        // Devices: the busiest keep their label, the rest are summed.
        let mut devices: Vec<_> = status.devices.iter().collect();
        devices.sort_by(|a, b| b.frames.cmp(&a.frames).then(a.device.cmp(&b.device)));
        let (named, rest) = devices.split_at(devices.len().min(max_device_labels));
        family(
            o,
            "framegate_devices",
            "gauge",
            "Devices seen since the start.",
        );
        sample(o, "framegate_devices", &[], devices.len() as u64);
        let per_device: [DeviceSeries; 4] = [
            (
                "framegate_device_frames_total",
                "Frames accepted per device.",
                |d| d.frames,
            ),
            (
                "framegate_device_bytes_total",
                "Bytes of accepted frames per device.",
                |d| d.bytes,
            ),
            (
                "framegate_device_errors_total",
                "Refused or broken connections and failed stores per device.",
                |d| d.errors,
            ),
            (
                "framegate_device_dropped_total",
                "Frames dropped unfinished per device.",
                |d| d.dropped,
            ),
        ];
        for (name, help, get) in per_device {
            family(o, name, "counter", help);
            for d in named {
                sample(o, name, &[("device", &d.device)], get(d));
            }
            if !rest.is_empty() {
                let sum = rest.iter().map(|d| get(d)).sum();
                sample(o, name, &[("device", "_other")], sum);
            }
        }

        let mut listeners: Vec<_> = self.listeners.iter().collect();
        listeners.sort_by(|a, b| a.0.cmp(b.0));
        let per_listener: [ListenerSeries; 4] = [
            (
                "framegate_listener_frames_total",
                "Frames done by the sinks per listener.",
                |c| c.frames,
            ),
            (
                "framegate_listener_bytes_total",
                "Bytes of those frames per listener.",
                |c| c.bytes,
            ),
            (
                "framegate_listener_errors_total",
                "Connections ended by an error, and HTTP requests refused, per listener.",
                |c| c.errors,
            ),
            (
                "framegate_listener_dropped_total",
                "Frames dropped unfinished per listener.",
                |c| c.dropped,
            ),
        ];
        for (name, help, get) in per_listener {
            family(o, name, "counter", help);
            for (l, c) in &listeners {
                sample(o, name, &[("listener", l)], get(c));
            }
        }
        family(
            o,
            "framegate_http_responses_total",
            "counter",
            "HTTP responses per listener and status code.",
        );
        let mut responses: Vec<_> = self.responses.iter().collect();
        responses.sort();
        for ((l, code), n) in responses {
            sample(
                o,
                "framegate_http_responses_total",
                &[("listener", l), ("code", &code.to_string())],
                *n,
            );
        }

        let per_sink: [SinkSeries; 5] = [
            (
                "framegate_sink_queue_depth",
                "gauge",
                "Frames queued for or being committed by each sink.",
                |s| s.queued as u64,
            ),
            (
                "framegate_sink_commits_total",
                "counter",
                "Frames committed per sink.",
                |s| s.committed,
            ),
            (
                "framegate_sink_committed_bytes_total",
                "counter",
                "Bytes committed per sink.",
                |s| s.bytes,
            ),
            (
                "framegate_sink_failures_total",
                "counter",
                "Frames a sink failed to commit.",
                |s| s.failed,
            ),
            (
                "framegate_sink_dropped_total",
                "counter",
                "Frames a sink dropped because its queue was full.",
                |s| s.dropped,
            ),
        ];
        for (name, kind, help, get) in per_sink {
            family(o, name, kind, help);
            for s in &status.sinks {
                sample(o, name, &[("sink", &s.name)], get(s));
            }
        }
        // Forward sinks' spools; other sinks have none and get no sample.
        let per_spool: [SpoolSeries; 4] = [
            (
                "framegate_sink_spool_bytes",
                "gauge",
                "Bytes a forward sink's spool takes on disk.",
                |s| s.bytes,
            ),
            (
                "framegate_sink_spool_frames",
                "gauge",
                "Frames in a forward sink's spool, not acknowledged upstream yet.",
                |s| s.frames,
            ),
            (
                "framegate_sink_forwarded_total",
                "counter",
                "Frames the upstream acknowledged, per forward sink.",
                |s| s.forwarded,
            ),
            (
                "framegate_sink_forward_rejected_total",
                "counter",
                "Frames the upstream refused for good, per forward sink.",
                |s| s.rejected,
            ),
        ];
        for (name, kind, help, get) in per_spool {
            family(o, name, kind, help);
            for s in &status.sinks {
                if let Some(spool) = &s.spool {
                    sample(o, name, &[("sink", &s.name)], get(spool));
                }
            }
        }
        // Type-specific figures (exec hooks' runs, failures, timeouts).
        let name = "framegate_sink_detail";
        family(
            o,
            name,
            "gauge",
            "Figures particular to a sink's type (exec: hook_runs, hook_failures, hook_timeouts).",
        );
        for s in &status.sinks {
            for (detail, value) in &s.details {
                sample(o, name, &[("sink", &s.name), ("detail", detail)], *value);
            }
        }
        let name = "framegate_sink_commit_latency_seconds";
        family(
            o,
            name,
            "histogram",
            "Time from a frame's last byte received to its commit (or failure) by each sink.",
        );
        let mut sinks: Vec<_> = self.latency.iter().collect();
        sinks.sort_by(|a, b| a.0.cmp(b.0));
        for (sink, h) in sinks {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                sample(
                    o,
                    &format!("{name}_bucket"),
                    &[("sink", sink), ("le", &bound.to_string())],
                    cumulative,
                );
            }
            sample(
                o,
                &format!("{name}_bucket"),
                &[("sink", sink), ("le", "+Inf")],
                h.count,
            );
            let _ = writeln!(o, "{name}_sum{{sink=\"{}\"}} {}", escape(sink), h.sum);
            sample(o, &format!("{name}_count"), &[("sink", sink)], h.count);
        }

        family(
            o,
            "framegate_live_bytes",
            "gauge",
            "Bytes of newest frames held for the live view ([live] max_bytes bounds it).",
        );
        sample(o, "framegate_live_bytes", &[], gauges.live_bytes);
        family(
            o,
            "framegate_live_devices",
            "gauge",
            "Devices whose newest frame is held.",
        );
        sample(o, "framegate_live_devices", &[], gauges.live_devices as u64);
        family(
            o,
            "framegate_mjpeg_viewers",
            "gauge",
            "MJPEG stream viewers connected.",
        );
        sample(o, "framegate_mjpeg_viewers", &[], gauges.viewers as u64);
        family(
            o,
            "framegate_mjpeg_parts_sent_total",
            "counter",
            "MJPEG parts sent to viewers.",
        );
        sample(o, "framegate_mjpeg_parts_sent_total", &[], self.parts_sent);
        family(
            o,
            "framegate_mjpeg_parts_skipped_total",
            "counter",
            "Frames a busy viewer skipped (it gets the newest instead).",
        );
        sample(
            o,
            "framegate_mjpeg_parts_skipped_total",
            &[],
            self.parts_skipped,
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values: backslash, double quote and line feed escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, frames: u64) -> DeviceStatus {
        DeviceStatus {
            device: name.into(),
            frames,
            bytes: frames * 10,
            errors: 0,
            dropped: 0,
            unmatched: 0,
            last_seen: 0,
            connections: 0,
        }
    }

    #[test]
    fn devices_beyond_the_cap_are_summed_and_labels_escaped() {
        let status = Status {
            version: "0.1.0".into(),
            uptime_secs: 3,
            connections: 0,
            devices: vec![
                device("a", 5),
                device("b\"\n", 7),
                device("c", 1),
                device("d", 2),
            ],
            sinks: vec![SinkStatus {
                name: "files".into(),
                committed: 15,
                bytes: 150,
                failed: 0,
                dropped: 0,
                queued: 1,
                details: Default::default(),
                spool: Some(crate::status::SpoolStatus {
                    frames: 3,
                    bytes: 4096,
                    forwarded: 7,
                    rejected: 0,
                }),
            }],
        };
        let mut m = Metrics::default();
        m.committed("files", Duration::from_millis(3));
        m.committed("files", Duration::from_secs(60));
        let text = m.render(&status, &Gauges::default(), 2);
        assert!(
            text.contains("framegate_device_frames_total{device=\"b\\\"\\n\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("framegate_device_frames_total{device=\"a\"} 5\n"));
        assert!(text.contains("framegate_device_frames_total{device=\"_other\"} 3\n"));
        assert!(text.contains(
            "framegate_sink_commit_latency_seconds_bucket{sink=\"files\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "framegate_sink_commit_latency_seconds_bucket{sink=\"files\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("framegate_sink_queue_depth{sink=\"files\"} 1\n"));
        assert!(text.contains("framegate_sink_spool_bytes{sink=\"files\"} 4096\n"));
    }
}
