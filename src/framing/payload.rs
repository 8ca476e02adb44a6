//! The buffer one frame's payload is received into.

use std::mem::MaybeUninit;

/// A payload buffer sized once from the announced length, then filled in place.
///
/// The capacity is reserved at the final size, so receiving a frame costs one allocation and
/// no reallocation, whatever the chunking. The memory is not zeroed: bytes are written only
/// as they arrive (copied from the decoder's input, or read straight from the socket into
/// [`Payload::spare`]), so the allocator commits pages only as the frame actually arrives and
/// no time is spent clearing memory that is overwritten anyway. [`Payload::window`] offers
/// the unfilled rest as initialised bytes for safe callers; it zeroes that rest once.
#[derive(Debug)]
pub struct Payload {
    /// Initialised bytes: `filled` received ones, then (only after [`Payload::window`]) zeroes.
    buf: Vec<u8>,
    announced: usize,
    filled: usize,
}

impl Payload {
    /// A buffer for exactly `len` bytes. The caller has checked `len` against the limit.
    pub fn with_len(len: usize) -> Self {
        Payload {
            buf: Vec::with_capacity(len),
            announced: len,
            filled: 0,
        }
    }

    /// The announced size.
    pub fn len(&self) -> usize {
        self.announced
    }

    /// True for a zero-length payload.
    pub fn is_empty(&self) -> bool {
        self.announced == 0
    }

    /// Bytes received so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Bytes still missing.
    pub fn remaining(&self) -> usize {
        self.announced - self.filled
    }

    /// The part not yet received, as initialised bytes (zeroed on first use); report what
    /// was written with [`Payload::advance`].
    pub fn window(&mut self) -> &mut [u8] {
        if self.buf.len() < self.announced {
            self.buf.resize(self.announced, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// The part not yet received, as uninitialised memory for a read straight from a socket;
    /// `None` once [`Payload::window`] has initialised it (use that then). Report what was
    /// written with [`Payload::assume_written`], then [`Payload::advance`].
    pub fn spare(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        if self.buf.len() != self.filled {
            return None;
        }
        let missing = self.announced - self.filled;
        Some(&mut self.buf.spare_capacity_mut()[..missing])
    }

    /// Records that the first `n` bytes of [`Payload::spare`] are initialised (not yet that
    /// they count as received: call [`Payload::advance`] for that).
    ///
    /// # Safety
    /// The first `n` bytes of the slice the last [`Payload::spare`] returned must have been
    /// written since.
    ///
    /// # Panics
    /// If there is no spare part or `n` is larger than it.
    pub unsafe fn assume_written(&mut self, n: usize) {
        assert!(
            self.buf.len() == self.filled && n <= self.announced - self.filled,
            "assumed written past the spare part"
        );
        // SAFETY: n bytes past len lie within the capacity (announced <= capacity), and the
        // caller promises they were written.
        unsafe { self.buf.set_len(self.filled + n) };
    }

    /// Copies as much of `input` as still fits; returns how many bytes were taken.
    pub fn fill_from(&mut self, input: &[u8]) -> usize {
        let n = input.len().min(self.announced - self.filled);
        let (input, filled) = (&input[..n], self.filled);
        // Overwrite initialised-but-unreceived bytes first (only after `window`), then append.
        let overwrite = n.min(self.buf.len() - filled);
        self.buf[filled..filled + overwrite].copy_from_slice(&input[..overwrite]);
        self.buf.extend_from_slice(&input[overwrite..]);
        self.filled += n;
        n
    }

    /// Marks `n` more bytes of the window (or of the spare part, after
    /// [`Payload::assume_written`]) as received.
    pub fn advance(&mut self, n: usize) {
        assert!(
            n <= self.buf.len() - self.filled,
            "advanced past the payload"
        );
        self.filled += n;
    }

    /// True when every announced byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.filled == self.announced
    }

    /// The received bytes, once complete.
    pub fn into_vec(self) -> Vec<u8> {
        debug_assert!(self.is_complete());
        debug_assert_eq!(self.buf.len(), self.announced);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_window_and_spare_paths_agree() {
        let data: Vec<u8> = (0..100u8).collect();

        let mut copied = Payload::with_len(100);
        assert_eq!(copied.fill_from(&data[..30]), 30);
        assert_eq!(copied.fill_from(&data[30..]), 70);
        assert!(copied.is_complete());
        assert_eq!(copied.into_vec(), data);

        let mut windowed = Payload::with_len(100);
        windowed.fill_from(&data[..10]);
        windowed.window()[..50].copy_from_slice(&data[10..60]);
        windowed.advance(50);
        assert!(windowed.spare().is_none(), "window initialised the rest");
        windowed.fill_from(&data[60..]);
        assert_eq!(windowed.into_vec(), data);

        let mut spared = Payload::with_len(100);
        spared.fill_from(&data[..10]);
        let spare = spared.spare().unwrap();
        assert_eq!(spare.len(), 90);
        for (slot, byte) in spare.iter_mut().zip(&data[10..40]) {
            slot.write(*byte);
        }
        // SAFETY: the loop above wrote the first 30 bytes of the spare part.
        unsafe { spared.assume_written(30) };
        spared.advance(30);
        assert_eq!(spared.remaining(), 60);
        spared.fill_from(&data[40..]);
        assert!(spared.is_complete());
        assert_eq!(spared.into_vec(), data);
    }

    #[test]
    fn fill_from_takes_only_what_fits() {
        let mut p = Payload::with_len(3);
        assert_eq!(p.fill_from(b"abcdef"), 3);
        assert_eq!(p.fill_from(b"x"), 0);
        assert_eq!(p.into_vec(), b"abc");
    }

    #[test]
    #[should_panic(expected = "assumed written past the spare part")]
    fn assume_written_past_the_end_panics() {
        let mut p = Payload::with_len(3);
        // SAFETY: panics before touching the length.
        unsafe { p.assume_written(4) };
    }
}
