//! `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), decoded byte by byte.
//!
//! Sans-IO: the caller passes whatever arrived and a growing output buffer; chunk sizes are
//! checked against the body limit *before* the data is taken, extensions and trailers are
//! skipped but bounded, so no input makes it allocate more than the limit.

/// Most hex digits a chunk size may have (16 = 64 bits; more can only overflow).
const MAX_SIZE_DIGITS: usize = 16;
/// Most bytes of chunk extensions (`;name=value`) on one size line, and of all trailer lines.
pub const MAX_SKIPPED: usize = 8 * 1024;

/// Why a chunked body is malformed or too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A byte that has no place in the chunked syntax here.
    Syntax(&'static str),
    /// The chunks add up to more than the body limit.
    TooLarge {
        /// The limit.
        max: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size; `digits` seen so far.
    Size { size: u64, digits: usize },
    /// After the size: optional whitespace and `;extensions` up to the line end.
    Extension { size: u64, skipped: usize },
    /// Expecting the LF of the size line.
    SizeLf { size: u64 },
    /// Chunk data still to come.
    Data { remaining: u64 },
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// Trailer lines after the last (zero) chunk; `line` bytes in the current one.
    Trailer { line: usize, skipped: usize },
    /// The last CRLF was seen: the body is complete.
    Done,
}

/// One chunked body's decoder.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    max: u64,
    total: u64,
}

impl Chunked {
    /// A decoder that refuses bodies over `max` bytes.
    pub fn new(max: u64) -> Self {
        Chunked {
            state: State::Size { size: 0, digits: 0 },
            max,
            total: 0,
        }
    }

    /// True once the terminating chunk and trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes a prefix of `input`, appending data to `out`; returns how many bytes it used.
    /// Stops right after the body's last byte (the rest belongs to the next request).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::Data { remaining } => {
                    let take = remaining.min((input.len() - i) as u64) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                    continue;
                }
                State::Size { size, digits } => match hex_value(byte) {
                    Some(v) if digits < MAX_SIZE_DIGITS => State::Size {
                        size: size << 4 | u64::from(v),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(ChunkError::Syntax("chunk size has too many digits")),
                    None if digits == 0 => {
                        return Err(ChunkError::Syntax("chunk size is not a hex number"))
                    }
                    None => self.after_size(size, byte)?,
                },
                State::Extension { size, skipped } => match byte {
                    b'\r' => State::SizeLf { size },
                    b'\n' => self.start_data(size)?,
                    _ if skipped >= MAX_SKIPPED => {
                        return Err(ChunkError::Syntax("chunk extensions are too long"))
                    }
                    _ => State::Extension {
                        size,
                        skipped: skipped + 1,
                    },
                },
                State::SizeLf { size } => match byte {
                    b'\n' => self.start_data(size)?,
                    _ => return Err(ChunkError::Syntax("chunk size line does not end in CRLF")),
                },
                State::DataCr => match byte {
                    b'\r' => State::DataLf,
                    // Tolerated: a bare LF after the data.
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError::Syntax("chunk data longer than its size")),
                },
                State::DataLf => match byte {
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError::Syntax("chunk data not followed by CRLF")),
                },
                State::Trailer { line, skipped } => match byte {
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailer { line: 0, skipped },
                    b'\r' => State::Trailer { line, skipped },
                    _ if skipped >= MAX_SKIPPED => {
                        return Err(ChunkError::Syntax("chunked trailers are too long"))
                    }
                    _ => State::Trailer {
                        line: line + 1,
                        skipped: skipped + 1,
                    },
                },
            };
            i += 1;
            if self.state == State::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    fn after_size(&mut self, size: u64, byte: u8) -> Result<State, ChunkError> {
        match byte {
            b';' | b' ' | b'\t' => Ok(State::Extension { size, skipped: 0 }),
            b'\r' => Ok(State::SizeLf { size }),
            b'\n' => self.start_data(size),
            _ => Err(ChunkError::Syntax("chunk size is not a hex number")),
        }
    }

    /// The size line ended: check the limit before any data is taken.
    fn start_data(&mut self, size: u64) -> Result<State, ChunkError> {
        if size == 0 {
            return Ok(State::Trailer {
                line: 0,
                skipped: 0,
            });
        }
        if self.total.saturating_add(size) > self.max {
            return Err(ChunkError::TooLarge { max: self.max });
        }
        self.total += size;
        Ok(State::Data { remaining: size })
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}
