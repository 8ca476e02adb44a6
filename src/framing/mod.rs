//! Sans-IO frame decoders for the wire formats devices use.
//!
//! A [`Decoder`] takes bytes and gives back complete frames; it owns no socket and reads no
//! clock, so unit tests, property tests and fuzzers drive it with plain byte slices. The event
//! loop is a thin shell around it: read bytes, [`Decoder::feed`] them, hand frames on.
//!
//! Framings:
//! - `ascii-length`: the length as ASCII decimal digits, then the payload (see [`ascii_length`]).
//! - `u32le`: a 4-byte little-endian length, then the payload; a zero length ends the stream
//!   cleanly (picamera's network-stream recipe).
//! - `u32be`: a 4-byte big-endian length, then the payload (OpenCV socket scripts).
//! - `auto`: decided once per connection from its first bytes (see [`auto`]).

pub mod ascii_length;
pub mod auto;
mod length_prefixed;
mod payload;
pub mod signature;

use std::fmt;

use serde::Deserialize;

use self::ascii_length::AsciiLength;
use self::auto::Sniffer;
use self::length_prefixed::{ByteOrder, LengthPrefixed};
pub use self::payload::Payload;

/// The wire format a listener expects from its devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Decide per connection from the first bytes.
    Auto,
    /// ASCII decimal length, optional `\r\n`/`\n`/space, payload.
    AsciiLength,
    /// 4-byte little-endian length, payload; zero length = end of stream.
    #[serde(rename = "u32le")]
    U32Le,
    /// 4-byte big-endian length, payload.
    #[serde(rename = "u32be")]
    U32Be,
}

impl Framing {
    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Auto => "auto",
            Framing::AsciiLength => "ascii-length",
            Framing::U32Le => "u32le",
            Framing::U32Be => "u32be",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Framing::Auto),
            "ascii-length" => Ok(Framing::AsciiLength),
            "u32le" => Ok(Framing::U32Le),
            "u32be" => Ok(Framing::U32Be),
            other => Err(format!(
                "unknown framing {other:?}: use auto, ascii-length, u32le or u32be"
            )),
        }
    }
}

/// What one call to [`Decoder::feed`] produced besides consuming bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete frame's payload, exactly as many bytes as its header announced.
    Frame(Vec<u8>),
    /// The device said it has no more frames (u32le zero length). No further bytes are valid.
    End,
}

/// The result of one [`Decoder::feed`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// How many bytes of the input were used; the caller passes the rest in the next call.
    pub consumed: usize,
    /// A frame or end of stream, if the consumed bytes completed one.
    pub event: Option<Event>,
}

/// Why a connection's byte stream cannot be decoded. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The announced payload is larger than `max_frame_bytes`; nothing was allocated for it.
    Oversize {
        /// The length the device announced (saturated at `u64::MAX` for 20-digit numbers).
        announced: u64,
        /// The listener's `max_frame_bytes`.
        max: u64,
    },
    /// An ASCII length had more than [`ascii_length::MAX_DIGITS`] digits.
    TooManyDigits,
    /// An ASCII length was expected but this byte is not a digit.
    NotALength {
        /// The offending byte.
        byte: u8,
    },
    /// `auto` could not match the first bytes to any framing (see [`auto`] for the rule).
    Unrecognised {
        /// The first bytes seen (at most [`auto::SNIFF_LIMIT`]), for the log line.
        first_bytes: Vec<u8>,
    },
    /// Bytes arrived after a u32le end-of-stream marker.
    DataAfterEnd,
    /// The stream ended inside a frame.
    Truncated {
        /// The payload size the header announced (0 while still inside the header).
        announced: u64,
        /// Payload bytes that arrived before the end.
        received: u64,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Oversize { announced, max } => write!(
                f,
                "announced frame of {announced} bytes exceeds max_frame_bytes = {max}; raise max_frame_bytes if the device really sends frames this large"
            ),
            DecodeError::TooManyDigits => write!(
                f,
                "ASCII length has more than {} digits",
                ascii_length::MAX_DIGITS
            ),
            DecodeError::NotALength { byte } => {
                write!(f, "expected an ASCII length digit, got byte 0x{byte:02x}")
            }
            DecodeError::Unrecognised { first_bytes } => write!(
                f,
                "framing auto: first bytes {} are neither an ASCII length nor a 4-byte length followed by a JPEG/PNG/GIF/BMP/WebP/TIFF signature; set framing explicitly for this device",
                hex(first_bytes)
            ),
            DecodeError::DataAfterEnd => {
                write!(f, "data after the zero-length end-of-stream marker")
            }
            DecodeError::Truncated {
                announced,
                received,
            } => {
                if *announced == 0 && *received == 0 {
                    write!(f, "stream ended inside a length header")
                } else {
                    write!(
                        f,
                        "stream ended after {received} of {announced} payload bytes"
                    )
                }
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Lower-case hex of a short byte string, for log lines.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes one connection's byte stream into frames.
///
/// Feed it every byte the connection delivers, in order, in chunks of any size: the frames that
/// come out do not depend on how the stream was split.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    max_frame_bytes: u64,
}

#[derive(Debug)]
enum State {
    Sniffing(Sniffer),
    Ascii(AsciiLength),
    Prefixed(LengthPrefixed),
    Failed(DecodeError),
}

impl Decoder {
    /// A decoder for `framing` that refuses frames larger than `max_frame_bytes`.
    pub fn new(framing: Framing, max_frame_bytes: u64) -> Self {
        let state = match framing {
            Framing::Auto => State::Sniffing(Sniffer::new(max_frame_bytes)),
            Framing::AsciiLength => State::Ascii(AsciiLength::new(max_frame_bytes)),
            Framing::U32Le => {
                State::Prefixed(LengthPrefixed::new(ByteOrder::Little, max_frame_bytes))
            }
            Framing::U32Be => State::Prefixed(LengthPrefixed::new(ByteOrder::Big, max_frame_bytes)),
        };
        Decoder {
            state,
            max_frame_bytes,
        }
    }

    /// Consumes a prefix of `input` and reports a frame or end of stream if it completed one.
    ///
    /// Returns after at most one event, so the caller can stop between frames (backpressure);
    /// call again with `&input[consumed..]` for the rest. An error is final: every later call
    /// returns it again.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, DecodeError> {
        let result = match &mut self.state {
            State::Failed(err) => return Err(err.clone()),
            State::Ascii(dec) => dec.feed(input),
            State::Prefixed(dec) => dec.feed(input),
            State::Sniffing(sniffer) => match sniffer.feed(input) {
                Ok(auto::Sniffed::NeedMore) => Ok(Fed {
                    consumed: input.len(),
                    event: None,
                }),
                Ok(auto::Sniffed::Decided {
                    framing,
                    buffered,
                    consumed,
                }) => {
                    // Replay what the sniffer held into the chosen decoder, then carry on with
                    // the rest of this input on the next call.
                    let mut inner = Decoder::new(framing, self.max_frame_bytes);
                    let event = inner.replay(&buffered);
                    self.state = inner.state;
                    event.map(|event| Fed { consumed, event })
                }
                Err(err) => Err(err),
            },
        };
        if let Err(err) = &result {
            self.state = State::Failed(err.clone());
        }
        result
    }

    /// Feeds the sniffer's buffered bytes, which are short enough never to hold a whole frame
    /// plus more (a frame needs at least its signature), so at most one event comes out.
    fn replay(&mut self, mut bytes: &[u8]) -> Result<Option<Event>, DecodeError> {
        let mut event = None;
        while !bytes.is_empty() {
            let fed = self.feed(bytes)?;
            bytes = &bytes[fed.consumed..];
            if fed.event.is_some() {
                debug_assert!(event.is_none(), "sniffed bytes held two events");
                event = fed.event;
            }
        }
        Ok(event)
    }

    /// The unfilled rest of the current payload, so a caller can read from the socket straight
    /// into the frame's buffer; `None` outside a payload. Report what was written with
    /// [`Decoder::payload_filled`].
    pub fn payload_window(&mut self) -> Option<&mut [u8]> {
        match &mut self.state {
            State::Ascii(dec) => dec.payload_mut().map(Payload::window),
            State::Prefixed(dec) => dec.payload_mut().map(Payload::window),
            _ => None,
        }
    }

    /// Records that the first `n` bytes of [`Decoder::payload_window`] were filled; returns the
    /// frame when that completed it.
    ///
    /// # Panics
    /// If `n` is larger than the window was.
    pub fn payload_filled(&mut self, n: usize) -> Option<Event> {
        match &mut self.state {
            State::Ascii(dec) => dec.payload_filled(n),
            State::Prefixed(dec) => dec.payload_filled(n),
            _ => {
                assert_eq!(n, 0, "payload_filled outside a payload");
                None
            }
        }
    }

    /// Checks that the stream may end here (the peer closed): `Ok` between frames or after an
    /// end-of-stream marker, `Truncated` inside a frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.state {
            State::Failed(err) => Err(err.clone()),
            State::Sniffing(s) if s.is_empty() => Ok(()),
            State::Sniffing(_) => Err(DecodeError::Truncated {
                announced: 0,
                received: 0,
            }),
            State::Ascii(dec) => dec.finish(),
            State::Prefixed(dec) => dec.finish(),
        }
    }

    /// True when part of a frame (header or payload) has arrived but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        self.finish().is_err() && !matches!(self.state, State::Failed(_))
    }

    /// The payload size announced by the frame in progress, if its header is complete.
    pub fn announced(&self) -> Option<u64> {
        match &self.state {
            State::Ascii(dec) => dec.payload().map(|p| p.len() as u64),
            State::Prefixed(dec) => dec.payload().map(|p| p.len() as u64),
            _ => None,
        }
    }

    /// The framing in use: for `auto`, `None` until the first bytes decided it.
    pub fn framing(&self) -> Option<Framing> {
        match &self.state {
            State::Ascii(_) => Some(Framing::AsciiLength),
            State::Prefixed(dec) => Some(match dec.order() {
                ByteOrder::Little => Framing::U32Le,
                ByteOrder::Big => Framing::U32Be,
            }),
            State::Sniffing(_) | State::Failed(_) => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Feeds `chunks` in order and collects every event, stopping at the first error.
    pub fn decode_chunks(
        framing: Framing,
        max: u64,
        chunks: &[&[u8]],
    ) -> (Vec<Event>, Option<DecodeError>) {
        let mut dec = Decoder::new(framing, max);
        let mut events = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                match dec.feed(rest) {
                    Ok(fed) => {
                        assert!(fed.consumed > 0 || fed.event.is_some(), "no progress");
                        rest = &rest[fed.consumed..];
                        events.extend(fed.event);
                    }
                    Err(err) => return (events, Some(err)),
                }
            }
        }
        (events, dec.finish().err())
    }

    pub fn frames(events: Vec<Event>) -> Vec<Vec<u8>> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Frame(p) => Some(p),
                Event::End => None,
            })
            .collect()
    }
}
