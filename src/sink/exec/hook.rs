//! Running one hook process: spawn it without a shell, feed its stdin, log its output line by
//! line, and stop it when it overruns its time.
//!
//! The hook leads a process group of its own, so a timeout stops everything it started (a
//! shell script's `sleep` too), not only its first process.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Longest output line logged whole; longer lines are logged in pieces of this size.
const MAX_LINE: usize = 4096;
/// How long a finished hook's last output lines may take to reach the log. Bounded: a
/// process the hook left behind may keep its pipes open.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// What to run and how.
pub struct Invocation {
    /// Program and arguments (`argv[0]` is looked up in the given `PATH`).
    pub argv: Vec<String>,
    /// The hook's whole environment.
    pub env: Vec<(String, String)>,
    /// Bytes piped to its stdin (stdin is `/dev/null` when `None`).
    pub stdin: Option<Arc<[u8]>>,
    /// Names the hook run in log lines: sink, device and sequence number.
    pub label: Arc<str>,
    /// Stop it after this long (SIGTERM, then SIGKILL after `kill_grace`).
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// How a hook run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited (or was killed by someone else) on its own.
    Exited(ExitStatus),
    /// It overran `timeout` and was stopped: by SIGTERM, or by SIGKILL when it ignored that.
    TimedOut {
        /// True if it needed SIGKILL.
        killed: bool,
    },
}

impl Outcome {
    /// True for an exit with status 0.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited(status) if status.success())
    }

    /// The outcome for a log line or an error: "exited with status 3", "timed out …".
    pub fn describe(&self, timeout: Option<Duration>) -> String {
        let after = timeout.map(humantime::format_duration);
        match self {
            Outcome::Exited(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => format!("ended ({status})"),
            },
            Outcome::TimedOut { killed: false } => {
                format!(
                    "timed out after {} and was stopped with SIGTERM",
                    after.unwrap()
                )
            }
            Outcome::TimedOut { killed: true } => format!(
                "timed out after {}, ignored SIGTERM and was killed with SIGKILL",
                after.unwrap()
            ),
        }
    }
}

/// A hook that is running.
pub struct Running {
    pid: i32,
    /// One message per output stream that reached its end.
    output_ended: Receiver<()>,
    exited: Receiver<ExitStatus>,
    timeout: Option<Duration>,
    kill_grace: Duration,
}

/// Starts the hook. Fails when the program cannot be started (not found, not executable).
pub fn spawn(invocation: Invocation) -> io::Result<Running> {
    let (program, args) = invocation
        .argv
        .split_first()
        .expect("config validation requires a program");
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(invocation.env.iter().map(|(k, v)| (k, v)))
        .stdin(match invocation.stdin {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let pid = child.id() as i32;
    if let (Some(pipe), Some(bytes)) = (child.stdin.take(), invocation.stdin) {
        thread::Builder::new()
            .name("fg-hook-stdin".into())
            .spawn(move || feed(pipe, &bytes))?;
    }
    let label = invocation.label;
    // Each output reader reports its end, so the hook's result is reported after its output.
    let (ended, output_ended) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let (label, ended) = (label.clone(), ended.clone());
        thread::Builder::new()
            .name("fg-hook-stdout".into())
            .spawn(move || {
                log_lines(out, &label, "stdout", log::Level::Info);
                let _ = ended.send(());
            })?;
    }
    if let Some(err) = child.stderr.take() {
        thread::Builder::new()
            .name("fg-hook-stderr".into())
            .spawn(move || {
                log_lines(err, &label, "stderr", log::Level::Warn);
                let _ = ended.send(());
            })?;
    }
    Ok(Running {
        pid,
        output_ended,
        exited: reap(child)?,
        timeout: invocation.timeout,
        kill_grace: invocation.kill_grace,
    })
}

impl Running {
    /// The hook's process group id (its own pid: it leads the group).
    pub fn group(&self) -> i32 {
        self.pid
    }

    /// Waits for the hook to end, stopping it when it overruns its timeout, and (for at most
    /// [`OUTPUT_GRACE`]) for its last output lines to be logged.
    pub fn wait(self) -> Outcome {
        let outcome = self.wait_for_exit();
        let deadline = std::time::Instant::now() + OUTPUT_GRACE;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.output_ended.recv_timeout(left).is_err() {
                break;
            }
        }
        outcome
    }

    fn wait_for_exit(&self) -> Outcome {
        let Some(timeout) = self.timeout else {
            return Outcome::Exited(self.exited.recv().expect("reaper reports once"));
        };
        match self.exited.recv_timeout(timeout) {
            Ok(status) => return Outcome::Exited(status),
            Err(RecvTimeoutError::Disconnected) => unreachable!("reaper reports once"),
            Err(RecvTimeoutError::Timeout) => {}
        }
        self.signal(libc::SIGTERM);
        if self.exited.recv_timeout(self.kill_grace).is_ok() {
            // Whatever it left behind in its group goes too.
            self.signal(libc::SIGKILL);
            return Outcome::TimedOut { killed: false };
        }
        self.signal(libc::SIGKILL);
        let _ = self.exited.recv();
        Outcome::TimedOut { killed: true }
    }

    fn signal(&self, signal: i32) {
        signal_group(self.pid, signal);
    }
}

/// Kills a hook's whole process group at once (the daemon's shutdown timed out).
pub fn kill_group(group: i32) {
    signal_group(group, libc::SIGKILL);
}

fn signal_group(group: i32, signal: i32) {
    // The whole group: the hook is its leader (`process_group(0)`).
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is shared.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// Waits for the child on a thread of its own, so the caller can wait with a timeout.
fn reap(mut child: Child) -> io::Result<Receiver<ExitStatus>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("fg-hook-wait".into())
        .spawn(move || {
            let status = child
                .wait()
                .unwrap_or_else(|_| ExitStatus::from_raw(127 << 8));
            let _ = tx.send(status);
        })?;
    Ok(rx)
}

/// Writes the payload to the hook's stdin. A hook that does not read it (and exits, or
/// closes stdin) is not an error: EPIPE ends the write quietly.
fn feed(mut pipe: ChildStdin, bytes: &[u8]) {
    let _ = pipe.write_all(bytes);
}

/// Logs each line the hook writes, cut at [`MAX_LINE`] bytes so a hook that never writes a
/// newline cannot make the daemon buffer without bound.
fn log_lines(mut pipe: impl Read, label: &str, stream: &str, level: log::Level) {
    let mut line = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    let emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line);
        log::log!(level, "{label} {stream}: {}", text.trim_end_matches('\r'));
        line.clear();
    };
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &byte in &buf[..n] {
            if byte == b'\n' {
                emit(&mut line);
            } else {
                line.push(byte);
                if line.len() >= MAX_LINE {
                    emit(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn run(script: &str, timeout: Option<Duration>, stdin: Option<&[u8]>) -> Outcome {
        spawn(Invocation {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            stdin: stdin.map(Arc::from),
            label: Arc::from("test hook"),
            timeout,
            kill_grace: Duration::from_millis(300),
        })
        .unwrap()
        .wait()
    }

    #[test]
    fn exit_status_and_stdin_reach_the_caller() {
        assert!(run("exit 0", None, None).success());
        let outcome = run("exit 3", None, None);
        assert_eq!(outcome.describe(None), "exited with status 3");
        // The payload arrives whole; the hook checks it and answers with its status.
        let payload = vec![b'x'; 300_000];
        let check = "test \"$(wc -c)\" -eq 300000";
        assert!(run(check, None, Some(&payload)).success());
        // A hook that ignores stdin is fine.
        assert!(run("exit 0", None, Some(&payload)).success());
    }

    #[test]
    fn timeout_stops_the_whole_group_with_sigterm_then_sigkill() {
        let started = Instant::now();
        let outcome = run("sleep 30", Some(Duration::from_millis(200)), None);
        assert_eq!(outcome, Outcome::TimedOut { killed: false });
        let outcome = run(
            "trap '' TERM; sleep 30 & wait; sleep 30",
            Some(Duration::from_millis(200)),
            None,
        );
        assert_eq!(outcome, Outcome::TimedOut { killed: true });
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "neither hook ran its 30 s"
        );
    }
}
