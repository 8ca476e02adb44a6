//! `u32le` and `u32be`: a 4-byte length, then the payload.

use super::{DecodeError, Event, Fed, Payload};

/// How the 4 length bytes are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// `struct.pack('<L', n)`; a zero length ends the stream (picamera).
    Little,
    /// `struct.pack('>L', n)`; a zero length is an empty frame and is skipped.
    Big,
}

#[derive(Debug)]
enum Phase {
    Header { bytes: [u8; 4], have: usize },
    Body(Payload),
    Ended,
}

/// Decoder for one 4-byte-length-prefixed stream.
#[derive(Debug)]
pub struct LengthPrefixed {
    order: ByteOrder,
    max: u64,
    phase: Phase,
}

impl LengthPrefixed {
    pub fn new(order: ByteOrder, max: u64) -> Self {
        LengthPrefixed {
            order,
            max,
            phase: Phase::Header {
                bytes: [0; 4],
                have: 0,
            },
        }
    }

    pub fn order(&self) -> ByteOrder {
        self.order
    }

    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, DecodeError> {
        let mut consumed = 0;
        loop {
            match &mut self.phase {
                Phase::Ended => {
                    return if input.len() > consumed {
                        Err(DecodeError::DataAfterEnd)
                    } else {
                        Ok(Fed {
                            consumed,
                            event: None,
                        })
                    };
                }
                Phase::Header { bytes, have } => {
                    let take = (4 - *have).min(input.len() - consumed);
                    bytes[*have..*have + take].copy_from_slice(&input[consumed..consumed + take]);
                    *have += take;
                    consumed += take;
                    if *have < 4 {
                        return Ok(Fed {
                            consumed,
                            event: None,
                        });
                    }
                    let len = match self.order {
                        ByteOrder::Little => u32::from_le_bytes(*bytes),
                        ByteOrder::Big => u32::from_be_bytes(*bytes),
                    } as u64;
                    if len == 0 {
                        if self.order == ByteOrder::Little {
                            self.phase = Phase::Ended;
                            return Ok(Fed {
                                consumed,
                                event: Some(Event::End),
                            });
                        }
                        self.phase = Phase::Header {
                            bytes: [0; 4],
                            have: 0,
                        };
                        continue;
                    }
                    if len > self.max {
                        return Err(DecodeError::Oversize {
                            announced: len,
                            max: self.max,
                        });
                    }
                    self.phase = Phase::Body(Payload::with_len(len as usize));
                }
                Phase::Body(payload) => {
                    consumed += payload.fill_from(&input[consumed..]);
                    if !payload.is_complete() {
                        return Ok(Fed {
                            consumed,
                            event: None,
                        });
                    }
                    return Ok(Fed {
                        consumed,
                        event: Some(self.take_frame()),
                    });
                }
            }
        }
    }

    fn take_frame(&mut self) -> Event {
        let phase = std::mem::replace(
            &mut self.phase,
            Phase::Header {
                bytes: [0; 4],
                have: 0,
            },
        );
        match phase {
            Phase::Body(payload) => Event::Frame(payload.into_vec()),
            _ => unreachable!("take_frame outside a body"),
        }
    }

    pub fn payload(&self) -> Option<&Payload> {
        match &self.phase {
            Phase::Body(p) => Some(p),
            _ => None,
        }
    }

    pub fn payload_mut(&mut self) -> Option<&mut Payload> {
        match &mut self.phase {
            Phase::Body(p) => Some(p),
            _ => None,
        }
    }

    pub fn payload_filled(&mut self, n: usize) -> Option<Event> {
        let payload = self
            .payload_mut()
            .expect("payload_filled outside a payload");
        payload.advance(n);
        payload.is_complete().then(|| self.take_frame())
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match &self.phase {
            Phase::Ended | Phase::Header { have: 0, .. } => Ok(()),
            Phase::Header { .. } => Err(DecodeError::Truncated {
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
    use super::super::{DecodeError, Event, Framing};

    #[test]
    fn little_endian_frames_then_zero_end() {
        let stream = [
            &4u32.to_le_bytes()[..],
            b"abcd",
            &2u32.to_le_bytes(),
            b"xy",
            &[0; 4],
        ]
        .concat();
        let (events, err) = decode_chunks(Framing::U32Le, 100, &[&stream]);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                Event::Frame(b"abcd".to_vec()),
                Event::Frame(b"xy".to_vec()),
                Event::End
            ]
        );
    }

    #[test]
    fn big_endian_skips_zero_length() {
        let stream = [&0u32.to_be_bytes()[..], &3u32.to_be_bytes(), b"abc"].concat();
        let (events, err) = decode_chunks(Framing::U32Be, 100, &[&stream]);
        assert_eq!(err, None);
        assert_eq!(frames(events), vec![b"abc".to_vec()]);
    }

    #[test]
    fn oversize_is_refused_before_allocating() {
        let stream = u32::MAX.to_le_bytes();
        let (_, err) = decode_chunks(Framing::U32Le, 1000, &[&stream]);
        assert_eq!(
            err,
            Some(DecodeError::Oversize {
                announced: u32::MAX as u64,
                max: 1000
            })
        );
    }

    #[test]
    fn bytes_after_end_marker_are_an_error() {
        let (_, err) = decode_chunks(Framing::U32Le, 10, &[&[0, 0, 0, 0, 1]]);
        assert_eq!(err, Some(DecodeError::DataAfterEnd));
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let stream = [&10u32.to_le_bytes()[..], b"abc"].concat();
        let (_, err) = decode_chunks(Framing::U32Le, 100, &[&stream]);
        assert_eq!(
            err,
            Some(DecodeError::Truncated {
                announced: 10,
                received: 3
            })
        );
        let (_, err) = decode_chunks(Framing::U32Be, 100, &[&[0, 0]]);
        assert!(matches!(err, Some(DecodeError::Truncated { .. })));
    }
}
