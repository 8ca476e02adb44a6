//! imagezmq compatibility: the real `imagezmq.ImageSender` (from PyPI, in a venv the test
//! makes) sends to framegate unchanged. JPEGs are stored byte for byte; ndarrays are stored as
//! PNGs that decode to the sent arrays; every `send_*` gets its `OK` only after the frame is
//! stored.

mod common;
#[path = "devices/venv.rs"]
mod venv;

use std::process::{Command, Stdio};

use common::*;

/// One JSON line per image the sender printed: (kind, bytes, sha256, reply).
fn sent_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// imagezmq_sender.py's generated array: byte i of image k is (i*7 + seed*13 + k*101) % 256.
fn generated(seed: u64, k: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i * 7 + seed * 13 + k * 101) % 256) as u8)
        .collect()
}

#[test]
fn four_imagezmq_senders_store_two_hundred_frames() {
    let python = venv::imagezmq_python();
    let mut d = Daemon::start(
        &[
            listener("hub", "imagezmq", ""),
            listener("auto", "auto", ""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let jpegs: Vec<Vec<u8>> = (0..50)
        .map(|i| jpeg(800 + i, 2000 + 97 * i as usize))
        .collect();
    let jpeg_files: Vec<String> = write_frames(&d.dir.join("jpegs"), &jpegs)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let sender = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/devices/imagezmq_sender.py"
    );
    let spawn = |listener: &str, name: &str, what: &[&str]| {
        Command::new(&python)
            .arg(sender)
            .args([
                "--to",
                &format!("tcp://{}", d.addr(listener)),
                "--name",
                name,
            ])
            .args(what)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start an imagezmq sender")
    };
    let mut jpg_args = vec!["--jpg"];
    jpg_args.extend(jpeg_files.iter().map(String::as_str));
    // Four processes at once: JPEGs to the imagezmq listener and to auto; colour and grey
    // arrays.
    let senders = vec![
        spawn("hub", "cam-jpg", &jpg_args),
        spawn("auto", "cam-jpg-auto", &jpg_args),
        spawn(
            "hub",
            "cam-bgr",
            &["--array-seed", "5", "--count", "50", "--shape", "48,64,3"],
        ),
        spawn(
            "auto",
            "cam-grey",
            &["--array-seed", "6", "--count", "50", "--shape", "30,40"],
        ),
    ];
    for sender in senders {
        let out = sender.wait_with_output().unwrap();
        assert!(out.status.success(), "a sender failed");
        let lines = sent_lines(&out.stdout);
        assert_eq!(lines.len(), 50);
        assert!(
            lines.iter().all(|l| l.contains("\"reply\": \"OK\"")),
            "{lines:?}"
        );
    }

    // JPEGs byte for byte, in order.
    assert_frames_eq(&d.frames("cam-jpg", "hub"), &jpegs);
    assert_frames_eq(&d.frames("cam-jpg-auto", "auto"), &jpegs);
    // Arrays as PNGs with the colours right: decode, go back to BGR, compare.
    let bgr = d.frames("cam-bgr", "hub");
    assert_eq!(bgr.len(), 50);
    for (k, stored) in bgr.iter().enumerate() {
        assert!(
            stored.path.extension().unwrap() == "png",
            "{:?}",
            stored.path
        );
        let image = image::load_from_memory(&stored.bytes).unwrap().to_rgb8();
        assert_eq!((image.width(), image.height()), (64, 48));
        let back: Vec<u8> = image
            .pixels()
            .flat_map(|p| [p.0[2], p.0[1], p.0[0]])
            .collect();
        assert_eq!(back, generated(5, k as u64, 48 * 64 * 3), "array {k}");
    }
    let grey = d.frames("cam-grey", "auto");
    assert_eq!(grey.len(), 50);
    for (k, stored) in grey.iter().enumerate() {
        let image = image::load_from_memory(&stored.bytes).unwrap().to_luma8();
        assert_eq!((image.width(), image.height()), (40, 30));
        assert_eq!(
            image.into_raw(),
            generated(6, k as u64, 30 * 40),
            "grey array {k}"
        );
    }
    assert!(d.terminate().success());
    assert_eq!(
        d.stored_files().iter().filter(|p| !is_tmp(p)).count(),
        200,
        "exactly the frames sent"
    );
}
