//! The discard sink: counts frames and drops them (benchmarks and dry runs).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Committed, Sink, SinkError};
use crate::frame::Frame;

/// Commits every frame at once by forgetting it; counts what it dropped.
#[derive(Debug, Default)]
pub struct DiscardSink {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl DiscardSink {
    /// A fresh discard sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames and bytes discarded so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

impl Sink for DiscardSink {
    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError> {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(frame.size() as u64, Ordering::Relaxed);
        Ok(Committed::default())
    }
}
