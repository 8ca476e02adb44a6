//! The legacy device recipes, unmodified (Python scripts in `tests/devices/`), against the real
//! daemon: each framing on a listener set to it explicitly and on an `auto` listener. Every
//! stored file must equal, byte for byte and in sequence order, what the device sent, with the
//! extension of its format.

mod common;

use std::path::PathBuf;

use common::*;

/// One daemon with a listener per framing plus an `auto` one; frames stored by device and
/// listener under `{seq:08}` names.
fn daemon() -> Daemon {
    let config = [
        listener("ascii", "ascii-length", ""),
        listener("le", "u32le", ""),
        listener("be", "u32be", ""),
        listener("auto", "auto", ""),
        "\n[devices]\n\"127.0.0.2\" = \"door-cam\"\n".to_string(),
        FILE_SINK.to_string(),
    ]
    .concat();
    Daemon::start(&config)
}

/// Writes `frames` into the daemon's directory (under `name/`) for a device script to send.
fn files(d: &Daemon, name: &str, frames: &[Vec<u8>]) -> Vec<String> {
    let dir: PathBuf = d.dir.join("send").join(name);
    write_frames(&dir, frames)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// Runs `script --to ADDR(listener) --files FILES… EXTRA…`.
fn device(d: &Daemon, script: &str, listener: &str, files: &[String], extra: &[&str]) {
    let to = d.addr(listener).to_string();
    let mut args = vec!["--to", to.as_str(), "--files"];
    args.extend(files.iter().map(String::as_str));
    args.extend_from_slice(extra);
    run_device(script, &args);
}

/// Stops the daemon cleanly and checks that exactly `total` frames were stored, nothing else.
fn stop_and_count(mut d: Daemon, total: usize) {
    let status = d.terminate();
    assert!(status.success(), "framegate exited with {status}");
    let files = d.stored_files();
    assert_no_tmp(&d.frames_root());
    assert_eq!(files.len(), total, "stored files: {files:?}");
}

#[test]
fn classic_ascii_with_sleep_between_length_and_image() {
    let d = daemon();
    let sent = frames(1, 1, 20_000, 60_000);
    let f = files(&d, "one", &sent);
    // The two connections sleep concurrently: the test takes about one second, not two.
    std::thread::scope(|s| {
        for listener in ["ascii", "auto"] {
            let (d, f) = (&d, &f);
            s.spawn(move || device(d, "classic_ascii.py", listener, f, &["--sleep", "1"]));
        }
    });
    let ascii = d.wait_for_frames("127.0.0.1", "ascii", 1);
    let auto = d.wait_for_frames("127.0.0.1", "auto", 1);
    assert_frames_eq(&ascii, &sent);
    assert_frames_eq(&auto, &sent);
    // Both connections are the same device: one counter, numbers 1 and 2.
    let mut seqs = vec![ascii[0].seq, auto[0].seq];
    seqs.sort();
    assert_eq!(seqs, [1, 2]);
    stop_and_count(d, 2);
}

#[test]
fn classic_ascii_back_to_back_and_in_one_segment() {
    let mut d = daemon();
    let separate = frames(2, 5, 10, 300_000);
    let together = frames(3, 4, 10, 100_000);
    let (f1, f2) = (
        files(&d, "separate", &separate),
        files(&d, "together", &together),
    );
    for listener in ["ascii", "auto"] {
        // Length and image in separate sendall calls, five frames on one connection…
        device(&d, "classic_ascii.py", listener, &f1, &[]);
        // …then length and image in one segment each.
        device(&d, "classic_ascii.py", listener, &f2, &["--one-segment"]);
        let stored = d.wait_for_frames("127.0.0.1", listener, 9);
        let seqs = assert_frames_eq(&stored, &[separate.clone(), together.clone()].concat());
        assert_strictly_increasing(&seqs);
        let on = format!("on \"{listener}\" closed: ");
        d.wait_for_log(&[&on, "5 frames"], WAIT);
        d.wait_for_log(&[&on, "4 frames"], WAIT);
    }
    // The ascii listener was served first: its frames are the device's first nine.
    let first = d.wait_for_frames("127.0.0.1", "ascii", 9);
    assert_eq!(
        first.iter().map(|s| s.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    stop_and_count(d, 18);
}

#[test]
fn picamera_u32le_with_end_marker() {
    let mut d = daemon();
    let sent = frames(4, 6, 8, 250_000);
    let f = files(&d, "picamera", &sent);
    for listener in ["le", "auto"] {
        device(&d, "picamera_u32le.py", listener, &f, &[]);
        let stored = d.wait_for_frames("127.0.0.1", listener, sent.len());
        assert_strictly_increasing(&assert_frames_eq(&stored, &sent));
        d.wait_for_log(
            &[
                &format!("on \"{listener}\" closed after end-of-stream marker"),
                "6 frames",
            ],
            WAIT,
        );
    }
    // Without the marker the device just closes: the same frames, a plain close.
    device(&d, "picamera_u32le.py", "le", &f, &["--no-end-marker"]);
    let stored = d.wait_for_frames("127.0.0.1", "le", 2 * sent.len());
    assert_frames_eq(&stored, &[sent.clone(), sent.clone()].concat());
    d.wait_for_log(&["on \"le\" closed: 6 frames"], WAIT);
    stop_and_count(d, 3 * sent.len());
}

#[test]
fn opencv_u32be() {
    let mut d = daemon();
    let sent = frames(5, 7, 8, 200_000);
    let f = files(&d, "opencv", &sent);
    for listener in ["be", "auto"] {
        device(&d, "opencv_u32be.py", listener, &f, &[]);
        let stored = d.wait_for_frames("127.0.0.1", listener, sent.len());
        assert_strictly_increasing(&assert_frames_eq(&stored, &sent));
        d.wait_for_log(&[&format!("on \"{listener}\" closed: 7 frames")], WAIT);
    }
    stop_and_count(d, 2 * sent.len());
}

#[test]
fn devices_table_names_the_device() {
    let mut d = daemon();
    let sent = frames(6, 3, 100, 50_000);
    let f = files(&d, "door", &sent);
    device(
        &d,
        "classic_ascii.py",
        "auto",
        &f,
        &["--source-ip", "127.0.0.2"],
    );
    device(
        &d,
        "opencv_u32be.py",
        "be",
        &f,
        &["--source-ip", "127.0.0.2"],
    );
    let auto = d.wait_for_frames("door-cam", "auto", 3);
    let be = d.wait_for_frames("door-cam", "be", 3);
    assert_eq!(assert_frames_eq(&auto, &sent), [1, 2, 3]);
    assert_eq!(assert_frames_eq(&be, &sent), [4, 5, 6]);
    d.wait_for_log(&["(device door-cam) on \"be\" closed: 3 frames"], WAIT);
    let closes = d.log_lines(&[
        "connection from 127.0.0.2:",
        "(device door-cam)",
        "closed: 3 frames",
    ]);
    assert_eq!(closes.len(), 2, "{closes:?}");
    // Nothing went under the IP address: these six are all there is.
    stop_and_count(d, 6);
}

#[test]
fn framegate_send_with_each_framing() {
    let d = daemon();
    let cases = [
        ("ascii-length", "ascii", 10),
        ("u32le", "le", 11),
        ("u32be", "be", 12),
    ];
    let mut total = 0;
    for (framing, explicit, seed) in cases {
        let sent = frames(seed, 4, 8, 150_000);
        let f = files(&d, framing, &sent);
        for listener in [explicit, "auto"] {
            let to = d.addr(listener).to_string();
            let mut args = vec!["send", "--to", &to, "--framing", framing];
            args.extend(f.iter().map(String::as_str));
            let output = framegate(&args);
            assert_ok(&format!("framegate {args:?}"), &output);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains("sent 4 frames"), "{stdout}");
        }
        let stored = d.wait_for_frames("127.0.0.1", explicit, 4);
        assert_frames_eq(&stored, &sent);
        total += 4;
    }
    // The auto listener got all three framings, in order.
    let all: Vec<Vec<u8>> = cases
        .iter()
        .flat_map(|(_, _, seed)| frames(*seed, 4, 8, 150_000))
        .collect();
    let auto = d.wait_for_frames("127.0.0.1", "auto", all.len());
    assert_strictly_increasing(&assert_frames_eq(&auto, &all));
    stop_and_count(d, total + all.len());
}

/// Regression: on an `auto` listener, a u32be stream whose first frame's length has a low byte
/// of 0 was misread as u32le and mangled. For a big-endian header `00 00 90 00` (36,864 bytes)
/// the little-endian reading is 0x00900000 = 9,437,184 bytes, within the default 32 MiB, and
/// the same signature follows; the daemon stored one 9,437,184-byte "frame" spliced from ~95
/// frames and their headers. Auto's rule 3 (src/framing/auto.rs) now receives the shorter
/// reading's frame first and checks what follows it.
#[test]
fn auto_u32be_first_frame_a_multiple_of_256() {
    let mut d = daemon();
    let first = jpeg(30, 36_864);
    assert_eq!(first.len() % 256, 0);
    let sent: Vec<Vec<u8>> = std::iter::once(first)
        .chain((0..95).map(|i| jpeg(31 + i, 100_000)))
        .collect();
    let mut stream = connect(d.addr("auto"));
    let local = stream.local_addr().unwrap();
    // The daemon may cut the connection off: write errors are expected then.
    let _ = std::io::Write::write_all(&mut stream, &encode(Wire::U32Be, &sent));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = wait_closed_by_server(&mut stream, WAIT);
    let line = d.wait_for_log(&[&format!("connection from {local}"), "closed"], WAIT);
    assert!(d.terminate().success());
    // No stored file may be anything but a frame that was sent.
    for path in d.stored_files() {
        let stored = Stored::read(&path);
        assert!(
            sent.contains(&stored.bytes),
            "{path:?} ({} bytes) is not a frame that was sent: a mangled frame",
            stored.bytes.len()
        );
    }
    assert!(line.contains("closed: 96 frames"), "{line}");
    assert_frames_eq(&d.frames("127.0.0.1", "auto"), &sent);
}

/// Auto's rule 3 when nothing follows the first frame: a lone u32be frame whose length also
/// reads as a u32le length in range is stored when the device closes, and when it only falls
/// silent (the idle timeout settles it, rather than dropping a complete frame).
#[test]
fn auto_lone_ambiguous_frame_is_stored_on_close_and_on_idle_timeout() {
    let mut d = Daemon::start(
        &[
            listener("auto", "auto", "idle_timeout = \"1s\""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    // 36,864 bytes: u32be 00 00 90 00, or 9,437,184 bytes as u32le. Random bytes after the
    // JPEG magic, so no end-of-image marker settles it early.
    let closed = jpeg(40, 36_864);
    let silent = jpeg(41, 36_864 * 2);
    assert_ne!(&closed[closed.len() - 2..], b"\xff\xd9");
    assert_ne!(&silent[silent.len() - 2..], b"\xff\xd9");

    let mut stream = connect(d.addr("auto"));
    std::io::Write::write_all(
        &mut stream,
        &encode(Wire::U32Be, std::slice::from_ref(&closed)),
    )
    .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    wait_closed_by_server(&mut stream, WAIT).unwrap();
    let first = d.wait_for_frames("127.0.0.1", "auto", 1);
    assert_frames_eq(&first, std::slice::from_ref(&closed));

    let mut quiet = connect(d.addr("auto"));
    let local = quiet.local_addr().unwrap();
    std::io::Write::write_all(
        &mut quiet,
        &encode(Wire::U32Be, std::slice::from_ref(&silent)),
    )
    .unwrap();
    // The daemon closes the silent connection after its 1 s idle timeout.
    wait_closed_by_server(&mut quiet, WAIT).unwrap();
    let line = d.wait_for_log(&[&format!("connection from {local}"), "idle"], WAIT);
    assert!(line.contains("framing the silence settled"), "{line}");
    assert!(!line.contains("dropped"), "{line}");
    let both = d.wait_for_frames("127.0.0.1", "auto", 2);
    assert_frames_eq(&both, &[closed, silent]);
    assert!(d.terminate().success());
}
