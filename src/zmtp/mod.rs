//! A sans-IO ZMTP 3.x server (a REP socket, NULL mechanism) for imagezmq clients.
//!
//! imagezmq's `ImageSender` connects a pyzmq REQ socket and, per image, sends a 2-part request
//! (JSON metadata, image; see [`imagezmq`]) and blocks until the hub replies. [`ZmtpServer`]
//! is one connection's protocol: bytes in through [`ZmtpServer::feed`], [`Event`]s out, bytes
//! to write in [`ZmtpServer::output`]. It owns no socket and reads no clock, like
//! [`crate::framing::Decoder`], so tests and fuzzers drive it with byte slices.
//!
//! The conversation (ZMTP 3.0/3.1, rfc.zeromq.org specs 23 and 37):
//! 1. Both sides send a 64-byte greeting. Ours is queued on creation: libzmq sends its first
//!    10 bytes and waits for ours before sending more.
//! 2. Both send a READY command with `Socket-Type`. Ours ("REP") is queued once the peer's
//!    greeting is complete and valid; the peer's must say REQ (or DEALER) → [`Event::Connected`].
//! 3. Requests: each complete one → [`Event::Image`]. The caller answers it with
//!    [`ZmtpServer::reply_ok`] (imagezmq's hub replies `b"OK"`), echoing the request's
//!    envelope. REQ/REP is lockstep: a new request before that reply is an error
//!    ([`ZmtpError::RequestBeforeReply`]): a REQ client cannot send one, so a peer that does is
//!    not the client this serves, and refusing it keeps at most one request's memory per peer.
//! 4. PING commands (3.1 heartbeats) are answered with PONG at once; PONG and unknown commands
//!    are ignored. We never PING and keep no timers: idle timeouts are the event loop's.
//!
//! Every size is checked before anything is allocated for it: an image frame against
//! `max_frame_bytes`, commands, routing ids and the JSON metadata against the constants below.

pub mod array;
mod error;
pub mod imagezmq;
mod wire;

#[cfg(test)]
mod tests;

pub use self::array::{array_to_png, ArrayError};
pub use self::error::{Part, ZmtpError};
pub use self::imagezmq::{ImagezmqFrame, Payload};

use self::imagezmq::Assembler;
use self::wire::{Command, GreetingReader, Header, HeaderReader, FLAG_MORE};

/// Largest command body accepted (READY with its metadata, PING, ERROR). libzmq's READY is
/// under 100 bytes; the bound leaves room for user metadata properties.
pub const MAX_COMMAND_BYTES: u64 = 16 * 1024;
/// Largest imagezmq JSON metadata frame accepted; imagezmq's is under 100 bytes plus the name.
pub const MAX_METADATA_BYTES: u64 = 16 * 1024;
/// Largest routing-id frame in a request's envelope (libzmq caps routing ids at 255 bytes).
pub const MAX_ROUTING_ID_BYTES: u64 = 255;
/// Most frames in a request's envelope, delimiter included (REQ sends 1; each ROUTER/DEALER
/// proxy hop adds one).
pub const MAX_ENVELOPE_FRAMES: usize = 8;
/// Most unwritten output while the peer still sends PINGs. A peer that reads nothing while it
/// keeps pinging would otherwise grow our output without limit.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What one call to [`ZmtpServer::feed`] produced besides consuming bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake is complete: the peer's READY arrived (ours is already queued).
    Connected {
        /// The peer's Socket-Type, `"REQ"` or `"DEALER"`.
        socket_type: String,
        /// The ZMTP version the peer's greeting announced, (major, minor).
        version: (u8, u8),
    },
    /// A complete request. Answer it with [`ZmtpServer::reply_ok`] (once the frame is safe,
    /// if the caller acknowledges only then) before the client can send the next one.
    Image(ImagezmqFrame),
}

/// The result of one [`ZmtpServer::feed`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// How many bytes of the input were used; the caller passes the rest in the next call.
    pub consumed: usize,
    /// The event the consumed bytes completed, if any.
    pub event: Option<Event>,
}

/// One connection's ZMTP server side. See the [module docs](self) for the conversation.
///
/// Feed it every byte the connection delivers, in order, in chunks of any size: the events
/// and output do not depend on how the stream was split. After every call (and after
/// [`ZmtpServer::reply_ok`]), write [`ZmtpServer::output`] to the socket.
#[derive(Debug)]
pub struct ZmtpServer {
    phase: Phase,
    max_frame_bytes: u64,
    /// Bytes for the peer; `out_start` of them were already written.
    output: Vec<u8>,
    out_start: usize,
}

#[derive(Debug)]
enum Phase {
    Greeting(GreetingReader),
    Frames(Box<Frames>),
    Failed(ZmtpError),
}

/// State after the greetings.
#[derive(Debug)]
struct Frames {
    version: (u8, u8),
    /// The peer's Socket-Type once its READY arrived.
    peer_type: Option<String>,
    header: HeaderReader,
    /// The frame whose body is arriving.
    body: Option<Body>,
    request: Assembler,
    /// The envelope of the request awaiting [`ZmtpServer::reply_ok`].
    awaiting_reply: Option<Vec<Vec<u8>>>,
}

#[derive(Debug)]
struct Body {
    header: Header,
    /// Capacity reserved at the announced size once it passed the limits.
    buf: Vec<u8>,
}

impl ZmtpServer {
    /// A server for one new connection, refusing images larger than `max_frame_bytes`. Our
    /// greeting is already in [`ZmtpServer::output`]: write it at once, as the peer waits
    /// for it.
    pub fn new(max_frame_bytes: u64) -> Self {
        ZmtpServer {
            phase: Phase::Greeting(GreetingReader::new()),
            max_frame_bytes,
            output: wire::greeting().to_vec(),
            out_start: 0,
        }
    }

    /// Consumes a prefix of `input` and reports an event if it completed one.
    ///
    /// Returns after at most one event, so the caller can stop between images (backpressure);
    /// call again with `&input[consumed..]` for the rest. `consumed` is 0 only for empty
    /// input. It may queue output (our READY, PONGs) even without an event. An error is
    /// final: every later call returns it again, and the connection should be closed.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, ZmtpError> {
        let result = self.feed_phase(input);
        if let Err(err) = &result {
            self.phase = Phase::Failed(err.clone());
        }
        result
    }

    fn feed_phase(&mut self, input: &[u8]) -> Result<Fed, ZmtpError> {
        let mut consumed = 0;
        if let Phase::Greeting(reader) = &mut self.phase {
            let (used, version) = reader.feed(input)?;
            consumed = used;
            let Some(version) = version else {
                return Ok(Fed {
                    consumed,
                    event: None,
                });
            };
            wire::encode_ready(b"REP", &mut self.output);
            self.phase = Phase::Frames(Box::new(Frames {
                version,
                peer_type: None,
                header: HeaderReader::default(),
                body: None,
                request: Assembler::new(self.max_frame_bytes),
                awaiting_reply: None,
            }));
        }
        let frames = match &mut self.phase {
            Phase::Frames(frames) => frames,
            Phase::Failed(err) => return Err(err.clone()),
            Phase::Greeting(_) => unreachable!("a complete greeting moved to Frames"),
        };
        while consumed < input.len() || frames.body_complete() {
            let rest = &input[consumed..];
            let Some(body) = &mut frames.body else {
                let (used, header) = frames.header.feed(rest)?;
                consumed += used;
                if let Some(header) = header {
                    frames.check_header(header)?;
                    // The size passed its limit, so reserving it is bounded.
                    let buf = Vec::with_capacity(header.size as usize);
                    frames.body = Some(Body { header, buf });
                }
                continue;
            };
            let missing = body.header.size as usize - body.buf.len();
            let take = missing.min(rest.len());
            body.buf.extend_from_slice(&rest[..take]);
            consumed += take;
            if body.buf.len() < body.header.size as usize {
                continue;
            }
            let body = frames.body.take().expect("checked above");
            let event = if body.header.is_command() {
                frames.command(&body.buf, &mut self.output, self.out_start)?
            } else {
                frames.message_frame(body.buf)?
            };
            if event.is_some() {
                return Ok(Fed { consumed, event });
            }
        }
        Ok(Fed {
            consumed,
            event: None,
        })
    }

    /// Bytes to write to the peer, in order. Report how many were written with
    /// [`ZmtpServer::consume_output`].
    pub fn output(&self) -> &[u8] {
        &self.output[self.out_start..]
    }

    /// Records that the first `n` bytes of [`ZmtpServer::output`] were written.
    ///
    /// # Panics
    /// If `n` is larger than the output.
    pub fn consume_output(&mut self, n: usize) {
        assert!(n <= self.output().len(), "consume_output past the output");
        self.out_start += n;
        // Compact only when drained, so partial writes never move the rest.
        if self.out_start == self.output.len() {
            self.output.clear();
            self.out_start = 0;
        }
    }

    /// True when there are bytes to write (register for writable).
    pub fn wants_write(&self) -> bool {
        !self.output().is_empty()
    }

    /// Queues imagezmq's reply, `b"OK"`, to the request of the last [`Event::Image`].
    /// Returns false (and queues nothing) when no request awaits a reply.
    pub fn reply_ok(&mut self) -> bool {
        self.reply(b"OK")
    }

    /// Queues a reply with body `body` (imagezmq's `send_jpg`/`send_image` return it to the
    /// client) to the request of the last [`Event::Image`]. Returns false (and queues
    /// nothing) when no request awaits a reply.
    pub fn reply(&mut self, body: &[u8]) -> bool {
        let Phase::Frames(frames) = &mut self.phase else {
            return false;
        };
        let Some(envelope) = frames.awaiting_reply.take() else {
            return false;
        };
        for frame in &envelope {
            wire::encode_frame(FLAG_MORE, frame, &mut self.output);
        }
        wire::encode_frame(0, body, &mut self.output);
        true
    }

    /// True between an [`Event::Image`] and its reply.
    pub fn awaiting_reply(&self) -> bool {
        matches!(&self.phase, Phase::Frames(f) if f.awaiting_reply.is_some())
    }

    /// True once the peer's READY arrived.
    pub fn is_connected(&self) -> bool {
        matches!(&self.phase, Phase::Frames(f) if f.peer_type.is_some())
    }

    /// Checks that the stream may end here (the peer closed): `Ok` before any byte or between
    /// requests, [`ZmtpError::Truncated`] inside the greeting, a frame or a request, or the
    /// error that ended the stream.
    pub fn finish(&self) -> Result<(), ZmtpError> {
        let inside = match &self.phase {
            Phase::Failed(err) => return Err(err.clone()),
            Phase::Greeting(r) if r.received() == 0 => return Ok(()),
            Phase::Greeting(r) => format!(
                "the greeting ({} of {} bytes)",
                r.received(),
                wire::GREETING_LEN
            ),
            Phase::Frames(f) => match &f.body {
                Some(body) => format!("a frame ({} of {} bytes)", body.buf.len(), body.header.size),
                None if f.header.is_partial() => "a frame header".to_string(),
                None if !f.request.is_idle() => "a request (between its frames)".to_string(),
                None => return Ok(()),
            },
        };
        Err(ZmtpError::Truncated { inside })
    }
}

impl Frames {
    /// True when a frame's body is complete but not yet handled (a zero-size body is
    /// complete as soon as its header is).
    fn body_complete(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|b| b.buf.len() as u64 == b.header.size)
    }

    /// Checks a header against the phase and limits before its body is allocated.
    fn check_header(&self, header: Header) -> Result<(), ZmtpError> {
        if header.is_command() {
            return wire::check_command_header(header);
        }
        if self.peer_type.is_none() {
            return Err(ZmtpError::ExpectedReady {
                got: "a message frame".into(),
            });
        }
        if self.awaiting_reply.is_some() && self.request.is_idle() {
            return Err(ZmtpError::RequestBeforeReply);
        }
        self.request.check_header(header.size, header.more())
    }

    /// Acts on a complete command; the READY completes the handshake.
    fn command(
        &mut self,
        body: &[u8],
        output: &mut Vec<u8>,
        out_start: usize,
    ) -> Result<Option<Event>, ZmtpError> {
        let command = wire::parse_command(body)?;
        if let Command::Error { reason } = command {
            return Err(ZmtpError::PeerError { reason });
        }
        if self.peer_type.is_none() {
            let Command::Ready(props) = command else {
                return Err(ZmtpError::ExpectedReady {
                    got: match command {
                        Command::Ping { .. } => "PING".into(),
                        Command::Pong => "PONG".into(),
                        Command::Other { name } => wire::printable(name),
                        Command::Ready(_) | Command::Error { .. } => unreachable!(),
                    },
                });
            };
            let socket_type = props
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(b"Socket-Type"))
                .map(|(_, value)| wire::printable(value))
                .ok_or(ZmtpError::MissingSocketType)?;
            // REP talks to REQ and DEALER only (ZMTP 3 socket-type rules).
            if socket_type != "REQ" && socket_type != "DEALER" {
                return Err(ZmtpError::IncompatibleSocketType { socket_type });
            }
            self.peer_type = Some(socket_type.clone());
            return Ok(Some(Event::Connected {
                socket_type,
                version: self.version,
            }));
        }
        match command {
            Command::Ready(_) => Err(ZmtpError::DuplicateReady),
            Command::Ping { context } => {
                let queued = output.len() - out_start;
                if queued > MAX_OUTPUT_BYTES {
                    return Err(ZmtpError::OutputBacklog { queued });
                }
                wire::encode_command(b"PONG", context, output);
                Ok(None)
            }
            // We send no PING, so a PONG answers nothing; other commands (SUBSCRIBE, CANCEL,
            // later ones) have no meaning for REP and are ignored, as libzmq does.
            Command::Pong | Command::Other { .. } | Command::Error { .. } => Ok(None),
        }
    }

    /// Takes a complete message frame; a completed request becomes an event.
    fn message_frame(&mut self, body: Vec<u8>) -> Result<Option<Event>, ZmtpError> {
        let Some(request) = self.request.push(body)? else {
            return Ok(None);
        };
        self.awaiting_reply = Some(request.envelope);
        Ok(Some(Event::Image(request.frame)))
    }
}
