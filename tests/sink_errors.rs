//! A file sink that cannot write: the error is logged with the path and the OS error, counted
//! in the sink's totals, nothing half-written is left, and the daemon keeps serving.
//!
//! The tests run as root on CI machines, where permission bits do not stop writes, so the
//! failure is made with a regular file standing where the sink needs a directory (ENOTDIR).

mod common;

use std::net::IpAddr;

use common::*;

#[test]
fn write_error_is_logged_counted_and_other_devices_are_still_served() {
    let mut d = Daemon::start(&[listener("le", "u32le", ""), FILE_SINK.to_string()].concat());
    // Frames from 127.0.0.6 would go to frames/127.0.0.6/le/…; make "127.0.0.6" a file.
    let blocked = d.frames_root().join("127.0.0.6");
    std::fs::create_dir_all(d.frames_root()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();

    let lost = jpeg(60, 20_000);
    let stream = connect_from(IpAddr::from([127, 0, 0, 6]), d.addr("le"));
    send_and_finish(stream, &encode(Wire::U32Le, std::slice::from_ref(&lost)));
    let line = d.wait_for_log(&["sink files", "not stored"], WAIT);
    assert!(line.contains("127.0.0.6"), "names the device: {line}");
    assert!(
        line.contains(&blocked.display().to_string()),
        "names the path: {line}"
    );
    assert!(
        line.contains("os error 20"),
        "names the errno (ENOTDIR): {line}"
    );

    // Another device, after the failure, is stored as usual.
    let kept = frames(61, 3, 1000, 30_000);
    let stream = connect_from(IpAddr::from([127, 0, 0, 7]), d.addr("le"));
    send_and_finish(stream, &encode(Wire::U32Le, &kept));
    let stored = d.wait_for_frames("127.0.0.7", "le", kept.len());
    assert_frames_eq(&stored, &kept);

    assert!(d.terminate().success());
    let totals = d.wait_for_log(&["sink files:", "committed"], WAIT);
    assert!(
        totals.contains("3 frames") && totals.contains("1 failed"),
        "the failure is counted: {totals}"
    );
    // The blocking file is untouched and nothing temporary was left anywhere.
    assert_eq!(std::fs::read(&blocked).unwrap(), b"in the way");
    assert_no_tmp(&d.frames_root());
}
