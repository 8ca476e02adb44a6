//! Reload without dropping devices: a device streams on a listener that stays while the config
//! is edited (SIGHUP and file changes): a sink added, one changed, an invalid edit refused,
//! a listener removed and one added. The streaming connection never drops and no frame is lost
//! or stored twice.

mod common;

use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

fn sink(name: &str, dir: &str) -> String {
    format!(
        "\n[[sink]]\nname = \"{name}\"\ntype = \"file\"\npath = \"@DIR@/{dir}/{{device}}/{{seq:08}}.{{ext}}\"\n"
    )
}

/// Writes a new config (as the harness does: DIR replaced, state_dir kept).
fn write_config(d: &Daemon, parts: &[String]) {
    let text = format!(
        "state_dir = \"{}/state\"\n{}",
        d.dir.display(),
        parts.concat()
    )
    .replace(DIR, &d.dir.display().to_string());
    // Like an editor: write elsewhere, rename over the file.
    let tmp = d.dir.join(".framegate.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, d.dir.join("framegate.toml")).unwrap();
}

fn hangup(d: &Daemon) {
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
}

fn stored(d: &Daemon, dir: &str) -> Vec<Vec<u8>> {
    let root = d.dir.join(dir).join("127.0.0.2");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| !is_tmp(p));
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn edits_apply_while_a_device_streams_and_nothing_is_lost() {
    let keep = listener("keep", "u32le", "");
    let gone = listener("gone", "u32le", "");
    let mut d =
        Daemon::start(&[keep.clone(), gone.clone(), sink("b", "b"), sink("a", "a")].concat());

    // The device streams on "keep" over one connection until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (to, stop) = (d.addr("keep"), stop.clone());
        thread::spawn(move || {
            let mut stream = connect_from(IpAddr::from([127, 0, 0, 2]), to);
            let mut sent = Vec::new();
            for i in 0..10_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let frame = jpeg(2000 + i, 3000 + (i as usize % 500));
                let bytes = [&(frame.len() as u32).to_le_bytes()[..], &frame].concat();
                stream
                    .write_all(&bytes)
                    .expect("the streaming connection must stay up");
                sent.push(frame);
                thread::sleep(Duration::from_millis(5));
            }
            // u32le's end marker, then the server closes.
            send_and_finish(stream, &[0; 4]);
            sent
        })
    };
    // A device on the listener that will be removed.
    let mut on_gone = TcpStream::connect(d.addr("gone")).unwrap();
    d.wait_for_frames("127.0.0.2", "keep", 0);
    thread::sleep(Duration::from_millis(200));

    // 1. A sink added, by SIGHUP.
    write_config(
        &d,
        &[
            keep.clone(),
            gone.clone(),
            sink("b", "b"),
            sink("a", "a"),
            sink("c", "c"),
        ],
    );
    hangup(&d);
    d.wait_for_log(&["sink \"c\" added"], WAIT);
    thread::sleep(Duration::from_millis(200));

    // 2. An invalid edit, noticed by the file watcher: refused, nothing changes.
    write_config(
        &d,
        &[keep.clone(), "bogus_key = 1\n".into(), sink("b", "b")],
    );
    d.wait_for_log(&["refused", "bogus_key"], WAIT);
    thread::sleep(Duration::from_millis(200));

    // 3. Sink "a" changed (new path), "gone" removed, "new" added; file watcher again.
    let new = listener("new", "u32le", "");
    write_config(
        &d,
        &[
            keep.clone(),
            new.clone(),
            sink("b", "b"),
            sink("a", "a2"),
            sink("c", "c"),
        ],
    );
    d.wait_for_log(&["sink \"a\" changed: rebuilt"], WAIT);
    d.wait_for_log(&["listener \"gone\" removed"], WAIT);
    let new_addr = d.wait_for_log(&["listener \"new\"", "listening on"], WAIT);
    let new_addr = new_addr
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    thread::sleep(Duration::from_millis(200));

    // The removed listener's idle connection is closed; the new listener serves.
    wait_closed_by_server(&mut on_gone, WAIT).unwrap();
    let extra = jpeg(2999, 1234);
    let s = TcpStream::connect(new_addr.as_str()).unwrap();
    send_and_finish(s, &encode(Wire::U32Le, std::slice::from_ref(&extra)));

    stop.store(true, Ordering::Relaxed);
    let sent = streamer
        .join()
        .expect("the streaming device never lost its connection");
    assert!(sent.len() > 20, "only {} frames streamed", sent.len());
    assert!(d.terminate().success());

    // "b" never changed: every frame, once, in order.
    assert_eq!(stored(&d, "b"), sent, "sink b");
    // "a" before its change and "a2" after: together every frame once.
    let mut a = stored(&d, "a");
    a.extend(stored(&d, "a2"));
    let (mut a_sorted, mut sent_sorted) = (a.clone(), sent.clone());
    a_sorted.sort();
    sent_sorted.sort();
    assert_eq!(a_sorted, sent_sorted, "sinks a + a2");
    assert!(!stored(&d, "a2").is_empty() && !stored(&d, "a").is_empty());
    // "c" from its addition on: a suffix of what was sent.
    let c = stored(&d, "c");
    assert!(!c.is_empty() && c.len() < sent.len());
    assert_eq!(
        c[..],
        sent[sent.len() - c.len()..],
        "sink c holds the frames after it was added"
    );
    // The streaming connection was never closed before the end.
    let closes = d.log_lines(&["(device 127.0.0.2) on \"keep\" closed"]);
    assert_eq!(closes.len(), 1, "{closes:?}");
}
