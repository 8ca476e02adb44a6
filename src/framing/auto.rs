//! `auto`: pick a connection's framing from its first bytes, once.
//!
//! The rule, applied to the bytes received so far, deciding as early as it can:
//!
//! 1. **Starts with an ASCII digit.** Four or more leading digits → `ascii-length` (as a 4-byte
//!    binary length, four digit bytes would announce at least 0x30303030 = 808,464,432 bytes).
//!    One to three digits and then another byte → `u32le` or `u32be` if that reading qualifies
//!    as in rule 2 (a little-endian length whose low byte happens to be a digit), else
//!    `ascii-length`.
//! 2. **Anything else.** `46 47 01 01` ("FG", version 1, HELLO) is the native protocol
//!    (docs/PROTOCOL.md): the connection is handed over ([`super::Event::HandOver`]). A first
//!    byte `FF` waits for 10 bytes: `FF`, 8 any, `7F` is a ZMTP greeting (imagezmq senders,
//!    which send exactly those 10 bytes and wait) and is handed over too. Otherwise
//!    the first 4 bytes are a length: four zero bytes are `u32le`'s
//!    end-of-stream marker. Otherwise each reading, little-endian and big-endian, qualifies
//!    when it is between 1 and `max_frame_bytes` and the payload starts with a JPEG, PNG, GIF,
//!    BMP, WebP or TIFF signature. If exactly one qualifies, it wins. If neither does but an
//!    image signature follows, the frame is refused as oversize; otherwise the connection is
//!    rejected as unrecognised.
//! 3. **Both readings qualify** (a header like `00 00 90 00`: 36,864 bytes big-endian,
//!    9,437,184 little-endian, both under the default 32 MiB). The first frame is received
//!    with the *shorter* length, and that reading wins if its payload ends the way its format
//!    ends (JPEG `FF D9`, PNG's `IEND` chunk, a BMP or WebP header's own size field equal to
//!    it), or else if the bytes after it, read in the same byte order, are a plausible next
//!    header: zero, or a length between 1 and `max_frame_bytes` followed by an image
//!    signature; or if the stream ends right there. Otherwise the longer reading wins. Inside
//!    a real image, a valid header followed by a signature at exactly that offset does not
//!    occur in practice, so a stream of several frames is always read the way it was sent.
//!
//! Rules 1 and 2 need at most [`SNIFF_LIMIT`] bytes; rule 3 holds the shorter frame and the
//! next header (bounded by `max_frame_bytes` + 20). The held bytes are then replayed into the
//! chosen decoder, so nothing is lost. A connection that needs a framing outside this rule (a
//! non-image payload after a binary length, say) sets `framing` explicitly on its listener.

use super::signature::{classify, ends_as_its_format_ends, Signature, PROBE_LEN};
use super::{DecodeError, Framing};
use crate::protocol::wire::HELLO_PREFIX;

/// A ZMTP greeting's first byte and its 10th (`FF`, 8 padding bytes, `7F`).
const ZMTP_SIGNATURE_FIRST: u8 = 0xff;
const ZMTP_SIGNATURE_LAST: u8 = 0x7f;

/// The most bytes `auto` holds before it decides by rules 1 and 2: a 4-byte length and a
/// signature probe.
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
    /// Set once both 4-byte readings qualified (rule 3).
    ambiguous: Option<Ambiguity>,
}

/// Two readings of the first header that both qualify: (framing, announced length) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguity {
    shorter: (Framing, u64),
    longer: (Framing, u64),
}

impl Ambiguity {
    /// Where the first frame ends under the shorter reading.
    fn frame_end(&self) -> usize {
        4 + self.shorter.1 as usize
    }
}

/// What the rule says about the bytes seen so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// More bytes are needed.
    Undecided,
    /// This framing.
    Framing(Framing),
    /// Both binary readings qualify; rule 3 decides after the shorter frame.
    Ambiguous(Ambiguity),
}

impl Sniffer {
    /// A sniffer for a listener with this `max_frame_bytes`.
    pub fn new(max: u64) -> Self {
        Sniffer {
            max,
            held: Vec::with_capacity(SNIFF_LIMIT),
            ambiguous: None,
        }
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes bytes and decides at the earliest byte the rule allows, so the outcome does not
    /// depend on how the input was chunked.
    pub fn feed(&mut self, input: &[u8]) -> Result<Sniffed, DecodeError> {
        let mut taken = 0;
        while taken < input.len() {
            let verdict = match self.ambiguous {
                Some(ambiguity) => {
                    // Nothing can be decided before the shorter frame's end: take it in bulk.
                    let wanted = ambiguity.frame_end().saturating_sub(self.held.len()).max(1);
                    let n = wanted.min(input.len() - taken);
                    self.held.extend_from_slice(&input[taken..taken + n]);
                    taken += n;
                    settle(&ambiguity, &self.held, self.max)
                }
                None => {
                    self.held.push(input[taken]);
                    taken += 1;
                    let verdict = decide(&self.held, self.max)?;
                    if let Verdict::Ambiguous(ambiguity) = verdict {
                        // The shorter frame and the next header, allocated once; the shorter
                        // reading is within max_frame_bytes.
                        let room = ambiguity.frame_end() + 4 + PROBE_LEN;
                        self.held
                            .reserve_exact(room.saturating_sub(self.held.len()));
                        self.ambiguous = Some(ambiguity);
                        settle(&ambiguity, &self.held, self.max)
                    } else {
                        verdict
                    }
                }
            };
            match verdict {
                Verdict::Framing(framing) => {
                    return Ok(Sniffed::Decided {
                        framing,
                        buffered: std::mem::take(&mut self.held),
                        consumed: taken,
                    })
                }
                Verdict::Undecided => {}
                Verdict::Ambiguous(_) => unreachable!("settle never returns Ambiguous"),
            }
            debug_assert!(
                self.ambiguous.is_some() || self.held.len() < SNIFF_LIMIT,
                "rule did not decide in time"
            );
        }
        Ok(Sniffed::NeedMore)
    }

    /// The peer closed. If the bytes held are exactly one frame under rule 3's shorter
    /// reading, that reading wins (the longer one would be a truncated frame): returns it with
    /// the bytes to replay.
    pub fn end(&mut self) -> Option<(Framing, Vec<u8>)> {
        let ambiguity = self.ambiguous?;
        (self.held.len() == ambiguity.frame_end())
            .then(|| (ambiguity.shorter.0, std::mem::take(&mut self.held)))
    }
}

/// Rule 3, once the bytes reach past the shorter frame's end.
fn settle(ambiguity: &Ambiguity, held: &[u8], max: u64) -> Verdict {
    let end = ambiguity.frame_end();
    let Some(payload) = held.get(4..end) else {
        return Verdict::Undecided;
    };
    if ends_as_its_format_ends(payload) {
        return Verdict::Framing(ambiguity.shorter.0);
    }
    let next = &held[end..];
    let Some(head) = next.get(..4) else {
        return Verdict::Undecided;
    };
    let head: [u8; 4] = head.try_into().expect("4 bytes");
    let len = u64::from(match ambiguity.shorter.0 {
        Framing::U32Be => u32::from_be_bytes(head),
        _ => u32::from_le_bytes(head),
    });
    let plausible = match len {
        0 => true,
        len if len > max => false,
        len => match classify(&next[4..], len) {
            Signature::Image(_) => true,
            Signature::NotImage => false,
            Signature::NeedMore => return Verdict::Undecided,
        },
    };
    Verdict::Framing(if plausible {
        ambiguity.shorter.0
    } else {
        ambiguity.longer.0
    })
}

/// Applies rules 1 and 2 to the first bytes.
pub fn decide(first: &[u8], max: u64) -> Result<Verdict, DecodeError> {
    let Some(&lead) = first.first() else {
        return Ok(Verdict::Undecided);
    };
    if lead.is_ascii_digit() {
        let digits = first.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits >= 4 {
            return Ok(Verdict::Framing(Framing::AsciiLength));
        }
        if digits == first.len() {
            return Ok(Verdict::Undecided);
        }
        return Ok(match binary(first, max, false) {
            Binary::Qualifies(verdict) => verdict,
            Binary::NeedMore => Verdict::Undecided,
            Binary::No { .. } => Verdict::Framing(Framing::AsciiLength),
        });
    }
    if lead == ZMTP_SIGNATURE_FIRST {
        // A u32le length whose low byte is FF announces at least 255 bytes, so waiting for 10
        // never strands a complete frame.
        match first.get(9) {
            None => return Ok(Verdict::Undecided),
            Some(&ZMTP_SIGNATURE_LAST) => return Ok(Verdict::Framing(Framing::Imagezmq)),
            Some(_) => {}
        }
    }
    if first.len() < 4 {
        return Ok(Verdict::Undecided);
    }
    if first[..4] == HELLO_PREFIX {
        return Ok(Verdict::Framing(Framing::Native));
    }
    if first[..4] == [0; 4] {
        return Ok(Verdict::Framing(Framing::U32Le));
    }
    match binary(first, max, true) {
        Binary::Qualifies(verdict) => Ok(verdict),
        Binary::NeedMore => Ok(Verdict::Undecided),
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
    /// One reading qualifies ([`Verdict::Framing`]) or both do ([`Verdict::Ambiguous`]).
    Qualifies(Verdict),
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
    let mut qualifying = Vec::with_capacity(2);
    for (framing, len) in readings {
        if len == 0 || len > max {
            continue;
        }
        match classify(payload_start, len) {
            Signature::Image(_) => qualifying.push((framing, len)),
            // Both readings are judged before either wins.
            Signature::NeedMore => return Binary::NeedMore,
            Signature::NotImage => {}
        }
    }
    match qualifying[..] {
        [(framing, _)] => return Binary::Qualifies(Verdict::Framing(framing)),
        // A palindromic header reads the same both ways: no question which frame it is.
        [(framing, a), (_, b)] if a == b => return Binary::Qualifies(Verdict::Framing(framing)),
        [a, b] => {
            let (shorter, longer) = if a.1 < b.1 { (a, b) } else { (b, a) };
            return Binary::Qualifies(Verdict::Ambiguous(Ambiguity { shorter, longer }));
        }
        _ => {}
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

    /// A JPEG-looking payload of `len` bytes that does not end in `FF D9`, from a simple PRNG.
    fn noisy_jpeg(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        let mut p: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        p[..4].copy_from_slice(b"\xff\xd8\xff\xe0");
        p[len - 1] = 0;
        p
    }

    fn stream(framing: Framing, payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let len = p.len() as u32;
            out.extend(match framing {
                Framing::U32Be => len.to_be_bytes(),
                _ => len.to_le_bytes(),
            });
            out.extend(p);
        }
        out
    }

    /// Chunkings that cut inside the first frame, at its end and inside the next header.
    fn chunkings(stream: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![stream]];
        for cut in [1, 5, 4096, 4100, 4101, 4104, 4107, 20_000] {
            if cut < stream.len() {
                all.push(vec![&stream[..cut], &stream[cut..]]);
            }
        }
        all.push(stream.chunks(997).collect());
        all
    }

    #[test]
    fn both_readings_qualify_the_stream_decides() {
        // Header 00 10 00 00: u32le 4096, u32be 1,048,576, both within a 1 MiB max.
        let max = 1 << 20;
        let le_frames = vec![
            noisy_jpeg(4096, 1),
            noisy_jpeg(3000, 2),
            noisy_jpeg(5000, 3),
        ];
        let be_frames = vec![noisy_jpeg(1 << 20, 4), noisy_jpeg(70_000, 5)];
        for (framing, sent) in [(Framing::U32Le, &le_frames), (Framing::U32Be, &be_frames)] {
            let wire = stream(framing, sent);
            for chunks in chunkings(&wire) {
                let (events, err) = decode_chunks(Framing::Auto, max, &chunks);
                assert_eq!(err, None, "{framing}");
                assert_eq!(&frames(events), sent, "{framing}");
            }
        }
    }

    #[test]
    fn big_endian_length_with_a_zero_low_byte_is_not_read_little_endian() {
        // 0x9000 = 36,864 bytes big-endian reads as 9,437,184 little-endian, under the
        // default 32 MiB: the case a field u32be camera hit.
        let sent = vec![noisy_jpeg(0x9000, 6), noisy_jpeg(0x9100, 7)];
        let (events, err) =
            decode_chunks(Framing::Auto, 32 << 20, &[&stream(Framing::U32Be, &sent)]);
        assert_eq!(err, None);
        assert_eq!(frames(events), sent);
    }

    #[test]
    fn a_lone_ambiguous_frame_is_settled_by_the_end_of_the_stream() {
        let sent = vec![noisy_jpeg(0x9000, 8)];
        let wire = stream(Framing::U32Be, &sent);
        let mut dec = Decoder::new(Framing::Auto, 32 << 20);
        assert_eq!(dec.feed(&wire).unwrap().consumed, wire.len());
        assert_eq!(
            dec.framing(),
            None,
            "still undecided: nothing ends the frame"
        );
        assert!(dec.is_mid_frame());
        assert_eq!(dec.end(), Ok(Some(Event::Frame(sent[0].clone()))));
        assert_eq!(dec.framing(), Some(Framing::U32Be));

        // One byte short of the shorter frame: truncated, whichever reading was meant.
        let mut dec = Decoder::new(Framing::Auto, 32 << 20);
        dec.feed(&wire[..wire.len() - 1]).unwrap();
        assert!(matches!(dec.end(), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn a_jpeg_end_marker_settles_at_once() {
        let mut jpeg = noisy_jpeg(0x9000, 9);
        let n = jpeg.len();
        jpeg[n - 2..].copy_from_slice(b"\xff\xd9");
        let mut dec = Decoder::new(Framing::Auto, 32 << 20);
        let fed = dec.feed(&stream(Framing::U32Be, &[jpeg.clone()])).unwrap();
        assert_eq!(fed.event, Some(Event::Frame(jpeg)));
        assert_eq!(dec.framing(), Some(Framing::U32Be));
        assert_eq!(dec.end(), Ok(None));
    }

    #[test]
    fn a_zmtp_greeting_and_a_native_hello_are_handed_over() {
        let zmtp = b"\xff\0\0\0\0\0\0\0\x01\x7f";
        let native = crate::protocol::wire::HELLO_PREFIX;
        for (first, framing) in [
            (&zmtp[..], Framing::Imagezmq),
            (&native[..], Framing::Native),
        ] {
            let (events, err) = auto(first);
            assert_eq!(err, None);
            assert_eq!(
                events,
                vec![Event::HandOver {
                    framing,
                    held: first.to_vec()
                }]
            );
        }
        // A u32le length with an FF low byte, then a JPEG, is still u32le.
        let payload = [JPEG, &vec![0u8; 0x1ff - JPEG.len()]].concat();
        let stream = [&0x1ffu32.to_le_bytes()[..], &payload].concat();
        let (events, err) = auto(&stream);
        assert_eq!(err, None);
        assert_eq!(frames(events), vec![payload]);
    }

    #[test]
    fn zero_length_alone_is_a_clean_end() {
        let (events, err) = auto(&[0, 0, 0, 0]);
        assert_eq!(err, None);
        assert_eq!(events, vec![Event::End]);
    }
}
