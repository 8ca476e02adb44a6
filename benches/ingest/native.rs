//! The native-protocol load generator: the same threads, connections and payload as the u32le
//! generator in `load.rs`, speaking docs/PROTOCOL.md instead.
//!
//! Per connection (device id `bench-N`): HELLO and WELCOME before the clock starts; then up to
//! WELCOME's `max_in_flight` FRAMEs unanswered, each with its own seq (1, 2, …), sending the
//! next as each ACK arrives; done when every frame is ACKed. The payload is the u32le
//! generator's buffer, shared by every thread; its CRC-32C is computed once, since every frame
//! carries the same bytes. Each FRAME goes out as one `writev` of its header (encoded per
//! frame, 36 bytes) and the shared payload, so a frame costs the device one system call, as a
//! u32le frame does.
//!
//! Like real native clients (the Python client, `framegate send`), devices set TCP_NODELAY:
//! the protocol is request/response at the window's edge, where Nagle's algorithm would hold a
//! frame's last segment back.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use framegate::protocol::wire::checksum;
use framegate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder};

use super::load::{self, Gate, Load, Outcome, CONNECT_TIMEOUT, IO_TIMEOUT};

/// Runs `load` over the native protocol against `addr`; otherwise as [`load::run`]. A device
/// succeeds only when each of its frames got exactly one ACK (a NACK, GOODBYE, unknown or
/// repeated ACK fails it).
pub fn run<S>(
    addr: SocketAddr,
    load: &Load,
    settle: impl FnOnce(),
    sample: impl Fn() -> S,
) -> Outcome<S> {
    let wire = load.wire_frame();
    // The u32le generator's payload, without its length prefix: identical bytes.
    let payload: Arc<[u8]> = Arc::from(&wire[4..]);
    let crc = checksum(&payload);
    let frames = load.frames_per_connection as u64;
    load::run_devices(load, settle, sample, move |index, gate| {
        device(addr, index, frames, &payload, crc, gate)
    })
}

/// One device's connection and its reading side.
pub struct Session {
    /// The connection (blocking, TCP_NODELAY).
    pub stream: TcpStream,
    /// Decodes what the server sends.
    pub decoder: MessageDecoder,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// WELCOME's `max_in_flight`.
    pub window: u64,
}

impl Session {
    /// Connects and opens the session (HELLO, WELCOME).
    pub fn open(addr: SocketAddr, device: String) -> Result<Session, String> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let setup = |r: io::Result<()>| r.map_err(|e| format!("socket setup: {e}"));
        setup(stream.set_nodelay(true))?;
        setup(stream.set_write_timeout(Some(IO_TIMEOUT)))?;
        setup(stream.set_read_timeout(Some(IO_TIMEOUT)))?;
        let mut session = Session {
            stream,
            decoder: MessageDecoder::new(0),
            buf: vec![0; 4096],
            pos: 0,
            len: 0,
            window: 0,
        };
        session.send(&Message::Hello {
            device,
            has_secret: false,
        })?;
        match session.recv()? {
            Message::Welcome {
                max_in_flight,
                committed_through: 0,
                ..
            } => session.window = u64::from(max_in_flight.max(1)),
            other => return Err(format!("expected WELCOME (fresh state), got {other:?}")),
        }
        Ok(session)
    }

    fn send(&mut self, message: &Message) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(64);
        message.encode(&mut bytes);
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("sending {:?}: {e}", message.kind()))
    }

    /// The next message from the server.
    fn recv(&mut self) -> Result<Message, String> {
        loop {
            if let Some(message) = self.buffered()? {
                return Ok(message);
            }
            self.len = match self.stream.read(&mut self.buf) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("waiting for ACKs: {e}")),
            };
            self.pos = 0;
        }
    }

    /// The next message already read from the socket, if a whole one is there.
    fn buffered(&mut self) -> Result<Option<Message>, String> {
        while self.pos < self.len {
            let fed = self
                .decoder
                .feed(&self.buf[self.pos..self.len])
                .map_err(|e| format!("bad bytes from the server: {e}"))?;
            self.pos += fed.consumed;
            match fed.event {
                Some(Decoded::Message(message)) => return Ok(Some(message)),
                Some(_) => return Err("the server sent a FRAME".into()),
                None if fed.consumed == 0 => return Err("the decoder is stuck".into()),
                None => {}
            }
        }
        Ok(None)
    }

    /// Writes a FRAME: `header` then `payload`, in one `sendmsg` when the socket takes it
    /// all. `more`: another FRAME follows at once, so the kernel may hold this one's last
    /// segment to fill it (MSG_MORE), as it coalesces u32le's writes without TCP_NODELAY.
    fn send_frame(&mut self, header: &[u8], payload: &[u8], more: bool) -> io::Result<()> {
        let total = header.len() + payload.len();
        let mut done = 0;
        while done < total {
            match send_frame_part(self.stream.as_raw_fd(), header, payload, done, more) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Gives up the session's connection; nothing must be left unread (true right after
    /// [`Session::open`]: the server sends nothing unasked).
    pub fn into_parts(self) -> Result<(TcpStream, MessageDecoder, u64), String> {
        if self.pos < self.len {
            return Err("the server sent more than WELCOME".into());
        }
        Ok((self.stream, self.decoder, self.window))
    }
}

/// Appends the bytes of a bench FRAME that precede its payload: seq `seq`, a JPEG of
/// `payload_len` bytes with CRC-32C `crc`, no capture time, no metadata.
pub fn encode_frame_header(out: &mut Vec<u8>, seq: u64, payload_len: u32, crc: u32) {
    Message::Frame(FrameHeader {
        seq,
        captured_us: 0,
        content_type: ContentType::Jpeg,
        meta: Vec::new(),
        payload_len,
        crc32c: crc,
    })
    .encode(out);
}

/// One `sendmsg` of a FRAME's bytes from offset `done` on (of `header` then `payload`):
/// how many it took. `more` sets MSG_MORE (another FRAME follows at once).
pub fn send_frame_part(
    fd: std::os::fd::RawFd,
    header: &[u8],
    payload: &[u8],
    done: usize,
    more: bool,
) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    let parts = if done < header.len() {
        [IoSlice::new(&header[done..]), IoSlice::new(payload)]
    } else {
        [
            IoSlice::new(&payload[done - header.len()..]),
            IoSlice::new(&[]),
        ]
    };
    // SAFETY: the msghdr points at `parts`, which outlive the call; IoSlice has the layout of
    // iovec.
    let written = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = parts.len();
        libc::sendmsg(fd, &msg, flags)
    };
    if written < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(written as usize)
    }
}

/// One device: open the session, wait for the start, keep the window full until every frame
/// is ACKed. Returns when the last ACK arrived, or `None` when the run was called off.
fn device(
    addr: SocketAddr,
    index: usize,
    frames: u64,
    payload: &[u8],
    crc: u32,
    gate: &Gate,
) -> Result<Option<Instant>, String> {
    // Arrive at the gate whatever happened, so the generator never waits for a lost thread.
    let opened = Session::open(addr, format!("bench-{index}"));
    if !gate.arrive_and_wait() {
        return Ok(None);
    }
    let mut session = opened?;
    let payload_len = u32::try_from(payload.len()).expect("frame size fits u32");
    let mut acked = vec![false; frames as usize + 1];
    let (mut next, mut in_flight, mut done) = (1u64, 0u64, 0u64);
    let mut header = Vec::with_capacity(64);
    while done < frames {
        while in_flight < session.window && next <= frames {
            // More follow at once unless this one fills the window or is the last.
            let more = in_flight + 1 < session.window && next < frames;
            header.clear();
            encode_frame_header(&mut header, next, payload_len, crc);
            session
                .send_frame(&header, payload, more)
                .map_err(|e| format!("write frame {next}: {e}"))?;
            next += 1;
            in_flight += 1;
        }
        // Every answer already read, so that the frames they make room for go out together.
        let mut message = Some(session.recv()?);
        while let Some(m) = message {
            match m {
                Message::Ack { seq } if (1..next).contains(&seq) && !acked[seq as usize] => {
                    acked[seq as usize] = true;
                    done += 1;
                    in_flight -= 1;
                }
                Message::Ping { token } => session.send(&Message::Pong { token })?,
                other => return Err(format!("after {done} ACKs: unexpected {other:?}")),
            }
            message = session.buffered()?;
        }
    }
    let finished = Instant::now();
    // Nothing is unanswered: close; the daemon ends the session on EOF.
    let _ = session.stream.shutdown(Shutdown::Write);
    Ok(Some(finished))
}
