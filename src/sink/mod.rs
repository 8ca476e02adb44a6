//! Sinks: where complete frames go.
//!
//! Each sink runs on worker threads of its own ([`worker`]); the event loop only hands frames to
//! bounded queues and reads completions back. A sink's `commit` may block (disk, child
//! processes, upstream hosts): it never runs on the loop thread.

pub mod discard;
pub mod exec;
pub mod file;
pub mod forward;
pub mod image;
pub mod pool;
pub mod queue;
pub mod retention;
pub mod routing;
pub mod spool;
pub mod template;

use std::fmt;
use std::path::PathBuf;

use crate::frame::Frame;

/// What a sink reports once it has committed a frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Where the frame now lives, for sinks that store it in a file.
    pub path: Option<PathBuf>,
}

/// Why a sink could not commit a frame. The message is for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    /// What failed, where, and the OS error (errno) when there is one.
    pub message: String,
}

impl SinkError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SinkError {}

/// A destination for frames. Implementations are shared by all of the sink's worker threads.
pub trait Sink: Send + Sync {
    /// Stores, forwards or otherwise handles one frame; returns once the frame is committed
    /// (for the file sink: renamed into place and fsynced).
    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError>;

    /// Handles a frame that the sink this one follows (`after`) committed as `before`.
    /// Sinks that do not care where the frame went handle it as any other.
    fn commit_after(&self, frame: &Frame, before: &Committed) -> Result<Committed, SinkError> {
        let _ = before;
        self.commit(frame)
    }

    /// Called on the event loop as `frame` is queued for this sink, in arrival order; must be
    /// cheap. The forward sink notes the frame so that a device's frames leave in order
    /// whichever worker commits them first.
    fn accepted(&self, frame: &Frame) {
        let _ = frame;
    }

    /// Called on the event loop when `frame`, [`Sink::accepted`] earlier, was dropped from
    /// the queue (`when_full = "drop_oldest"`): it will never be committed.
    fn withdrawn(&self, frame: &Frame) {
        let _ = frame;
    }

    /// Gives up at once: the daemon's shutdown timed out. Work in progress is stopped and
    /// later commits fail fast, so the workers can be joined without waiting.
    fn abort(&self) {}

    /// Figures particular to the sink's type, for `framegate status` (name, value).
    fn details(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
