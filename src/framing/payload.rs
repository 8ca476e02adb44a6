//! The buffer one frame's payload is received into.

/// A payload buffer sized once from the announced length, then filled in place.
///
/// Allocated zeroed at its final size, so receiving a frame costs one allocation and no
/// reallocation, whatever the chunking. Large zeroed allocations are mapped lazily by the
/// allocator, so memory is committed only as bytes actually arrive.
#[derive(Debug)]
pub struct Payload {
    buf: Vec<u8>,
    filled: usize,
}

impl Payload {
    /// A buffer for exactly `len` bytes. The caller has checked `len` against the limit.
    pub fn with_len(len: usize) -> Self {
        Payload {
            buf: vec![0; len],
            filled: 0,
        }
    }

    /// The announced size.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes received so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The part not yet received.
    pub fn window(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Copies as much of `input` as still fits; returns how many bytes were taken.
    pub fn fill_from(&mut self, input: &[u8]) -> usize {
        let n = input.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&input[..n]);
        self.filled += n;
        n
    }

    /// Marks `n` more bytes of the window as received.
    pub fn advance(&mut self, n: usize) {
        assert!(
            n <= self.buf.len() - self.filled,
            "advanced past the payload"
        );
        self.filled += n;
    }

    /// True when every announced byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.filled == self.buf.len()
    }

    /// The received bytes, once complete.
    pub fn into_vec(self) -> Vec<u8> {
        debug_assert!(self.is_complete());
        self.buf
    }
}
