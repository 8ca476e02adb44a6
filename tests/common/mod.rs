//! Shared harness for the integration tests: the real `framegate` binary on 127.0.0.x.
//!
//! [`Daemon`] writes a config into a directory (a fresh `TempDir`, or one a test keeps across
//! restarts), runs `framegate run`, collects its stderr (echoed with a `[framegate]` prefix, so a
//! failing test shows the daemon's log) and knows each listener's address from its
//! `listening on` line. Payload helpers make image-looking frames (JPEG or PNG magic, then
//! seeded pseudo-random bytes) so that `auto` accepts them and byte-exact checks mean something.
//!
//! Every wait is a bounded poll; nothing is asserted from a fixed sleep.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The daemon binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_framegate");

/// How long the daemon may take to print `framegate ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound for waiting on files or log lines.
pub const WAIT: Duration = Duration::from_secs(30);

/// Stands for the test's directory in config text given to [`Daemon::start`].
pub const DIR: &str = "@DIR@";

/// The usual file sink: `{seq:08}` so that sorting names sorts by sequence number.
pub const FILE_SINK: &str = r#"
[[sink]]
name = "files"
type = "file"
path = "@DIR@/frames/{device}/{listener}/{seq:08}.{ext}"
"#;

/// A `[[listener]]` table on an ephemeral port of 127.0.0.1; `extra` is more `key = value` lines.
pub fn listener(name: &str, framing: &str, extra: &str) -> String {
    format!(
        "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\nframing = \"{framing}\"\n{extra}\n"
    )
}

/// A running `framegate run`.
pub struct Daemon {
    /// Config, `state/` and `frames/` live here.
    pub dir: PathBuf,
    /// Owned when the daemon made its own directory.
    _tmp: Option<TempDir>,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    /// Listener name → bound address, from the `listening on` lines.
    pub addrs: HashMap<String, SocketAddr>,
}

impl Daemon {
    /// Starts a daemon in a fresh temporary directory. `config` is TOML in which [`DIR`]
    /// stands for that directory; `state_dir` is set to `DIR/state` unless the text sets it.
    pub fn start(config: &str) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("framegate-it-")
            .tempdir()
            .expect("create a temp dir");
        let mut daemon = Daemon::start_in(tmp.path(), config);
        daemon._tmp = Some(tmp);
        daemon
    }

    /// Starts a daemon in `dir` (kept by the caller, e.g. across a restart).
    pub fn start_in(dir: &Path, config: &str) -> Daemon {
        Daemon::launch(dir, config, None)
    }

    /// Starts a daemon in `dir` whose listener `name` takes `socket`, passed the way systemd
    /// does (socket activation). The test keeps the socket, so the daemon can be stopped and
    /// started again on the same port without anyone re-binding it; while no daemon runs,
    /// connections wait in its backlog unanswered.
    pub fn start_in_with_socket(
        dir: &Path,
        config: &str,
        socket: &std::net::TcpListener,
        name: &str,
    ) -> Daemon {
        use std::os::fd::AsRawFd;
        Daemon::launch(dir, config, Some((socket.as_raw_fd(), name)))
    }

    fn launch(dir: &Path, config: &str, passed: Option<(i32, &str)>) -> Daemon {
        let mut text = config.replace(DIR, &dir.display().to_string());
        if !text.contains("state_dir") {
            text = format!("state_dir = \"{}/state\"\n{text}", dir.display());
        }
        let config_path = dir.join("framegate.toml");
        std::fs::write(&config_path, &text).expect("write the config");
        let mut command = match passed {
            None => {
                let mut command = Command::new(BIN);
                command.arg("run");
                command
            }
            Some((fd, name)) => {
                use std::os::unix::process::CommandExt;
                let mut command = Command::new("sh");
                // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the daemon.
                command.args([
                    "-c",
                    &format!(
                        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES={name} exec \"$0\" run \"$@\""
                    ),
                    BIN,
                ]);
                // SAFETY: dup2 and fcntl are async-signal-safe; in the child only, they put
                // the socket at descriptor 3 without close-on-exec.
                unsafe {
                    command.pre_exec(move || {
                        let ok = if fd == 3 {
                            libc::fcntl(3, libc::F_SETFD, 0) >= 0
                        } else {
                            libc::dup2(fd, 3) >= 0
                        };
                        if ok {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
                command
            }
        };
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .env_remove("FRAMEGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn framegate");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let pid = child.id();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[framegate {pid}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut daemon = Daemon {
            dir: dir.to_path_buf(),
            _tmp: None,
            child: Some(child),
            log,
            reader: Some(reader),
            addrs: HashMap::new(),
        };
        daemon.wait_for_log(&["framegate ready"], READY_TIMEOUT);
        for line in daemon.log() {
            let Some((_, after)) = line.split_once("listener \"") else {
                continue;
            };
            let Some((name, _)) = after.split_once('"') else {
                continue;
            };
            let Some((_, addr)) = line.split_once("listening on ") else {
                continue;
            };
            let addr = addr.split_whitespace().next().unwrap_or_default();
            let addr: SocketAddr = addr
                .parse()
                .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
            daemon.addrs.insert(name.to_string(), addr);
        }
        assert!(
            !daemon.addrs.is_empty(),
            "no `listening on` line in the log"
        );
        daemon
    }

    /// The address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self
            .addrs
            .get(name)
            .unwrap_or_else(|| panic!("no listener {name:?}; have {:?}", self.addrs))
    }

    /// A copy of every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log lines containing every one of `parts`.
    pub fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect()
    }

    /// Waits until `n` log lines contain every one of `parts` (the log reaches the test through
    /// a reader thread, so lines the daemon wrote a moment ago may still be on their way);
    /// returns them. Fails if more than `n` turn up.
    pub fn wait_for_log_count(&mut self, parts: &[&str], n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.log_lines(parts);
            assert!(
                lines.len() <= n,
                "more than {n} lines with {parts:?}: {lines:?}"
            );
            if lines.len() == n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} log lines with {parts:?}; log:\n{}",
                lines.len(),
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing every one of `parts` and returns it; panics (showing the
    /// log) after `timeout`, or at once if the daemon exits first.
    pub fn wait_for_log(&mut self, parts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_lines(parts).into_iter().next() {
                return line;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    // Let the reader catch the last lines before giving up.
                    if let Some(reader) = self.reader.take() {
                        let _ = reader.join();
                    }
                    if let Some(line) = self.log_lines(parts).into_iter().next() {
                        return line;
                    }
                    panic!(
                        "framegate exited ({status}) before logging {parts:?}; log:\n{}",
                        self.log().join("\n")
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} after {timeout:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The file sink's root (`DIR/frames`, as in [`FILE_SINK`]).
    pub fn frames_root(&self) -> PathBuf {
        self.dir.join("frames")
    }

    /// Every file under the frames root, temporary ones included, sorted.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        walk(&self.frames_root())
    }

    /// Waits until at least `n` files are stored (temporary files not counted) and returns all
    /// stored files; panics after `timeout`.
    pub fn wait_for_files(&self, n: usize, timeout: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.stored_files();
            if files.iter().filter(|f| !is_tmp(f)).count() >= n {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} files stored after {timeout:?}",
                files.len()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The stored frames of `device` on `listener`, in sequence order.
    pub fn frames(&self, device: &str, listener: &str) -> Vec<Stored> {
        let dir = self.frames_root().join(device).join(listener);
        walk(&dir).iter().map(|p| Stored::read(p)).collect()
    }

    /// Waits (bounded by [`WAIT`]) until `n` frames of `device` on `listener` are stored and
    /// returns them in sequence order.
    pub fn wait_for_frames(&self, device: &str, listener: &str, n: usize) -> Vec<Stored> {
        let dir = self.frames_root().join(device).join(listener);
        let deadline = Instant::now() + WAIT;
        loop {
            let files: Vec<_> = walk(&dir).into_iter().filter(|p| !is_tmp(p)).collect();
            if files.len() >= n {
                return files.iter().map(|p| Stored::read(p)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} frames stored in {dir:?} after {WAIT:?}",
                files.len()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("daemon running").id();
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        self.wait_exit(Duration::from_secs(45))
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child
            .as_mut()
            .expect("daemon running")
            .kill()
            .expect("SIGKILL");
        self.wait_exit(Duration::from_secs(20))
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for framegate") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "framegate did not exit within {timeout:?}; log:\n{}",
                    self.log().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every regular file below `dir`, sorted (empty if `dir` does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                _ => files.push(path),
            }
        }
    }
    files.sort();
    files
}

/// A file sink's temporary file (`.framegate-*.tmp`), or anything else that looks temporary.
pub fn is_tmp(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with('.') || name.contains(".tmp")
}

/// Asserts that nothing temporary is left below `dir`.
pub fn assert_no_tmp(dir: &Path) {
    let tmp: Vec<_> = walk(dir).into_iter().filter(|p| is_tmp(p)).collect();
    assert!(tmp.is_empty(), "temporary files left behind: {tmp:?}");
}

/// One stored frame file, named `{seq:08}.{ext}`.
#[derive(Debug, Clone)]
pub struct Stored {
    pub path: PathBuf,
    pub seq: u64,
    pub ext: String,
    pub bytes: Vec<u8>,
}

impl Stored {
    pub fn read(path: &Path) -> Stored {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.contains('~'),
            "{path:?}: a name clash was stored as ~N"
        );
        let (stem, ext) = name
            .split_once('.')
            .unwrap_or_else(|| panic!("{path:?}: no extension"));
        let seq = stem
            .parse()
            .unwrap_or_else(|_| panic!("{path:?}: not a {{seq:08}} name"));
        Stored {
            path: path.to_path_buf(),
            seq,
            ext: ext.to_string(),
            bytes: std::fs::read(path).expect("read a stored frame"),
        }
    }
}

/// Asserts that `stored` holds exactly `sent`, in order, with the right extensions; returns the
/// sequence numbers.
pub fn assert_frames_eq(stored: &[Stored], sent: &[Vec<u8>]) -> Vec<u64> {
    let got: Vec<_> = stored
        .iter()
        .map(|s| (s.bytes.len(), hash(&s.bytes)))
        .collect();
    let want: Vec<_> = sent.iter().map(|b| (b.len(), hash(b))).collect();
    assert_eq!(
        got, want,
        "stored frames (len, hash) differ from the sent ones"
    );
    for (s, b) in stored.iter().zip(sent) {
        assert!(s.bytes == *b, "{:?} differs from the frame sent", s.path);
        assert_eq!(s.ext, ext_of(b), "{:?}: wrong extension", s.path);
    }
    stored.iter().map(|s| s.seq).collect()
}

/// Asserts that sequence numbers only grow.
pub fn assert_strictly_increasing(seqs: &[u64]) {
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers not increasing: {seqs:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Payloads

/// xorshift64*: small, seeded, good enough for test bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

pub const JPEG_MAGIC: &[u8] = b"\xff\xd8\xff\xe0";
pub const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn with_magic(magic: &[u8], seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len.max(magic.len())];
    Rng::new(seed).fill(&mut out);
    out[..magic.len()].copy_from_slice(magic);
    out
}

/// A JPEG-looking payload of `len` bytes (at least 4).
pub fn jpeg(seed: u64, len: usize) -> Vec<u8> {
    with_magic(JPEG_MAGIC, seed, len)
}

/// A PNG-looking payload of `len` bytes (at least 8).
pub fn png(seed: u64, len: usize) -> Vec<u8> {
    with_magic(PNG_MAGIC, seed, len)
}

/// `n` distinct frames of varied sizes (`lo..=hi` bytes) and formats, from `seed`.
pub fn frames(seed: u64, n: usize, lo: usize, hi: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = rng.range(lo.max(8), hi);
            let s = seed.wrapping_mul(1000).wrapping_add(i as u64);
            if rng.next_u64() % 3 == 0 {
                png(s, len)
            } else {
                jpeg(s, len)
            }
        })
        .collect()
}

/// The extension the file sink gives these bytes.
pub fn ext_of(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(PNG_MAGIC) {
        "png"
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        "jpg"
    } else {
        "bin"
    }
}

/// FNV-1a, 64 bits.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `frames` as `dir/frame-NNN.{ext}` and returns the paths, in order.
pub fn write_frames(dir: &Path, frames: &[Vec<u8>]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("create the frames dir");
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let path = dir.join(format!("frame-{i:03}.{}", ext_of(f)));
            std::fs::write(&path, f).expect("write a frame file");
            path
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Wire formats and sockets

/// How a device frames its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Ascii,
    U32Le,
    U32Be,
}

/// `frames` as `wire` puts them on the wire (u32le with its zero-length end marker).
pub fn encode(wire: Wire, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        match wire {
            Wire::Ascii => out.extend_from_slice(f.len().to_string().as_bytes()),
            Wire::U32Le => out.extend_from_slice(&(f.len() as u32).to_le_bytes()),
            Wire::U32Be => out.extend_from_slice(&(f.len() as u32).to_be_bytes()),
        }
        out.extend_from_slice(f);
    }
    if wire == Wire::U32Le {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    out
}

/// Connects to `to` from `from` (any 127.0.0.x on Linux).
pub fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("create a socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .connect_timeout(&to.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
    socket.into()
}

/// Connects to `to` from 127.0.0.1.
pub fn connect(to: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&to, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {to}: {e}"))
}

/// Reads (discarding) until the server closes the connection: `Ok` on EOF or a reset, `Err`
/// after `timeout` without either.
pub fn wait_closed_by_server(stream: &mut TcpStream, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("server did not close within {timeout:?}"));
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("server did not close within {timeout:?}"))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Sends `bytes`, half-closes, and waits for the server to close; panics otherwise.
pub fn send_and_finish(mut stream: TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("send");
    // After a u32le end marker the server may have closed already; a failed half-close is fine.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    wait_closed_by_server(&mut stream, WAIT).expect("server closes after the last frame");
}

// ------------------------------------------------------------------------------------------
// Subprocesses

/// Path of a device script under `tests/devices/`.
pub fn device_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/devices")
        .join(name)
}

/// Runs `python3 tests/devices/SCRIPT ARGS…` (bounded by the script's own timeouts) and
/// asserts it exits 0.
pub fn run_device(script: &str, args: &[&str]) -> Output {
    let output = Command::new("python3")
        .arg(device_script(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert_ok(&format!("python3 {script} {args:?}"), &output);
    output
}

/// Runs the framegate binary with `args` and returns its output.
pub fn framegate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run framegate")
}

/// Asserts a finished command exited 0, showing its output otherwise.
pub fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The header of native frame `seq` carrying `payload` as a JPEG: no capture time, no
/// metadata, the payload's CRC-32C.
pub fn jpeg_header(seq: u64, payload: &[u8]) -> framegate::protocol::FrameHeader {
    framegate::protocol::FrameHeader {
        seq,
        captured_us: 0,
        content_type: framegate::protocol::ContentType::Jpeg,
        meta: vec![],
        payload_len: payload.len() as u32,
        crc32c: framegate::protocol::wire::checksum(payload),
    }
}

/// Sends one native frame (seq 1) as `device` and returns the server's answer to it
/// (after its WELCOME): an ACK or a NACK.
pub fn native_frame(
    to: std::net::SocketAddr,
    device: &str,
    payload: &[u8],
) -> framegate::protocol::Message {
    let mut stream = std::net::TcpStream::connect(to).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut bytes = Vec::new();
    framegate::protocol::Message::Hello {
        device: device.into(),
        has_secret: false,
    }
    .encode(&mut bytes);
    framegate::protocol::Message::Frame(jpeg_header(1, payload)).encode(&mut bytes);
    bytes.extend_from_slice(payload);
    std::io::Write::write_all(&mut stream, &bytes).unwrap();
    let mut decoder = framegate::protocol::MessageDecoder::new(0);
    let mut buf = [0u8; 1];
    let mut seen = Vec::new();
    while seen.len() < 2 {
        assert_eq!(
            std::io::Read::read(&mut stream, &mut buf).unwrap(),
            1,
            "closed early: {seen:?}"
        );
        if let Some(framegate::protocol::Decoded::Message(m)) = decoder.feed(&buf).unwrap().event {
            seen.push(m);
        }
    }
    seen.pop().unwrap()
}

/// The reason and text of a NACK for frame 1 (what [`native_frame`] returns); panics on
/// anything else.
pub fn nack_of_first_frame(
    answer: framegate::protocol::Message,
) -> (framegate::protocol::Reason, String) {
    match answer {
        framegate::protocol::Message::Nack {
            seq: 1,
            reason,
            text,
        } => (reason, text),
        other => panic!("expected a NACK for frame 1, got {other:?}"),
    }
}

/// Writes an executable `/bin/sh` script `name` into `dir` (an exec sink's hook).
pub fn hook_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
