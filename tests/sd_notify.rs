//! sd_notify through a socket the test creates (no systemd here): READY=1 once listening,
//! WATCHDOG=1 keep-alives with WATCHDOG_USEC, STATUS= lines, RELOADING=1 … READY=1 around a
//! SIGHUP reload, STOPPING=1 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Datagrams until one contains `want` (bounded by [`WAIT`]); returns them all.
fn until(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no {want:?} within {WAIT:?}; got {seen:?}"
        );
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(text.clone());
                if text.contains(want) {
                    return text;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}

#[test]
fn ready_watchdog_status_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = dir.path().join("framegate.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{0}/state\"\n{1}{2}",
            dir.path().display(),
            listener("le", "u32le", ""),
            FILE_SINK.replace(DIR, &dir.path().display().to_string())
        ),
    )
    .unwrap();
    let mut daemon = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = daemon.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[framegate] {line}");
            let _ = tx.send(line);
        }
    });
    let wait_log = |want: &str| loop {
        let line = log.recv_timeout(WAIT).expect("the daemon's log went quiet");
        if line.contains(want) {
            return line;
        }
    };

    let mut seen = Vec::new();
    let ready = until(&socket, "READY=1", &mut seen);
    assert!(ready.contains("STATUS=serving 1 listener(s)"), "{ready}");
    wait_log("framegate ready");
    until(&socket, "WATCHDOG=1", &mut seen);
    until(&socket, "connection(s)", &mut seen);

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC), the reload, READY=1 again.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    let reloading = until(&socket, "RELOADING=1", &mut seen);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    until(&socket, "READY=1", &mut seen);
    wait_log("reloaded");
    until(&socket, "WATCHDOG=1", &mut seen);

    // SAFETY: as above.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let stopping = until(&socket, "STOPPING=1", &mut seen);
    assert!(stopping.contains("STATUS=shutting down"), "{stopping}");
    assert!(daemon.wait().unwrap().success());
}
