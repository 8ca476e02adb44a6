//! Log lines through the `log` facade, to stderr, the journal or syslog (`[log] target`).
//!
//! - stderr: `2026-11-24T10:49:00.123Z INFO  message`, UTC so lines from gateways in different
//!   zones sort together; one write per line, so threads never interleave.
//! - journal: when `JOURNAL_STREAM` says stderr is the journal, lines carry the `<N>` priority
//!   prefix the journal understands and no timestamp (the journal adds its own).
//! - syslog: RFC 3164 datagrams to a unix socket (`/dev/log` by default), with the configured
//!   facility and ident (the `syslog` crate).
//!
//! `auto` picks the journal when stderr is the journal, else syslog when its socket exists,
//! else plain stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde::Deserialize;

/// Where log lines go (`[log] target`). Without the key: stderr, so a daemon started by hand
/// (or by a test) logs where it was started; the packaged config sets `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The journal if stderr is connected to it, else syslog if its socket exists, else stderr.
    Auto,
    /// syslog, through its unix socket.
    Syslog,
    /// Plain stderr.
    #[default]
    Stderr,
}

/// The `[log]` settings besides the level.
#[derive(Debug, Clone)]
pub struct Output {
    /// Where lines go.
    pub target: Target,
    /// syslog facility, e.g. `daemon`, `local0`.
    pub facility: syslog::Facility,
    /// syslog ident (program name in each line).
    pub ident: String,
    /// The syslog socket.
    pub socket: PathBuf,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            target: Target::Stderr,
            facility: syslog::Facility::LOG_DAEMON,
            ident: "framegate".to_string(),
            socket: PathBuf::from("/dev/log"),
        }
    }
}

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Sink {
    Stderr,
    Journal,
    Syslog(Mutex<Syslog>),
}

struct Logger {
    sink: OnceLock<Sink>,
}

static LOGGER: Logger = Logger {
    sink: OnceLock::new(),
};

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match self.sink.get().unwrap_or(&Sink::Stderr) {
            Sink::Stderr => {
                let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
                let line = format!("{now} {:<5} {}\n", record.level(), record.args());
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Journal => {
                let line = format!("<{}>{}\n", priority(record.level()), record.args());
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(logger) => {
                let message = record.args().to_string();
                let mut logger = logger.lock().unwrap_or_else(|p| p.into_inner());
                let _ = match record.level() {
                    Level::Error => logger.err(message),
                    Level::Warn => logger.warning(message),
                    Level::Info => logger.info(message),
                    Level::Debug | Level::Trace => logger.debug(message),
                };
            }
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// syslog priorities: err 3, warning 4, info 6, debug 7.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`) names the file stderr is.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole stat struct for a valid descriptor (2 is always open here
    // or the call fails, which we check).
    if unsafe { libc::fstat(2, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let stat = unsafe { stat.assume_init() };
    stream == format!("{}:{}", stat.st_dev, stat.st_ino)
}

fn connect_syslog(output: &Output) -> Result<Syslog, String> {
    let formatter = syslog::Formatter3164 {
        facility: output.facility,
        hostname: None,
        process: output.ident.clone(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, &output.socket)
        .map_err(|e| format!("cannot use syslog at {}: {e}", output.socket.display()))
}

/// Installs the logger with a default output (stderr), for errors before the config is read.
pub fn init_stderr(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Installs the logger (once per process) for `output`; returns where lines go, for the
/// first log line. A syslog that cannot be reached falls back to stderr, saying why.
pub fn init(level: LevelFilter, output: &Output) -> String {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    let (sink, description) = choose(output);
    let _ = LOGGER.sink.set(sink);
    description
}

fn choose(output: &Output) -> (Sink, String) {
    let syslog = |why_not: &str| match connect_syslog(output) {
        Ok(logger) => (
            Sink::Syslog(Mutex::new(logger)),
            format!(
                "syslog at {} (facility {:?}, ident {})",
                output.socket.display(),
                output.facility,
                output.ident
            ),
        ),
        Err(e) => (Sink::Stderr, format!("stderr ({why_not}{e})")),
    };
    match output.target {
        Target::Stderr => (Sink::Stderr, "stderr".to_string()),
        Target::Syslog => syslog(""),
        Target::Auto if stderr_is_journal() => (Sink::Journal, "the journal".to_string()),
        Target::Auto if Path::new(&output.socket).exists() => syslog("auto: "),
        Target::Auto => (
            Sink::Stderr,
            format!("stderr (auto: no journal, no {})", output.socket.display()),
        ),
    }
}
