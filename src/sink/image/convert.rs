//! `convert` and `resize`: re-encoding a decoded frame.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat};

use super::{Convert, ImageStageConfig};
use crate::frame::Frame;

/// Shrinks `image` to fit `config.resize` (never enlarging it) and encodes it as
/// `config.convert`, else in the frame's own format. Returns the bytes and their format.
pub fn convert(
    image: DynamicImage,
    frame: &Frame,
    config: &ImageStageConfig,
) -> Result<(Vec<u8>, ImageFormat), image::ImageError> {
    let image = match config.resize {
        Some((max_width, max_height))
            if image.width() > max_width || image.height() > max_height =>
        {
            // `thumbnail` keeps the aspect ratio and averages areas: fast and clean for the
            // large reductions (camera frame → preview) this is for.
            image.thumbnail(max_width, max_height)
        }
        _ => image,
    };
    let format = match config.convert {
        Some(Convert::Jpeg) => ImageFormat::Jpeg,
        Some(Convert::Png) => ImageFormat::Png,
        Some(Convert::Webp) => ImageFormat::WebP,
        None => frame.format.unwrap_or(ImageFormat::Png),
    };
    let mut out = Vec::with_capacity(frame.size() / 2);
    match format {
        ImageFormat::Jpeg => {
            // JPEG has no alpha channel and 8 bits per sample.
            let rgb = match image {
                DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image,
                DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLuma16(_) => {
                    DynamicImage::ImageLuma8(image.to_luma8())
                }
                _ => DynamicImage::ImageRgb8(image.to_rgb8()),
            };
            JpegEncoder::new_with_quality(&mut out, config.quality).encode_image(&rgb)?;
        }
        ImageFormat::WebP => {
            // The WebP encoder takes 8-bit RGB(A) only.
            let rgba = match image {
                DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => image,
                _ if image.color().has_alpha() => DynamicImage::ImageRgba8(image.to_rgba8()),
                _ => DynamicImage::ImageRgb8(image.to_rgb8()),
            };
            rgba.write_to(&mut Cursor::new(&mut out), format)?;
        }
        _ => image.write_to(&mut Cursor::new(&mut out), format)?,
    }
    Ok((out, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::frame_with;
    use crate::sink::image::Validate;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([x as u8, y as u8, 128, 200])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn config(convert: Option<Convert>, resize: Option<(u32, u32)>) -> ImageStageConfig {
        ImageStageConfig {
            validate: Validate::Off,
            quarantine: None,
            convert,
            quality: 80,
            resize,
        }
    }

    #[test]
    fn png_with_alpha_becomes_a_smaller_jpeg_keeping_the_aspect_ratio() {
        let frame = frame_with(png(400, 200));
        let image = image::load_from_memory(&frame.payload).unwrap();
        let (bytes, format) = convert(
            image,
            &frame,
            &config(Some(Convert::Jpeg), Some((100, 100))),
        )
        .unwrap();
        assert_eq!(format, ImageFormat::Jpeg);
        let back = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (100, 50));
    }

    #[test]
    fn small_images_are_never_enlarged_and_webp_round_trips() {
        let frame = frame_with(png(40, 30));
        let image = image::load_from_memory(&frame.payload).unwrap();
        let (bytes, format) = convert(
            image,
            &frame,
            &config(Some(Convert::Webp), Some((320, 320))),
        )
        .unwrap();
        assert_eq!(format, ImageFormat::WebP);
        let back = image::load_from_memory_with_format(&bytes, ImageFormat::WebP).unwrap();
        assert_eq!((back.width(), back.height()), (40, 30));
    }

    #[test]
    fn resize_alone_keeps_the_format() {
        let frame = frame_with(png(300, 600));
        let image = image::load_from_memory(&frame.payload).unwrap();
        let (bytes, format) = convert(image, &frame, &config(None, Some((150, 150)))).unwrap();
        assert_eq!(format, ImageFormat::Png);
        let back = image::load_from_memory(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (75, 150));
    }
}
