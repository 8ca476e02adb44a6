//! `framegate send`: a device-side sender for Linux devices and for tests.
//!
//! Sends image files over one or more connections, each on its own thread (a device tool,
//! not the daemon: blocking I/O is the simple, right choice here): acknowledged over the
//! native protocol ([`native`], also [`watch`]ing a directory), or in a legacy framing.

pub mod backoff;
pub mod native;
pub mod watch;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::framing::Framing;

/// How long to wait for the daemon to close its side after we finished sending.
const LINGER: Duration = Duration::from_secs(10);

/// What to send, where, and how.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// `HOST:PORT` of the daemon.
    pub to: String,
    /// Wire format (not `auto`: a sender must pick one).
    pub framing: Framing,
    /// Send the whole set of files this many times per connection.
    pub repeat: u64,
    /// Parallel connections, each sending everything.
    pub connections: usize,
}

/// Totals of a finished send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Frames written.
    pub frames: u64,
    /// Payload bytes written.
    pub bytes: u64,
}

/// Reads the files to send: each path is a file, or a directory whose regular files (not
/// hidden, sorted by name, not recursive) are taken.
pub fn collect_images(paths: &[PathBuf]) -> io::Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !is_hidden(p))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|f| fs::read(f).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display()))))
        .collect()
}

/// True for dot-files (editors' and uploaders' temp files).
pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The bytes that announce a payload of `len` bytes in `framing`.
pub fn header(framing: Framing, len: usize) -> Vec<u8> {
    match framing {
        Framing::AsciiLength => len.to_string().into_bytes(),
        Framing::U32Le => (len as u32).to_le_bytes().to_vec(),
        Framing::U32Be => (len as u32).to_be_bytes().to_vec(),
        Framing::Auto | Framing::Native | Framing::Imagezmq | Framing::Http => {
            unreachable!("send() refuses these first")
        }
    }
}

/// Sends every image per the plan; fails on the first connection error.
pub fn send(plan: &SendPlan, images: &[Vec<u8>]) -> io::Result<SendReport> {
    if plan.framing == Framing::Auto {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--framing auto is for listeners; a sender uses ascii-length, u32le or u32be",
        ));
    }
    if plan.framing == Framing::Native {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the native protocol goes through native::NativeSender",
        ));
    }
    if plan.framing == Framing::Http {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--framing http is for listeners; upload with curl --data-binary @img.jpg http://HOST:PORT/frames/DEVICE",
        ));
    }
    if plan.framing == Framing::Imagezmq {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--framing imagezmq is for listeners; imagezmq senders are Python programs",
        ));
    }
    if let Some(big) = images.iter().find(|i| i.len() > u32::MAX as usize) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {}-byte image does not fit a 4-byte length", big.len()),
        ));
    }
    let addr = plan.to.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no address", plan.to),
        )
    })?;
    thread::scope(|scope| {
        let workers: Vec<_> = (0..plan.connections.max(1))
            .map(|_| scope.spawn(move || send_one(addr, plan, images)))
            .collect();
        let mut total = SendReport {
            frames: 0,
            bytes: 0,
        };
        for worker in workers {
            let report = worker.join().expect("sender thread panicked")?;
            total.frames += report.frames;
            total.bytes += report.bytes;
        }
        Ok(total)
    })
}

fn send_one(
    addr: std::net::SocketAddr,
    plan: &SendPlan,
    images: &[Vec<u8>],
) -> io::Result<SendReport> {
    let mut stream = TcpStream::connect(addr)?;
    let mut report = SendReport {
        frames: 0,
        bytes: 0,
    };
    for _ in 0..plan.repeat {
        for image in images {
            stream.write_all(&header(plan.framing, image.len()))?;
            stream.write_all(image)?;
            report.frames += 1;
            report.bytes += image.len() as u64;
        }
    }
    if plan.framing == Framing::U32Le {
        stream.write_all(&0u32.to_le_bytes())?;
    }
    stream.shutdown(Shutdown::Write)?;
    // Wait for the daemon to close its side: then it has read every byte we sent.
    stream.set_read_timeout(Some(LINGER))?;
    let mut sink = [0u8; 256];
    let deadline = Instant::now() + LINGER;
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            // A reset after everything was written still means the bytes were delivered.
            Err(_) => break,
        }
    }
    Ok(report)
}
