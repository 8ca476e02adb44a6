//! `auto`: pick a connection's framing from its first bytes, once.
//!
//! The rule, applied to the bytes received so far, deciding as early as it can:
//!
//! 1. **Starts with an ASCII digit.** Four or more leading digits → `ascii-length` (as a 4-byte
//!    binary length, four digit bytes would announce at least 0x30303030 = 808,464,432 bytes).
//!    One to three digits and then another byte → `u32le` or `u32be` if that reading qualifies
//!    as in rule 2 (a little-endian length whose low byte happens to be a digit), else
//!    `ascii-length`.
//! 2. **Anything else.** The first 4 bytes are a length: four zero bytes are `u32le`'s
//!    end-of-stream marker. Otherwise the little-endian reading, then the big-endian one,
//!    qualifies when it is between 1 and `max_frame_bytes` and the payload starts with a JPEG,
//!    PNG, GIF, BMP, WebP or TIFF signature; the first that qualifies wins. If neither does but
//!    an image signature follows, the frame is refused as oversize; otherwise the connection is
//!    rejected as unrecognised.
//!
//! The decision needs at most [`SNIFF_LIMIT`] bytes; those are then replayed into the chosen
//! decoder, so nothing is lost. A connection that needs a framing outside this rule (a
//! non-image payload after a binary length, say) sets `framing` explicitly on its listener.

use super::signature::{classify, Signature, PROBE_LEN};
use super::{DecodeError, Framing};

/// The most bytes `auto` holds before it decides: a 4-byte length and a signature probe.
pub const SNIFF_LIMIT: usize = 4 + PROBE_LEN;

/// Outcome of feeding the sniffer.
#[derive(Debug)]
pub enum Sniffed {
    /// Every byte was taken; not decided yet.
    NeedMore,
    /// Decided after taking `consumed` bytes of this input.
    Decided {
        /// The chosen framing.
        framing: Framing,
        /// Every byte held so far, to replay into the chosen decoder.
        buffered: Vec<u8>,
        /// How much of the input given to this call was taken.
        consumed: usize,
    },
}

/// Holds a connection's first bytes until the framing is decided.
#[derive(Debug)]
pub struct Sniffer {
    max: u64,
    held: Vec<u8>,
}

impl Sniffer {
    /// A sniffer for a listener with this `max_frame_bytes`.
    pub fn new(max: u64) -> Self {
        Sniffer {
            max,
            held: Vec::with_capacity(SNIFF_LIMIT),
        }
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes bytes one at a time and decides at the earliest byte the rule allows, so the
    /// outcome does not depend on how the input was chunked.
    pub fn feed(&mut self, input: &[u8]) -> Result<Sniffed, DecodeError> {
        for (i, &byte) in input.iter().enumerate() {
            self.held.push(byte);
            if let Some(framing) = decide(&self.held, self.max)? {
                return Ok(Sniffed::Decided {
                    framing,
                    buffered: std::mem::take(&mut self.held),
                    consumed: i + 1,
                });
            }
            debug_assert!(self.held.len() < SNIFF_LIMIT, "rule did not decide in time");
        }
        Ok(Sniffed::NeedMore)
    }
}

/// Applies the rule to the first bytes: `Ok(None)` means more bytes are needed.
pub fn decide(first: &[u8], max: u64) -> Result<Option<Framing>, DecodeError> {
    let Some(&lead) = first.first() else {
        return Ok(None);
    };
    if lead.is_ascii_digit() {
        let digits = first.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits >= 4 {
            return Ok(Some(Framing::AsciiLength));
        }
        if digits == first.len() {
            return Ok(None);
        }
        return Ok(match binary(first, max, false) {
            Binary::Qualifies(framing) => Some(framing),
            Binary::NeedMore => None,
            Binary::No { .. } => Some(Framing::AsciiLength),
        });
    }
    if first.len() < 4 {
        return Ok(None);
    }
    if first[..4] == [0; 4] {
        return Ok(Some(Framing::U32Le));
    }
    match binary(first, max, true) {
        Binary::Qualifies(framing) => Ok(Some(framing)),
        Binary::NeedMore => Ok(None),
        Binary::No {
            oversize_image: Some(announced),
        } => Err(DecodeError::Oversize { announced, max }),
        Binary::No {
            oversize_image: None,
        } => Err(DecodeError::Unrecognised {
            first_bytes: first.to_vec(),
        }),
    }
}

enum Binary {
    Qualifies(Framing),
    NeedMore,
    /// Neither reading qualifies; if an image signature follows anyway, the smaller reading
    /// above `max` (the one that failed for being too large).
    No {
        oversize_image: Option<u64>,
    },
}

/// Judges the two 4-byte readings. With `probe_oversize`, a stream where neither qualifies is
/// looked at further to tell an oversize image from garbage; without it (the digit-led case,
/// where ASCII is the fallback) the verdict is given as soon as the readings are known.
fn binary(first: &[u8], max: u64, probe_oversize: bool) -> Binary {
    let Some(head) = first.get(..4) else {
        return Binary::NeedMore;
    };
    let head: [u8; 4] = head.try_into().expect("4 bytes");
    let payload_start = &first[4..];
    let readings = [
        (Framing::U32Le, u64::from(u32::from_le_bytes(head))),
        (Framing::U32Be, u64::from(u32::from_be_bytes(head))),
    ];
    for (framing, len) in readings {
        if len == 0 || len > max {
            continue;
        }
        match classify(payload_start, len) {
            Signature::Image(_) => return Binary::Qualifies(framing),
            // Wait for this reading before trying the next, so the order of preference holds.
            Signature::NeedMore => return Binary::NeedMore,
            Signature::NotImage => {}
        }
    }
    if !probe_oversize {
        return Binary::No {
            oversize_image: None,
        };
    }
    match classify(payload_start, u64::MAX) {
        Signature::NeedMore => Binary::NeedMore,
        // A reading within max was judged on its own payload and refused; only one above max
        // can be the frame that is too large. None above max: not an oversize frame at all.
        Signature::Image(_) => Binary::No {
            oversize_image: readings.iter().map(|r| r.1).filter(|&len| len > max).min(),
        },
        Signature::NotImage => Binary::No {
            oversize_image: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decode_chunks, frames};
    use super::super::{DecodeError, Decoder, Event, Framing};

    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01payload";
    const MAX: u64 = 1 << 20;

    fn auto(stream: &[u8]) -> (Vec<Event>, Option<DecodeError>) {
        decode_chunks(Framing::Auto, MAX, &[stream])
    }

    #[test]
    fn ascii_length_with_and_without_separator() {
        for sep in [&b""[..], b"\n", b"\r\n", b" "] {
            let stream = [JPEG.len().to_string().as_bytes(), sep, JPEG].concat();
            let (events, err) = auto(&stream);
            assert_eq!(err, None);
            assert_eq!(frames(events), vec![JPEG.to_vec()]);
        }
    }

    #[test]
    fn u32le_and_u32be() {
        let le = [&(JPEG.len() as u32).to_le_bytes()[..], JPEG, &[0; 4]].concat();
        let (events, err) = auto(&le);
        assert_eq!(err, None);
        assert_eq!(events, vec![Event::Frame(JPEG.to_vec()), Event::End]);
        let be = [&(JPEG.len() as u32).to_be_bytes()[..], JPEG].concat();
        let (events, err) = auto(&be);
        assert_eq!(err, None);
        assert_eq!(frames(events), vec![JPEG.to_vec()]);
    }

    #[test]
    fn little_endian_length_with_a_digit_low_byte() {
        // 0x3131 = 12593: its bytes are "11\0\0", which must not be read as ASCII "11".
        let payload = [JPEG, &vec![0u8; 0x3131 - JPEG.len()]].concat();
        let stream = [&0x3131u32.to_le_bytes()[..], &payload].concat();
        let (events, err) = auto(&stream);
        assert_eq!(err, None);
        assert_eq!(frames(events), vec![payload]);
    }

    #[test]
    fn decides_ascii_before_the_payload_arrives() {
        let mut dec = Decoder::new(Framing::Auto, MAX);
        dec.feed(b"48213").unwrap();
        assert_eq!(dec.framing(), Some(Framing::AsciiLength));
        assert_eq!(dec.announced(), None);
    }

    #[test]
    fn short_ascii_frame_then_close_is_complete() {
        // Fewer bytes than a signature probe: the digits decide as soon as the binary readings
        // are out of range, so the frame completes before the device closes.
        let (events, err) = auto(b"5\nhello");
        assert_eq!(err, None);
        assert_eq!(frames(events), vec![b"hello".to_vec()]);
    }

    #[test]
    fn garbage_is_rejected() {
        let (_, err) = auto(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            matches!(err, Some(DecodeError::Unrecognised { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn oversize_binary_with_image_is_reported_as_oversize() {
        let stream = [&0x7fff_ffffu32.to_le_bytes()[..], JPEG].concat();
        let (_, err) = auto(&stream);
        assert!(matches!(err, Some(DecodeError::Oversize { .. })), "{err:?}");
    }

    #[test]
    fn oversize_binary_reports_the_reading_above_max() {
        // LE reads 1 (within max, but a 1-byte payload is no image); BE reads 16 MiB. The error
        // must name the length that is too large, not 1.
        let stream = [&[1u8, 0, 0, 0][..], JPEG].concat();
        let (events, err) = decode_chunks(Framing::Auto, 100, &[&stream]);
        assert_eq!(events, vec![]);
        assert_eq!(
            err,
            Some(DecodeError::Oversize {
                announced: 1 << 24,
                max: 100
            })
        );
    }

    #[test]
    fn signature_must_lie_inside_the_announced_payload() {
        // A 32 MiB u32le frame on a listener with an 8 MiB max: LE bytes 00 00 00 02, whose BE
        // reading is 2. The 2-byte "payload" FF D8 is not a JPEG (the FF after it is the next
        // header), so this is an oversize frame, not a stream of tiny u32be frames.
        let stream = [&(32u32 << 20).to_le_bytes()[..], JPEG].concat();
        let (events, err) = decode_chunks(Framing::Auto, 8 << 20, &[&stream]);
        assert_eq!(events, vec![]);
        assert_eq!(
            err,
            Some(DecodeError::Oversize {
                announced: 32 << 20,
                max: 8 << 20
            })
        );
    }

    #[test]
    fn short_frames_sniffed_in_earlier_calls_are_all_delivered() {
        // "1X1Y": auto decides at the 4th byte, when both 1-byte ascii frames are complete.
        // Both must come out, one per feed call, whatever the chunking.
        for chunks in [
            &[&b"1X1Y"[..]][..],
            &[b"1", b"X", b"1", b"Y"],
            &[b"1X1", b"Y"],
        ] {
            let (events, err) = decode_chunks(Framing::Auto, MAX, chunks);
            assert_eq!(err, None, "{chunks:?}");
            assert_eq!(
                frames(events),
                vec![b"X".to_vec(), b"Y".to_vec()],
                "{chunks:?}"
            );
        }
        // Many frames held at once (a large max keeps auto sniffing for 16 bytes).
        let stream = b"1a1b1c1d1e1f1g1h";
        let (events, err) = decode_chunks(Framing::Auto, 4 << 30, &[&stream[..15], &stream[15..]]);
        assert_eq!(err, None);
        assert_eq!(frames(events).concat(), b"abcdefgh");
    }

    #[test]
    fn oversize_ascii_is_reported_as_oversize() {
        let (_, err) = auto(b"99999999999\xff\xd8\xff");
        assert!(matches!(err, Some(DecodeError::Oversize { .. })), "{err:?}");
    }

    #[test]
    fn zero_length_alone_is_a_clean_end() {
        let (events, err) = auto(&[0, 0, 0, 0]);
        assert_eq!(err, None);
        assert_eq!(events, vec![Event::End]);
    }
}
