//! The image stage: per-sink validation, conversion and resizing in front of the sink.
//!
//! [`Staged`] wraps a sink. On the sink's worker threads (never the event loop) it checks
//! each frame ([`check`]), turns it into the configured format and size ([`convert`]), and
//! hands the result to the sink it wraps. A frame that fails the check is not given to the
//! sink: the commit fails (a native device gets a NACK with the reason) and, with
//! `quarantine`, the payload is kept for a look.

mod check;
mod convert;
mod quarantine;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{Committed, Sink, SinkError};
use crate::frame::Frame;

pub use self::check::check;
pub use self::convert::convert;

/// How thoroughly `validate` checks an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validate {
    /// No check: any payload passes (the default).
    #[default]
    Off,
    /// The header must parse (format, width, height) and the file must end as its format
    /// ends (JPEG's EOI marker, PNG's IEND chunk): catches truncated uploads cheaply.
    Header,
    /// The whole image must decode.
    Decode,
}

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convert {
    /// JPEG at `quality`.
    Jpeg,
    /// PNG (lossless).
    Png,
    /// WebP (lossless: the `image` crate encodes WebP losslessly only; `quality` is ignored).
    Webp,
}

/// One sink's image stage settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStageConfig {
    /// How to check each frame.
    pub validate: Validate,
    /// Where rejected frames are kept; not kept when `None`.
    pub quarantine: Option<PathBuf>,
    /// Re-encode into this format.
    pub convert: Option<Convert>,
    /// JPEG quality, 1–100.
    pub quality: u8,
    /// Shrink (never enlarge) to fit within this box, keeping the aspect ratio.
    pub resize: Option<(u32, u32)>,
}

/// Default JPEG `quality`.
pub const DEFAULT_QUALITY: u8 = 85;

impl ImageStageConfig {
    /// True when the stage decodes every frame (so it is worth a worker per core).
    pub fn decodes(&self) -> bool {
        self.validate == Validate::Decode || self.convert.is_some() || self.resize.is_some()
    }
}

/// A sink behind an image stage.
pub struct Staged {
    name: String,
    config: ImageStageConfig,
    inner: Arc<dyn Sink>,
}

impl Staged {
    /// Puts `config`'s stage in front of `inner`, the sink named `name`.
    pub fn new(name: &str, config: ImageStageConfig, inner: Arc<dyn Sink>) -> Staged {
        Staged {
            name: name.to_string(),
            config,
            inner,
        }
    }

    /// The frame as the wrapped sink gets it, or why it gets none.
    fn prepare<'f>(&self, frame: &'f Frame) -> Result<Cow<'f, Frame>, SinkError> {
        let image = match check(frame, &self.config) {
            Ok(image) => image,
            Err(why) => {
                let kept = self
                    .config
                    .quarantine
                    .as_deref()
                    .map(|dir| quarantine::keep(dir, frame, &why));
                let kept = match kept {
                    Some(Ok(path)) => format!("; kept as {}", path.display()),
                    Some(Err(e)) => format!("; could not quarantine it: {e}"),
                    None => String::new(),
                };
                return Err(SinkError::new(format!(
                    "sink {:?} rejected an invalid image: {why}{kept}",
                    self.name
                )));
            }
        };
        if self.config.convert.is_none() && self.config.resize.is_none() {
            return Ok(Cow::Borrowed(frame));
        }
        let image = match image {
            Some(image) => image,
            None => image::load_from_memory(&frame.payload).map_err(|e| {
                SinkError::new(format!(
                    "sink {:?} cannot decode the image to convert it: {e}",
                    self.name
                ))
            })?,
        };
        let (payload, format) = convert(image, frame, &self.config).map_err(|e| {
            SinkError::new(format!(
                "sink {:?} cannot convert the image: {e}",
                self.name
            ))
        })?;
        Ok(Cow::Owned(Frame {
            payload,
            format: Some(format),
            ..frame.clone_without_payload()
        }))
    }
}

impl Sink for Staged {
    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError> {
        self.inner.commit(&*self.prepare(frame)?)
    }

    fn commit_after(&self, frame: &Frame, before: &Committed) -> Result<Committed, SinkError> {
        self.inner.commit_after(&*self.prepare(frame)?, before)
    }

    fn accepted(&self, frame: &Frame) {
        self.inner.accepted(frame);
    }

    fn withdrawn(&self, frame: &Frame) {
        self.inner.withdrawn(frame);
    }

    fn abort(&self) {
        self.inner.abort();
    }

    fn details(&self) -> Vec<(&'static str, u64)> {
        self.inner.details()
    }
}
