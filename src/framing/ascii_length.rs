//! `ascii-length`: the classic device recipe, `sock.send(str(len(jpeg)).encode())`, often a
//! sleep, then `sock.send(jpeg)`.
//!
//! The length is 1 to [`MAX_DIGITS`] ASCII decimal digits with no delimiter; the payload starts
//! at the first byte that is not a digit. One separator right after the digits is tolerated and
//! skipped: `\r\n`, `\n` or a single space (a lone `\r` not followed by `\n` is payload). So a
//! payload must not start with a digit, `\n` or space, which holds for every image format. A
//! zero length is an empty frame and is skipped. The limit is checked when the digits end
//! (at the first non-digit, or when the stream ends), before anything is allocated for the
//! payload; more than [`MAX_DIGITS`] digits are refused at the 21st.

use super::{DecodeError, Event, Fed, Payload};

/// The most digits a length may have (`u64::MAX` has 20).
pub const MAX_DIGITS: usize = 20;

#[derive(Debug)]
enum Phase {
    /// Reading digits; `count` of them so far, `value` saturating.
    Digits {
        value: u64,
        count: usize,
    },
    /// Digits ended with `\r`; the next byte decides whether it was a separator.
    AfterCr {
        len: u64,
    },
    Body(Payload),
}

/// Decoder for one `ascii-length` stream.
#[derive(Debug)]
pub struct AsciiLength {
    max: u64,
    phase: Phase,
}

const START: Phase = Phase::Digits { value: 0, count: 0 };

impl AsciiLength {
    /// A decoder refusing lengths above `max`.
    pub fn new(max: u64) -> Self {
        AsciiLength { max, phase: START }
    }

    /// See [`super::Decoder::feed`].
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, DecodeError> {
        let mut consumed = 0;
        while consumed < input.len() {
            let byte = input[consumed];
            match &mut self.phase {
                Phase::Digits { value, count } => {
                    if byte.is_ascii_digit() {
                        *count += 1;
                        if *count > MAX_DIGITS {
                            return Err(DecodeError::TooManyDigits);
                        }
                        // Past max the number is still read to its end (nothing is allocated
                        // for it), so the error names the size the device announced.
                        *value = value
                            .saturating_mul(10)
                            .saturating_add(u64::from(byte - b'0'));
                        consumed += 1;
                        continue;
                    }
                    if *count == 0 {
                        return Err(DecodeError::NotALength { byte });
                    }
                    let len = *value;
                    if len > self.max {
                        return Err(DecodeError::Oversize {
                            announced: len,
                            max: self.max,
                        });
                    }
                    match byte {
                        b'\n' | b' ' => {
                            consumed += 1;
                            self.start_body(len);
                        }
                        b'\r' => {
                            consumed += 1;
                            self.phase = Phase::AfterCr { len };
                        }
                        _ => self.start_body(len),
                    }
                }
                Phase::AfterCr { len } => {
                    let len = *len;
                    if byte == b'\n' {
                        consumed += 1;
                        self.start_body(len);
                    } else if len == 0 {
                        // An empty frame has no payload for the `\r` to start: it is where the
                        // next length should be. (Skipping it would silently drop a byte.)
                        return Err(DecodeError::NotALength { byte: b'\r' });
                    } else {
                        // The `\r` was the payload's first byte, not a separator.
                        self.start_body(len);
                        if let Some(p) = self.payload_mut() {
                            p.fill_from(b"\r");
                        }
                        if let Some(event) = self.complete_if_done() {
                            return Ok(Fed {
                                consumed,
                                event: Some(event),
                            });
                        }
                    }
                }
                Phase::Body(payload) => {
                    consumed += payload.fill_from(&input[consumed..]);
                }
            }
            if let Some(event) = self.complete_if_done() {
                return Ok(Fed {
                    consumed,
                    event: Some(event),
                });
            }
        }
        Ok(Fed {
            consumed,
            event: None,
        })
    }

    fn start_body(&mut self, len: u64) {
        // A zero length is an empty frame: skip it and expect the next length.
        self.phase = if len == 0 {
            START
        } else {
            Phase::Body(Payload::with_len(len as usize))
        };
    }

    fn complete_if_done(&mut self) -> Option<Event> {
        match &self.phase {
            Phase::Body(p) if p.is_complete() => match std::mem::replace(&mut self.phase, START) {
                Phase::Body(p) => Some(Event::Frame(p.into_vec())),
                _ => unreachable!(),
            },
            _ => None,
        }
    }

    /// The payload being received, once the length is known.
    pub fn payload(&self) -> Option<&Payload> {
        match &self.phase {
            Phase::Body(p) => Some(p),
            _ => None,
        }
    }

    /// Mutable access to the payload being received.
    pub fn payload_mut(&mut self) -> Option<&mut Payload> {
        match &mut self.phase {
            Phase::Body(p) => Some(p),
            _ => None,
        }
    }

    /// See [`super::Decoder::payload_filled`].
    pub fn payload_filled(&mut self, n: usize) -> Option<Event> {
        self.payload_mut()
            .expect("payload_filled outside a payload")
            .advance(n);
        self.complete_if_done()
    }

    /// See [`super::Decoder::finish`].
    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.phase {
            Phase::Digits { count: 0, .. } => Ok(()),
            // The number ended with the stream; it was too large whatever was to follow.
            Phase::Digits { value, .. } if *value > self.max => Err(DecodeError::Oversize {
                announced: *value,
                max: self.max,
            }),
            Phase::Digits { .. } | Phase::AfterCr { .. } => Err(DecodeError::Truncated {
                announced: 0,
                received: 0,
            }),
            Phase::Body(p) => Err(DecodeError::Truncated {
                announced: p.len() as u64,
                received: p.filled() as u64,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decode_chunks, frames};
    use super::super::{DecodeError, Framing};

    fn decode(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<DecodeError>) {
        let (events, err) = decode_chunks(Framing::AsciiLength, 1 << 20, chunks);
        (frames(events), err)
    }

    #[test]
    fn length_and_payload_in_one_segment() {
        let (frames, err) = decode(&[b"4\xff\xd8\xff\xe0"]);
        assert_eq!(err, None);
        assert_eq!(frames, vec![b"\xff\xd8\xff\xe0".to_vec()]);
    }

    #[test]
    fn separators_are_skipped() {
        for sep in [&b"\r\n"[..], b"\n", b" "] {
            let stream = [&b"2"[..], sep, b"\x89P"].concat();
            let (frames, err) = decode(&[&stream]);
            assert_eq!(err, None, "separator {sep:?}");
            assert_eq!(frames, vec![b"\x89P".to_vec()], "separator {sep:?}");
        }
    }

    #[test]
    fn lone_cr_is_payload() {
        let (frames, err) = decode(&[b"3\r", b"ab"]);
        assert_eq!(err, None);
        assert_eq!(frames, vec![b"\rab".to_vec()]);
    }

    #[test]
    fn lone_cr_after_zero_length_is_not_a_length() {
        for chunks in [&[&b"0\r5\nhello"[..]][..], &[b"0\r", b"5\nhello"]] {
            let (frames, err) = decode(chunks);
            assert_eq!(frames, Vec::<Vec<u8>>::new());
            assert_eq!(err, Some(DecodeError::NotALength { byte: b'\r' }));
        }
    }

    #[test]
    fn back_to_back_frames_and_zero_length() {
        let (frames, err) = decode(&[b"2\xff\xd80\n3BMx"]);
        assert_eq!(err, None);
        assert_eq!(frames, vec![b"\xff\xd8".to_vec(), b"BMx".to_vec()]);
    }

    #[test]
    fn too_many_digits() {
        let (_, err) = decode_chunks(Framing::AsciiLength, u64::MAX, &[&[b'0'; 21]]);
        assert_eq!(err, Some(DecodeError::TooManyDigits));
    }

    #[test]
    fn oversize_refused_when_the_digits_end_naming_the_whole_number() {
        let oversize = Some(DecodeError::Oversize {
            announced: 99_999_999,
            max: 1 << 20,
        });
        // At the first byte after the digits, whatever the chunking; nothing is allocated.
        assert_eq!(decode(&[b"99999999\xff\xd8"]).1, oversize);
        assert_eq!(decode(&[b"9999", b"9999", b"\r\n"]).1, oversize);
        // Or when the stream ends after them.
        assert_eq!(decode(&[b"99999999"]).1, oversize);
    }

    #[test]
    fn garbage_is_not_a_length() {
        let (_, err) = decode(&[b"GET / HTTP/1.1"]);
        assert_eq!(err, Some(DecodeError::NotALength { byte: b'G' }));
    }

    #[test]
    fn eof_mid_payload_is_truncated() {
        let (_, err) = decode(&[b"10abc"]);
        assert_eq!(
            err,
            Some(DecodeError::Truncated {
                announced: 10,
                received: 3
            })
        );
    }
}
