//! Validation of a sink's image stage: `validate`, `quarantine`, `convert`, `quality`, `resize`.

use super::file::SinkSection;
use super::{ConfigError, Validator};
use crate::sink::image::{ImageStageConfig, Validate, DEFAULT_QUALITY};

impl Validator<'_> {
    /// The image stage, or `None` when the sink has none of its keys.
    pub(super) fn image_stage(
        &self,
        raw: &SinkSection,
    ) -> Result<Option<ImageStageConfig>, ConfigError> {
        let validate = raw.validate.as_ref().map(|v| *v.get_ref());
        if let Some(q) = &raw.quarantine {
            if validate.unwrap_or_default() == Validate::Off {
                return Err(self.err(
                    q,
                    "`quarantine` keeps frames that fail `validate`; set validate = \"header\" or \"decode\"",
                ));
            }
        }
        let quality = match &raw.quality {
            Some(q) if !(1..=100).contains(q.get_ref()) => {
                return Err(self.err(q, "quality must be from 1 to 100"))
            }
            Some(q) if raw.convert.is_none() && raw.resize.is_none() => {
                return Err(self.err(
                    q,
                    "`quality` applies to images the sink re-encodes; add convert = \"jpeg\" (or resize)",
                ))
            }
            Some(q) => *q.get_ref(),
            None => DEFAULT_QUALITY,
        };
        let resize = match &raw.resize {
            None => None,
            Some(r) => {
                let section = r.get_ref();
                let side = |v: &Option<toml::Spanned<u32>>| match v {
                    Some(n) if *n.get_ref() == 0 => Err(self.err(n, "must be at least 1 pixel")),
                    Some(n) => Ok(*n.get_ref()),
                    None => Ok(u32::MAX),
                };
                let (w, h) = (side(&section.max_width)?, side(&section.max_height)?);
                if w == u32::MAX && h == u32::MAX {
                    return Err(self.err(
                        r,
                        "resize needs max_width, max_height or both, e.g. resize = { max_width = 320 }",
                    ));
                }
                Some((w, h))
            }
        };
        let any = validate.is_some() || raw.convert.is_some() || resize.is_some();
        Ok(any.then(|| ImageStageConfig {
            validate: validate.unwrap_or_default(),
            quarantine: raw.quarantine.as_ref().map(|q| q.get_ref().clone()),
            convert: raw.convert.as_ref().map(|c| *c.get_ref()),
            quality,
            resize,
        }))
    }
}
