//! Raw numpy arrays from imagezmq's `send_image`, turned into PNG files.
//!
//! OpenCV images are uint8 arrays `[rows, columns]` (gray) or `[rows, columns, channels]` with
//! the channels in B, G, R (, A) order; PNG wants R, G, B (, A), so colour channels are
//! swapped. PNG is lossless, so the pixels a sink stores are exactly the ones sent.

use std::fmt;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// The size in bytes of one element of numpy dtype `dtype`, for the names `str(dtype)` gives
/// for the fixed-size numeric types; `None` for anything else (byte-order prefixed codes,
/// strings, records), whose size is then not checked.
pub fn itemsize(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "bool" | "int8" | "uint8" => 1,
        "int16" | "uint16" | "float16" => 2,
        "int32" | "uint32" | "float32" => 4,
        "int64" | "uint64" | "float64" | "complex64" => 8,
        "complex128" => 16,
        _ => return None,
    })
}

/// Why an array cannot be encoded as PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArrayError {
    /// Only `uint8` arrays are images PNG can hold as they are.
    UnsupportedDtype {
        /// The dtype the metadata named.
        dtype: String,
    },
    /// The shape is not `[h, w]` or `[h, w, c]` with c = 1, 3 or 4, or has a zero or
    /// too-large dimension.
    UnsupportedShape {
        /// The shape the metadata named.
        shape: Vec<usize>,
    },
    /// The data does not hold `h × w × c` bytes.
    SizeMismatch {
        /// The shape the metadata named.
        shape: Vec<usize>,
        /// The bytes the shape needs.
        expected: u64,
        /// The bytes there are.
        actual: usize,
    },
    /// The PNG encoder failed.
    Encode {
        /// The encoder's message.
        reason: String,
    },
}

impl fmt::Display for ArrayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayError::UnsupportedDtype { dtype } => write!(
                f,
                "array dtype {dtype:?} cannot be stored as PNG; only uint8 images can (convert with img.astype(np.uint8) or send_jpg)"
            ),
            ArrayError::UnsupportedShape { shape } => write!(
                f,
                "array shape {shape:?} is not an image: expected [rows, columns] or [rows, columns, 1|3|4], each at least 1 and below 2^32"
            ),
            ArrayError::SizeMismatch {
                shape,
                expected,
                actual,
            } => write!(
                f,
                "array shape {shape:?} needs {expected} bytes but has {actual}"
            ),
            ArrayError::Encode { reason } => write!(f, "PNG encoding failed: {reason}"),
        }
    }
}

impl std::error::Error for ArrayError {}

/// Encodes a uint8 array of shape `[h, w]` (gray), `[h, w, 1]` (gray), `[h, w, 3]` (BGR) or
/// `[h, w, 4]` (BGRA), C order, as a PNG with the colour channels in RGB order.
///
/// CPU-bound (milliseconds for a VGA frame): call it off the event loop, e.g. in a sink worker.
pub fn array_to_png(dtype: &str, shape: &[usize], data: &[u8]) -> Result<Vec<u8>, ArrayError> {
    if dtype != "uint8" {
        return Err(ArrayError::UnsupportedDtype {
            dtype: dtype.to_string(),
        });
    }
    let bad_shape = || ArrayError::UnsupportedShape {
        shape: shape.to_vec(),
    };
    let (h, w, channels) = match *shape {
        [h, w] => (h, w, 1),
        [h, w, c @ (1 | 3 | 4)] => (h, w, c),
        _ => return Err(bad_shape()),
    };
    let height = u32::try_from(h).map_err(|_| bad_shape())?;
    let width = u32::try_from(w).map_err(|_| bad_shape())?;
    if height == 0 || width == 0 {
        return Err(bad_shape());
    }
    // Checked here because the encoder asserts (panics) on a wrong buffer length.
    let expected = u64::from(height) * u64::from(width) * channels as u64;
    if data.len() as u64 != expected {
        return Err(ArrayError::SizeMismatch {
            shape: shape.to_vec(),
            expected,
            actual: data.len(),
        });
    }
    let (color, pixels) = match channels {
        1 => (ExtendedColorType::L8, std::borrow::Cow::Borrowed(data)),
        3 => (ExtendedColorType::Rgb8, swap_blue_red(data, 3).into()),
        _ => (ExtendedColorType::Rgba8, swap_blue_red(data, 4).into()),
    };
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, color)
        .map_err(|e| ArrayError::Encode {
            reason: e.to_string(),
        })?;
    Ok(png)
}

/// OpenCV's B, G, R (, A) pixels as R, G, B (, A).
fn swap_blue_red(data: &[u8], channels: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    for pixel in out.chunks_exact_mut(channels) {
        pixel.swap(0, 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::DynamicImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap()
    }

    #[test]
    fn bgr_becomes_rgb() {
        // 2 rows × 3 columns; pixel (row, col) = B, G, R = (10r+c, 100, 200+c).
        let mut data = Vec::new();
        for r in 0..2u8 {
            for c in 0..3u8 {
                data.extend_from_slice(&[10 * r + c, 100, 200 + c]);
            }
        }
        let png = array_to_png("uint8", &[2, 3, 3], &data).unwrap();
        let img = decode(&png).into_rgb8();
        assert_eq!(img.dimensions(), (3, 2));
        for r in 0..2u8 {
            for c in 0..3u8 {
                let px = img.get_pixel(u32::from(c), u32::from(r)).0;
                assert_eq!(px, [200 + c, 100, 10 * r + c], "row {r} col {c}");
            }
        }
    }

    #[test]
    fn bgra_becomes_rgba() {
        let png = array_to_png("uint8", &[1, 1, 4], &[1, 2, 3, 4]).unwrap();
        assert_eq!(decode(&png).into_rgba8().get_pixel(0, 0).0, [3, 2, 1, 4]);
    }

    #[test]
    fn gray_images_stay_gray() {
        let data: Vec<u8> = (0..6).map(|i| i * 40).collect();
        for shape in [&[2usize, 3][..], &[2, 3, 1]] {
            let img = decode(&array_to_png("uint8", shape, &data).unwrap());
            assert_eq!(img.color(), image::ColorType::L8);
            assert_eq!(img.into_luma8().into_raw(), data);
        }
    }

    #[test]
    fn a_vga_frame_round_trips() {
        let data: Vec<u8> = (0..480 * 640 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = decode(&array_to_png("uint8", &[480, 640, 3], &data).unwrap()).into_rgb8();
        let back: Vec<u8> = img.into_raw();
        assert_eq!(back, swap_blue_red(&data, 3));
    }

    #[test]
    fn errors_name_what_was_wrong() {
        let err = array_to_png("float32", &[1, 1], &[0; 4]).unwrap_err();
        assert!(err.to_string().contains("\"float32\""), "{err}");
        for shape in [&[4usize][..], &[1, 1, 2], &[0, 3], &[1, 1, 3, 1]] {
            assert!(matches!(
                array_to_png("uint8", shape, &[]),
                Err(ArrayError::UnsupportedShape { .. })
            ));
        }
        assert_eq!(
            array_to_png("uint8", &[2, 2, 3], &[0; 11])
                .unwrap_err()
                .to_string(),
            "array shape [2, 2, 3] needs 12 bytes but has 11"
        );
        let huge = [1usize << 33, 1];
        assert!(matches!(
            array_to_png("uint8", &huge, &[]),
            Err(ArrayError::UnsupportedShape { .. })
        ));
    }

    #[test]
    fn itemsizes() {
        assert_eq!(itemsize("uint8"), Some(1));
        assert_eq!(itemsize("float64"), Some(8));
        assert_eq!(itemsize(">u2"), None);
    }
}
