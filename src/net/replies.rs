//! The reply writer: a thread that writes the native replies (ACKs, NACKs) the loop hands it,
//! so a turn that answers many devices goes back to reading instead of sending.
//!
//! Why a thread: the kernel does much of the receiver's work inside the sender's `send` when
//! both ends share a host (loopback, devices in containers on the gateway). A turn that ACKs
//! hundreds of devices then spends its time delivering segments while their next frames wait
//! unread. docs/BENCHMARKS.md ("The reply writer") has the measurements. A turn that answers
//! a few connections writes itself: a hand-off would cost a wake-up for nothing.
//!
//! Order: while the writer holds bytes for a socket, the loop hands it that socket's later
//! replies too instead of writing them itself ([`Socket::is_handed_off`]).
//!
//! Lifetime: the socket is shared ([`Arc`]), so a connection the loop closes stays open until
//! the writer wrote what it holds for it — its last ACKs or its GOODBYE, then the FIN. Bytes
//! that do not fit a closed connection's socket at once are dropped, as the loop would drop
//! them: nobody is left to wait for room.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use log::error;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// A connection's socket, shared by the loop (which reads it) and the reply writer.
#[derive(Debug)]
pub struct Socket {
    tcp: TcpStream,
    fd: RawFd,
    /// Bytes handed to the writer and not yet written (or dropped: after an error, or when
    /// a closed connection's socket is full).
    unwritten: AtomicUsize,
    /// The loop is done with the connection: what does not fit the socket now is dropped.
    closed: AtomicBool,
}

impl Socket {
    /// Wraps an accepted stream.
    pub fn new(tcp: TcpStream) -> Arc<Socket> {
        let fd = tcp.as_raw_fd();
        Arc::new(Socket {
            tcp,
            fd,
            unwritten: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// The stream, for reads and the loop's own writes.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// For (re)registering and deregistering the socket with a [`mio::Registry`].
    pub fn source(&self) -> SourceFd<'_> {
        SourceFd(&self.fd)
    }

    /// True while the writer holds bytes for this socket: later replies must go to it too,
    /// or they would overtake those.
    pub fn is_handed_off(&self) -> bool {
        self.unwritten() > 0
    }

    /// Bytes the writer holds for this socket: handed off, not yet in the kernel.
    pub fn unwritten(&self) -> usize {
        // Acquire: pairs with the writer's release, so once this reads 0 the writer is done
        // with the socket and the loop may write to it itself.
        self.unwritten.load(Ordering::Acquire)
    }

    /// Writes replies: as much of `bytes` as the socket takes now (`WouldBlock` when none).
    ///
    /// Then it keeps the connection out of TCP's delayed-ACK ("pingpong") mode. Linux enters
    /// that mode on a socket that sends data soon after receiving some, as every reply does;
    /// the device's next frames then wait for ACKs that the daemon only sends when it reads.
    /// Measured in docs/BENCHMARKS.md ("Quick ACKs").
    pub fn write_replies(&self, bytes: &[u8]) -> io::Result<usize> {
        let n = (&self.tcp).write(bytes)?;
        // A failure here only costs speed; the write happened.
        let _ = socket2::SockRef::from(&self.tcp).set_quickack(true);
        Ok(n)
    }

    /// The loop is done with the connection: the writer gives up on bytes that do not fit
    /// now (within [`CLOSED_CHECK`]).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Hand-offs waiting for the writer: one buffer of bytes and where each socket's part is, so
/// a turn's hand-offs cost no allocation once the buffers have grown.
#[derive(Default)]
struct Inbox {
    bytes: Vec<u8>,
    parts: Vec<(Arc<Socket>, usize, usize)>,
    stop: bool,
}

/// The loop's handle on the reply writer thread. Dropping it writes what was handed off (what
/// fits the sockets now), then stops the thread.
pub struct ReplyWriter {
    inbox: Arc<Mutex<Inbox>>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

const WAKER: Token = Token(usize::MAX);

/// How soon the writer drops what it holds for a full socket the loop closed. The loop does
/// not wake it for that: closing must not cost the loop anything, and a device that stopped
/// reading is no hurry.
pub const CLOSED_CHECK: Duration = Duration::from_secs(1);

impl ReplyWriter {
    /// Starts the writer thread (`fg-replies`).
    pub fn start() -> io::Result<ReplyWriter> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let thread = std::thread::Builder::new()
            .name("fg-replies".into())
            .spawn({
                let inbox = inbox.clone();
                move || Writer::new(poll, inbox).run()
            })?;
        Ok(ReplyWriter {
            inbox,
            waker,
            thread: Some(thread),
        })
    }

    /// Hands `bytes` (a connection's queued replies, all of them) to the writer.
    pub fn hand_off(&self, socket: &Arc<Socket>, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        socket.unwritten.fetch_add(bytes.len(), Ordering::AcqRel);
        let was_empty = {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = inbox.parts.is_empty();
            let start = inbox.bytes.len();
            inbox.bytes.extend_from_slice(bytes);
            let end = inbox.bytes.len();
            inbox.parts.push((socket.clone(), start, end));
            was_empty
        };
        // A non-empty inbox already has a wake-up on its way.
        if was_empty {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the reply writer: {e}");
        }
    }
}

impl Drop for ReplyWriter {
    fn drop(&mut self) {
        self.inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes for one socket that did not fit it yet.
struct Backlog {
    socket: Arc<Socket>,
    bytes: Vec<u8>,
}

/// The thread's side: writes hand-offs; waits for room on sockets that were full.
struct Writer {
    poll: Poll,
    inbox: Arc<Mutex<Inbox>>,
    /// The inbox's buffers, swapped with it each turn so both keep their capacity.
    taken: Inbox,
    /// Full sockets, by file descriptor (also their token in `poll`).
    waiting: HashMap<RawFd, Backlog>,
}

impl Writer {
    fn new(poll: Poll, inbox: Arc<Mutex<Inbox>>) -> Writer {
        Writer {
            poll,
            inbox,
            taken: Inbox::default(),
            waiting: HashMap::new(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let stop = {
                let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut *inbox, &mut self.taken);
                std::mem::take(&mut self.taken.stop)
            };
            self.write_taken(stop);
            self.retry_waiting(stop);
            if stop {
                return;
            }
            let timeout = (!self.waiting.is_empty()).then_some(CLOSED_CHECK);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Not expected to last; a writer that stopped would leave devices
                    // unanswered, so it keeps going, a little slower.
                    error!("reply writer: cannot wait for sockets: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            // Every wake-up leads to the same work: the inbox, then every waiting socket.
        }
    }

    /// Writes this turn's hand-offs, each after what its socket still waits to write.
    fn write_taken(&mut self, stop: bool) {
        // Taken out (and put back) so the loop below may borrow `self`.
        let (bytes, mut parts) = (
            std::mem::take(&mut self.taken.bytes),
            std::mem::take(&mut self.taken.parts),
        );
        for (socket, start, end) in parts.drain(..) {
            let part = &bytes[start..end];
            // A waiting socket is held open by its backlog, so its descriptor names it alone.
            if let Some(backlog) = self.waiting.get_mut(&socket.fd) {
                backlog.bytes.extend_from_slice(part);
                continue;
            }
            let Ok(written) = write_some(&socket, part) else {
                release(&socket, part.len()); // the loop hears of the error from its reads
                continue;
            };
            // No room for the rest of a closed connection's bytes: nobody would wait for it.
            if written == part.len() || stop || socket.closed.load(Ordering::Acquire) {
                release(&socket, part.len());
            } else {
                release(&socket, written);
                self.wait_for_room(socket, part[written..].to_vec());
            }
        }
        self.taken.bytes = bytes;
        self.taken.bytes.clear();
        self.taken.parts = parts;
    }

    /// Starts waiting for room on a full socket.
    fn wait_for_room(&mut self, socket: Arc<Socket>, bytes: Vec<u8>) {
        let fd = socket.fd;
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(fd as usize),
            Interest::WRITABLE,
        ) {
            error!("reply writer: cannot wait for room on a device socket: {e}");
            release(&socket, bytes.len());
            return;
        }
        self.waiting.insert(fd, Backlog { socket, bytes });
    }

    /// Writes what full sockets hold; drops it for closed ones (and for all, when stopping).
    fn retry_waiting(&mut self, stop: bool) {
        let registry = self.poll.registry();
        self.waiting.retain(|fd, backlog| {
            let done = match write_some(&backlog.socket, &backlog.bytes) {
                Ok(n) => {
                    backlog.bytes.drain(..n);
                    release(&backlog.socket, n);
                    backlog.bytes.is_empty()
                        || stop
                        || backlog.socket.closed.load(Ordering::Acquire)
                }
                Err(_) => true,
            };
            if done {
                let _ = registry.deregister(&mut SourceFd(fd));
                // What is left is dropped.
                release(&backlog.socket, backlog.bytes.len());
            }
            !done
        });
    }
}

/// Writes as much of `bytes` as the socket takes now.
fn write_some(socket: &Socket, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match socket.write_replies(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// The writer is done with `bytes` of what was handed off for this socket (wrote or dropped
/// them).
fn release(socket: &Socket, bytes: usize) {
    // Release: the loop, seeing the count drop, sees those writes done.
    socket.unwritten.fetch_sub(bytes, Ordering::AcqRel);
}

#[cfg(test)]
mod tests;
