//! The event-driven load generator: the same devices, connections and bytes as the
//! thread-per-device generators in `load.rs` (u32le) and `native.rs`, driven by a few threads
//! that each poll many non-blocking connections.
//!
//! Why it exists: in the field every device is its own machine. Here the devices share the
//! daemon's CPUs, and with a thread per device their scheduling is charged to the run: every
//! ACK the daemon sends wakes a sleeping device thread, inside the daemon's `sendto`, and
//! 1000 runnable threads preempt the daemon's event loop. A poller per CPU sends the same
//! frames with the same system calls per frame but wakes a handful of threads, so what is left
//! is closer to the daemon's own cost. Both framings of a comparison use the same generator.
//!
//! Per connection the bytes and calls match the blocking devices: u32le writes each frame
//! (length and payload) with one call, then the end marker, and waits for EOF; native writes
//! each FRAME with one `sendmsg` (MSG_MORE while more follow at once), keeps WELCOME's
//! `max_in_flight` frames unanswered and is done at its last ACK.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use framegate::protocol::wire::checksum;
use framegate::protocol::{Decoded, Message, MessageDecoder};

use super::load::{self, Gate, Load, Outcome, CONNECT_TIMEOUT, IO_TIMEOUT};
use super::native::{encode_frame_header, send_frame_part, Session};

/// Which framing the devices speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// u32le frames, then the zero-length end marker.
    U32Le,
    /// The native protocol, each frame ACKed.
    Native,
}

/// How many poller threads drive the devices: `FG_BENCH_POLLERS`, else one per CPU.
pub fn pollers() -> usize {
    std::env::var("FG_BENCH_POLLERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64)
}

/// Runs `load` against `addr` with [`pollers`] threads; otherwise as [`load::run`].
pub fn run<S>(
    addr: SocketAddr,
    load: &Load,
    wire: Wire,
    settle: impl FnOnce(),
    sample: impl Fn() -> S,
) -> Outcome<S> {
    let frame = load.wire_frame();
    let threads = pollers().min(load.connections.max(1));
    let plan = Arc::new(Plan {
        crc: checksum(&frame[4..]),
        frame,
        frames: load.frames_per_connection as u64,
        connections: load.connections,
        threads,
        wire,
    });
    load::run_threads(threads, "poller", settle, sample, move |index, gate| {
        poller(addr, &plan, index, gate)
    })
}

/// What every poller thread needs.
struct Plan {
    /// One u32le frame: the length, then the payload (native sends `frame[4..]`).
    frame: Arc<[u8]>,
    crc: u32,
    frames: u64,
    connections: usize,
    threads: usize,
    wire: Wire,
}

/// One poller: connects its share of the devices (every `threads`-th), waits at the gate,
/// then drives them all until each is done. Returns when its last device finished.
fn poller(
    addr: SocketAddr,
    plan: &Plan,
    index: usize,
    gate: &Gate,
) -> Result<Option<Instant>, String> {
    let opened: Result<Vec<Device>, String> = (index..plan.connections)
        .step_by(plan.threads)
        .map(|n| Device::open(addr, plan, n))
        .collect();
    // Arrive at the gate whatever happened, so the generator never waits for a lost thread.
    if !gate.arrive_and_wait() {
        return Ok(None);
    }
    let mut devices = opened?;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    for (i, d) in devices.iter_mut().enumerate() {
        poll.registry()
            .register(
                &mut d.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 4096];
    let mut left = devices.len();
    let mut finished = Instant::now();
    // Each device starts by writing; after that, readiness drives it.
    for d in &mut devices {
        d.progress(plan, &mut buf)?;
    }
    left -= devices.iter().filter(|d| d.done).count();
    while left > 0 {
        poll.poll(&mut events, Some(IO_TIMEOUT))
            .map_err(|e| format!("poll: {e}"))?;
        if events.is_empty() {
            return Err(format!(
                "{left} device(s) made no progress for {IO_TIMEOUT:?}"
            ));
        }
        for event in &events {
            let d = &mut devices[event.token().0];
            if d.done {
                continue;
            }
            d.progress(plan, &mut buf)
                .map_err(|e| format!("device {}: {e}", d.index))?;
            if d.done {
                left -= 1;
                finished = Instant::now();
                let _ = poll.registry().deregister(&mut d.stream);
            }
        }
    }
    Ok(Some(finished))
}

/// One device's connection and where it is.
struct Device {
    index: usize,
    stream: MioStream,
    state: State,
    /// True once every frame went out and (native) was ACKed, or (u32le) the receiver closed.
    done: bool,
}

/// Where a device is in its stream. A few thousand of these exist, so the size difference
/// between the variants (the native decoder's buffers) does not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    U32Le {
        /// Bytes written of the whole stream: the frames, then the 4-byte end marker.
        written: u64,
        /// True after the end marker went out and the write side was shut.
        ended: bool,
    },
    Native {
        decoder: MessageDecoder,
        window: u64,
        /// The next seq to send (1-based).
        next: u64,
        in_flight: u64,
        acked: Vec<bool>,
        acks: u64,
        /// The header of the FRAME being written, and how many of its bytes (header, then
        /// payload) are out; empty between frames.
        header: Vec<u8>,
        sent: usize,
        /// PONGs owed, written between frames.
        pongs: Vec<u64>,
    },
}

impl Device {
    fn open(addr: SocketAddr, plan: &Plan, index: usize) -> Result<Device, String> {
        let (stream, state) = match plan.wire {
            Wire::U32Le => {
                let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                    .map_err(|e| format!("connect to {addr}: {e}"))?;
                let state = State::U32Le {
                    written: 0,
                    ended: false,
                };
                (stream, state)
            }
            Wire::Native => {
                let (stream, decoder, window) =
                    Session::open(addr, format!("bench-{index}"))?.into_parts()?;
                let state = State::Native {
                    decoder,
                    window,
                    next: 1,
                    in_flight: 0,
                    acked: vec![false; plan.frames as usize + 1],
                    acks: 0,
                    header: Vec::with_capacity(64),
                    sent: 0,
                    pongs: Vec::new(),
                };
                (stream, state)
            }
        };
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("socket setup: {e}"))?;
        Ok(Device {
            index,
            stream: MioStream::from_std(stream),
            state,
            done: false,
        })
    }

    /// Reads what is there and writes what may go, until the socket would block both ways
    /// (edge-triggered readiness needs that) or the device is done.
    fn progress(&mut self, plan: &Plan, buf: &mut [u8]) -> Result<(), String> {
        match self.state {
            State::U32Le { .. } => self.progress_u32le(plan, buf),
            State::Native { .. } => self.progress_native(plan, buf),
        }
    }

    fn progress_u32le(&mut self, plan: &Plan, buf: &mut [u8]) -> Result<(), String> {
        let State::U32Le { written, ended } = &mut self.state else {
            unreachable!()
        };
        let frame_len = plan.frame.len() as u64;
        let frames_end = frame_len * plan.frames;
        let marker = 0u32.to_le_bytes();
        while !*ended {
            let bytes = if *written < frames_end {
                &plan.frame[(*written % frame_len) as usize..]
            } else {
                &marker[(*written - frames_end) as usize..]
            };
            match (&self.stream).write(bytes) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => *written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
            if *written == frames_end + marker.len() as u64 {
                self.stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown(Write): {e}"))?;
                *ended = true;
            }
        }
        // The receiver sends nothing; its close after the end marker proves it read it all.
        loop {
            match (&self.stream).read(buf) {
                Ok(0) => {
                    self.done = true;
                    return Ok(());
                }
                Ok(n) => return Err(format!("receiver sent {n} unexpected bytes")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("waiting for the receiver to close: {e}")),
            }
        }
    }

    fn progress_native(&mut self, plan: &Plan, buf: &mut [u8]) -> Result<(), String> {
        let State::Native {
            decoder,
            window,
            next,
            in_flight,
            acked,
            acks,
            header,
            sent,
            pongs,
        } = &mut self.state
        else {
            unreachable!()
        };
        let payload = &plan.frame[4..];
        // Answers first, so that the frames they make room for go out together. Reading and
        // writing until each would block is enough: readiness is edge-triggered, and bytes
        // or room that come later raise a new event.
        loop {
            let n = match (&self.stream).read(buf) {
                Ok(0) => return Err(format!("the server closed after {acks} ACKs")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("waiting for ACKs: {e}")),
            };
            let mut pos = 0;
            while pos < n {
                let fed = decoder
                    .feed(&buf[pos..n])
                    .map_err(|e| format!("bad bytes from the server: {e}"))?;
                pos += fed.consumed;
                match fed.event {
                    Some(Decoded::Message(Message::Ack { seq }))
                        if (1..*next).contains(&seq) && !acked[seq as usize] =>
                    {
                        acked[seq as usize] = true;
                        *acks += 1;
                        *in_flight -= 1;
                    }
                    Some(Decoded::Message(Message::Ping { token })) => pongs.push(token),
                    Some(other) => return Err(format!("after {acks} ACKs: unexpected {other:?}")),
                    None if fed.consumed == 0 => return Err("the decoder is stuck".into()),
                    None => {}
                }
            }
        }
        if *acks == plan.frames {
            // Nothing is unanswered: close; the daemon ends the session on EOF.
            let _ = self.stream.shutdown(Shutdown::Write);
            self.done = true;
            return Ok(());
        }
        // PONGs go between frames; 13 bytes into a socket with room are taken whole.
        while header.is_empty() {
            let Some(&token) = pongs.last() else { break };
            let mut bytes = Vec::with_capacity(16);
            Message::Pong { token }.encode(&mut bytes);
            match (&self.stream).write(&bytes) {
                Ok(n) if n == bytes.len() => {
                    pongs.pop();
                }
                Ok(n) => return Err(format!("PONG written in part ({n} bytes)")),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("sending PONG: {e}")),
            }
        }
        // Then as many frames as the window and the socket take.
        while !header.is_empty() || (*in_flight < *window && *next <= plan.frames) {
            if header.is_empty() {
                encode_frame_header(header, *next, payload.len() as u32, plan.crc);
                *sent = 0;
            }
            // More follow at once unless this one fills the window or is the last.
            let more = *in_flight + 1 < *window && *next < plan.frames;
            match send_frame_part(self.stream.as_raw_fd(), header, payload, *sent, more) {
                Ok(0) => return Err("sendmsg returned 0".into()),
                Ok(n) => {
                    *sent += n;
                    if *sent == header.len() + payload.len() {
                        header.clear();
                        *next += 1;
                        *in_flight += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write frame {next}: {e}")),
            }
        }
        Ok(())
    }
}
