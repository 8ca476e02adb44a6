//! The native-protocol sender behind `framegate send`: acknowledged delivery for Linux devices.
//!
//! Blocking I/O on one thread per connection (a device tool, not the daemon). Frames are
//! numbered once and keep their number across resends; up to the server's `max_in_flight` are
//! unacknowledged at a time; after a lost connection every unacknowledged frame is resent
//! (the server ACKs the ones it already committed without storing them twice); reconnects back
//! off exponentially with jitter.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::backoff::Backoff;
use crate::framing::signature;
use crate::protocol::wire::{auth_tag, checksum, MAX_PAYLOAD};
use crate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// Where and as whom to send.
#[derive(Debug, Clone)]
pub struct NativePlan {
    /// `HOST:PORT` of the daemon.
    pub to: String,
    /// The device id sent in HELLO.
    pub device: String,
    /// The device's secret, if the server knows one for it.
    pub secret: Option<Vec<u8>>,
    /// At most this many frames in flight (the server's `max_in_flight` caps it further).
    pub window: Option<u16>,
    /// Give up after failing to get anywhere (no connection, no ACK) for this long.
    pub retry_for: Duration,
}

/// How one frame ended.
pub type Delivery = Result<u64, (Reason, String)>;

struct Pending {
    payload: Vec<u8>,
    tag: usize,
    /// Number and capture time, fixed when first sent and kept for every resend, so the
    /// server recognises a resend (and names it as it named the first copy).
    sent_as: Option<(u64, u64)>,
}

struct Session {
    stream: TcpStream,
    decoder: MessageDecoder,
    /// Received bytes not decoded yet.
    inbox: Vec<u8>,
    window: usize,
    heartbeat: Duration,
}

/// Delivers frames over the native protocol, reconnecting as needed.
pub struct NativeSender {
    plan: NativePlan,
    session: Option<Session>,
    /// Next number to give a frame.
    next_seq: u64,
    /// Waiting to be sent (resends first).
    queue: VecDeque<Pending>,
    /// Sent, not answered yet.
    unacked: BTreeMap<u64, Pending>,
    backoff: Backoff,
    /// Since when nothing got through (for `retry_for`).
    stuck_since: Option<Instant>,
    /// Frames refused before sending (too large for the protocol).
    refused: Vec<(usize, (Reason, String))>,
}

impl NativeSender {
    /// A sender; it connects on the first [`NativeSender::deliver`].
    pub fn new(plan: NativePlan) -> Self {
        NativeSender {
            plan,
            session: None,
            next_seq: 1,
            queue: VecDeque::new(),
            unacked: BTreeMap::new(),
            backoff: Backoff::new(),
            stuck_since: None,
            refused: Vec::new(),
        }
    }

    /// Queues a frame; `tag` comes back with its outcome. Payloads over
    /// [`crate::protocol::wire::MAX_PAYLOAD`] are refused at once ("too large").
    pub fn push(&mut self, payload: Vec<u8>, tag: usize) {
        if payload.len() as u64 > MAX_PAYLOAD {
            let text = format!(
                "{} bytes do not fit a FRAME (at most {MAX_PAYLOAD})",
                payload.len()
            );
            self.refused.push((tag, (Reason::TooLarge, text)));
            return;
        }
        self.queue.push_back(Pending {
            payload,
            tag,
            sent_as: None,
        });
    }

    /// Sends everything queued and waits until each frame is ACKed or refused for good,
    /// reporting each through `done(tag, outcome)`. Fails only when nothing got through for
    /// `retry_for`, or the server refused this device (not authorised).
    pub fn deliver(&mut self, done: &mut dyn FnMut(usize, Delivery)) -> io::Result<()> {
        for (tag, refusal) in self.refused.drain(..) {
            done(tag, Err(refusal));
        }
        while !self.queue.is_empty() || !self.unacked.is_empty() {
            if let Err(e) = self.step(done) {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
                self.disconnect();
                let stuck = *self.stuck_since.get_or_insert_with(Instant::now);
                if stuck.elapsed() >= self.plan.retry_for {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "gave up after {:?} without progress ({} frame(s) unacknowledged): {e}",
                            self.plan.retry_for,
                            self.queue.len() + self.unacked.len()
                        ),
                    ));
                }
                eprintln!("framegate send: {e}; retrying");
                std::thread::sleep(self.backoff.next());
            }
        }
        Ok(())
    }

    /// Keeps an idle session alive for up to `wait`: answers the server's PINGs.
    pub fn idle(&mut self, wait: Duration) {
        let Some(session) = &mut self.session else {
            std::thread::sleep(wait);
            return;
        };
        let _ = session
            .stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        match read_message(session) {
            Ok(Message::Ping { token }) => {
                let _ = send(&mut session.stream, &Message::Pong { token }, &[]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            _ => self.disconnect(),
        }
    }

    fn disconnect(&mut self) {
        self.session = None;
        // Every unanswered frame goes again, in order, ahead of new ones, with its number.
        let unacked = std::mem::take(&mut self.unacked);
        for (_, pending) in unacked.into_iter().rev() {
            self.queue.push_front(pending);
        }
    }

    fn step(&mut self, done: &mut dyn FnMut(usize, Delivery)) -> io::Result<()> {
        if self.session.is_none() {
            self.session = Some(self.connect()?);
        }
        let session = self.session.as_mut().expect("connected above");
        while self.unacked.len() < session.window {
            let Some(mut pending) = self.queue.pop_front() else {
                break;
            };
            let (seq, captured_us) = *pending.sent_as.get_or_insert_with(|| {
                self.next_seq += 1;
                (self.next_seq - 1, now_us())
            });
            let header = frame_header(seq, captured_us, &pending.payload);
            if let Err(e) = send(
                &mut session.stream,
                &Message::Frame(header),
                &pending.payload,
            ) {
                self.queue.push_front(pending);
                return Err(e);
            }
            self.unacked.insert(seq, pending);
        }
        if self.unacked.is_empty() {
            return Ok(());
        }
        session
            .stream
            .set_read_timeout(Some(session.heartbeat * 3))?;
        match read_message(session)? {
            Message::Ack { seq } => {
                if let Some(p) = self.unacked.remove(&seq) {
                    self.progress();
                    done(p.tag, Ok(seq));
                }
            }
            Message::Nack { seq, reason, text } => {
                if let Some(p) = self.unacked.remove(&seq) {
                    if reason.is_retryable() {
                        self.queue.push_front(p);
                        return Err(io::Error::other(format!(
                            "frame {seq} refused ({reason}: {text})"
                        )));
                    }
                    self.progress();
                    done(p.tag, Err((reason, text)));
                }
            }
            Message::Ping { token } => send(&mut session.stream, &Message::Pong { token }, &[])?,
            Message::Pong { .. } => {}
            Message::Goodbye { reason, text } => {
                let kind = match reason {
                    Reason::NotAuthorised => io::ErrorKind::PermissionDenied,
                    _ => io::ErrorKind::ConnectionAborted,
                };
                return Err(io::Error::new(
                    kind,
                    format!("server said goodbye: {reason}: {text}"),
                ));
            }
            other => {
                return Err(io::Error::other(format!(
                    "unexpected {:?} from the server",
                    other.kind()
                )))
            }
        }
        Ok(())
    }

    fn progress(&mut self) {
        self.stuck_since = None;
        self.backoff = Backoff::new();
    }

    fn connect(&mut self) -> io::Result<Session> {
        let addr = self.plan.to.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no address", self.plan.to),
            )
        })?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut session = Session {
            stream,
            decoder: MessageDecoder::new(0),
            inbox: Vec::new(),
            window: 1,
            heartbeat: Duration::from_secs(10),
        };
        let hello = Message::Hello {
            device: self.plan.device.clone(),
            has_secret: self.plan.secret.is_some(),
        };
        send(&mut session.stream, &hello, &[])?;
        let mut reply = read_message(&mut session)?;
        if let Message::Challenge { nonce } = reply {
            let Some(secret) = &self.plan.secret else {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the server asks for a secret; pass --secret or --secret-file",
                ));
            };
            let tag = auth_tag(secret, &nonce, &self.plan.device);
            send(&mut session.stream, &Message::Auth { tag }, &[])?;
            reply = read_message(&mut session)?;
        }
        match reply {
            Message::Welcome {
                max_in_flight,
                heartbeat_secs,
                committed_through,
                ..
            } => {
                let cap = self.plan.window.unwrap_or(u16::MAX).min(max_in_flight);
                session.window = usize::from(cap.max(1));
                session.heartbeat = Duration::from_secs(u64::from(heartbeat_secs.max(1)));
                // New numbers continue above what the server has; resends keep theirs.
                self.next_seq = self.next_seq.max(committed_through + 1);
                Ok(session)
            }
            Message::Goodbye { reason, text } => Err(io::Error::new(
                if reason == Reason::NotAuthorised {
                    io::ErrorKind::PermissionDenied
                } else {
                    io::ErrorKind::ConnectionRefused
                },
                format!("server refused the session: {reason}: {text}"),
            )),
            other => Err(io::Error::other(format!(
                "expected WELCOME, got {:?}",
                other.kind()
            ))),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn frame_header(seq: u64, captured_us: u64, payload: &[u8]) -> FrameHeader {
    FrameHeader {
        seq,
        captured_us,
        content_type: ContentType::of_format(signature::image_format(payload)),
        meta: Vec::new(),
        payload_len: payload.len() as u32,
        crc32c: checksum(payload),
    }
}

/// Writes `message` and the payload that follows it in as few system calls as the socket
/// allows: with TCP_NODELAY, two writes would send the header as a packet of its own.
fn send(stream: &mut TcpStream, message: &Message, payload: &[u8]) -> io::Result<()> {
    let mut header = Vec::with_capacity(64);
    message.encode(&mut header);
    let mut parts = [IoSlice::new(&header), IoSlice::new(payload)];
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        match stream.write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until one whole message arrived (the server sends no frames, so no payloads).
/// Bytes past it stay in the session's inbox for the next call.
fn read_message(session: &mut Session) -> io::Result<Message> {
    loop {
        while !session.inbox.is_empty() {
            let fed = session
                .decoder
                .feed(&session.inbox)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            session.inbox.drain(..fed.consumed);
            if let Some(decoded) = fed.event {
                return message_of(decoded);
            }
        }
        let mut buf = [0u8; 512];
        let n = session.stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        session.inbox.extend_from_slice(&buf[..n]);
    }
}

fn message_of(decoded: Decoded) -> io::Result<Message> {
    match decoded {
        Decoded::Message(m) => Ok(m),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server sent a FRAME",
        )),
    }
}
