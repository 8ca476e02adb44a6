//! Reload without dropping devices: 50 devices stream on a listener that stays while the config
//! is edited 10 times (sinks added, changed and removed, listeners removed and added, one
//! invalid edit; by SIGHUP and by the file watcher). No streaming connection drops and no frame
//! is lost or stored twice.

mod common;

use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const DEVICES: u8 = 50;

fn sink(name: &str, dir: &str) -> String {
    format!(
        "\n[[sink]]\nname = \"{name}\"\ntype = \"file\"\nfsync = false\npath = \"@DIR@/{dir}/{{device}}/{{seq:08}}.{{ext}}\"\n"
    )
}

/// Writes a new config like an editor does (a new file renamed over the old one).
fn write_config(d: &Daemon, parts: &[String]) {
    let text = format!(
        "state_dir = \"{}/state\"\n{}",
        d.dir.display(),
        parts.concat()
    )
    .replace(DIR, &d.dir.display().to_string());
    let tmp = d.dir.join(".framegate.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, d.dir.join("framegate.toml")).unwrap();
}

fn hangup(d: &Daemon) {
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
}

/// The frames stored under `dirs` for `device`, in sequence order across the dirs.
fn stored(d: &Daemon, dirs: &[&str], device: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for dir in dirs {
        let root = d.dir.join(dir).join(device);
        for entry in std::fs::read_dir(&root).into_iter().flatten() {
            let path = entry.unwrap().path();
            if !is_tmp(&path) {
                files.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    path,
                ));
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn ten_edits_while_fifty_devices_stream_lose_nothing() {
    let keep = listener("keep", "u32le", "");
    let gone = listener("gone", "u32le", "");
    let new = listener("new", "u32le", "");
    let mut d =
        Daemon::start(&[keep.clone(), gone.clone(), sink("b", "b"), sink("a", "a")].concat());

    let stop = Arc::new(AtomicBool::new(false));
    let streamers: Vec<_> = (0..DEVICES)
        .map(|i| {
            let (to, stop) = (d.addr("keep"), stop.clone());
            thread::spawn(move || {
                let mut stream = connect_from(IpAddr::from([127, 0, 0, 10 + i]), to);
                let mut sent = Vec::new();
                for n in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let frame = jpeg(u64::from(i) * 100_000 + n, 2000 + (n as usize % 300));
                    let bytes = [&(frame.len() as u32).to_le_bytes()[..], &frame].concat();
                    stream
                        .write_all(&bytes)
                        .expect("a streaming connection on an unchanged listener must stay up");
                    sent.push(frame);
                    thread::sleep(Duration::from_millis(40));
                }
                send_and_finish(stream, &[0; 4]); // u32le's end marker
                sent
            })
        })
        .collect();
    let mut on_gone = TcpStream::connect(d.addr("gone")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while stored(&d, &["b"], &format!("127.0.0.{}", 10 + DEVICES - 1)).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the devices' frames are not being stored"
        );
        thread::sleep(Duration::from_millis(20));
    }

    // The ten edits. Each waits for the daemon to say it applied (or refused) it.
    let step = |d: &mut Daemon, parts: &[String], signal: bool, expect: &str| {
        let before = d.log_lines(&[expect]).len();
        write_config(d, parts);
        if signal {
            hangup(d);
        }
        let deadline = std::time::Instant::now() + WAIT;
        while d.log_lines(&[expect]).len() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "no {expect:?} after an edit"
            );
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(150));
    };
    let base = |extra: &[String]| {
        let mut parts = vec![keep.clone(), sink("b", "b")];
        parts.extend_from_slice(extra);
        parts
    };
    // 1. sink c added (SIGHUP).
    step(
        &mut d,
        &[base(&[gone.clone(), sink("a", "a"), sink("c", "c")])].concat(),
        true,
        "sink \"c\" added",
    );
    // 2. an invalid edit (watcher): refused, nothing changes.
    step(
        &mut d,
        &[base(&["bogus_key = 1\n".into()])].concat(),
        false,
        "refused",
    );
    // 3. sink a changed (watcher).
    step(
        &mut d,
        &[base(&[gone.clone(), sink("a", "a2"), sink("c", "c")])].concat(),
        false,
        "sink \"a\" changed",
    );
    // 4. listener gone removed, new added (SIGHUP).
    step(
        &mut d,
        &[base(&[new.clone(), sink("a", "a2"), sink("c", "c")])].concat(),
        true,
        "listener \"gone\" removed",
    );
    // 5. sink c changed.
    step(
        &mut d,
        &[base(&[new.clone(), sink("a", "a2"), sink("c", "c2")])].concat(),
        false,
        "sink \"c\" changed",
    );
    // 6. sink c removed.
    step(
        &mut d,
        &[base(&[new.clone(), sink("a", "a2")])].concat(),
        true,
        "sink \"c\" removed",
    );
    // 7. sink e added.
    step(
        &mut d,
        &[base(&[new.clone(), sink("a", "a2"), sink("e", "e")])].concat(),
        false,
        "sink \"e\" added",
    );
    // 8. sink a changed again.
    step(
        &mut d,
        &[base(&[new.clone(), sink("a", "a3"), sink("e", "e")])].concat(),
        true,
        "sink \"a\" changed",
    );
    // 9. a listener setting changed (idle_timeout): the listener keeps its socket.
    let keep_slower = listener("keep", "u32le", "idle_timeout = \"2m\"");
    step(
        &mut d,
        &[vec![
            keep_slower.clone(),
            sink("b", "b"),
            new.clone(),
            sink("a", "a3"),
            sink("e", "e"),
        ]]
        .concat(),
        false,
        "listener \"keep\": new settings apply",
    );
    // 10. the same file again (SIGHUP): nothing to change.
    step(
        &mut d,
        &[vec![
            keep_slower,
            sink("b", "b"),
            new,
            sink("a", "a3"),
            sink("e", "e"),
        ]]
        .concat(),
        true,
        "reloaded",
    );
    wait_closed_by_server(&mut on_gone, WAIT).unwrap();

    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Vec<Vec<u8>>> = streamers
        .into_iter()
        .map(|s| s.join().expect("a streaming device lost its connection"))
        .collect();
    assert!(d.terminate().success());

    for (i, sent) in sent.iter().enumerate() {
        let device = format!("127.0.0.{}", 10 + i);
        assert!(sent.len() >= 10, "{device} sent only {}", sent.len());
        // b never changed: every frame, once, in order.
        assert!(
            stored(&d, &["b"], &device) == *sent,
            "{device}: sink b differs from what was sent"
        );
        // a, rebuilt twice: its three directories together hold every frame once, in order.
        assert!(
            stored(&d, &["a", "a2", "a3"], &device) == *sent,
            "{device}: sinks a + a2 + a3 differ from what was sent"
        );
        // One close per device: the one at the end.
        let closes = d.log_lines(&[&format!("(device {device}) on \"keep\" closed")]);
        assert_eq!(closes.len(), 1, "{device}: {closes:?}");
    }
    for dir in ["a", "a2", "a3", "b", "c", "c2", "e"] {
        assert_no_tmp(&d.dir.join(dir));
    }
}
