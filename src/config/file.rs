//! The config file's shape, exactly as serde reads it. Validation lives in `super`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::framing::Framing;
use crate::sink::template::TimeZone;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub max_connections: Option<Spanned<usize>>,
    pub shutdown_timeout: Option<Spanned<HumanDuration>>,
    pub control_socket: Option<PathBuf>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Spanned<ListenerSection>>,
    #[serde(default)]
    pub devices: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub device: BTreeMap<Spanned<String>, Spanned<DeviceSection>>,
    #[serde(default, rename = "sink")]
    pub sinks: Vec<Spanned<SinkSection>>,
    /// `[live]`: the HTTP live view's newest frames.
    #[serde(default)]
    pub live: LiveSection,
    /// `[metrics]`: `GET /metrics` on HTTP listeners.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// `[live]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSection {
    pub max_bytes: Option<Spanned<ByteSize>>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub max_device_labels: Option<Spanned<usize>>,
}

/// `auth = { token_file = "…" }` (or `token`, or `user` with `password_file`) on an HTTP
/// listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<PathBuf>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<Spanned<String>>,
    #[serde(default)]
    pub target: crate::logging::Target,
    pub facility: Option<Spanned<String>>,
    pub ident: Option<Spanned<String>>,
    pub socket: Option<PathBuf>,
    pub device_lines_per_minute: Option<u32>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    #[serde(default = "default_framing")]
    pub framing: Framing,
    pub max_frame_bytes: Option<Spanned<ByteSize>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub backlog: Option<Spanned<u32>>,
    pub heartbeat: Option<Spanned<HumanDuration>>,
    pub max_in_flight: Option<Spanned<u16>>,
    pub require_auth: Option<bool>,
    pub allow: Option<Vec<Spanned<String>>>,
    pub auth: Option<Spanned<AuthSection>>,
    pub header_timeout: Option<Spanned<HumanDuration>>,
    pub body_timeout: Option<Spanned<HumanDuration>>,
}

/// One `[device."name"]`: settings of a native-protocol device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<PathBuf>>,
}

fn default_framing() -> Framing {
    Framing::Auto
}

/// The kinds of sink (`type = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// `type = "file"`.
    File,
    /// `type = "exec"`.
    Exec,
    /// `type = "discard"`.
    Discard,
    /// `type = "forward"`.
    Forward,
}

/// One `[[sink]]`. Keys that only some types take are options here and checked per type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: SinkType,
    pub path: Option<Spanned<String>>,
    pub fsync: Option<Spanned<bool>>,
    pub time_zone: Option<Spanned<TimeZone>>,
    pub workers: Option<Spanned<usize>>,
    pub queue_capacity: Option<Spanned<usize>>,
    pub keep: Option<Spanned<KeepSection>>,
    #[serde(rename = "match")]
    pub matches: Option<Spanned<MatchSection>>,
    pub when_full: Option<crate::sink::pool::WhenFull>,
    // exec
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub input: Option<Spanned<crate::sink::exec::Input>>,
    pub after: Option<Spanned<String>>,
    pub env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub env_passthrough: Option<Spanned<Vec<Spanned<String>>>>,
    pub concurrency: Option<Spanned<usize>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub kill_grace: Option<Spanned<HumanDuration>>,
    pub retries: Option<Spanned<u32>>,
    pub retry_backoff: Option<Spanned<HumanDuration>>,
    pub ack: Option<Spanned<crate::sink::exec::Ack>>,
    // image stage
    pub validate: Option<Spanned<crate::sink::image::Validate>>,
    pub quarantine: Option<Spanned<PathBuf>>,
    pub convert: Option<Spanned<crate::sink::image::Convert>>,
    pub quality: Option<Spanned<u8>>,
    pub resize: Option<Spanned<ResizeSection>>,
    // Forward sinks (checked in `super::forward`).
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<PathBuf>>,
    pub via: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub spool_max_bytes: Option<Spanned<ByteSize>>,
    pub spool_fsync_interval: Option<Spanned<HumanDuration>>,
}

/// `resize = { max_width = 320, max_height = 240 }` on a sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeSection {
    pub max_width: Option<Spanned<u32>>,
    pub max_height: Option<Spanned<u32>>,
}

/// `match = { devices = ["door-*"], listeners = ["lan"], formats = ["jpeg"] }` on a sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSection {
    #[serde(default)]
    pub devices: Vec<Spanned<String>>,
    #[serde(default)]
    pub listeners: Vec<Spanned<String>>,
    #[serde(default)]
    pub formats: Vec<Spanned<String>>,
}

/// `keep = { max_files = …, max_bytes = "…", max_age = "7d" }` on a file sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepSection {
    pub max_files: Option<Spanned<u64>>,
    pub max_bytes: Option<Spanned<ByteSize>>,
    pub max_age: Option<Spanned<HumanDuration>>,
}

/// A duration written the human way: `"60s"`, `"1m 30s"`, `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"60s\", \"5m\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(s).map(HumanDuration).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {s:?} ({e}); write a number and a unit, e.g. \"60s\", \"5m\", \"250ms\""
                    ))
                })
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}
