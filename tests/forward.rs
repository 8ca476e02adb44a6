//! The forward sink between two real daemons on 127.0.0.1: a gateway that spools frames and
//! forwards them to a central framegate over the native protocol (with a device secret), and
//! the central one storing them as files.
//!
//! The central daemon's listening socket is held by the test and passed to it (socket
//! activation), so it restarts on the same port; while it is down, the gateway's connections
//! wait unanswered in that socket's backlog and time out.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use framegate::status::Status;

/// The devices the central daemon knows, each with the gateway's secret.
const DEVICES: [&str; 5] = ["cam-a", "cam-b", "127.0.0.2", "cam-k", "cam-k2"];
const SECRET: &str = "gateway-secret";
/// How long forwarding may take to catch up after an outage (the gateway's reconnect backoff
/// is at most 15 s).
const CATCH_UP: Duration = Duration::from_secs(90);

fn central_config(port: u16) -> String {
    let mut config = format!(
        "[[listener]]\nname = \"up\"\nbind = \"127.0.0.1:{port}\"\nframing = \"native\"\nrequire_auth = true\n"
    );
    for device in DEVICES {
        config.push_str(&format!("\n[device.\"{device}\"]\nsecret = \"{SECRET}\"\n"));
    }
    config + FILE_SINK
}

fn gateway_config(central: SocketAddr) -> String {
    [
        listener("cams", "auto", ""),
        format!(
            r#"
[[sink]]
name = "central"
type = "forward"
to = ["{central}"]
secret = "{SECRET}"
via = "gw-test"
connect_timeout = "1s"
"#
        ),
    ]
    .concat()
}

/// `framegate status --json` of daemon `d`.
fn status(d: &Daemon) -> Status {
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(d.dir.join("framegate.toml"))
        .output()
        .unwrap();
    assert_ok("framegate status", &out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The gateway's spool: (frames in it, frames forwarded).
fn spool(d: &Daemon) -> (u64, u64) {
    let s = status(d);
    let spool = s.sinks[0].spool.expect("a forward sink shows its spool");
    (spool.frames, spool.forwarded)
}

/// Polls `check` until it returns true; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `frames` natively as `device` with `framegate send` (exits 0 once every frame is
/// ACKed by the gateway), on a thread.
fn send_native(
    dir: &Path,
    to: SocketAddr,
    device: &str,
    frames: &[Vec<u8>],
) -> thread::JoinHandle<()> {
    let files = dir.join(format!("send-{device}-{}", frames.len()));
    write_frames(&files, frames);
    let (to, device) = (to.to_string(), device.to_string());
    thread::spawn(move || {
        let out = Command::new(BIN)
            .args([
                "send",
                "--to",
                &to,
                "--device",
                &device,
                "--retry-for",
                "60s",
            ])
            .arg(&files)
            .output()
            .unwrap();
        assert_ok(&format!("framegate send --device {device}"), &out);
    })
}

/// Asserts that the central daemon stored exactly `sent` for `device`: one file per frame,
/// named by sequence number 1, 2, …, byte for byte.
fn assert_stored(central: &Daemon, device: &str, sent: &[Vec<u8>]) {
    let stored = central.wait_for_frames(device, "up", sent.len());
    assert_eq!(stored.len(), sent.len(), "{device}: frames stored twice?");
    let seqs = assert_frames_eq(&stored, sent);
    assert_eq!(
        seqs,
        (1..=sent.len() as u64).collect::<Vec<_>>(),
        "{device}"
    );
}

#[test]
fn frames_spooled_during_an_upstream_outage_arrive_exactly_once() {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let central_dir = tempfile::tempdir().unwrap();
    let mut central =
        Daemon::start_in_with_socket(central_dir.path(), &central_config(port), &socket, "up");
    let mut gateway = Daemon::start(&gateway_config(central.addr("up")));
    let cams = gateway.addr("cams");

    // The path works: 10 frames go through.
    let warmup = frames(1, 10, 1_000, 30_000);
    send_native(&gateway.dir, cams, "cam-a", &warmup)
        .join()
        .unwrap();
    central.wait_for_frames("cam-a", "up", 10);
    wait_until("the spool drained", WAIT, || spool(&gateway) == (0, 10));

    // The upstream goes away; 500 frames arrive at the gateway meanwhile.
    assert!(central.terminate().success());
    let a = frames(2, 200, 1_000, 30_000);
    let b = frames(3, 150, 1_000, 30_000);
    let legacy = frames(4, 150, 1_000, 30_000);
    let senders = [
        send_native(&gateway.dir, cams, "cam-a", &a),
        send_native(&gateway.dir, cams, "cam-b", &b),
    ];
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 2]), cams),
        &encode(Wire::U32Le, &legacy),
    );
    for sender in senders {
        sender.join().unwrap();
    }
    wait_until("500 frames in the spool", WAIT, || {
        spool(&gateway) == (500, 10)
    });
    // The gateway notices: its handshakes time out in the unanswered backlog.
    gateway.wait_for_log(
        &["forward sink \"central\"", "cannot reach any upstream"],
        WAIT,
    );
    let table = Command::new(BIN)
        .args(["status", "--config"])
        .arg(gateway.dir.join("framegate.toml"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("central") && l.split_whitespace().nth(6) == Some("500")),
        "the table shows 500 spooled frames:\n{table}"
    );

    // The upstream comes back on the same port: everything arrives, once.
    let central =
        Daemon::start_in_with_socket(central_dir.path(), &central_config(port), &socket, "up");
    wait_until("the spool drained", CATCH_UP, || {
        spool(&gateway) == (0, 510)
    });
    assert_stored(&central, "cam-a", &[warmup, a].concat());
    assert_stored(&central, "cam-b", &b);
    assert_stored(&central, "127.0.0.2", &legacy);
    let s = status(&central);
    assert_eq!(
        (s.sinks[0].committed, s.sinks[0].failed),
        (500, 0),
        "the restarted upstream stored each of the 500 frames once"
    );
    for device in ["cam-a", "cam-b", "127.0.0.2"] {
        assert!(
            s.devices.iter().any(|d| d.device == device),
            "{device} not known upstream: {:?}",
            s.devices
        );
    }
    assert_no_tmp(&central.frames_root());
}

#[test]
fn a_gateway_killed_with_frames_in_its_spool_loses_none() {
    // Both daemons keep their ports across restarts: the devices retry the same address.
    let central_socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = central_socket.local_addr().unwrap().port();
    let gateway_socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let cams = gateway_socket.local_addr().unwrap();
    let gateway_dir = tempfile::tempdir().unwrap();
    let config = gateway_config(([127, 0, 0, 1], port).into());
    let start_gateway =
        || Daemon::start_in_with_socket(gateway_dir.path(), &config, &gateway_socket, "cams");

    // The upstream is not running yet: 200 frames wait in the spool; then SIGKILL.
    let mut gateway = start_gateway();
    let k = frames(10, 200, 1_000, 40_000);
    send_native(gateway_dir.path(), cams, "cam-k", &k)
        .join()
        .unwrap();
    assert_eq!(spool(&gateway), (200, 0));
    assert!(!gateway.kill9().success());
    drop(gateway);

    // Back up: the spool is recovered as it was.
    let mut gateway = start_gateway();
    assert_eq!(spool(&gateway).0, 200);

    // The upstream starts; while the gateway forwards, a device sends more, and the gateway
    // is killed again mid-way. The device retries until the restarted gateway ACKs it all.
    let central_dir = tempfile::tempdir().unwrap();
    let central = Daemon::start_in_with_socket(
        central_dir.path(),
        &central_config(port),
        &central_socket,
        "up",
    );
    let k2 = frames(11, 150, 1_000, 40_000);
    let sender = send_native(gateway_dir.path(), cams, "cam-k2", &k2);
    wait_until("forwarding under way", CATCH_UP, || {
        walk(&central.frames_root().join("cam-k")).len() >= 20
    });
    assert!(!gateway.kill9().success());
    drop(gateway);
    let gateway = start_gateway();
    sender.join().unwrap();

    wait_until("the spool drained", CATCH_UP, || spool(&gateway).0 == 0);
    assert_stored(&central, "cam-k", &k);
    assert_stored(&central, "cam-k2", &k2);
    let s = status(&central);
    assert_eq!(
        (s.sinks[0].committed, s.sinks[0].failed),
        (350, 0),
        "each frame stored once, resends recognised"
    );
}

#[test]
fn check_describes_a_forward_sink_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let config = format!(
        "state_dir = \"{}/state\"\n{}",
        dir.path().display(),
        gateway_config(([127, 0, 0, 1], 1920).into())
    );
    std::fs::write(&path, config).unwrap();
    let out = framegate(&["check", "--config", path.to_str().unwrap()]);
    assert_ok("framegate check", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    let spool = dir.path().join("state/spool/central");
    let line = text
        .lines()
        .find(|l| l.starts_with("sink \"central\": forward to 127.0.0.1:1920"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("spool {}", spool.display())),
        "{line}"
    );
    assert!(
        line.contains("secret yes") && line.contains("via \"gw-test\""),
        "{line}"
    );
    assert!(!text.contains(SECRET), "the secret is printed: {text}");
}
