//! `max_connections`: at the cap the daemon stops accepting (devices wait in the listen
//! backlog, nothing is refused or lost) and resumes when a connection closes.

mod common;

use std::net::IpAddr;

use common::*;

#[test]
fn at_the_cap_new_devices_wait_in_the_backlog_then_are_served() {
    let mut d = Daemon::start(
        &[
            "max_connections = 3\n".to_string(),
            listener("le", "u32le", ""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let holders: Vec<_> = (0..3)
        .map(|i| {
            let s = connect_from(IpAddr::from([127, 0, 0, 20 + i]), d.addr("le"));
            let local = s.local_addr().unwrap();
            d.wait_for_log(&[&format!("connection from {local}")], WAIT);
            s
        })
        .collect();

    // The fourth device connects (the kernel completes the handshake) and sends a frame.
    let frame = jpeg(70, 10_000);
    let waiting = connect_from(IpAddr::from([127, 0, 0, 30]), d.addr("le"));
    let waiting_local = waiting.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        send_and_finish(waiting, &encode(Wire::U32Le, &[jpeg(70, 10_000)]));
    });
    d.wait_for_log(&["max_connections = 3 reached"], WAIT);
    assert!(
        d.log_lines(&[&format!("connection from {waiting_local}")])
            .is_empty(),
        "accepted past the cap"
    );
    assert!(!d.frames_root().join("127.0.0.30").exists());

    // One device leaves: the waiting one is accepted and its frame stored.
    drop(holders);
    let stored = d.wait_for_frames("127.0.0.30", "le", 1);
    assert_frames_eq(&stored, &[frame]);
    sender.join().unwrap();
    assert!(d.terminate().success());
}
