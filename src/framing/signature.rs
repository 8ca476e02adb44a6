//! Image signatures (magic bytes), through the `image` crate's format detection.

use image::ImageFormat;

/// Bytes of a payload's start that always suffice to recognise a signature (WebP needs 12).
pub const PROBE_LEN: usize = 12;

/// The formats `auto` accepts as proof that a length header is followed by an image.
const AUTO_FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::WebP,
    ImageFormat::Tiff,
];

/// What the start of a payload says about its being an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Starts with the signature of one of the formats `auto` accepts.
    Image(ImageFormat),
    /// Enough bytes were seen: not one of those formats.
    NotImage,
    /// Too few bytes yet to tell.
    NeedMore,
}

/// Classifies `start`, the first bytes of a payload of `payload_len` bytes.
///
/// Bytes past `payload_len` belong to the next frame, so they are not looked at: a 2-byte
/// payload `FF D8` is not a JPEG even when the stream goes on `FF E0`.
pub fn classify(start: &[u8], payload_len: u64) -> Signature {
    let seen = usize::try_from(payload_len).map_or(start.len(), |len| len.min(start.len()));
    let start = &start[..seen];
    if let Some(format) = image_format(start).filter(|f| AUTO_FORMATS.contains(f)) {
        return Signature::Image(format);
    }
    let enough = (PROBE_LEN as u64).min(payload_len) as usize;
    if start.len() >= enough {
        Signature::NotImage
    } else {
        Signature::NeedMore
    }
}

/// True when `payload` ends exactly the way its format says a file ends: JPEG's end-of-image
/// marker `FF D9`, PNG's `IEND` chunk with its fixed CRC, or a BMP or WebP header whose size
/// field equals the payload's length. `auto` uses it to tell which of two plausible length
/// readings delimits a frame; formats without such an end (GIF's one-byte trailer is too
/// weak, TIFF has none) answer false and are judged by what follows.
pub fn ends_as_its_format_ends(payload: &[u8]) -> bool {
    const PNG_END: &[u8] = b"IEND\xae\x42\x60\x82";
    let le32 = |at: usize| {
        payload
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    match image_format(payload) {
        Some(ImageFormat::Jpeg) => payload.len() > 4 && payload.ends_with(&[0xff, 0xd9]),
        Some(ImageFormat::Png) => payload.len() > 8 + PNG_END.len() && payload.ends_with(PNG_END),
        Some(ImageFormat::Bmp) => le32(2) == Some(payload.len()),
        Some(ImageFormat::WebP) => le32(4).map(|riff| riff + 8) == Some(payload.len()),
        _ => false,
    }
}

/// The image format a payload's magic bytes name, if the `image` crate knows it.
pub fn image_format(payload: &[u8]) -> Option<ImageFormat> {
    image::guess_format(payload).ok()
}

/// The file extension for a payload: the format's usual one (`jpg`, `png`, …), else `bin`.
pub fn extension(format: Option<ImageFormat>) -> &'static str {
    format
        .and_then(|f| f.extensions_str().first().copied())
        .unwrap_or("bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_auto_formats() {
        let cases: [(&[u8], ImageFormat); 7] = [
            (b"\xff\xd8\xff\xe0", ImageFormat::Jpeg),
            (b"\x89PNG\r\n\x1a\n", ImageFormat::Png),
            (b"GIF89a", ImageFormat::Gif),
            (b"BM", ImageFormat::Bmp),
            (b"RIFF\x10\0\0\0WEBP", ImageFormat::WebP),
            (b"II*\0", ImageFormat::Tiff),
            (b"MM\0*", ImageFormat::Tiff),
        ];
        for (bytes, format) in cases {
            assert_eq!(classify(bytes, 1000), Signature::Image(format));
        }
    }

    #[test]
    fn needs_more_until_the_probe_is_full() {
        assert_eq!(classify(b"RIFF", 1000), Signature::NeedMore);
        assert_eq!(classify(b"hello world!", 1000), Signature::NotImage);
        assert_eq!(classify(b"hel", 3), Signature::NotImage);
        // A signature cut short by the payload's end is not one.
        assert_eq!(classify(b"\xff\xd8\xff\xe0", 2), Signature::NotImage);
        assert_eq!(classify(b"BM", 2), Signature::Image(ImageFormat::Bmp));
        // Known to the image crate, but not a camera format auto accepts.
        assert_eq!(classify(b"P6 garbage..", 1000), Signature::NotImage);
    }

    #[test]
    fn format_ends() {
        assert!(ends_as_its_format_ends(b"\xff\xd8\xff\xe0 data \xff\xd9"));
        assert!(!ends_as_its_format_ends(
            b"\xff\xd8\xff\xe0 data \xff\xd9 pad"
        ));
        assert!(ends_as_its_format_ends(
            b"\x89PNG\r\n\x1a\n....\0\0\0\0IEND\xae\x42\x60\x82"
        ));
        let mut bmp = b"BM\0\0\0\0 rest of a bitmap".to_vec();
        let len = bmp.len() as u32;
        bmp[2..6].copy_from_slice(&len.to_le_bytes());
        assert!(ends_as_its_format_ends(&bmp));
        assert!(!ends_as_its_format_ends(&bmp[..bmp.len() - 1]));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8 data".to_vec();
        let riff = webp.len() as u32 - 8;
        webp[4..8].copy_from_slice(&riff.to_le_bytes());
        assert!(ends_as_its_format_ends(&webp));
        assert!(!ends_as_its_format_ends(b"GIF89a....;"));
        assert!(!ends_as_its_format_ends(b"II*\0 tiff"));
        assert!(!ends_as_its_format_ends(b"random"));
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(Some(ImageFormat::Jpeg)), "jpg");
        assert_eq!(extension(Some(ImageFormat::Png)), "png");
        assert_eq!(extension(None), "bin");
    }
}
