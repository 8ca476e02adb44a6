//! The image stage with real images: truncated JPEGs rejected, NACKed and quarantined;
//! PNG → JPEG conversion with resize beside a byte-exact archive.

mod common;

use std::io::Cursor;

use common::*;
use framegate::protocol::{Message, Reason};
use image::{DynamicImage, ImageFormat};

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), format)
        .unwrap();
    out
}

#[test]
fn a_truncated_jpeg_is_rejected_nacked_and_quarantined() {
    let mut d = Daemon::start(
        &[
            listener("native", "native", ""),
            r#"
[[sink]]
name = "checked"
type = "file"
path = "@DIR@/frames/{device}/{seq}.{ext}"
validate = "header"
quarantine = "@DIR@/quarantine"
"#
            .into(),
        ]
        .concat(),
    );
    let whole = encoded(320, 240, ImageFormat::Jpeg);
    assert_eq!(
        native_frame(d.addr("native"), "good-cam", &whole),
        Message::Ack { seq: 1 }
    );
    let cut = whole[..whole.len() / 2].to_vec();
    let answer = native_frame(d.addr("native"), "bad-cam", &cut);
    let (reason, text) = nack_of_first_frame(answer);
    assert_eq!(reason, Reason::RejectedBySink);
    assert!(text.contains("JPEG is truncated"), "{text}");
    assert_eq!(
        std::fs::read(d.dir.join("frames/good-cam/1.jpg")).unwrap(),
        whole
    );
    assert!(!d.dir.join("frames/bad-cam").exists(), "not stored");
    let kept = d.dir.join("quarantine/bad-cam-1.jpg");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        cut,
        "quarantined byte for byte"
    );
    let note = std::fs::read_to_string(d.dir.join("quarantine/bad-cam-1.txt")).unwrap();
    assert!(note.contains("JPEG is truncated"), "{note}");
    d.wait_for_log(&["bad-cam#1", "rejected an invalid image", "kept as"], WAIT);
    assert_no_tmp(&d.dir);
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn png_becomes_a_resized_jpeg_beside_the_untouched_original() {
    let mut d = Daemon::start(
        &[
            listener("lan", "u32le", ""),
            r#"
[[sink]]
name = "archive"
type = "file"
path = "@DIR@/archive/{seq}.{ext}"

[[sink]]
name = "thumbs"
type = "file"
path = "@DIR@/thumbs/{seq}-{width}x{height}.{ext}"
validate = "decode"
convert = "jpeg"
quality = 75
resize = { max_width = 160, max_height = 160 }
"#
            .into(),
        ]
        .concat(),
    );
    let sent = [
        encoded(640, 480, ImageFormat::Png),
        encoded(300, 600, ImageFormat::Png),
        encoded(100, 50, ImageFormat::Png),
    ];
    send_and_finish(connect(d.addr("lan")), &encode(Wire::U32Le, &sent));
    let expected = [(160, 120), (80, 160), (100, 50)];
    for (i, (png, (w, h))) in sent.iter().zip(expected).enumerate() {
        let seq = i + 1;
        let thumb = d.dir.join(format!("thumbs/{seq}-{w}x{h}.jpg"));
        let deadline = std::time::Instant::now() + WAIT;
        while !thumb.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} missing",
                thumb.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let bytes = std::fs::read(&thumb).unwrap();
        let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (w, h));
        let original = std::fs::read(d.dir.join(format!("archive/{seq}.png"))).unwrap();
        assert_eq!(&original, png, "the archive keeps the original");
    }
    assert_eq!(d.terminate().code(), Some(0));
}
