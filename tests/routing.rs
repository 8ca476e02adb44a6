//! Routing: each frame goes to every sink whose `match` (device globs, listeners, formats)
//! takes it; a frame no sink takes is counted, logged once per device, and a native device
//! still gets its ACK.

mod common;

use std::net::IpAddr;

use common::*;
use framegate::protocol::Message;

fn sink(name: &str, matches: &str) -> String {
    format!(
        "\n[[sink]]\nname = \"{name}\"\ntype = \"file\"\nfsync = false\npath = \"@DIR@/{name}/{{device}}/{{seq:08}}.{{ext}}\"\nmatch = {{ {matches} }}\n"
    )
}

fn count(d: &Daemon, sink: &str, device: &str) -> usize {
    std::fs::read_dir(d.dir.join(sink).join(device)).map_or(0, |r| {
        r.filter(|e| !is_tmp(&e.as_ref().unwrap().path())).count()
    })
}

#[test]
fn frames_go_to_the_sinks_that_match_them() {
    let mut d = Daemon::start(
        &[
            listener("lan", "auto", ""),
            listener("wan", "auto", ""),
            "\n[devices]\n\"127.0.0.2\" = \"door-1\"\n\"127.0.0.3\" = \"yard-1\"\n".to_string(),
            sink("doors", "devices = [\"door-*\"]"),
            sink("pngs", "formats = [\"png\"]"),
            sink("wan", "listeners = [\"wan\"]"),
        ]
        .concat(),
    );
    let (lan, wan) = (d.addr("lan"), d.addr("wan"));
    let door = [jpeg(990, 1000), jpeg(991, 1000), png(992, 1000)];
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 2]), lan),
        &encode(Wire::U32Le, &door),
    );
    let yard = [jpeg(993, 1000), jpeg(994, 1000), png(995, 1000)];
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 3]), lan),
        &encode(Wire::U32Le, &yard),
    );
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 3]), wan),
        &encode(Wire::U32Le, &yard[..1]),
    );
    // Native: one frame a sink takes, one no sink takes; both are answered with an ACK.
    assert_eq!(
        native_frame(lan, "door-9", &jpeg(996, 800)),
        Message::Ack { seq: 1 }
    );
    assert_eq!(
        native_frame(lan, "yard-9", &jpeg(997, 800)),
        Message::Ack { seq: 1 }
    );
    d.wait_for_log(&["connection from 127.0.0.3", "on \"wan\" closed"], WAIT);
    assert!(d.terminate().success());

    assert_eq!(count(&d, "doors", "door-1"), 3, "every door-1 frame");
    assert_eq!(count(&d, "pngs", "door-1"), 1, "door-1's PNG");
    assert_eq!(count(&d, "pngs", "yard-1"), 1, "yard-1's PNG");
    assert_eq!(count(&d, "doors", "yard-1"), 0);
    assert_eq!(count(&d, "wan", "yard-1"), 1, "only what came in on wan");
    assert_eq!(count(&d, "wan", "door-1"), 0);
    assert_eq!(count(&d, "doors", "door-9"), 1);
    for sink in ["doors", "pngs", "wan"] {
        assert_eq!(count(&d, sink, "yard-9"), 0);
    }
    // yard-1's two JPEGs on lan matched nothing: logged once for the device.
    assert_eq!(d.log_lines(&["yard-1#", "matches no sink"]).len(), 1);
    assert_eq!(d.log_lines(&["yard-9#", "matches no sink"]).len(), 1);
}

#[test]
fn match_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[listener]]\nname = \"lan\"\nbind = \"127.0.0.1:0\"\n[[sink]]\nname = \"x\"\ntype = \"discard\"\nmatch = { listeners = [\"nope\"] }\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:7:") && err.contains("no [[listener]] has this name"),
        "{err}"
    );
}
