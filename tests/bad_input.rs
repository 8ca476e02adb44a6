//! Misbehaving devices against one daemon while a good device keeps sending: each bad
//! connection is closed by the server with a log line naming its peer, nothing of it is stored,
//! no temporary file is left, device names cannot leave the frames root, and every frame of the
//! good device is stored byte for byte.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const MAX: u64 = 1 << 20; // "1MiB"
/// How long the server may take to close a bad connection (idle ones take idle_timeout, 1 s).
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

const GOOD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

fn daemon() -> Daemon {
    let config = [
        listener(
            "ascii",
            "ascii-length",
            "max_frame_bytes = \"1MiB\"\nidle_timeout = \"1s\"",
        ),
        listener(
            "le",
            "u32le",
            "max_frame_bytes = \"1MiB\"\nidle_timeout = \"1s\"",
        ),
        listener(
            "auto",
            "auto",
            "max_frame_bytes = \"1MiB\"\nidle_timeout = \"10s\"",
        ),
        r#"
[devices]
"127.0.0.9" = "good-cam"
"127.0.0.3" = "../../etc"
"127.0.0.4" = "a/../../b"
"127.0.0.5" = ".."
"#
        .to_string(),
        FILE_SINK.to_string(),
    ]
    .concat();
    Daemon::start(&config)
}

/// The good device: from 127.0.0.9 to the auto listener, connection after connection (each a
/// different framing), a frame every few milliseconds, until `stop`. Returns what it sent.
fn good_device(to: SocketAddr, stop: Arc<AtomicBool>) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for conn in 0usize.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wire = [Wire::Ascii, Wire::U32Le, Wire::U32Be][conn % 3];
        let mut stream = connect_from(IpAddr::V4(GOOD_IP), to);
        for frame in frames(10_000 + conn as u64, 5, 8, 40_000) {
            // The frame's own encoding, without u32le's end marker between frames.
            let bytes = encode(wire, std::slice::from_ref(&frame));
            let bytes = if wire == Wire::U32Le {
                &bytes[..bytes.len() - 4]
            } else {
                &bytes[..]
            };
            stream.write_all(bytes).expect("good device: send");
            sent.push(frame);
            thread::sleep(Duration::from_millis(20));
        }
        if wire == Wire::U32Le {
            stream.write_all(&0u32.to_le_bytes()).unwrap();
        }
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        wait_closed_by_server(&mut stream, WAIT).expect("good device: server closes");
    }
    sent
}

/// Sends `bytes` from 127.0.0.1 and expects the server to close the connection, logging a line
/// that names this connection's address and contains every one of `mentions`.
fn bad(d: &mut Daemon, listener: &str, bytes: &[u8], mentions: &[&str]) -> String {
    let mut stream = connect(d.addr(listener));
    let local = stream.local_addr().unwrap();
    // The server may close before reading everything; a failed write is fine then.
    let _ = stream.write_all(bytes);
    wait_closed_by_server(&mut stream, CLOSE_WITHIN)
        .unwrap_or_else(|e| panic!("{listener}: {bytes:?}…: {e}"));
    let peer = format!("connection from {local} (device 127.0.0.1) on \"{listener}\"");
    let mut parts = vec![peer.as_str()];
    parts.extend_from_slice(mentions);
    d.wait_for_log(&parts, WAIT)
}

fn u32le(n: u32) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[test]
fn bad_devices_are_cut_off_and_the_good_one_is_untouched() {
    let mut d = daemon();
    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (to, stop) = (d.addr("auto"), stop.clone());
        thread::spawn(move || good_device(to, stop))
    };

    // Oversize ASCII length then the start of the image, on the ascii listener and on auto.
    for listener in ["ascii", "auto"] {
        bad(
            &mut d,
            listener,
            &[&b"99999999999"[..], JPEG_MAGIC].concat(),
            &["rejected: announced frame of 99999999999 bytes exceeds max_frame_bytes = 1048576"],
        );
    }
    // Oversize u32le, just over the limit and far over, followed by a JPEG signature.
    for (listener, size) in [("le", MAX + 1), ("le", 50_000_000), ("auto", 50_000_000)] {
        let bytes = [u32le(size as u32), JPEG_MAGIC.to_vec()].concat();
        bad(
            &mut d,
            listener,
            &bytes,
            &[&format!(
                "rejected: announced frame of {size} bytes exceeds max_frame_bytes = 1048576"
            )],
        );
    }
    // More than 20 digits (leading zeros keep the value small, so only the count trips).
    for listener in ["ascii", "auto"] {
        let bytes = [&b"000000000000000000000001"[..], &jpeg(1, 1)].concat();
        bad(
            &mut d,
            listener,
            &bytes,
            &["rejected: ASCII length has more than 20 digits"],
        );
    }
    // Not an image on auto.
    bad(
        &mut d,
        "auto",
        b"GET / HTTP/1.1\r\nHost: framegate\r\n\r\n",
        &[
            "rejected: framing auto: first bytes 474554202f",
            "set framing explicitly",
        ],
    );
    // A non-digit where an ASCII length belongs.
    bad(
        &mut d,
        "ascii",
        &jpeg(2, 100),
        &["rejected: expected an ASCII length digit, got byte 0xff"],
    );

    // Half a frame, then silence: closed after idle_timeout, the partial frame dropped.
    let half = [&b"5000"[..], &jpeg(3, 5000)[..1200]].concat();
    bad(
        &mut d,
        "ascii",
        &half,
        &["idle for 1s inside a frame of 5000 bytes; partial frame dropped"],
    );
    let half = [u32le(70_000), jpeg(4, 70_000)[..65_000].to_vec()].concat();
    bad(
        &mut d,
        "le",
        &half,
        &["idle for 1s inside a frame of 70000 bytes; partial frame dropped"],
    );
    bad(
        &mut d,
        "le",
        &[0x10, 0x27],
        &["idle for 1s inside a length header; partial header dropped"],
    );
    // Nothing from the bad connections (the good device's files may be mid-write here;
    // temporary files are checked once the daemon has stopped).
    assert!(!d.frames_root().join("127.0.0.1").exists());

    // Device names that try to leave the root.
    let mut expected_outside_good = Vec::new();
    for (ip, dir) in [
        ([127, 0, 0, 3], ".._.._etc"),
        ([127, 0, 0, 4], "a_.._.._b"),
        ([127, 0, 0, 5], "__"),
    ] {
        let frame = jpeg(u64::from(ip[3]), 3000);
        let stream = connect_from(IpAddr::V4(ip.into()), d.addr("auto"));
        send_and_finish(stream, &encode(Wire::U32Be, std::slice::from_ref(&frame)));
        let stored = d.wait_for_frames(dir, "auto", 1);
        assert_eq!(assert_frames_eq(&stored, &[frame]), [1]);
        let root = d.frames_root().canonicalize().unwrap();
        let path = stored[0].path.canonicalize().unwrap();
        assert!(path.starts_with(&root), "{path:?} is outside {root:?}");
        assert_eq!(path, root.join(dir).join("auto/00000001.jpg"));
        expected_outside_good.push(path);
    }

    stop.store(true, Ordering::Relaxed);
    let sent = good.join().expect("good device thread");
    assert!(sent.len() >= 5, "the good device sent only {}", sent.len());
    let stored = d.wait_for_frames("good-cam", "auto", sent.len());
    let seqs = assert_frames_eq(&stored, &sent);
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());

    let status = d.terminate();
    assert!(status.success(), "framegate exited with {status}");
    // Nothing stored for the bad connections (device 127.0.0.1), nothing temporary, nothing
    // but the good device's frames and the three renamed ones.
    let files = d.stored_files();
    assert_no_tmp(&d.frames_root());
    assert_eq!(
        files.len(),
        sent.len() + expected_outside_good.len(),
        "{files:?}"
    );
    assert!(!d.frames_root().join("127.0.0.1").exists());
    // And nothing was written beside the frames root.
    let mut top: Vec<_> = std::fs::read_dir(&d.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["framegate.toml", "frames", "state"]);
}

/// Regression: the log named only the digits that had arrived when the length passed the
/// limit ("9999999" for "99999999999"). The number is now read to its end, which for a device
/// that sends the digits and then waits, as the classic recipe does, is when the stream ends.
#[test]
fn oversize_ascii_log_names_the_announced_size() {
    let mut d = daemon();
    let mut stream = connect(d.addr("ascii"));
    let local = stream.local_addr().unwrap();
    stream.write_all(b"99999999999").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    wait_closed_by_server(&mut stream, CLOSE_WITHIN).unwrap();
    let line = d.wait_for_log(&[&format!("connection from {local}"), "rejected"], WAIT);
    assert!(
        line.contains("99999999999"),
        "the log should name the announced size 99999999999: {line}"
    );
}

/// A device that keeps failing is logged `[log] device_lines_per_minute` times a minute, then
/// held back; every connection is still refused, and other devices are logged as usual.
#[test]
fn a_device_failing_over_and_over_does_not_drown_the_log() {
    let mut d = Daemon::start(
        &[
            "[log]\ndevice_lines_per_minute = 3\n".to_string(),
            listener("auto", "auto", ""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let to = d.addr("auto");
    for _ in 0..8 {
        let mut s = connect_from(IpAddr::V4([127, 0, 0, 9].into()), to);
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        wait_closed_by_server(&mut s, CLOSE_WITHIN).unwrap();
    }
    let mut other = connect_from(IpAddr::V4([127, 0, 0, 10].into()), to);
    let _ = other.write_all(b"GET / HTTP/1.1\r\n\r\n");
    wait_closed_by_server(&mut other, CLOSE_WITHIN).unwrap();
    d.wait_for_log(&["(device 127.0.0.10)", "rejected"], WAIT);
    assert_eq!(d.log_lines(&["(device 127.0.0.9)", "rejected"]).len(), 3);
    assert!(d.terminate().success());
}
