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
use std::mem::MaybeUninit;

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
    /// The native framegate protocol with acknowledgements (docs/PROTOCOL.md); not a
    /// [`Decoder`] framing: connections speaking it get a [`crate::protocol`] session.
    Native,
    /// imagezmq's ZeroMQ REQ/REP (ZMTP 3); not a [`Decoder`] framing either: see
    /// [`crate::zmtp`].
    Imagezmq,
    /// HTTP/1.1 uploads, live view and metrics on their own port; not a [`Decoder`] framing:
    /// see [`crate::http`] and `net::http`.
    Http,
}

impl Framing {
    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Auto => "auto",
            Framing::AsciiLength => "ascii-length",
            Framing::U32Le => "u32le",
            Framing::U32Be => "u32be",
            Framing::Native => "native",
            Framing::Imagezmq => "imagezmq",
            Framing::Http => "http",
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
            "native" => Ok(Framing::Native),
            "imagezmq" => Ok(Framing::Imagezmq),
            "http" => Ok(Framing::Http),
            other => Err(format!(
                "unknown framing {other:?}: use auto, ascii-length, u32le, u32be, native, imagezmq or http"
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
    /// `auto` found a protocol that is not a framing: the native protocol's HELLO
    /// ([`crate::protocol::wire::HELLO_PREFIX`]) or a ZMTP greeting (imagezmq). The caller
    /// hands the connection to that protocol's codec, feeding it `held` (every byte auto took,
    /// this call's consumed ones included) first. This decoder takes no further bytes.
    HandOver {
        /// `Native` or `Imagezmq`.
        framing: Framing,
        /// The connection's first bytes.
        held: Vec<u8>,
    },
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
    /// Bytes were fed after [`Event::HandOver`] handed the connection over.
    HandedOver,
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
            DecodeError::HandedOver => {
                write!(f, "the connection speaks the native protocol, decoded elsewhere")
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
    /// Bytes `auto` took in earlier calls before it decided, not yet fed to the chosen decoder.
    /// They may hold several short frames, and a call reports at most one event, so they are
    /// drained across calls, always before the caller's current input (at most
    /// [`auto::SNIFF_LIMIT`] bytes, or one frame and a header when both byte orders qualified).
    replay: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Sniffing(Sniffer),
    Ascii(AsciiLength),
    Prefixed(LengthPrefixed),
    /// The connection speaks the native protocol; someone else decodes it.
    HandedOver,
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
            // Reached through auto's hand-over only; see Event::HandOver.
            // HTTP connections never get a Decoder; auto never picks HTTP.
            Framing::Native | Framing::Imagezmq | Framing::Http => State::HandedOver,
        };
        Decoder {
            state,
            max_frame_bytes,
            replay: Vec::new(),
        }
    }

    /// Consumes a prefix of `input` and reports a frame or end of stream if it completed one.
    ///
    /// Returns after at most one event, so the caller can stop between frames (backpressure);
    /// call again with `&input[consumed..]` for the rest. `consumed` may be 0 when the event
    /// came from bytes of earlier calls that `auto` held while deciding. An error is final:
    /// every later call returns it again.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, DecodeError> {
        let result = self.feed_state(input);
        if let Err(err) = &result {
            self.state = State::Failed(err.clone());
            self.replay = Vec::new();
        }
        result
    }

    fn feed_state(&mut self, input: &[u8]) -> Result<Fed, DecodeError> {
        if let State::Sniffing(sniffer) = &mut self.state {
            match sniffer.feed(input)? {
                auto::Sniffed::NeedMore => {
                    return Ok(Fed {
                        consumed: input.len(),
                        event: None,
                    })
                }
                auto::Sniffed::Decided {
                    framing,
                    mut buffered,
                    consumed,
                } => {
                    // The bytes of this input the sniffer looked at go to the chosen decoder
                    // as ordinary input below; only those of earlier calls need replaying.
                    self.state = Decoder::new(framing, self.max_frame_bytes).state;
                    if matches!(framing, Framing::Native | Framing::Imagezmq) {
                        return Ok(Fed {
                            consumed,
                            event: Some(Event::HandOver {
                                framing,
                                held: buffered,
                            }),
                        });
                    }
                    buffered.truncate(buffered.len() - consumed);
                    self.replay = buffered;
                }
            }
        }
        if !self.replay.is_empty() {
            let held = std::mem::take(&mut self.replay);
            let fed = feed_chosen(&mut self.state, &held)?;
            self.replay = held[fed.consumed..].to_vec();
            if fed.event.is_some() {
                // `input` is untouched, so the caller calls again and the rest drains then.
                return Ok(Fed {
                    consumed: 0,
                    event: fed.event,
                });
            }
            // The decoders stop short of their input only at an event.
            debug_assert!(self.replay.is_empty(), "replay stopped without an event");
        }
        feed_chosen(&mut self.state, input)
    }

    /// The payload being received, unless held bytes must be fed first (they come before
    /// anything read now).
    fn open_payload(&self) -> Option<&Payload> {
        match &self.state {
            State::Ascii(dec) if self.replay.is_empty() => dec.payload(),
            State::Prefixed(dec) if self.replay.is_empty() => dec.payload(),
            _ => None,
        }
    }

    /// [`Decoder::open_payload`], mutable.
    fn open_payload_mut(&mut self) -> Option<&mut Payload> {
        match &mut self.state {
            State::Ascii(dec) if self.replay.is_empty() => dec.payload_mut(),
            State::Prefixed(dec) if self.replay.is_empty() => dec.payload_mut(),
            _ => None,
        }
    }

    /// The unfilled rest of the current payload, so a caller can read from the socket straight
    /// into the frame's buffer; `None` outside a payload. Report what was written with
    /// [`Decoder::payload_filled`].
    pub fn payload_window(&mut self) -> Option<&mut [u8]> {
        self.open_payload_mut().map(Payload::window)
    }

    /// How many payload bytes are still missing; `None` outside a payload (or while held
    /// bytes must be fed first).
    pub fn payload_remaining(&self) -> Option<usize> {
        self.open_payload().map(Payload::remaining)
    }

    /// Like [`Decoder::payload_window`], but as uninitialised memory, so the payload never
    /// has to be zeroed before a socket read fills it; `None` outside a payload, or after
    /// `payload_window` initialised it. Report what was written with
    /// [`Decoder::payload_spare_filled`].
    pub fn payload_spare(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        self.open_payload_mut().and_then(Payload::spare)
    }

    /// Records that the first `n` bytes of [`Decoder::payload_spare`] were written; returns
    /// the frame when that completed it.
    ///
    /// # Safety
    /// The first `n` bytes of the slice the last `payload_spare` returned must have been
    /// written since.
    ///
    /// # Panics
    /// If there is no spare part or `n` is larger than it.
    pub unsafe fn payload_spare_filled(&mut self, n: usize) -> Option<Event> {
        let payload = self
            .open_payload_mut()
            .expect("payload_spare_filled outside a payload");
        // SAFETY: forwarded from this function's contract.
        unsafe { payload.assume_written(n) };
        self.payload_filled(n)
    }

    /// Records that the first `n` bytes of [`Decoder::payload_window`] were filled; returns the
    /// frame when that completed it.
    ///
    /// # Panics
    /// If `n` is larger than the window was (outside a payload the window is empty).
    pub fn payload_filled(&mut self, n: usize) -> Option<Event> {
        if self.payload_remaining().is_none() {
            assert_eq!(n, 0, "payload_filled outside a payload");
            return None;
        }
        match &mut self.state {
            State::Ascii(dec) => dec.payload_filled(n),
            State::Prefixed(dec) => dec.payload_filled(n),
            _ => None,
        }
    }

    /// The peer closed: returns the last frame if only the end of the stream completed it,
    /// then checks like [`Decoder::finish`]. (That happens with `auto` when a stream's only
    /// frame has a header both byte orders can read: see [`auto`], rule 3.) Call it once,
    /// after feeding every byte.
    pub fn end(&mut self) -> Result<Option<Event>, DecodeError> {
        if let State::Sniffing(sniffer) = &mut self.state {
            if let Some((framing, buffered)) = sniffer.end() {
                self.state = Decoder::new(framing, self.max_frame_bytes).state;
                self.replay = buffered;
                let fed = self.feed(&[])?;
                debug_assert!(self.replay.is_empty(), "a whole frame was replayed");
                self.finish()?;
                return Ok(fed.event);
            }
        }
        self.finish().map(|()| None)
    }

    /// Checks that the stream may end here (the peer closed): `Ok` between frames or after an
    /// end-of-stream marker, `Truncated` inside a frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.state {
            State::Failed(err) => Err(err.clone()),
            // Only a caller that dropped the rest of its input ends here: bytes are pending.
            _ if !self.replay.is_empty() => Err(DecodeError::Truncated {
                announced: 0,
                received: 0,
            }),
            State::Sniffing(s) if s.is_empty() => Ok(()),
            State::Sniffing(_) => Err(DecodeError::Truncated {
                announced: 0,
                received: 0,
            }),
            State::Ascii(dec) => dec.finish(),
            State::Prefixed(dec) => dec.finish(),
            State::HandedOver => Ok(()),
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
            State::HandedOver => Some(Framing::Native),
            State::Sniffing(_) | State::Failed(_) => None,
        }
    }
}

/// Feeds a decided decoder (or returns its error).
fn feed_chosen(state: &mut State, input: &[u8]) -> Result<Fed, DecodeError> {
    match state {
        State::Ascii(dec) => dec.feed(input),
        State::Prefixed(dec) => dec.feed(input),
        State::Failed(err) => Err(err.clone()),
        State::HandedOver => Err(DecodeError::HandedOver),
        State::Sniffing(_) => unreachable!("feed_state decides before feeding a decoder"),
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
        match dec.end() {
            Ok(last) => {
                events.extend(last);
                (events, None)
            }
            Err(err) => (events, Some(err)),
        }
    }

    pub fn frames(events: Vec<Event>) -> Vec<Vec<u8>> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Frame(p) => Some(p),
                Event::End | Event::HandOver { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_filled_zero_outside_a_payload_is_a_no_op() {
        // A caller reading "window or nothing" reports 0 when there was no window; that must
        // not panic for any framing (it used to for the decided ones).
        for framing in [
            Framing::Auto,
            Framing::AsciiLength,
            Framing::U32Le,
            Framing::U32Be,
        ] {
            let mut dec = Decoder::new(framing, 100);
            assert!(dec.payload_window().is_none());
            assert_eq!(dec.payload_filled(0), None, "{framing}");
        }
    }

    #[test]
    fn held_frames_come_out_one_per_call_before_new_input() {
        let mut dec = Decoder::new(Framing::Auto, 1000);
        for byte in [b"1", b"X", b"1"] {
            assert_eq!(
                dec.feed(byte),
                Ok(Fed {
                    consumed: 1,
                    event: None
                })
            );
        }
        // "Y" decides ascii-length; "1X" and "1" were taken earlier and come first.
        let x = Fed {
            consumed: 0,
            event: Some(Event::Frame(b"X".to_vec())),
        };
        assert_eq!(dec.feed(b"Y"), Ok(x));
        assert!(
            dec.payload_window().is_none(),
            "held bytes precede a window"
        );
        let y = Fed {
            consumed: 1,
            event: Some(Event::Frame(b"Y".to_vec())),
        };
        assert_eq!(dec.feed(b"Y"), Ok(y));
        assert_eq!(dec.finish(), Ok(()));
    }
}
