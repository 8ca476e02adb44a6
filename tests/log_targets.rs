//! `[log] target`: syslog datagrams (RFC 3164, facility and ident from the config) to a socket
//! the test binds, and journal-style `<N>` priority prefixes when `JOURNAL_STREAM` names the
//! daemon's stderr.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn config(dir: &std::path::Path, log: &str) -> std::path::PathBuf {
    let path = dir.join("framegate.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"{0}/state\"\n[log]\n{log}\n{1}{2}",
            dir.display(),
            listener("le", "u32le", ""),
            FILE_SINK.replace(DIR, &dir.display().to_string())
        ),
    )
    .unwrap();
    path
}

fn stop(child: &mut std::process::Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn syslog_lines_carry_facility_ident_and_priority() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = config(
        dir.path(),
        &format!(
            "target = \"syslog\"\nfacility = \"local3\"\nident = \"fgtest\"\nsocket = \"{}\"",
            socket_path.display()
        ),
    );
    let mut daemon = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while !lines.iter().any(|l: &String| l.contains("framegate ready")) {
        assert!(Instant::now() < deadline, "no ready line in {lines:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    stop(&mut daemon);
    // local3 (19) * 8 + info (6) = 158.
    let ready = lines
        .iter()
        .find(|l| l.contains("framegate ready"))
        .unwrap();
    assert!(ready.starts_with("<158>"), "{ready}");
    assert!(ready.contains(&format!("fgtest[{pid}]:")), "{ready}");
    let first = &lines[0];
    assert!(first.contains("logging to syslog at"), "{first}");
}

#[test]
fn journal_lines_carry_priority_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "target = \"auto\"");
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut daemon = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&stderr_path)
        .unwrap()
        .contains("framegate ready")
    {
        assert!(Instant::now() < deadline, "no ready line");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut daemon);
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    let ready = text
        .lines()
        .find(|l| l.contains("framegate ready"))
        .unwrap();
    assert!(ready.starts_with("<6>framegate ready"), "{ready}");
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("logging to the journal"),
        "{text}"
    );
}
