//! The exec sink: runs a program per frame (`command = ["/usr/local/bin/on-frame", "{path}"]`).
//!
//! Never through a shell: `command` is an argv array whose elements are filled per frame
//! ([`args`]). The hook gets the image on stdin (`input = "stdin"`), as a temp file removed
//! after it ends (`input = "file"`), or as the path another sink committed (`after`). Its
//! environment is cleared except `PATH`, `LANG` and `env_passthrough`, then gets the
//! `FRAMEGATE_*` variables and the sink's `env`. Its output is logged line by line.
//!
//! The frame counts as committed when the hook exits 0 (`ack = "exit"`), or as soon as it
//! started (`ack = "spawn"`). Hooks run on the sink's worker threads, never on the event
//! loop; at most `concurrency` run at once; one that overruns `timeout` gets SIGTERM, then
//! SIGKILL after `kill_grace`. A failed run is retried `retries` times with a doubling pause.

pub mod args;
pub mod hook;
mod semaphore;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use self::args::{ArgTemplate, Field};
use self::hook::{Invocation, Outcome};
use self::semaphore::Semaphore;
use super::{Committed, Sink, SinkError};
use crate::frame::Frame;

/// Longest pause between retries.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(300);

/// How the hook gets the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// The payload is piped to its stdin.
    Stdin,
    /// The payload is written to a temp file (`{path}`, `FRAMEGATE_PATH`), removed after the
    /// hook ends.
    File,
    /// Nothing (stdin is `/dev/null`); with `after`, `{path}` names the committed file.
    None,
}

/// When a frame counts as committed by the hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// When the hook exited 0.
    #[default]
    Exit,
    /// When the hook started; its exit is only logged and counted.
    Spawn,
}

/// Settings of one `type = "exec"` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSinkConfig {
    /// Program and arguments, each filled per frame.
    pub command: Vec<ArgTemplate>,
    /// How the hook gets the image.
    pub input: Input,
    /// The file sink whose committed path the hook gets (`after = "archive"`).
    pub after: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Variables of the daemon's environment passed through besides `PATH` and `LANG`.
    pub env_passthrough: Vec<String>,
    /// Hooks running at once, at most.
    pub concurrency: usize,
    /// How long a hook may run.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Further attempts after a failed run.
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// When a frame counts as committed.
    pub ack: Ack,
}

/// Default `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `kill_grace`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// Default `retry_backoff`.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Totals of an exec sink's hook runs.
#[derive(Debug, Default)]
pub struct HookCounts {
    /// Runs started.
    pub runs: AtomicU64,
    /// Runs that ended with a non-zero status or a signal.
    pub failed: AtomicU64,
    /// Runs stopped for overrunning `timeout`.
    pub timed_out: AtomicU64,
}

/// Runs a hook per frame.
pub struct ExecSink {
    name: String,
    config: ExecSinkConfig,
    /// Variables from the daemon's own environment the hooks get.
    inherited: Vec<(String, String)>,
    running: Arc<Semaphore>,
    counts: Arc<HookCounts>,
    /// Process groups of the hooks running now, for [`Sink::abort`].
    groups: Arc<Mutex<HashSet<i32>>>,
    /// Set by [`Sink::abort`]: no more runs or retries.
    aborted: AtomicBool,
}

impl ExecSink {
    /// An exec sink named `name`; captures the passed-through environment now.
    pub fn new(name: &str, config: ExecSinkConfig) -> ExecSink {
        let inherited = ["PATH", "LANG"]
            .into_iter()
            .chain(config.env_passthrough.iter().map(String::as_str))
            .filter_map(|key| std::env::var(key).ok().map(|v| (key.to_string(), v)))
            .collect();
        ExecSink {
            name: name.to_string(),
            running: Arc::new(Semaphore::new(config.concurrency)),
            counts: Arc::default(),
            groups: Arc::default(),
            aborted: AtomicBool::new(false),
            inherited,
            config,
        }
    }

    /// Runs, failed and timed-out totals.
    pub fn counts(&self) -> &HookCounts {
        &self.counts
    }

    /// Runs the hook for `frame`, retrying as configured.
    fn run(&self, frame: &Frame, archived: Option<&Path>) -> Result<Committed, SinkError> {
        let attempts = self.config.retries + 1;
        let mut pause = self.config.retry_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(frame, archived) {
                Ok(()) => {
                    return Ok(Committed {
                        path: archived.map(Path::to_path_buf),
                    })
                }
                Err(why) if attempt < attempts && !self.aborted.load(Ordering::SeqCst) => {
                    log::warn!(
                        "sink {:?}: hook for {}#{} {why}; retry {attempt} of {} in {}",
                        self.name,
                        frame.device,
                        frame.seq,
                        self.config.retries,
                        humantime::format_duration(pause)
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    last = why;
                }
                Err(why) => last = why,
            }
        }
        Err(SinkError::new(format!(
            "hook {:?} {last} ({attempts} attempt(s))",
            self.config.command[0].as_str()
        )))
    }

    /// One run of the hook. With `ack = "spawn"`, returns once it started and leaves the
    /// waiting (and the temp file's removal) to a thread of its own.
    fn attempt(&self, frame: &Frame, archived: Option<&Path>) -> Result<(), String> {
        if self.aborted.load(Ordering::SeqCst) {
            return Err("was not run: framegate is shutting down".to_string());
        }
        let temp = match self.config.input {
            Input::File => Some(temp_file(frame).map_err(|e| {
                format!("could not run: cannot write the frame to a temp file: {e}")
            })?),
            _ => None,
        };
        let path = temp.as_ref().map(|t| t.path()).or(archived);
        let values = Values::of(frame, path);
        let invocation = Invocation {
            argv: self
                .config
                .command
                .iter()
                .map(|arg| arg.render(&|field| values.get(field)))
                .collect(),
            env: self.environment(&values),
            stdin: (self.config.input == Input::Stdin).then(|| Arc::from(&frame.payload[..])),
            label: Arc::from(format!(
                "sink {:?} hook for {}#{}",
                self.name, frame.device, frame.seq
            )),
            timeout: self.config.timeout,
            kill_grace: self.config.kill_grace,
        };
        let permit = self.running.acquire();
        let running = hook::spawn(invocation).map_err(|e| format!("could not be started: {e}"))?;
        let group = running.group();
        self.lock_groups().insert(group);
        if self.aborted.load(Ordering::SeqCst) {
            // abort() ran between the check above and the insert: it missed this one.
            hook::kill_group(group);
        }
        self.counts.runs.fetch_add(1, Ordering::Relaxed);
        let finish = {
            let (counts, timeout) = (self.counts.clone(), self.config.timeout);
            let groups = self.groups.clone();
            move |outcome: Outcome| {
                groups
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&group);
                drop(permit);
                drop(temp);
                match outcome {
                    Outcome::Exited(_) if outcome.success() => Ok(()),
                    Outcome::Exited(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        Err(outcome.describe(timeout))
                    }
                    Outcome::TimedOut { .. } => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        counts.timed_out.fetch_add(1, Ordering::Relaxed);
                        Err(outcome.describe(timeout))
                    }
                }
            }
        };
        match self.config.ack {
            Ack::Exit => finish(running.wait()),
            Ack::Spawn => {
                let label = format!(
                    "sink {:?}: hook for {}#{}",
                    self.name, frame.device, frame.seq
                );
                std::thread::Builder::new()
                    .name("fg-hook-spawned".into())
                    .spawn(move || {
                        if let Err(why) = finish(running.wait()) {
                            log::warn!("{label} {why} (ack = \"spawn\": the frame counted as committed when it started)");
                        }
                    })
                    .map_err(|e| format!("could not be watched: {e}"))?;
                Ok(())
            }
        }
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hook's whole environment: inherited, the sink's `env`, then `FRAMEGATE_*` (which
    /// `env` cannot override, so a hook can trust them).
    fn environment(&self, values: &Values) -> Vec<(String, String)> {
        let mut env = self.inherited.clone();
        env.extend(self.config.env.iter().cloned());
        let framegate = [
            ("FRAMEGATE_SINK", self.name.clone()),
            ("FRAMEGATE_DEVICE", values.get(Field::Device)),
            ("FRAMEGATE_SEQ", values.get(Field::Seq)),
            ("FRAMEGATE_LISTENER", values.get(Field::Listener)),
            ("FRAMEGATE_FORMAT", values.get(Field::Format)),
            ("FRAMEGATE_SIZE", values.get(Field::Size)),
            ("FRAMEGATE_WIDTH", values.get(Field::Width)),
            ("FRAMEGATE_HEIGHT", values.get(Field::Height)),
            ("FRAMEGATE_PATH", values.get(Field::Path)),
            ("FRAMEGATE_RECEIVED_AT", values.get(Field::ReceivedAt)),
            ("FRAMEGATE_PEER", values.get(Field::Peer)),
        ];
        env.retain(|(key, _)| !framegate.iter().any(|(k, _)| k == key));
        env.extend(framegate.into_iter().map(|(k, v)| (k.to_string(), v)));
        env
    }
}

impl Sink for ExecSink {
    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError> {
        self.run(frame, None)
    }

    fn commit_after(&self, frame: &Frame, before: &Committed) -> Result<Committed, SinkError> {
        self.run(frame, before.path.as_deref())
    }

    fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        for &group in self.lock_groups().iter() {
            hook::kill_group(group);
        }
    }

    fn details(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counts;
        vec![
            ("hook_runs", c.runs.load(Ordering::Relaxed)),
            ("hook_failures", c.failed.load(Ordering::Relaxed)),
            ("hook_timeouts", c.timed_out.load(Ordering::Relaxed)),
        ]
    }
}

/// A frame's placeholder values, computed once per run.
struct Values<'a> {
    frame: &'a Frame,
    path: Option<&'a Path>,
    dimensions: Option<(u32, u32)>,
}

impl<'a> Values<'a> {
    fn of(frame: &'a Frame, path: Option<&'a Path>) -> Values<'a> {
        Values {
            frame,
            path,
            dimensions: frame.dimensions(),
        }
    }

    fn get(&self, field: Field) -> String {
        let frame = self.frame;
        match field {
            Field::Path => self
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            Field::Device => frame.device.to_string(),
            Field::Seq => frame.seq.to_string(),
            Field::Listener => frame.listener.to_string(),
            Field::Format => frame.format_name(),
            Field::Ext => frame.extension().to_string(),
            Field::Size => frame.size().to_string(),
            Field::Width => self.dimensions.map(|d| d.0.to_string()).unwrap_or_default(),
            Field::Height => self.dimensions.map(|d| d.1.to_string()).unwrap_or_default(),
            Field::ReceivedAt => DateTime::<Utc>::from(frame.received_at)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            Field::Peer => frame.peer.to_string(),
        }
    }
}

/// Writes the payload to a fresh temp file named after the frame (`framegate-cam-7-….jpg`).
fn temp_file(frame: &Frame) -> std::io::Result<tempfile::NamedTempFile> {
    let device = crate::sink::template::sanitize(&frame.device);
    let mut file = tempfile::Builder::new()
        .prefix(&format!("framegate-{device}-{}-", frame.seq))
        .suffix(&format!(".{}", frame.extension()))
        .tempfile()?;
    file.write_all(&frame.payload)?;
    file.flush()?;
    Ok(file)
}
