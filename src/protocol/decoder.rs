//! Sans-IO decoder for native-protocol messages: bytes in, messages out.
//!
//! Like [`crate::framing::Decoder`]: at most one message per call, identical output for any
//! chunking, every length checked before anything is allocated for it, a frame's payload
//! received in place ([`MessageDecoder::payload_spare`]). It decodes both directions; which
//! messages are allowed when is the session's business.

use std::fmt;
use std::mem::MaybeUninit;

use super::wire::{
    ContentType, FrameHeader, Kind, Message, Reason, FRAME_FIXED_LEN, HEADER_LEN, MAX_CONTROL_BODY,
    MAX_DEVICE_ID, MAX_META_BYTES, MAX_META_ENTRIES, NONCE_LEN, VERSION,
};
use crate::framing::hex;
use crate::framing::Payload;

/// What one message decoded to.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Any message but FRAME.
    Message(Message),
    /// A frame and its payload.
    Frame {
        /// Sequence number, capture time, metadata, checksum.
        header: FrameHeader,
        /// Exactly `header.payload_len` bytes.
        payload: Vec<u8>,
    },
    /// A frame whose payload was larger than `max_frame_bytes`: its bytes were skipped
    /// without being stored, so the connection can go on (the device gets a NACK).
    FrameTooLarge {
        /// The frame's header.
        header: FrameHeader,
    },
}

/// Result of one [`MessageDecoder::feed`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input taken.
    pub consumed: usize,
    /// The message those bytes completed, if any.
    pub event: Option<Decoded>,
}

/// Why a byte stream is not (or no longer) the native protocol. Every variant ends the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The header did not start with `FG`.
    BadMagic {
        /// The header's bytes.
        header: [u8; HEADER_LEN],
    },
    /// A version this code does not speak.
    UnsupportedVersion(u8),
    /// A message type that does not exist.
    UnknownType(u8),
    /// A body length that does not fit its type.
    BadLength {
        /// The message type.
        kind: Kind,
        /// The body length the header announced.
        len: u32,
    },
    /// A body whose content breaks the layout (bad UTF-8, lengths that disagree, …).
    Malformed(String),
    /// The stream ended inside a message.
    Truncated,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic { header } => write!(
                f,
                "not a framegate message: header {} does not start with \"FG\"",
                hex(header)
            ),
            WireError::UnsupportedVersion(v) => write!(
                f,
                "protocol version {v} is not supported (this server speaks {VERSION})"
            ),
            WireError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            WireError::BadLength { kind, len } => {
                write!(f, "{kind:?} message with a body of {len} bytes")
            }
            WireError::Malformed(why) => write!(f, "malformed message: {why}"),
            WireError::Truncated => f.write_str("the connection ended inside a message"),
        }
    }
}

impl std::error::Error for WireError {}

#[derive(Debug)]
enum State {
    Header {
        buf: [u8; HEADER_LEN],
        have: usize,
    },
    Control {
        kind: Kind,
        buf: Vec<u8>,
        need: usize,
    },
    FrameFixed {
        buf: [u8; FRAME_FIXED_LEN],
        have: usize,
        body_len: u32,
    },
    FrameMeta {
        header: FrameHeader,
        meta_count: usize,
        buf: Vec<u8>,
        need: usize,
    },
    Payload {
        header: FrameHeader,
        payload: Payload,
    },
    Skip {
        header: FrameHeader,
        remaining: usize,
    },
    Failed(WireError),
}

const START: State = State::Header {
    buf: [0; HEADER_LEN],
    have: 0,
};

/// Decodes one connection's messages.
#[derive(Debug)]
pub struct MessageDecoder {
    max_frame_bytes: u64,
    state: State,
}

impl MessageDecoder {
    /// A decoder that receives payloads up to `max_frame_bytes` and skips larger ones.
    pub fn new(max_frame_bytes: u64) -> Self {
        MessageDecoder {
            max_frame_bytes,
            state: START,
        }
    }

    /// Consumes a prefix of `input`; returns after at most one message. An error is final.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, WireError> {
        let result = self.feed_inner(input);
        if let Err(err) = &result {
            self.state = State::Failed(err.clone());
        }
        result
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<Fed, WireError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let event = match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::Header { buf, have } => {
                    let n = rest.len().min(HEADER_LEN - *have);
                    buf[*have..*have + n].copy_from_slice(&rest[..n]);
                    *have += n;
                    used += n;
                    if *have < HEADER_LEN {
                        None
                    } else {
                        let header = *buf;
                        self.state = self.after_header(header)?;
                        None
                    }
                }
                State::Control { kind, buf, need } => {
                    let n = rest.len().min(*need - buf.len());
                    buf.extend_from_slice(&rest[..n]);
                    used += n;
                    if buf.len() < *need {
                        None
                    } else {
                        let message = parse_control(*kind, buf)?;
                        self.state = START;
                        Some(Decoded::Message(message))
                    }
                }
                State::FrameFixed {
                    buf,
                    have,
                    body_len,
                } => {
                    let n = rest.len().min(FRAME_FIXED_LEN - *have);
                    buf[*have..*have + n].copy_from_slice(&rest[..n]);
                    *have += n;
                    used += n;
                    if *have < FRAME_FIXED_LEN {
                        None
                    } else {
                        let (fixed, body_len) = (*buf, *body_len);
                        self.state = self.after_frame_fixed(&fixed, body_len)?;
                        self.finish_empty_parts()
                    }
                }
                State::FrameMeta {
                    header,
                    meta_count,
                    buf,
                    need,
                } => {
                    let n = rest.len().min(*need - buf.len());
                    buf.extend_from_slice(&rest[..n]);
                    used += n;
                    if buf.len() < *need {
                        None
                    } else {
                        header.meta = parse_meta(buf, *meta_count)?;
                        let header = std::mem::replace(header, empty_header());
                        self.state = self.payload_state(header);
                        self.finish_empty_parts()
                    }
                }
                State::Payload { payload, .. } => {
                    used += payload.fill_from(rest);
                    self.complete_payload()
                }
                State::Skip { remaining, .. } => {
                    let n = rest.len().min(*remaining);
                    *remaining -= n;
                    used += n;
                    self.complete_payload()
                }
            };
            if event.is_some() || used == input.len() {
                return Ok(Fed {
                    consumed: used,
                    event,
                });
            }
        }
    }

    fn after_header(&self, header: [u8; HEADER_LEN]) -> Result<State, WireError> {
        if header[..2] != super::wire::MAGIC {
            return Err(WireError::BadMagic { header });
        }
        if header[2] != VERSION {
            return Err(WireError::UnsupportedVersion(header[2]));
        }
        let kind = Kind::from_code(header[3]).ok_or(WireError::UnknownType(header[3]))?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let bad = || WireError::BadLength { kind, len };
        let fits = |range: std::ops::RangeInclusive<usize>| range.contains(&(len as usize));
        let ok = match kind {
            Kind::Frame => {
                return if (len as usize) < FRAME_FIXED_LEN {
                    Err(bad())
                } else {
                    Ok(State::FrameFixed {
                        buf: [0; FRAME_FIXED_LEN],
                        have: 0,
                        body_len: len,
                    })
                }
            }
            Kind::Hello => fits(3..=2 + MAX_DEVICE_ID),
            Kind::Challenge | Kind::Auth => fits(NONCE_LEN..=NONCE_LEN),
            Kind::Welcome => fits(16..=16),
            Kind::Ack | Kind::Ping | Kind::Pong => fits(8..=8),
            Kind::Nack => fits(10..=MAX_CONTROL_BODY),
            Kind::Goodbye => fits(2..=MAX_CONTROL_BODY),
        };
        if !ok {
            return Err(bad());
        }
        Ok(State::Control {
            kind,
            buf: Vec::with_capacity(len as usize),
            need: len as usize,
        })
    }

    fn after_frame_fixed(
        &self,
        fixed: &[u8; FRAME_FIXED_LEN],
        body_len: u32,
    ) -> Result<State, WireError> {
        let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8"));
        let meta_count = fixed[17] as usize;
        let meta_len = u16::from_le_bytes([fixed[18], fixed[19]]) as usize;
        let payload_len = u32::from_le_bytes(fixed[20..24].try_into().expect("4"));
        let header = FrameHeader {
            seq: u64_at(0),
            captured_us: u64_at(8),
            content_type: ContentType::from_code(fixed[16]),
            meta: Vec::new(),
            payload_len,
            crc32c: u32::from_le_bytes(fixed[24..28].try_into().expect("4")),
        };
        if meta_count > MAX_META_ENTRIES || meta_len > MAX_META_BYTES {
            return Err(WireError::Malformed(format!(
                "frame {} has {meta_count} metadata entries in {meta_len} bytes; at most \
                 {MAX_META_ENTRIES} entries in {MAX_META_BYTES} bytes",
                header.seq
            )));
        }
        let expected = FRAME_FIXED_LEN as u64 + meta_len as u64 + u64::from(payload_len);
        if u64::from(body_len) != expected {
            return Err(WireError::Malformed(format!(
                "frame {} body is {body_len} bytes but its parts add up to {expected}",
                header.seq
            )));
        }
        Ok(if meta_len > 0 {
            State::FrameMeta {
                header,
                meta_count,
                buf: Vec::with_capacity(meta_len),
                need: meta_len,
            }
        } else if meta_count > 0 {
            return Err(WireError::Malformed(format!(
                "frame {} announces {meta_count} metadata entries in 0 bytes",
                header.seq
            )));
        } else {
            self.payload_state(header)
        })
    }

    /// The state that receives (or skips) the payload; nothing is allocated for a payload
    /// over the limit.
    fn payload_state(&self, header: FrameHeader) -> State {
        let len = header.payload_len as usize;
        if u64::from(header.payload_len) > self.max_frame_bytes {
            State::Skip {
                header,
                remaining: len,
            }
        } else {
            State::Payload {
                header,
                payload: Payload::with_len(len),
            }
        }
    }

    /// A frame with no payload completes as soon as its header does.
    fn finish_empty_parts(&mut self) -> Option<Decoded> {
        match &self.state {
            State::Payload { .. } | State::Skip { .. } => self.complete_payload(),
            _ => None,
        }
    }

    fn complete_payload(&mut self) -> Option<Decoded> {
        let done = match &self.state {
            State::Payload { payload, .. } => payload.is_complete(),
            State::Skip { remaining, .. } => *remaining == 0,
            _ => false,
        };
        if !done {
            return None;
        }
        match std::mem::replace(&mut self.state, START) {
            State::Payload { header, payload } => Some(Decoded::Frame {
                header,
                payload: payload.into_vec(),
            }),
            State::Skip { header, .. } => Some(Decoded::FrameTooLarge { header }),
            _ => unreachable!("checked above"),
        }
    }

    /// The payload size of the frame being received; `None` outside a payload.
    pub fn announced(&self) -> Option<u64> {
        match &self.state {
            State::Payload { header, .. } | State::Skip { header, .. } => {
                Some(u64::from(header.payload_len))
            }
            _ => None,
        }
    }

    /// Payload bytes still missing; `None` outside a payload.
    pub fn payload_remaining(&self) -> Option<usize> {
        match &self.state {
            State::Payload { payload, .. } => Some(payload.remaining()),
            _ => None,
        }
    }

    /// The unreceived rest of the payload as uninitialised memory, for a socket read
    /// straight into the frame; report what was written with
    /// [`MessageDecoder::payload_spare_filled`].
    pub fn payload_spare(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        match &mut self.state {
            State::Payload { payload, .. } => payload.spare(),
            _ => None,
        }
    }

    /// Records that the first `n` bytes of [`MessageDecoder::payload_spare`] were written;
    /// returns the frame when that completed it.
    ///
    /// # Safety
    /// The first `n` bytes of the slice the last `payload_spare` returned must have been
    /// written since.
    ///
    /// # Panics
    /// Outside a payload, or if `n` is larger than the spare part.
    pub unsafe fn payload_spare_filled(&mut self, n: usize) -> Option<Decoded> {
        let State::Payload { payload, .. } = &mut self.state else {
            panic!("payload_spare_filled outside a payload");
        };
        // SAFETY: forwarded from this function's contract.
        unsafe { payload.assume_written(n) };
        payload.advance(n);
        self.complete_payload()
    }

    /// Checks that the stream may end here: `Ok` between messages.
    pub fn finish(&self) -> Result<(), WireError> {
        match &self.state {
            State::Failed(err) => Err(err.clone()),
            State::Header { have: 0, .. } => Ok(()),
            _ => Err(WireError::Truncated),
        }
    }

    /// True when part of a message has arrived but not all of it.
    pub fn is_mid_message(&self) -> bool {
        !matches!(self.state, State::Header { have: 0, .. } | State::Failed(_))
    }
}

fn empty_header() -> FrameHeader {
    FrameHeader {
        seq: 0,
        captured_us: 0,
        content_type: ContentType::Unknown,
        meta: Vec::new(),
        payload_len: 0,
        crc32c: 0,
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| WireError::Malformed(format!("{what} is not UTF-8: {}", hex(bytes))))
}

fn parse_control(kind: Kind, body: &[u8]) -> Result<Message, WireError> {
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let nonce = || -> [u8; NONCE_LEN] { body.try_into().expect("length checked") };
    let reason_text = |at: usize| -> Result<(Reason, String), WireError> {
        let len = body[at + 1] as usize;
        if body.len() != at + 2 + len {
            return Err(WireError::Malformed(format!(
                "{kind:?} text of {len} bytes in a body of {}",
                body.len()
            )));
        }
        Ok((
            Reason::from_code(body[at]),
            utf8(&body[at + 2..], "reason text")?,
        ))
    };
    Ok(match kind {
        Kind::Hello => {
            let len = body[0] as usize;
            if len == 0 || body.len() != 2 + len {
                return Err(WireError::Malformed(format!(
                    "HELLO device id of {len} bytes in a body of {}",
                    body.len()
                )));
            }
            Message::Hello {
                device: utf8(&body[1..1 + len], "device id")?,
                has_secret: body[1 + len] & 1 == 1,
            }
        }
        Kind::Challenge => Message::Challenge { nonce: nonce() },
        Kind::Auth => Message::Auth { tag: nonce() },
        Kind::Welcome => Message::Welcome {
            max_frame_bytes: u32::from_le_bytes(body[0..4].try_into().expect("4")),
            max_in_flight: u16::from_le_bytes([body[4], body[5]]),
            heartbeat_secs: u16::from_le_bytes([body[6], body[7]]),
            committed_through: u64_at(8),
        },
        Kind::Ack => Message::Ack { seq: u64_at(0) },
        Kind::Nack => {
            let (reason, text) = reason_text(8)?;
            Message::Nack {
                seq: u64_at(0),
                reason,
                text,
            }
        }
        Kind::Ping => Message::Ping { token: u64_at(0) },
        Kind::Pong => Message::Pong { token: u64_at(0) },
        Kind::Goodbye => {
            let (reason, text) = reason_text(0)?;
            Message::Goodbye { reason, text }
        }
        Kind::Frame => unreachable!("frames are decoded in parts"),
    })
}

fn parse_meta(buf: &[u8], count: usize) -> Result<Vec<(String, String)>, WireError> {
    let short = || WireError::Malformed("metadata entries overrun their length".into());
    let mut meta = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let key_len = *buf.get(at).ok_or_else(short)? as usize;
        if key_len == 0 {
            return Err(WireError::Malformed("empty metadata key".into()));
        }
        let key = buf.get(at + 1..at + 1 + key_len).ok_or_else(short)?;
        at += 1 + key_len;
        let val_len = buf.get(at..at + 2).ok_or_else(short)?;
        let val_len = u16::from_le_bytes([val_len[0], val_len[1]]) as usize;
        let val = buf.get(at + 2..at + 2 + val_len).ok_or_else(short)?;
        at += 2 + val_len;
        meta.push((utf8(key, "metadata key")?, utf8(val, "metadata value")?));
    }
    if at != buf.len() {
        return Err(WireError::Malformed(format!(
            "{} bytes left after {count} metadata entries",
            buf.len() - at
        )));
    }
    Ok(meta)
}
