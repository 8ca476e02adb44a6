//! Configuration: the TOML file ([`file`]) read with serde, then validated into a [`Config`].
//!
//! Every error names the file, the line and column, and the key ([`ConfigError`]), so
//! `framegate check` and a failing start tell the operator exactly what to fix.

mod error;
mod exec;
mod file;
mod forward;
mod http;
mod image;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;
use toml::Spanned;

pub use self::error::ConfigError;
use self::file::{FileConfig, SinkSection, SinkType};
pub use self::http::{HttpAuth, HttpSettings};
use crate::framing::Framing;
use crate::sink::file::FileSinkConfig;
use crate::sink::retention::Keep;
use crate::sink::routing::Match;
use crate::sink::template::PathTemplate;

/// The configuration used when `framegate run` gets no `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");
/// How error messages name the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// Default `max_frame_bytes`: 32 MiB, several times a full-resolution camera JPEG.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 32 << 20;
/// Default `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default listen backlog, large enough for thousands of devices reconnecting at once.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Where `framegate status` looks without `--socket` or `--config`: the packaged config's
/// `control_socket`, in systemd's `RuntimeDirectory=framegate`.
pub const PACKAGED_CONTROL_SOCKET: &str = "/run/framegate/control.sock";
/// Default `shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `heartbeat` of native sessions.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Default `max_in_flight` of native sessions.
pub const DEFAULT_MAX_IN_FLIGHT: u16 = 16;
/// Default `state_dir` in a config file.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/framegate";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a file path or [`EMBEDDED_NAME`].
    pub source: String,
    /// Where sequence numbers (and later features) keep state.
    pub state_dir: PathBuf,
    /// Cap on open device connections, all listeners together.
    pub max_connections: usize,
    /// How long SIGTERM waits for received frames to finish in their sinks.
    pub shutdown_timeout: Duration,
    /// Where `framegate status` asks the running daemon.
    pub control_socket: PathBuf,
    /// Log verbosity.
    pub log_level: LevelFilter,
    /// Where log lines go (`[log] target`, `facility`, `ident`, `socket`).
    pub log_output: crate::logging::Output,
    /// Warnings and errors about one device logged per minute at most (0: no limit).
    pub device_lines_per_minute: u32,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Peer IP → device name, for framings that carry no device id.
    pub devices: HashMap<IpAddr, String>,
    /// Native-protocol device id → its secret (`[device."id"] secret` or `secret_file`).
    pub secrets: HashMap<String, Vec<u8>>,
    /// The sinks, in file order; every frame goes to each.
    pub sinks: Vec<SinkConfig>,
    /// `[live] max_bytes`: memory for the newest frame of each device (HTTP live view).
    pub live_max_bytes: u64,
    /// `[metrics] max_device_labels`: devices named in `/metrics`; the rest are summed.
    pub max_device_labels: usize,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Its name, in frame identity and logs.
    pub name: String,
    /// Address to listen on.
    pub bind: SocketAddr,
    /// What devices on it send.
    pub framing: Framing,
    /// Largest payload accepted; larger announcements close the connection.
    pub max_frame_bytes: u64,
    /// A connection silent this long, between or inside frames, is closed.
    pub idle_timeout: Duration,
    /// Listen backlog (pending connections the kernel queues).
    pub backlog: u32,
    /// Native sessions: ping after this much silence; a peer silent 3× as long is dead.
    pub heartbeat: Duration,
    /// Native sessions: most unacknowledged frames per connection.
    pub max_in_flight: u16,
    /// Native sessions: only devices with a secret, proven by challenge–response; legacy
    /// framings and imagezmq, which carry no credentials, are refused.
    pub require_auth: bool,
    /// Source networks allowed to connect (any framing); empty: everyone.
    pub allow: Vec<ipnet::IpNet>,
    /// `framing = "http"`: auth and timeouts (defaults elsewhere).
    pub http: HttpSettings,
}

/// One `[[sink]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Its name, in logs.
    pub name: String,
    /// Worker threads.
    pub workers: usize,
    /// Frames queued before the devices feeding it are paused.
    pub queue_capacity: usize,
    /// Which frames it takes (`match`); all without one.
    pub matches: Match,
    /// What happens to a frame when its queue is full.
    pub when_full: crate::sink::pool::WhenFull,
    /// What it does.
    pub kind: SinkKind,
    /// The image stage in front of it (`validate`, `convert`, `resize`), if any.
    pub image: Option<crate::sink::image::ImageStageConfig>,
}

impl SinkConfig {
    /// The sink this one follows (`after`): it gets each frame once that one committed it.
    pub fn after(&self) -> Option<&str> {
        match &self.kind {
            SinkKind::Exec(exec) => exec.after.as_deref(),
            _ => None,
        }
    }
}

/// The sink types and their settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// Writes each frame to a file.
    File(FileSinkConfig),
    /// Runs a program per frame.
    Exec(crate::sink::exec::ExecSinkConfig),
    /// Counts and drops.
    Discard,
    /// Spools each frame and forwards it to another framegate.
    Forward(crate::sink::forward::ForwardSinkConfig),
}

impl SinkKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Exec(_) => "exec",
            SinkKind::Discard => "discard",
            SinkKind::Forward(_) => "forward",
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let label = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::whole_file(&label, format!("cannot read the config file: {e}"))
        })?;
        Config::parse(&source, &label)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME)
            .expect("the embedded default config is valid")
    }

    /// Validates `source`, naming it `label` in errors.
    pub fn parse(source: &str, label: &str) -> Result<Config, ConfigError> {
        let raw: FileConfig = toml::from_str(source).map_err(|e| match e.span() {
            Some(span) => ConfigError::at(label, source, span, e.message().trim()),
            None => ConfigError::whole_file(label, e.message().trim()),
        })?;
        Validator { source, label }.validate(raw)
    }
}

/// Turns the file's shape into a [`Config`], pointing each error at its place.
struct Validator<'a> {
    source: &'a str,
    label: &'a str,
}

impl Validator<'_> {
    fn err<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.label, self.source, spanned.span(), message)
    }

    fn validate(&self, raw: FileConfig) -> Result<Config, ConfigError> {
        let log_level = match &raw.log.level {
            None => LevelFilter::Info,
            Some(level) => LevelFilter::from_str(level.get_ref()).map_err(|_| {
                self.err(
                    level,
                    "unknown log level; use error, warn, info, debug or trace",
                )
            })?,
        };
        let defaults = crate::logging::Output::default();
        let facility = match &raw.log.facility {
            None => defaults.facility,
            Some(f) => syslog::Facility::from_str(f.get_ref()).map_err(|()| {
                self.err(
                    f,
                    "unknown syslog facility; use daemon, user, local0 … local7 (or kern, mail, …)",
                )
            })?,
        };
        let ident = match &raw.log.ident {
            None => defaults.ident.clone(),
            Some(i) if i.get_ref().trim().is_empty() => {
                return Err(self.err(i, "ident must not be empty"))
            }
            Some(i) => i.get_ref().clone(),
        };
        let log_output = crate::logging::Output {
            target: raw.log.target,
            facility,
            ident,
            socket: raw.log.socket.clone().unwrap_or(defaults.socket),
        };
        let max_connections = match &raw.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(n, "max_connections must be at least 1"))
            }
            Some(n) => *n.get_ref(),
        };
        let shutdown_timeout = match &raw.shutdown_timeout {
            None => DEFAULT_SHUTDOWN_TIMEOUT,
            Some(d) => d.get_ref().0,
        };
        if raw.listeners.is_empty() {
            return Err(ConfigError::at_end(
                self.label,
                self.source,
                "no [[listener]] table: devices would have nowhere to connect; add one with name, bind and framing",
            ));
        }
        if raw.sinks.is_empty() {
            return Err(ConfigError::at_end(
                self.label,
                self.source,
                "no [[sink]] table: received frames would have nowhere to go; add one, e.g. [[sink]] name = \"archive\" type = \"file\" path = \"/var/lib/framegate/frames/{device}/{seq}.{ext}\"",
            ));
        }
        let (live_max_bytes, max_device_labels) = self.live_and_metrics(&raw)?;
        let mut listeners = Vec::new();
        let mut names = HashSet::new();
        for section in raw.listeners {
            let listener = self.listener(section.get_ref())?;
            if !names.insert(listener.name.clone()) {
                return Err(self.err(&section.get_ref().name, "another listener has this name"));
            }
            listeners.push(listener);
        }
        let mut devices = HashMap::new();
        for (ip, name) in &raw.devices {
            let addr = IpAddr::from_str(ip.get_ref().trim()).map_err(|_| {
                self.err(
                    ip,
                    "[devices] keys are peer IP addresses, e.g. \"192.168.1.20\"",
                )
            })?;
            if name.get_ref().trim().is_empty() {
                return Err(self.err(name, "a device name must not be empty"));
            }
            devices.insert(addr, name.get_ref().clone());
        }
        let mut secrets = HashMap::new();
        for (id, section) in &raw.device {
            let secret = match (&section.get_ref().secret, &section.get_ref().secret_file) {
                (Some(s), None) => s.get_ref().as_bytes().to_vec(),
                (None, Some(path)) => std::fs::read(path.get_ref())
                    .map(|bytes| bytes.trim_ascii_end().to_vec())
                    .map_err(|e| {
                        self.err(
                            path,
                            format!("cannot read secret_file {}: {e}", path.get_ref().display()),
                        )
                    })?,
                (Some(s), Some(_)) => {
                    return Err(self.err(s, "give either secret or secret_file, not both"))
                }
                (None, None) => {
                    return Err(self.err(section, "a [device] table needs secret or secret_file"))
                }
            };
            if secret.is_empty() {
                return Err(self.err(section, "the device's secret is empty"));
            }
            secrets.insert(id.get_ref().clone(), secret);
        }
        let state_dir = raw
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let mut sinks = Vec::new();
        let mut names = HashSet::new();
        for section in &raw.sinks {
            let sink = self.sink(section, &listeners)?;
            if !names.insert(sink.name.clone()) {
                return Err(self.err(&section.get_ref().name, "another sink has this name"));
            }
            sinks.push(sink);
        }
        self.check_followers(&raw.sinks, &sinks)?;
        crate::sink::forward::place_spools(&mut sinks, &state_dir);
        Ok(Config {
            source: self.label.to_string(),
            state_dir,
            max_connections,
            shutdown_timeout,
            // Without the key: beside the state, so daemons with their own state_dir (tests,
            // hand-started ones) never share a socket.
            control_socket: raw.control_socket.clone().unwrap_or_else(|| {
                raw.state_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
                    .join("control.sock")
            }),
            log_level,
            log_output,
            device_lines_per_minute: raw
                .log
                .device_lines_per_minute
                .unwrap_or(crate::net::ratelimit::DEFAULT_LINES_PER_WINDOW),
            listeners,
            devices,
            secrets,
            sinks,
            live_max_bytes,
            max_device_labels,
        })
    }

    fn listener(&self, raw: &file::ListenerSection) -> Result<ListenerConfig, ConfigError> {
        let name = self.name(&raw.name)?;
        let bind = resolve(raw.bind.get_ref()).map_err(|why| self.err(&raw.bind, why))?;
        let max_frame_bytes = match &raw.max_frame_bytes {
            None => DEFAULT_MAX_FRAME_BYTES,
            Some(size) if size.get_ref().as_u64() == 0 => {
                return Err(self.err(size, "max_frame_bytes must be more than 0"))
            }
            // Frames are held in memory; keep them addressable on 32-bit gateways too.
            Some(size) if size.get_ref().as_u64() > u64::from(u32::MAX) => {
                return Err(self.err(size, "max_frame_bytes must be at most 4GiB"))
            }
            Some(size) => size.get_ref().as_u64(),
        };
        let idle_timeout = match &raw.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(d) if d.get_ref().0.is_zero() => {
                return Err(self.err(d, "idle_timeout must be more than 0"))
            }
            Some(d) => d.get_ref().0,
        };
        let backlog = match &raw.backlog {
            None => DEFAULT_BACKLOG,
            Some(b) if *b.get_ref() == 0 => return Err(self.err(b, "backlog must be at least 1")),
            Some(b) => *b.get_ref(),
        };
        let heartbeat = match &raw.heartbeat {
            None => DEFAULT_HEARTBEAT,
            Some(d) if d.get_ref().0 < Duration::from_secs(1) => {
                return Err(self.err(d, "heartbeat must be at least 1s"))
            }
            Some(d) => d.get_ref().0,
        };
        let max_in_flight = match &raw.max_in_flight {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(n, "max_in_flight must be at least 1"))
            }
            Some(n) => *n.get_ref(),
        };
        // (An http listener gets its own message, from http_settings.)
        if raw.require_auth == Some(true)
            && !matches!(raw.framing, Framing::Auto | Framing::Native | Framing::Http)
        {
            return Err(self.err(
                &raw.name,
                format!(
                    "require_auth = true needs framing \"native\" or \"auto\": {} carries no credentials",
                    raw.framing
                ),
            ));
        }
        let mut allow = Vec::new();
        for entry in raw.allow.iter().flatten() {
            let text = entry.get_ref().trim();
            let net = ipnet::IpNet::from_str(text)
                .or_else(|_| IpAddr::from_str(text).map(ipnet::IpNet::from))
                .map_err(|_| {
                    self.err(
                        entry,
                        "not an address or network; write e.g. \"192.168.1.0/24\", \"10.0.0.7\" or \"fd00::/8\"",
                    )
                })?;
            allow.push(net);
        }
        Ok(ListenerConfig {
            name,
            bind,
            framing: raw.framing,
            max_frame_bytes,
            idle_timeout,
            backlog,
            heartbeat,
            max_in_flight,
            require_auth: raw.require_auth.unwrap_or(false),
            allow,
            http: self.http_settings(raw)?,
        })
    }

    fn sink(
        &self,
        section: &Spanned<SinkSection>,
        listeners: &[ListenerConfig],
    ) -> Result<SinkConfig, ConfigError> {
        let raw = section.get_ref();
        let name = self.name(&raw.name)?;
        let positive = |v: &Option<Spanned<usize>>, default: usize, key: &str| match v {
            None => Ok(default),
            Some(n) if *n.get_ref() == 0 => Err(self.err(n, format!("{key} must be at least 1"))),
            Some(n) => Ok(*n.get_ref()),
        };
        self.only_for_type(raw)?;
        let image = self.image_stage(raw)?;
        let concurrency = positive(
            &raw.concurrency,
            crate::sink::exec::DEFAULT_CONCURRENCY,
            "concurrency",
        )?;
        let (default_workers, default_queue) = match raw.kind {
            // A stage that decodes is CPU work: a worker per core.
            _ if image.as_ref().is_some_and(|i| i.decodes()) => (cores(), 64),
            SinkType::File => (2, 64),
            SinkType::Exec => (concurrency, 64),
            SinkType::Discard => (1, 64),
            SinkType::Forward => (crate::sink::forward::DEFAULT_WORKERS, 64),
        };
        let workers = positive(&raw.workers, default_workers, "workers")?;
        let queue_capacity = positive(&raw.queue_capacity, default_queue, "queue_capacity")?;
        let kind = match raw.kind {
            SinkType::Forward => SinkKind::Forward(self.forward(section, &name)?),
            SinkType::File => {
                let path = raw.path.as_ref().ok_or_else(|| {
                    self.err(
                        section,
                        format!("file sink {name:?} has no `path`; add e.g. path = \"/var/lib/framegate/frames/{{device}}/{{date}}/{{time}}-{{seq}}.{{ext}}\""),
                    )
                })?;
                let template =
                    PathTemplate::parse(path.get_ref()).map_err(|why| self.err(path, why))?;
                let keep = match &raw.keep {
                    None => Keep::default(),
                    Some(k) => {
                        let k = k.get_ref();
                        let positive = |v: Option<u64>,
                                        span: Option<std::ops::Range<usize>>,
                                        key: &str| {
                            match (v, span) {
                                (Some(0), Some(span)) => Err(ConfigError::at(
                                    self.label,
                                    self.source,
                                    span,
                                    format!("keep.{key} must be more than 0 (leave it out for no limit)"),
                                )),
                                (v, _) => Ok(v),
                            }
                        };
                        Keep {
                            max_files: positive(
                                k.max_files.as_ref().map(|v| *v.get_ref()),
                                k.max_files.as_ref().map(|v| v.span()),
                                "max_files",
                            )?,
                            max_bytes: positive(
                                k.max_bytes.as_ref().map(|v| v.get_ref().as_u64()),
                                k.max_bytes.as_ref().map(|v| v.span()),
                                "max_bytes",
                            )?,
                            max_age: k.max_age.as_ref().map(|v| v.get_ref().0),
                        }
                    }
                };
                SinkKind::File(FileSinkConfig {
                    keep,
                    path: template,
                    fsync: raw.fsync.as_ref().is_none_or(|f| *f.get_ref()),
                    time_zone: raw
                        .time_zone
                        .as_ref()
                        .map(|t| *t.get_ref())
                        .unwrap_or_default(),
                })
            }
            SinkType::Exec => SinkKind::Exec(self.exec(section, concurrency)?),
            SinkType::Discard => SinkKind::Discard,
        };
        let mut matches = Match::default();
        if let Some(m) = &raw.matches {
            let m = m.get_ref();
            for d in &m.devices {
                let pattern = glob::Pattern::new(d.get_ref()).map_err(|e| {
                    self.err(d, format!("not a device glob ({e}); write e.g. \"door-*\""))
                })?;
                matches.devices.push(pattern);
            }
            for l in &m.listeners {
                if !listeners.iter().any(|known| known.name == *l.get_ref()) {
                    return Err(self.err(l, "no [[listener]] has this name"));
                }
                matches.listeners.push(l.get_ref().clone());
            }
            let known = Match::known_formats();
            for f in &m.formats {
                let name = f.get_ref().to_ascii_lowercase();
                if !known.contains(&name) {
                    return Err(self.err(
                        f,
                        format!("unknown format; use one of {}", known.join(", ")),
                    ));
                }
                matches.formats.push(name);
            }
        }
        Ok(SinkConfig {
            image,
            when_full: raw.when_full.unwrap_or_default(),
            matches,
            name,
            workers,
            queue_capacity,
            kind,
        })
    }

    fn name(&self, name: &Spanned<String>) -> Result<String, ConfigError> {
        let text = name.get_ref();
        if text.is_empty() || text.chars().any(|c| c.is_control()) {
            return Err(self.err(
                name,
                "a name must be non-empty text without control characters",
            ));
        }
        Ok(text.clone())
    }
}

/// Worker threads for CPU-bound sinks: one per core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Parses `host:port`, resolving a host name (such as `localhost`) once, at load time.
fn resolve(bind: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = bind.parse() {
        return Ok(addr);
    }
    let mut addrs = bind.to_socket_addrs().map_err(|e| {
        format!("cannot use {bind:?} as a listen address ({e}); write IP:PORT, e.g. \"0.0.0.0:1919\" or \"[::]:1919\"")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("{bind:?} resolves to no address"))
}

#[cfg(test)]
mod tests;
