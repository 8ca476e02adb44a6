//! The baseline: a minimal blocking reader of the same framing, as a straightforward host
//! would write it — a thread per connection, `read_exact` of the 4-byte length, then
//! `read_exact` of the payload into a `Vec` allocated per frame, until the zero length.

use std::hint::black_box;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use super::system;

/// How long accept and each read may block before the run counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Same listen backlog as the daemon's default, so neither side turns connections away.
const BACKLOG: i32 = 1024;
/// Largest payload the reader accepts (the daemon's default `max_frame_bytes`).
const MAX_FRAME: usize = 32 << 20;
/// Bound on frames per connection, far above any scenario.
const MAX_FRAMES: u64 = 10_000_000;

/// Frames and payload bytes a reader received, and the CPU time it took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Complete frames.
    pub frames: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// CPU time of the reader threads from their start to the end marker (thread start-up
    /// and exit excluded), in ns.
    pub cpu_ns: u64,
}

/// A running baseline reader expecting a fixed number of connections.
pub struct Reader {
    /// Where devices connect.
    pub addr: SocketAddr,
    acceptor: JoinHandle<Result<Totals, String>>,
    /// Connections accepted and handed to a reader thread so far.
    serving: Arc<AtomicUsize>,
}

impl Reader {
    /// Listens on 127.0.0.1:0 and serves `connections` devices, then stops accepting.
    pub fn start(connections: usize) -> io::Result<Reader> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(BACKLOG)?;
        let listener: TcpListener = socket.into();
        // SO_RCVTIMEO bounds accept() too, so a device that never connects cannot hang us.
        SockRef::from(&listener).set_read_timeout(Some(IO_TIMEOUT))?;
        let addr = listener.local_addr()?;
        let serving = Arc::new(AtomicUsize::new(0));
        let counter = serving.clone();
        let acceptor = thread::Builder::new()
            .name("baseline-accept".into())
            .spawn(move || accept_all(&listener, connections, &counter))?;
        Ok(Reader {
            addr,
            acceptor,
            serving,
        })
    }

    /// Waits (bounded by `timeout`) until `connections` have a reader thread, so that thread
    /// start-up stays outside the measurement; true if they all do.
    pub fn wait_serving(&self, connections: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.serving.load(Ordering::Acquire) < connections {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Waits for every connection to end; the summed totals, or the first failure.
    pub fn finish(self) -> Result<Totals, String> {
        self.acceptor
            .join()
            .map_err(|_| "baseline acceptor panicked".to_string())?
    }
}

fn accept_all(
    listener: &TcpListener,
    connections: usize,
    serving: &AtomicUsize,
) -> Result<Totals, String> {
    let mut handlers = Vec::with_capacity(connections);
    let mut failure = None;
    for i in 0..connections {
        match listener.accept() {
            Ok((stream, _)) => {
                // Default thread settings: what the straightforward host does.
                match thread::Builder::new().spawn(move || serve(stream)) {
                    Ok(h) => {
                        handlers.push(h);
                        serving.fetch_add(1, Ordering::Release);
                    }
                    Err(e) => {
                        failure = Some(format!("cannot start reader thread {i}: {e}"));
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(format!("accept {i} of {connections}: {e}"));
                break;
            }
        }
    }
    let mut totals = Totals::default();
    for h in handlers {
        match h.join() {
            Ok(Ok(t)) => {
                totals.frames += t.frames;
                totals.bytes += t.bytes;
                totals.cpu_ns += t.cpu_ns;
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert("reader thread panicked".into());
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(totals),
    }
}

/// Reads frames until the zero length; dropping the stream then closes it, which the device
/// waits for.
fn serve(mut stream: TcpStream) -> Result<Totals, String> {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("set timeout: {e}"))?;
    let cpu_start = system::own_thread_cpu_ns();
    let mut totals = Totals::default();
    while totals.frames < MAX_FRAMES {
        let mut header = [0u8; 4];
        stream
            .read_exact(&mut header)
            .map_err(|e| format!("reading a length after {} frames: {e}", totals.frames))?;
        let len = u32::from_le_bytes(header) as usize;
        if len == 0 {
            totals.cpu_ns = system::own_thread_cpu_ns().saturating_sub(cpu_start);
            return Ok(totals);
        }
        if len > MAX_FRAME {
            return Err(format!("length {len} above {MAX_FRAME}"));
        }
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .map_err(|e| format!("reading a {len}-byte payload: {e}"))?;
        black_box(&payload);
        totals.frames += 1;
        totals.bytes += len as u64;
    }
    Err(format!("more than {MAX_FRAMES} frames on one connection"))
}
