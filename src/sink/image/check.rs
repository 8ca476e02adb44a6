//! `validate`: is the payload a whole, readable image?

use image::{DynamicImage, ImageFormat};

use super::{ImageStageConfig, Validate};
use crate::frame::Frame;

/// PNG's last chunk: length 0, type `IEND`, its CRC.
const PNG_END: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Checks `frame` as `config.validate` asks. With `decode`, returns the decoded image so a
/// conversion need not decode it again.
pub fn check(frame: &Frame, config: &ImageStageConfig) -> Result<Option<DynamicImage>, String> {
    if config.validate == Validate::Off {
        return Ok(None);
    }
    let Some(format) = frame.format else {
        return Err(format!(
            "{} bytes that are not an image (no known image signature)",
            frame.size()
        ));
    };
    let (width, height) = frame
        .dimensions()
        .ok_or_else(|| format!("{} header does not parse", frame.format_name()))?;
    if width == 0 || height == 0 {
        return Err(format!(
            "{} header says {width}x{height}",
            frame.format_name()
        ));
    }
    complete(format, &frame.payload)?;
    if config.validate == Validate::Header {
        return Ok(None);
    }
    image::load_from_memory_with_format(&frame.payload, format)
        .map(Some)
        .map_err(|e| format!("{} does not decode: {e}", frame.format_name()))
}

/// Does the payload end the way its format ends? Decoders are lenient about truncation (a
/// JPEG cut short decodes with a grey bottom), so this catches the most common damage, an
/// upload cut off, even with `decode`.
fn complete(format: ImageFormat, payload: &[u8]) -> Result<(), String> {
    // Some cameras pad their files; padding after the end marker is harmless.
    let end = payload
        .iter()
        .rposition(|&b| b != 0 && b != 0xFF)
        .map_or(0, |last| last + 1);
    match format {
        ImageFormat::Jpeg => {
            let trimmed = &payload[..end];
            if !trimmed.ends_with(&[0xFF, 0xD9]) {
                return Err(format!(
                    "JPEG is truncated: {} bytes with no end-of-image marker (FF D9) at the end",
                    payload.len()
                ));
            }
        }
        ImageFormat::Png => {
            let tail = payload
                .windows(PNG_END.len())
                .rev()
                .take(64)
                .any(|w| w == PNG_END);
            if !tail {
                return Err(format!(
                    "PNG is truncated: {} bytes with no IEND chunk at the end",
                    payload.len()
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::frame_with;

    fn config(validate: Validate) -> ImageStageConfig {
        ImageStageConfig {
            validate,
            quarantine: None,
            convert: None,
            quality: 85,
            resize: None,
        }
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&image)
            .unwrap();
        out
    }

    #[test]
    fn whole_images_pass_every_level() {
        let frame = frame_with(jpeg(64, 48));
        for level in [Validate::Off, Validate::Header, Validate::Decode] {
            assert!(check(&frame, &config(level)).is_ok(), "{level:?}");
        }
        let decoded = check(&frame, &config(Validate::Decode)).unwrap().unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
    }

    #[test]
    fn truncated_jpeg_fails_header_and_decode() {
        let mut payload = jpeg(64, 48);
        payload.truncate(payload.len() * 2 / 3);
        let frame = frame_with(payload);
        for level in [Validate::Header, Validate::Decode] {
            let why = check(&frame, &config(level)).unwrap_err();
            assert!(why.contains("truncated"), "{level:?}: {why}");
        }
        assert!(check(&frame, &config(Validate::Off)).is_ok());
    }

    #[test]
    fn padding_after_the_end_marker_is_accepted() {
        let mut payload = jpeg(16, 16);
        payload.extend_from_slice(&[0, 0, 0, 0]);
        assert!(check(&frame_with(payload), &config(Validate::Header)).is_ok());
    }

    #[test]
    fn non_images_and_broken_headers_are_rejected() {
        let why = check(
            &frame_with(b"hello world".to_vec()),
            &config(Validate::Header),
        );
        assert!(why.unwrap_err().contains("not an image"));
        let mut broken = jpeg(16, 16);
        broken.truncate(20);
        broken.extend_from_slice(&[0xFF, 0xD9]);
        assert!(check(&frame_with(broken), &config(Validate::Header)).is_err());
    }
}
