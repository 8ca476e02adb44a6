//! Socket activation: the daemon takes a listening socket passed as systemd does (descriptor 3,
//! LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), so a device that connected while no daemon ran
//! waits in the socket's backlog and is served once the daemon starts.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use common::*;

#[test]
fn a_passed_socket_is_used_and_queued_devices_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // systemd's part: the socket exists before the daemon.
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    // A device connects and sends while nothing runs yet: the kernel queues it.
    let frame = jpeg(950, 20_000);
    let mut early = TcpStream::connect(addr).unwrap();
    early
        .write_all(&encode(Wire::U32Le, std::slice::from_ref(&frame)))
        .unwrap();
    early.shutdown(std::net::Shutdown::Write).unwrap();

    let mut d = Daemon::start_in_with_socket(
        dir.path(),
        &format!(
            "[[listener]]\nname = \"devices\"\nbind = \"{addr}\"\nframing = \"u32le\"\n{FILE_SINK}"
        ),
        &socket,
        "devices",
    );
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.contains("uses the socket systemd passed (devices")),
        "{log:?}"
    );
    // The early device is served from the backlog.
    wait_closed_by_server(&mut early, WAIT).unwrap();
    let root = dir.path().join("frames/127.0.0.1/devices");
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_dir(&root).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the queued frame was not stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stored = std::fs::read(root.join("00000001.jpg")).unwrap();
    assert!(stored == frame, "stored bytes differ");
    assert_eq!(d.terminate().code(), Some(0));
}
