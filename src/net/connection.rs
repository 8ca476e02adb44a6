//! One device connection: its socket, its decoder, and what it is waiting for.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mio::net::TcpStream;

use super::codec::{Codec, Completed};
use super::imagezmq::{ArrayJob, ZmtpSession};
use super::native::{Directory, Limits, NativeFrame, NativeSession, Step};
use super::replies::{ReplyWriter, Socket};
use crate::framing::Framing;
use crate::framing::{DecodeError, Decoder, Event};
use crate::protocol::wire::{HEADER_LEN, MAX_TEXT};
use crate::protocol::{Decoded, FrameHeader};
use crate::zmtp::{self, ImagezmqFrame};

/// Read straight into a frame's buffer when at least this much of it is still missing;
/// smaller remainders go through the shared scratch buffer, which also picks up the next
/// header in the same read.
const DIRECT_READ_MIN: usize = 4 * 1024;

/// How much a read between frames takes when this connection's frames are large: the header
/// and the start of the payload, which is copied; the rest of the payload is then read
/// straight into its buffer. Reading the whole scratch buffer instead would copy most of every
/// frame a second time.
const HEADER_READ: usize = 4 * 1024;

/// Bytes one connection may read per turn before others get theirs.
const READ_BUDGET: usize = 1 << 20;

/// Who is on the other end, for frame identity and log lines.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Index of the listener that accepted it.
    pub listener: usize,
    /// That listener's name.
    pub listener_name: Arc<str>,
    /// The device name.
    pub device: Arc<str>,
    /// The TCP peer address.
    pub addr: SocketAddr,
    /// The connection's event-loop token, where a native frame's ACK goes.
    pub conn: usize,
}

/// A complete payload and when its last byte arrived.
#[derive(Debug)]
pub struct Received {
    /// The frame's bytes.
    pub payload: Vec<u8>,
    /// Arrival of the last byte.
    pub at: SystemTime,
    /// Where it came from, beyond the peer.
    pub origin: Origin,
}

/// What a received frame says about itself.
#[derive(Debug)]
pub enum Origin {
    /// A legacy framing: the peer's device name and a server-assigned number.
    Legacy,
    /// Native: the device and header (its own sequence number, metadata); ACKed.
    Native(Arc<str>, FrameHeader),
    /// imagezmq: the device is the sender's name; answered `OK` once committed.
    Imagezmq(Arc<str>),
    /// An HTTP upload: the device it names (or its peer's name); answered `201` once
    /// committed.
    Http(Arc<str>),
}

/// Takes complete frames from connections, or hands them back when it cannot take them now.
pub trait Admit {
    /// Accepts the frame, or returns it if sinks or sequence numbers are not ready.
    fn admit(&mut self, peer: &Peer, frame: Received) -> Result<(), Received>;
    /// What native sessions need to know about devices.
    fn directory(&self) -> &dyn Directory;
    /// A native session NACKed one of `device`'s frames for the device's own fault
    /// (`line` says which and why): for the operator's log and the device's error count.
    fn refused(&mut self, peer: &Peer, device: &Arc<str>, line: String);
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Closed {
    /// The device closed its side between frames.
    PeerClosed,
    /// The device sent the u32le end-of-stream marker.
    EndOfStream,
    /// The bytes could not be decoded (or the device closed mid-frame).
    Decode(DecodeError),
    /// A socket error.
    Io(io::Error),
    /// The native session ended it (the reason is in the GOODBYE sent, and here).
    Protocol(String),
    /// The device left more reply bytes unread than it can while keeping its window: it
    /// sends without reading its ACKs (see [`Connection::replies_overdue`]).
    RepliesUnread {
        /// Reply bytes waiting for room in the socket.
        unsent: usize,
        /// The most a device within its window can leave.
        limit: usize,
    },
}

/// How the input of a connection ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// The u32le end-of-stream marker.
    Marker,
    /// The peer closed its side.
    PeerClosed,
}

/// Where a connection stands after [`Connection::pump`].
#[derive(Debug)]
pub enum Pumped {
    /// Read until the socket had nothing more; waiting for the next readiness event.
    Idle,
    /// Used its read budget; more may be waiting. Pump again after others had a turn.
    MoreToRead,
    /// Holding a frame the sinks cannot take yet; not reading until it is admitted.
    Stalled,
    /// Finished; the caller deregisters and drops it.
    Closed(Closed),
}

/// Reply bytes any connection may leave unread, beyond its window's answers: room for PINGs,
/// the handshake and a reply writer's turn not yet written. Far more than a device that keeps
/// to its window ever leaves; little enough that thousands of connections stay cheap.
const UNREAD_REPLIES_SLACK: usize = 64 << 10;

/// The longest answer to one FRAME: a NACK with the longest reason text.
const LONGEST_ANSWER: usize = HEADER_LEN + 8 + 2 + MAX_TEXT;

/// One device connection's state machine.
pub struct Connection {
    /// The socket, shared with the reply writer.
    pub socket: Arc<Socket>,
    /// Identity of the peer.
    pub peer: Peer,
    /// Last time bytes arrived (or the connection was unstalled).
    pub last_activity: Instant,
    /// Frames admitted so far.
    pub frames: u64,
    /// Bytes read so far.
    pub bytes: u64,
    /// Registered for writability too (native replies waiting for socket room).
    pub wants_writable: bool,
    /// Its listener was removed by a reload: it is closed at its next frame boundary.
    pub draining: bool,
    /// `last_activity` when the loop last pinged this (native) peer, so one silence gets
    /// one PING.
    pub pinged_at: Option<Instant>,
    codec: Codec,
    /// Settings for a native session, should this connection turn out to speak it.
    native_limits: Limits,
    held: Option<Received>,
    /// Bytes read past a stalled frame, fed once it is admitted. At most one scratch buffer.
    pending: Vec<u8>,
    /// The input is over; the connection closes once a held frame was handed over.
    ended: Option<Ending>,
    /// The last frame was large enough to be read straight into its buffer, so reads between
    /// frames take only [`HEADER_READ`] bytes.
    large_frames: bool,
    /// An imagezmq array waiting to be handed to the converter.
    array: Option<ArrayJob>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The reply writer may hold the socket open a little longer, for replies it writes.
        self.socket.close();
    }
}

impl Connection {
    /// A new connection using `decoder` (for a native listener, see [`Connection::native`]).
    pub fn new(
        stream: TcpStream,
        peer: Peer,
        decoder: Decoder,
        native_limits: Limits,
        now: Instant,
    ) -> Self {
        Connection {
            socket: Socket::new(stream),
            peer,
            last_activity: now,
            frames: 0,
            bytes: 0,
            wants_writable: false,
            draining: false,
            pinged_at: None,
            codec: Codec::Legacy(decoder),
            native_limits,
            held: None,
            pending: Vec::new(),
            ended: None,
            large_frames: false,
            array: None,
        }
    }

    /// Makes this a native-protocol connection (a `framing = "native"` listener).
    pub fn native(mut self) -> Self {
        self.codec = Codec::Native(Box::new(NativeSession::new(self.native_limits)));
        self
    }

    /// Makes this an imagezmq connection (a `framing = "imagezmq"` listener); its greeting is
    /// queued for [`Connection::flush`].
    pub fn imagezmq(mut self) -> Self {
        self.codec = Codec::Zmtp(Box::new(ZmtpSession::new(
            self.native_limits.max_frame_bytes,
        )));
        self
    }

    /// The imagezmq session, if the connection speaks imagezmq.
    pub fn zmtp(&mut self) -> Option<&mut ZmtpSession> {
        match &mut self.codec {
            Codec::Zmtp(s) => Some(s),
            _ => None,
        }
    }

    /// An ndarray waiting to be encoded, taken by the loop for its converter.
    pub fn take_array(&mut self) -> Option<ArrayJob> {
        self.array.take()
    }

    /// Offers a frame converted off the loop (an imagezmq array as PNG); false when it is now
    /// held for want of sink room (the connection is stalled).
    pub fn deliver(&mut self, payload: Vec<u8>, origin: Origin, admit: &mut dyn Admit) -> bool {
        self.offer_or_hold(payload, origin, admit)
    }

    /// The native session, if the connection speaks the native protocol.
    pub fn session(&mut self) -> Option<&mut NativeSession> {
        match &mut self.codec {
            Codec::Native(s) => Some(s),
            _ => None,
        }
    }

    /// Native frames waiting for their commit (0 for legacy connections).
    pub fn native_in_flight(&self) -> usize {
        match &self.codec {
            Codec::Native(s) => s.in_flight(),
            _ => 0,
        }
    }

    /// True when part of a frame (or native message) has arrived but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        self.codec.is_mid_frame()
    }

    /// The payload size announced by the frame in progress, if its header is complete.
    pub fn announced(&self) -> Option<u64> {
        self.codec.announced()
    }

    /// Writes queued native replies until done or the socket would block; `Ok(true)` when
    /// bytes are still queued (the caller waits for writability).
    ///
    /// `hand_off`: give a native session's replies to `replies` instead (the turn answered
    /// many connections). They go there anyway while it holds earlier ones of this connection.
    pub fn flush(&mut self, replies: &ReplyWriter, hand_off: bool) -> io::Result<bool> {
        if let Codec::Native(session) = &mut self.codec {
            if hand_off || self.socket.is_handed_off() {
                let queued = session.output();
                let n = queued.len();
                replies.hand_off(&self.socket, queued);
                session.consume_output(n);
                return Ok(false);
            }
        }
        loop {
            let (pending, native) = match &self.codec {
                Codec::Native(session) => (session.output(), true),
                Codec::Zmtp(session) => (session.server.output(), false),
                Codec::Legacy(_) => return Ok(false),
            };
            if pending.is_empty() {
                return Ok(false);
            }
            let written = if native {
                self.socket.write_replies(pending)
            } else {
                self.socket.tcp().write(pending)
            };
            let n = match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match &mut self.codec {
                Codec::Native(session) => session.consume_output(n),
                Codec::Zmtp(session) => session.server.consume_output(n),
                Codec::Legacy(_) => unreachable!("returned above"),
            }
        }
    }

    /// Reply bytes the socket has not taken yet (queued here or held by the reply writer),
    /// when they are more than a device that keeps to its window can leave unread: returns
    /// `(unsent, limit)`.
    ///
    /// A native device sends a frame past its window only after reading an answer, and an
    /// imagezmq (REQ) device sends its next request after reading the reply, so what the
    /// device has not read stays within its window's answers. More means it sends without
    /// reading, and the replies would pile up in the daemon's memory, so the caller closes
    /// the connection: frames already committed stay stored, and the device gets their ACKs
    /// again when it resends them.
    pub fn replies_overdue(&self) -> Option<(usize, usize)> {
        let (queued, window) = match &self.codec {
            Codec::Native(session) => (session.output().len(), self.native_limits.max_in_flight),
            Codec::Zmtp(session) => (session.server.output().len(), 1),
            Codec::Legacy(_) => return None,
        };
        let unsent = queued + self.socket.unwritten();
        let limit = UNREAD_REPLIES_SLACK + usize::from(window) * LONGEST_ANSWER;
        (unsent > limit).then_some((unsent, limit))
    }

    /// The connection fell silent for its idle timeout and is being closed: returns a frame
    /// that only the end of its input completes (`auto`, rule 3: the stream's first frame had
    /// a header both byte orders can read, and nothing followed it), for the caller to offer.
    pub fn end_idle(&mut self) -> Option<Received> {
        let Codec::Legacy(decoder) = &mut self.codec else {
            return None;
        };
        match decoder.end() {
            Ok(Some(Event::Frame(payload))) => Some(Received {
                payload,
                at: SystemTime::now(),
                origin: Origin::Legacy,
            }),
            _ => None,
        }
    }

    /// True while a complete frame waits for the sinks.
    pub fn is_stalled(&self) -> bool {
        self.held.is_some()
    }

    /// Offers only the held frame (during shutdown nothing new is read); true once nothing is
    /// held any more.
    pub fn hand_over(&mut self, admit: &mut dyn Admit) -> bool {
        if let Some(frame) = self.held.take() {
            if let Err(frame) = self.offer(frame, admit) {
                self.held = Some(frame);
                return false;
            }
        }
        true
    }

    /// Moves bytes: offers a held frame, feeds held-back bytes, then reads until the socket
    /// would block, the read budget is spent, or a frame cannot be admitted.
    ///
    /// `edge` says a fresh readiness event without a read-closed flag triggered this pump:
    /// then a read shorter than asked for proves the socket's receive queue was empty, and any
    /// byte arriving later raises a new edge, so the extra read that would only see
    /// `WouldBlock` is skipped. (A pending FIN raises no new edge once the event that carried
    /// it was taken, so a read-closed event is always read to the end.)
    pub fn pump(
        &mut self,
        scratch: &mut [u8],
        admit: &mut dyn Admit,
        now: Instant,
        edge: bool,
    ) -> Pumped {
        if let Some(frame) = self.held.take() {
            if let Err(frame) = self.offer(frame, admit) {
                self.held = Some(frame);
                return Pumped::Stalled;
            }
            // Paused time is not idleness.
            self.last_activity = now;
        }
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            match self.feed(&pending, admit) {
                Err(closed) => return Pumped::Closed(closed),
                Ok(Some(stop)) => {
                    self.pending = pending[stop..].to_vec();
                    return Pumped::Stalled;
                }
                Ok(None) => {}
            }
        }
        let mut budget = READ_BUDGET;
        loop {
            if let Some(ending) = self.ended {
                return Pumped::Closed(match ending {
                    Ending::Marker => Closed::EndOfStream,
                    Ending::PeerClosed => Closed::PeerClosed,
                });
            }
            if budget == 0 {
                return Pumped::MoreToRead;
            }
            let missing = self.codec.payload_remaining();
            let direct = missing.is_some_and(|missing| missing >= DIRECT_READ_MIN);
            let (read, asked) = match self.codec.payload_spare() {
                Some(spare) if direct => (recv_uninit(self.socket.tcp(), spare), spare.len()),
                _ => {
                    let want = match missing {
                        // The end of this frame and the next header.
                        Some(missing) => missing + HEADER_READ,
                        None if self.large_frames => HEADER_READ,
                        // Small frames: as many as fit, one copy each either way.
                        None => scratch.len(),
                    };
                    let want = want.min(scratch.len());
                    (self.socket.tcp().read(&mut scratch[..want]), want)
                }
            };
            let n = match read {
                Ok(0) => {
                    self.ended = Some(Ending::PeerClosed);
                    match &mut self.codec {
                        Codec::Native(session) => {
                            if let Err(err) = session.decoder.finish() {
                                return Pumped::Closed(Closed::Protocol(err.to_string()));
                            }
                        }
                        Codec::Zmtp(session) => {
                            if let Err(err) = session.server.finish() {
                                return Pumped::Closed(Closed::Protocol(err.to_string()));
                            }
                        }
                        Codec::Legacy(decoder) => match decoder.end() {
                            Err(err) => return Pumped::Closed(Closed::Decode(err)),
                            // A frame only the end of the stream completed (auto, rule 3).
                            Ok(Some(Event::Frame(payload))) => {
                                if !self.offer_or_hold(payload, Origin::Legacy, admit) {
                                    return Pumped::Stalled;
                                }
                            }
                            Ok(_) => {}
                        },
                    }
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pumped::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Pumped::Closed(Closed::Io(e)),
            };
            self.bytes += n as u64;
            self.last_activity = now;
            budget = budget.saturating_sub(n);
            let drained = edge && n < asked;
            if direct {
                // SAFETY: recv_uninit wrote exactly n bytes at the start of the spare part.
                let admitted = match unsafe { self.codec.payload_spare_filled(n) } {
                    Some(Completed::Legacy(payload)) => {
                        self.offer_or_hold(payload, Origin::Legacy, admit)
                    }
                    Some(Completed::Native(decoded)) => match self.on_native(decoded, admit) {
                        Err(closed) => return Pumped::Closed(closed),
                        Ok(admitted) => admitted,
                    },
                    None => true,
                };
                if !admitted {
                    return Pumped::Stalled;
                }
            } else {
                match self.feed(&scratch[..n], admit) {
                    Err(closed) => return Pumped::Closed(closed),
                    Ok(Some(stop)) => {
                        self.pending = scratch[stop..n].to_vec();
                        return Pumped::Stalled;
                    }
                    Ok(None) => {}
                }
            }
            if drained && self.ended.is_none() {
                return Pumped::Idle;
            }
        }
    }

    /// Feeds `bytes` to the decoder, offering each frame. Returns where it stopped if a frame
    /// was refused (the frame is then held), `None` once every byte was used.
    fn feed(&mut self, bytes: &[u8], admit: &mut dyn Admit) -> Result<Option<usize>, Closed> {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            let admitted = match &mut self.codec {
                Codec::Legacy(decoder) => {
                    let fed = decoder.feed(rest).map_err(Closed::Decode)?;
                    used += fed.consumed;
                    let legacy = matches!(
                        decoder.framing(),
                        Some(Framing::AsciiLength | Framing::U32Le | Framing::U32Be)
                    );
                    let zmtp = matches!(
                        fed.event,
                        Some(Event::HandOver {
                            framing: Framing::Imagezmq,
                            ..
                        })
                    );
                    if self.native_limits.require_auth && (legacy || zmtp) {
                        // An auto listener that requires authentication takes only devices
                        // that can prove who they are.
                        return Err(Closed::Protocol(format!(
                            "{} refused: the listener requires authentication (native protocol with a secret)",
                            if zmtp { "imagezmq" } else { "a legacy framing" }
                        )));
                    }
                    match fed.event {
                        Some(Event::Frame(payload)) => {
                            self.offer_or_hold(payload, Origin::Legacy, admit)
                        }
                        // Any byte after the marker makes the next feed fail with DataAfterEnd.
                        Some(Event::End) => {
                            self.ended = Some(Ending::Marker);
                            true
                        }
                        Some(Event::HandOver { framing, held }) => {
                            // auto found another protocol: its codec decodes from the start.
                            let limits = self.native_limits;
                            self.codec = match framing {
                                Framing::Imagezmq => {
                                    Codec::Zmtp(Box::new(ZmtpSession::new(limits.max_frame_bytes)))
                                }
                                _ => Codec::Native(Box::new(NativeSession::new(limits))),
                            };
                            if let Some(stop) = self.feed(&held, admit)? {
                                unreachable!("a greeting completes no frame (stopped at {stop})");
                            }
                            true
                        }
                        None => true,
                    }
                }
                Codec::Native(session) => {
                    let fed = session
                        .decoder
                        .feed(rest)
                        .map_err(|e| Closed::Protocol(e.to_string()))?;
                    used += fed.consumed;
                    match fed.event {
                        Some(decoded) => self.on_native(decoded, admit)?,
                        None => true,
                    }
                }
                Codec::Zmtp(session) => {
                    let fed = session
                        .server
                        .feed(rest)
                        .map_err(|e| Closed::Protocol(e.to_string()))?;
                    used += fed.consumed;
                    match fed.event {
                        Some(zmtp::Event::Image(image)) => self.on_image(image, admit),
                        Some(zmtp::Event::Connected { .. }) | None => true,
                    }
                }
            };
            if !admitted {
                return Ok(Some(used));
            }
        }
        Ok(None)
    }

    /// An imagezmq request: a JPEG is offered as it is; an array waits for the loop's
    /// converter ([`Connection::take_array`]). The sender waits for the reply either way.
    fn on_image(&mut self, image: ImagezmqFrame, admit: &mut dyn Admit) -> bool {
        let device: Arc<str> = Arc::from(image.name.as_str());
        match image.payload {
            zmtp::Payload::Jpeg(bytes) => {
                self.offer_or_hold(bytes, Origin::Imagezmq(device), admit)
            }
            zmtp::Payload::Array { dtype, shape, data } => {
                self.array = Some(ArrayJob {
                    conn: self.peer.conn,
                    device,
                    dtype,
                    shape,
                    data,
                });
                true
            }
        }
    }

    /// Hands a decoded native message to the session and acts on its answer; `Ok(false)` when
    /// a frame is now held for want of sink room.
    fn on_native(&mut self, decoded: Decoded, admit: &mut dyn Admit) -> Result<bool, Closed> {
        let Codec::Native(session) = &mut self.codec else {
            unreachable!("native message on a legacy connection");
        };
        match session.on_decoded(decoded, admit.directory()) {
            Step::Continue => Ok(true),
            Step::Refused { device, line } => {
                admit.refused(&self.peer, &device, line);
                Ok(true)
            }
            Step::Close(why) => Err(Closed::Protocol(why)),
            Step::Frame(NativeFrame {
                device,
                header,
                payload,
            }) => Ok(self.offer_or_hold(payload, Origin::Native(device, header), admit)),
        }
    }

    /// Offers a payload that just completed; if the sinks cannot take it now, holds it (the
    /// connection is then stalled) and returns false.
    fn offer_or_hold(&mut self, payload: Vec<u8>, origin: Origin, admit: &mut dyn Admit) -> bool {
        let frame = Received {
            payload,
            at: SystemTime::now(),
            origin,
        };
        match self.offer(frame, admit) {
            Ok(()) => true,
            Err(frame) => {
                self.held = Some(frame);
                false
            }
        }
    }

    fn offer(&mut self, frame: Received, admit: &mut dyn Admit) -> Result<(), Received> {
        let large = frame.payload.len() >= HEADER_READ + DIRECT_READ_MIN;
        admit.admit(&self.peer, frame)?;
        self.large_frames = large;
        self.frames += 1;
        Ok(())
    }
}

/// `recv(2)` into uninitialised memory, so a payload buffer need not be zeroed first.
fn recv_uninit(stream: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe writable memory we borrow mutably; recv writes
    // at most `len` bytes there and reports how many.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            0,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::time::Duration;

    use super::*;
    use crate::framing::Framing;
    use crate::protocol::{Message, Reason};

    #[test]
    fn the_longest_answer_is_a_nack_with_the_longest_text() {
        let mut out = Vec::new();
        Message::Nack {
            seq: u64::MAX,
            reason: Reason::Malformed,
            text: "x".repeat(MAX_TEXT + 10),
        }
        .encode(&mut out);
        assert_eq!(out.len(), LONGEST_ANSWER);
        assert_eq!(LONGEST_ANSWER, 273, "docs/PROTOCOL.md quotes the number");
    }

    /// Admits up to `room` frames, then refuses, like sinks with a full queue.
    struct Gate {
        room: usize,
        admitted: Vec<Vec<u8>>,
        devices: crate::net::intake::NativeDevices,
    }

    impl Admit for Gate {
        fn admit(&mut self, _: &Peer, frame: Received) -> Result<(), Received> {
            if self.room == 0 {
                return Err(frame);
            }
            self.room -= 1;
            self.admitted.push(frame.payload);
            Ok(())
        }
        fn directory(&self) -> &dyn Directory {
            &self.devices
        }
        fn refused(&mut self, _: &Peer, _: &Arc<str>, _: String) {}
    }

    fn pair(framing: Framing) -> (Connection, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let device = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, addr) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let peer = Peer {
            listener: 0,
            listener_name: Arc::from("test"),
            device: Arc::from("cam"),
            addr,
            conn: 1,
        };
        let limits = Limits {
            max_frame_bytes: 1 << 20,
            max_in_flight: 4,
            heartbeat: Duration::from_secs(10),
            require_auth: false,
        };
        let conn = Connection::new(
            TcpStream::from_std(server),
            peer,
            Decoder::new(framing, 1 << 20),
            limits,
            Instant::now(),
        );
        (conn, device)
    }

    /// Pumps until `done` holds or a bounded number of turns passed (bytes cross loopback
    /// asynchronously).
    fn pump_until(
        conn: &mut Connection,
        gate: &mut Gate,
        done: impl Fn(&Pumped, &Gate) -> bool,
    ) -> Pumped {
        let mut scratch = vec![0u8; 64 * 1024];
        for _ in 0..500 {
            let outcome = conn.pump(&mut scratch, gate, Instant::now(), false);
            if done(&outcome, gate) {
                return outcome;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("condition not reached");
    }

    #[test]
    fn stalls_when_refused_and_resumes_in_order() {
        let (mut conn, mut device) = pair(Framing::U32Le);
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        for f in &frames {
            device.write_all(&(f.len() as u32).to_le_bytes()).unwrap();
            device.write_all(f).unwrap();
        }
        let mut gate = Gate {
            devices: Default::default(),
            room: 2,
            admitted: Vec::new(),
        };
        let outcome = pump_until(&mut conn, &mut gate, |o, _| matches!(o, Pumped::Stalled));
        assert!(matches!(outcome, Pumped::Stalled));
        assert!(conn.is_stalled());
        assert_eq!(gate.admitted, frames[..2]);

        // Room again: the held frame goes first, then the bytes read past it, in order.
        gate.room = 10;
        device.write_all(&0u32.to_le_bytes()).unwrap();
        let outcome = pump_until(&mut conn, &mut gate, |o, _| matches!(o, Pumped::Closed(_)));
        assert!(
            matches!(outcome, Pumped::Closed(Closed::EndOfStream)),
            "{outcome:?}"
        );
        assert_eq!(gate.admitted, frames);
        assert_eq!(conn.frames, 5);
    }

    #[test]
    fn large_payloads_are_read_in_place_and_eof_mid_frame_is_truncation() {
        let (mut conn, mut device) = pair(Framing::AsciiLength);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
        device.write_all(b"300000\n").unwrap();
        device.write_all(&big).unwrap();
        device.write_all(b"10\nabc").unwrap();
        drop(device);
        let mut gate = Gate {
            devices: Default::default(),
            room: 10,
            admitted: Vec::new(),
        };
        let outcome = pump_until(&mut conn, &mut gate, |o, _| matches!(o, Pumped::Closed(_)));
        assert_eq!(gate.admitted, vec![big]);
        assert!(
            matches!(
                outcome,
                Pumped::Closed(Closed::Decode(DecodeError::Truncated {
                    announced: 10,
                    received: 3
                }))
            ),
            "{outcome:?}"
        );
    }
}
