//! `cargo bench --bench http`: HTTP upload frames/s against u32le in the same run (16
//! keep-alive connections, 50 KB JPEGs, both into `discard`), and MJPEG fan-out (one device
//! at 30 frames/s to 50 viewers) with the daemon's CPU and memory. Results go to
//! docs/BENCHMARKS.md. `FG_BENCH_QUICK=1`: fewer frames and a shorter fan-out (a smoke run).
//!
//! A benchmark reports; it does not assert speed. It exits non-zero only when a correctness
//! check fails (a missing response, a wrong status, a frame not counted).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_framegate");
const CONNECTIONS: usize = 16;
const FRAME_BYTES: usize = 50_000;
const VIEWERS: usize = 50;
const FANOUT_FPS: u64 = 30;

struct Daemon {
    child: Child,
    web: SocketAddr,
    raw: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Result<Daemon, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = format!(
            "state_dir = \"{0}/state\"\n[log]\nlevel = \"warn\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nframing = \"http\"\n\
             [[listener]]\nname = \"raw\"\nbind = \"127.0.0.1:0\"\nframing = \"u32le\"\n\
             [[sink]]\nname = \"null\"\ntype = \"discard\"\n",
            dir.path().display()
        );
        let path = dir.path().join("framegate.toml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .env("FRAMEGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {BIN}: {e}"))?;
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut web, mut raw) = (None, None);
        for line in lines.by_ref() {
            let line = line.map_err(|e| e.to_string())?;
            let addr = line
                .split("listening on ")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            if line.contains("listener \"web\"") {
                web = addr;
            } else if line.contains("listener \"raw\"") {
                raw = addr;
            }
            if line.contains("framegate ready") {
                break;
            }
        }
        // Keep draining so the daemon never blocks on a full stderr pipe.
        thread::spawn(move || for _ in lines {});
        Ok(Daemon {
            child,
            web: web.ok_or("no web listener address")?,
            raw: raw.ok_or("no raw listener address")?,
            _dir: dir,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's user+system CPU time so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn frame(seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..FRAME_BYTES)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    f[..4].copy_from_slice(b"\xff\xd8\xff\xe0");
    f
}

/// Reads one HTTP response head and body; returns the status.
fn read_response(r: &mut BufReader<TcpStream>) -> Result<u16, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| e.to_string())?;
        if h.trim_end().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().map_err(|_| "bad Content-Length")?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(status)
}

/// HTTP: each connection POSTs its frames one after another, waiting for each 201.
fn http_uploads(addr: SocketAddr, frames_per_conn: usize) -> Result<Duration, String> {
    let body = Arc::new(frame(1));
    let start = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let body = body.clone();
            thread::spawn(move || -> Result<(), String> {
                let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_nodelay(true).ok();
                s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                let mut w = s.try_clone().map_err(|e| e.to_string())?;
                let mut r = BufReader::new(s);
                let head = format!(
                    "POST /frames/bench-{c} HTTP/1.1\r\nHost: b\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                for _ in 0..frames_per_conn {
                    w.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
                    w.write_all(&body).map_err(|e| e.to_string())?;
                    let status = read_response(&mut r)?;
                    if status != 201 {
                        return Err(format!("upload answered {status}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "an uploader panicked")??;
    }
    Ok(start.elapsed())
}

/// u32le: each connection streams its frames, then the end marker, and waits for the close.
fn u32le_stream(addr: SocketAddr, frames_per_conn: usize) -> Result<Duration, String> {
    let body = Arc::new(frame(2));
    let start = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let body = body.clone();
            thread::spawn(move || -> Result<(), String> {
                let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(60))).ok();
                for _ in 0..frames_per_conn {
                    s.write_all(&(body.len() as u32).to_le_bytes())
                        .map_err(|e| e.to_string())?;
                    s.write_all(&body).map_err(|e| e.to_string())?;
                }
                s.write_all(&0u32.to_le_bytes())
                    .map_err(|e| e.to_string())?;
                let mut buf = [0u8; 64];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => continue,
                        Err(e) => return Err(format!("waiting for the close: {e}")),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a streamer panicked")??;
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn uploads(quick: bool) -> Result<(), String> {
    let frames_per_conn = if quick { 50 } else { 500 };
    let rounds = if quick { 1 } else { 5 };
    let d = Daemon::start()?;
    let total = (CONNECTIONS * frames_per_conn) as f64;
    let (mut http, mut raw, mut http_cpu, mut raw_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Alternate the order so neither always runs on a warmer daemon.
        for which in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let cpu0 = cpu(d.pid());
            let elapsed = if which == 0 {
                http_uploads(d.web, frames_per_conn)?
            } else {
                u32le_stream(d.raw, frames_per_conn)?
            };
            let cores = (cpu(d.pid()) - cpu0).as_secs_f64() / elapsed.as_secs_f64();
            let fps = total / elapsed.as_secs_f64();
            eprintln!(
                "  round {} {:<6} {fps:>8.0} frames/s ({:.0} MB/s), daemon CPU {cores:.2} cores",
                round + 1,
                ["http", "u32le"][which],
                fps * FRAME_BYTES as f64 / 1e6
            );
            if which == 0 {
                http.push(fps);
                http_cpu.push(cores);
            } else {
                raw.push(fps);
                raw_cpu.push(cores);
            }
        }
    }
    let (h, r) = (median(http), median(raw));
    println!("## HTTP uploads vs u32le ({CONNECTIONS} connections, {FRAME_BYTES}-byte JPEGs, discard sink, {frames_per_conn} frames per connection, median of {rounds})");
    println!();
    println!("| framing | frames/s | MB/s | daemon CPU (cores) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| u32le (stream, no replies) | {r:.0} | {:.0} | {:.2} |",
        r * FRAME_BYTES as f64 / 1e6,
        median(raw_cpu)
    );
    println!(
        "| http (keep-alive, each POST waits for its 201) | {h:.0} | {:.0} | {:.2} |",
        h * FRAME_BYTES as f64 / 1e6,
        median(http_cpu)
    );
    println!();
    println!("HTTP / u32le: **{:.2}**", h / r);
    println!();
    Ok(())
}

fn fanout(quick: bool) -> Result<(), String> {
    let seconds = if quick { 3 } else { 10 };
    let d = Daemon::start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let parts = Arc::new(AtomicU64::new(0));
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| {
            let (stop, parts, addr) = (stop.clone(), parts.clone(), d.web);
            thread::spawn(move || -> Result<u64, String> {
                let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                s.write_all(b"GET /devices/cam/stream HTTP/1.1\r\nHost: b\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                let mut r = BufReader::new(s);
                let mut mine = 0;
                let mut line = String::new();
                while !stop.load(Ordering::SeqCst) {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        let len: usize = v.trim().parse().map_err(|_| "bad part length")?;
                        let mut skip = String::new();
                        r.read_line(&mut skip).map_err(|e| e.to_string())?;
                        let mut body = vec![0; len + 2];
                        r.read_exact(&mut body).map_err(|e| e.to_string())?;
                        mine += 1;
                        parts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(mine)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let rss0 = rss_kib(d.pid());
    let cpu0 = cpu(d.pid());
    let start = Instant::now();
    let body = frame(3);
    let mut sent = 0u64;
    let mut peak = rss0;
    let s = TcpStream::connect(d.web).map_err(|e| e.to_string())?;
    s.set_nodelay(true).ok();
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let head = format!(
        "POST /frames/cam HTTP/1.1\r\nHost: b\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    while start.elapsed() < Duration::from_secs(seconds) {
        let due = start + Duration::from_millis(sent * 1000 / FANOUT_FPS);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        w.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        w.write_all(&body).map_err(|e| e.to_string())?;
        if read_response(&mut r)? != 201 {
            return Err("fan-out upload refused".into());
        }
        sent += 1;
        peak = peak.max(rss_kib(d.pid()));
    }
    let elapsed = start.elapsed();
    let cores = (cpu(d.pid()) - cpu0).as_secs_f64() / elapsed.as_secs_f64();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let per_viewer: Vec<u64> = viewers
        .into_iter()
        .map(|t| t.join().map_err(|_| "a viewer panicked".to_string())?)
        .collect::<Result<_, _>>()?;
    let (min, max) = (
        per_viewer.iter().min().copied().unwrap_or(0),
        per_viewer.iter().max().copied().unwrap_or(0),
    );
    println!("## MJPEG fan-out (one device at {FANOUT_FPS} frames/s of {FRAME_BYTES} bytes, {VIEWERS} viewers, {seconds} s)");
    println!();
    println!("| frames sent | parts received per viewer (min–max) | daemon CPU (cores) | daemon RSS before → peak |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {sent} ({:.1}/s) | {min}–{max} | {cores:.3} | {:.1} MiB → {:.1} MiB |",
        sent as f64 / elapsed.as_secs_f64(),
        rss0 as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!();
    if min == 0 {
        return Err("a viewer received nothing".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let quick = std::env::var("FG_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    println!(
        "# framegate HTTP benchmark{}",
        if quick { " (QUICK)" } else { "" }
    );
    println!();
    let mut failed = false;
    for (name, run) in [
        ("uploads", uploads as fn(bool) -> Result<(), String>),
        ("fanout", fanout),
    ] {
        if selected(name) {
            eprintln!("== {name}");
            if let Err(e) = run(quick) {
                println!("- {name}: FAILED: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
