//! Socket activation: the daemon takes a listening socket passed as systemd does (descriptor 3,
//! LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), so a device that connected while no daemon ran
//! waits in the socket's backlog and is served once the daemon starts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

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

    let config = dir.path().join("framegate.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{0}/state\"\n[[listener]]\nname = \"devices\"\nbind = \"{addr}\"\nframing = \"u32le\"\n{1}",
            dir.path().display(),
            FILE_SINK.replace(DIR, &dir.path().display().to_string())
        ),
    )
    .unwrap();
    let fd = socket.as_raw_fd();
    let mut command = Command::new("sh");
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the daemon, as systemd's would.
    command
        .args([
            "-c",
            "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=devices exec \"$0\" run --config \"$1\"",
            BIN,
        ])
        .arg(&config)
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; in the child only, they put the listening
    // socket at descriptor 3 without close-on-exec (dup2 onto itself would keep the flag).
    unsafe {
        command.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut daemon = command.spawn().unwrap();
    drop(socket); // the daemon has its own copy now
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        eprintln!("[framegate] {line}");
        let ready = line.contains("framegate ready");
        log.push(line);
        if ready {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
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
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().unwrap().success());
}
