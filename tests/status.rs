//! `framegate status` (table and `--json`) against the running daemon, and SIGUSR1's table in
//! the log: the counters match what was sent.

mod common;

use std::net::IpAddr;
use std::process::Command;

use common::*;
use framegate::status::Status;

#[test]
fn status_reflects_frames_errors_and_connections() {
    let mut d = Daemon::start(&[listener("auto", "auto", ""), FILE_SINK.to_string()].concat());
    let to = d.addr("auto");
    let sent = frames(960, 3, 1000, 20_000);
    let stream = connect_from(IpAddr::from([127, 0, 0, 2]), to);
    send_and_finish(stream, &encode(Wire::U32Le, &sent));
    d.wait_for_frames("127.0.0.2", "auto", 3);
    // A broken connection counts as an error for its device.
    let mut bad = connect_from(IpAddr::from([127, 0, 0, 3]), to);
    let _ = std::io::Write::write_all(&mut bad, b"GET / HTTP/1.1\r\n\r\n");
    wait_closed_by_server(&mut bad, WAIT).unwrap();
    d.wait_for_log(&["127.0.0.3", "rejected"], WAIT);
    // Half a frame, then the device closes: a dropped frame (and an error).
    let half = connect_from(IpAddr::from([127, 0, 0, 5]), to);
    let whole = encode(Wire::U32Le, &[jpeg(961, 4000)]);
    send_and_finish(half, &whole[..2000]);
    d.wait_for_log(&["127.0.0.5", "closed mid-frame"], WAIT);
    // One connection that stays open.
    let _idle = connect_from(IpAddr::from([127, 0, 0, 4]), to);
    d.wait_for_log(&["connection from 127.0.0.4"], WAIT);

    let config = d.dir.join("framegate.toml");
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Status = serde_json::from_slice(&out.stdout).unwrap();
    let device = |name: &str| {
        status
            .devices
            .iter()
            .find(|d| d.device == name)
            .unwrap_or_else(|| panic!("{name} not in {status:?}"))
            .clone()
    };
    let bytes: u64 = sent.iter().map(|f| f.len() as u64).sum();
    let sender = device("127.0.0.2");
    assert_eq!((sender.frames, sender.bytes, sender.errors), (3, bytes, 0));
    assert!(sender.last_seen > 0);
    assert_eq!(device("127.0.0.3").errors, 1);
    assert_eq!(device("127.0.0.3").dropped, 0, "garbage is not a frame");
    let half = device("127.0.0.5");
    assert_eq!((half.frames, half.errors, half.dropped), (0, 1, 1));
    assert_eq!(device("127.0.0.4").connections, 1);
    assert_eq!(status.connections, 1);
    assert_eq!(status.sinks[0].committed, 3);
    assert_eq!(status.sinks[0].bytes, bytes);

    let table = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("127.0.0.2") && l.contains(&bytes.to_string())),
        "{table}"
    );

    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGUSR1) };
    d.wait_for_log(&["status (SIGUSR1)"], WAIT);
    assert!(d.terminate().success());
    assert!(
        !d.dir.join("state/control.sock").exists(),
        "socket removed at exit"
    );
}
