//! The native protocol against the real daemon: handshake, ACK after the file is stored,
//! duplicates ACKed without a second file, NACK reasons, challenge–response, and `auto`
//! recognising the native HELLO.

mod common;

use std::io::{Read, Write};

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use framegate::protocol::wire::{auth_tag, checksum};
use framegate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// A blocking test client speaking the native protocol.
struct Client {
    stream: TcpStream,
    decoder: MessageDecoder,
}

impl Client {
    fn connect(d: &Daemon, listener: &str) -> Client {
        let stream = connect(d.addr(listener));
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Client {
            stream,
            decoder: MessageDecoder::new(u64::MAX),
        }
    }

    fn send(&mut self, message: Message, payload: &[u8]) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        bytes.extend_from_slice(payload);
        self.stream.write_all(&bytes).unwrap();
    }

    /// The next message from the server; `None` once it closed the connection.
    fn recv(&mut self) -> Option<Message> {
        let mut buf = [0u8; 1];
        loop {
            let n = self.stream.read(&mut buf).unwrap();
            if n == 0 {
                return None;
            }
            if let Some(Decoded::Message(m)) = self.decoder.feed(&buf).unwrap().event {
                return Some(m);
            }
        }
    }

    /// Like [`Client::recv`], answering and skipping the server's PINGs.
    fn recv_reply(&mut self) -> Option<Message> {
        loop {
            match self.recv() {
                Some(Message::Ping { token }) => self.send(Message::Pong { token }, &[]),
                other => return other,
            }
        }
    }

    fn hello(&mut self, device: &str) -> Message {
        self.send(
            Message::Hello {
                device: device.into(),
                has_secret: false,
            },
            &[],
        );
        self.recv().expect("an answer to HELLO")
    }

    fn frame(&mut self, seq: u64, payload: &[u8]) {
        let header = FrameHeader {
            seq,
            captured_us: 1_700_000_000_000_000,
            content_type: ContentType::Jpeg,
            meta: vec![("exposure".into(), "10ms".into())],
            payload_len: payload.len() as u32,
            crc32c: checksum(payload),
        };
        self.send(Message::Frame(header), payload);
    }
}

/// Asserts that `reply` NACKs frame `seq` for `reason`; returns the NACK's text.
fn expect_nack(reply: Option<Message>, seq: u64, reason: Reason) -> String {
    match reply {
        Some(Message::Nack {
            seq: got_seq,
            reason: got_reason,
            text,
        }) if got_seq == seq && got_reason == reason => text,
        other => panic!("expected NACK #{seq} ({reason:?}), got {other:?}"),
    }
}

fn daemon() -> Daemon {
    Daemon::start(
        &[
            listener(
                "native",
                "native",
                "max_frame_bytes = \"100KB\"\nmax_in_flight = 4",
            ),
            listener("auto", "auto", ""),
            listener("locked", "native", "require_auth = true"),
            "\n[device.\"door-cam\"]\nsecret = \"s3cret\"\n".to_string(),
            FILE_SINK.to_string(),
        ]
        .concat(),
    )
}

#[test]
fn frames_are_acked_after_they_are_stored_and_duplicates_are_not_stored_twice() {
    let mut d = daemon();
    let mut c = Client::connect(&d, "native");
    assert_eq!(
        c.hello("yard-cam"),
        Message::Welcome {
            max_frame_bytes: 100_000,
            max_in_flight: 4,
            heartbeat_secs: 10,
            committed_through: 0
        }
    );
    let sent: Vec<Vec<u8>> = (0..4).map(|i| jpeg(100 + i, 20_000 + i as usize)).collect();
    // A full window in flight, then the ACKs (in any order).
    for (i, payload) in sent.iter().enumerate() {
        c.frame(i as u64 + 1, payload);
    }
    let mut acked: Vec<u64> = (0..4)
        .map(|_| match c.recv() {
            Some(Message::Ack { seq }) => seq,
            other => panic!("expected an ACK, got {other:?}"),
        })
        .collect();
    acked.sort_unstable();
    assert_eq!(acked, [1, 2, 3, 4]);
    // ACKed means stored: the files are there now, named by the device's own numbers.
    let stored = d.frames("yard-cam", "native");
    assert_eq!(assert_frames_eq(&stored, &sent), [1, 2, 3, 4]);

    // A resend of seq 2 (as after a lost ACK): ACKed again, nothing stored.
    c.frame(2, &sent[1]);
    assert_eq!(c.recv(), Some(Message::Ack { seq: 2 }));
    // A damaged payload, and one over max_frame_bytes: NACKs with the reason.
    let mut header_for_bad_crc = jpeg(200, 1000);
    c.frame(5, &header_for_bad_crc);
    assert_eq!(c.recv(), Some(Message::Ack { seq: 5 }));
    header_for_bad_crc[10] ^= 0xff;
    let header = FrameHeader {
        crc32c: checksum(&header_for_bad_crc) ^ 1,
        ..jpeg_header(6, &header_for_bad_crc)
    };
    c.send(Message::Frame(header), &header_for_bad_crc);
    expect_nack(c.recv(), 6, Reason::ChecksumMismatch);
    c.frame(7, &jpeg(201, 150_000));
    expect_nack(c.recv(), 7, Reason::TooLarge);
    // PING is answered.
    c.send(Message::Ping { token: 99 }, &[]);
    assert_eq!(c.recv(), Some(Message::Pong { token: 99 }));
    drop(c);

    // A new connection learns where to resume.
    let mut again = Client::connect(&d, "native");
    assert!(matches!(
        again.hello("yard-cam"),
        Message::Welcome {
            committed_through: 5,
            ..
        }
    ));
    drop(again);
    assert!(d.terminate().success());
    assert_eq!(
        d.frames("yard-cam", "native").len(),
        5,
        "nothing stored twice"
    );
    assert_no_tmp(&d.frames_root());
}

/// Many devices with full windows at once. Turns that answer several connections hand their
/// ACKs to the reply writer thread (on this machine, 4 to 39 hand-offs in a run; how many
/// depends on timing, so it is not asserted; `net::replies` tests the writer itself). Each
/// device must get exactly its own ACKs, each once, and every frame must be stored once, byte
/// for byte.
#[test]
fn many_devices_at_once_each_get_exactly_their_own_acks() {
    const DEVICES: usize = 48;
    const FRAMES: usize = 24;
    const WINDOW: usize = 16;
    let mut d = Daemon::start(
        &[
            listener("native", "native", &format!("max_in_flight = {WINDOW}")),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let barrier = Arc::new(Barrier::new(DEVICES));
    let devices: Vec<_> = (0..DEVICES)
        .map(|i| {
            let mut c = Client::connect(&d, "native");
            let barrier = barrier.clone();
            thread::spawn(move || {
                let name = format!("cam-{i:02}");
                assert!(matches!(
                    c.hello(&name),
                    Message::Welcome { max_in_flight, .. } if max_in_flight as usize == WINDOW
                ));
                let sent = frames(i as u64, FRAMES, 2_000, 12_000);
                barrier.wait();
                let (mut acked, mut next) = (Vec::new(), 0);
                while acked.len() < FRAMES {
                    while next < FRAMES && next - acked.len() < WINDOW {
                        c.frame(next as u64 + 1, &sent[next]);
                        next += 1;
                    }
                    match c.recv_reply() {
                        Some(Message::Ack { seq }) => acked.push(seq),
                        other => panic!("{name}: expected an ACK, got {other:?}"),
                    }
                }
                acked.sort_unstable();
                assert_eq!(acked, (1..=FRAMES as u64).collect::<Vec<_>>(), "{name}");
                (name, sent)
            })
        })
        .collect();
    let sent: Vec<(String, Vec<Vec<u8>>)> =
        devices.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(d.terminate().success());
    for (name, payloads) in &sent {
        let stored = d.frames(name, "native");
        let seqs = assert_frames_eq(&stored, payloads);
        assert_eq!(seqs, (1..=FRAMES as u64).collect::<Vec<_>>(), "{name}");
    }
    assert_no_tmp(&d.frames_root());
}

#[test]
fn auto_listeners_recognise_the_native_hello() {
    let mut d = daemon();
    let mut c = Client::connect(&d, "auto");
    assert!(matches!(c.hello("porch"), Message::Welcome { .. }));
    let payload = png(300, 5000);
    c.frame(1, &payload);
    assert_eq!(c.recv(), Some(Message::Ack { seq: 1 }));
    assert_frames_eq(&d.frames("porch", "auto"), &[payload]);
    assert!(d.terminate().success());
}

#[test]
fn challenge_response_admits_the_right_secret_only() {
    let mut d = daemon();
    let hello = |c: &mut Client, device: &str| {
        c.send(
            Message::Hello {
                device: device.into(),
                has_secret: true,
            },
            &[],
        );
        c.recv()
    };
    // The right secret.
    let mut c = Client::connect(&d, "locked");
    let Some(Message::Challenge { nonce }) = hello(&mut c, "door-cam") else {
        panic!("no challenge")
    };
    c.send(
        Message::Auth {
            tag: auth_tag(b"s3cret", &nonce, "door-cam"),
        },
        &[],
    );
    assert!(matches!(c.recv(), Some(Message::Welcome { .. })));
    c.frame(1, &jpeg(400, 3000));
    assert_eq!(c.recv(), Some(Message::Ack { seq: 1 }));

    // A wrong secret, and a device with none, on a listener that requires auth.
    let mut wrong = Client::connect(&d, "locked");
    let Some(Message::Challenge { nonce }) = hello(&mut wrong, "door-cam") else {
        panic!("no challenge")
    };
    wrong.send(
        Message::Auth {
            tag: auth_tag(b"guess", &nonce, "door-cam"),
        },
        &[],
    );
    assert!(matches!(
        wrong.recv(),
        Some(Message::Goodbye {
            reason: Reason::NotAuthorised,
            ..
        })
    ));
    assert_eq!(wrong.recv(), None, "closed after GOODBYE");
    let mut stranger = Client::connect(&d, "locked");
    assert!(matches!(
        hello(&mut stranger, "stranger"),
        Some(Message::Goodbye {
            reason: Reason::NotAuthorised,
            ..
        })
    ));
    d.wait_for_log(
        &["stranger", "no secret configured"],
        Duration::from_secs(30),
    );

    // The authorised device kept working throughout.
    c.frame(2, &jpeg(401, 3000));
    assert_eq!(c.recv(), Some(Message::Ack { seq: 2 }));
    assert!(d.terminate().success());
    assert_eq!(d.frames("door-cam", "locked").len(), 2);
}

#[test]
fn silent_peers_are_pinged_then_dropped_and_shutdown_says_goodbye() {
    let mut d = Daemon::start(
        &[
            listener("hb", "native", "heartbeat = \"1s\""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    // Silent after WELCOME: one PING per silence; no answer, dropped after 3 heartbeats.
    let mut quiet = Client::connect(&d, "hb");
    let local = quiet.stream.local_addr().unwrap();
    assert!(matches!(
        quiet.hello("quiet"),
        Message::Welcome {
            heartbeat_secs: 1,
            ..
        }
    ));
    assert!(matches!(quiet.recv(), Some(Message::Ping { .. })));
    assert_eq!(quiet.recv(), None, "dropped after three silent heartbeats");
    d.wait_for_log(&[&format!("connection from {local}"), "idle for 3s"], WAIT);

    // A peer that answers stays; SIGTERM sends it GOODBYE "shutting down".
    let mut alive = Client::connect(&d, "hb");
    assert!(matches!(alive.hello("alive"), Message::Welcome { .. }));
    let Some(Message::Ping { token }) = alive.recv() else {
        panic!("no ping")
    };
    alive.send(Message::Pong { token }, &[]);
    alive.frame(1, &jpeg(500, 2000));
    assert_eq!(alive.recv_reply(), Some(Message::Ack { seq: 1 }));
    assert!(d.terminate().success());
    assert!(matches!(
        alive.recv_reply(),
        Some(Message::Goodbye {
            reason: Reason::ShuttingDown,
            ..
        })
    ));
}

/// Duplicate suppression across restarts: every ACKed frame was recorded under `state_dir`
/// before its ACK, so after SIGTERM or SIGKILL a resend is ACKed again and not stored twice.
/// One sink: its worker records each commit itself.
#[test]
fn resends_after_a_restart_or_a_crash_are_not_stored_twice() {
    resends_are_not_stored_twice(
        &[listener("native", "native", ""), FILE_SINK.to_string()].concat(),
    );
}

/// Two sinks: the loop hands each commit to the recorder thread once both sinks reported.
#[test]
fn resends_of_frames_several_sinks_took_are_not_stored_twice() {
    resends_are_not_stored_twice(
        &[
            listener("native", "native", ""),
            FILE_SINK.to_string(),
            "\n[[sink]]\nname = \"also\"\ntype = \"discard\"\n".to_string(),
        ]
        .concat(),
    );
}

fn resends_are_not_stored_twice(config: &str) {
    let dir = tempfile::TempDir::new().unwrap();
    let config = config.to_string();
    let sent: Vec<Vec<u8>> = (0..6).map(|i| jpeg(600 + i, 4000 + i as usize)).collect();

    for (round, stop) in ["SIGTERM", "SIGKILL"].into_iter().enumerate() {
        let mut d = Daemon::start_in(dir.path(), &config);
        let mut c = Client::connect(&d, "native");
        let expected_resume = if round == 0 { 0 } else { 3 };
        assert!(
            matches!(c.hello("cam"), Message::Welcome { committed_through, .. } if committed_through == expected_resume),
            "{stop}: resume point"
        );
        // Round 0 sends 1..=3; round 1 resends 1..=3 (as after a lost ACK) and adds 4..=6.
        let seqs: Vec<u64> = if round == 0 {
            (1..=3).collect()
        } else {
            (1..=6).collect()
        };
        for &seq in &seqs {
            c.frame(seq, &sent[seq as usize - 1]);
            assert_eq!(
                c.recv_reply(),
                Some(Message::Ack { seq }),
                "{stop}: seq {seq}"
            );
        }
        if round == 0 {
            assert!(d.terminate().success());
        } else {
            d.kill9();
        }
    }
    // After the crash: everything ACKed is known.
    let mut d = Daemon::start_in(dir.path(), &config);
    let mut c = Client::connect(&d, "native");
    assert!(matches!(
        c.hello("cam"),
        Message::Welcome {
            committed_through: 6,
            ..
        }
    ));
    c.frame(6, &sent[5]);
    assert_eq!(c.recv_reply(), Some(Message::Ack { seq: 6 }));
    assert!(d.terminate().success());
    let stored = d.frames("cam", "native");
    assert_eq!(assert_frames_eq(&stored, &sent), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn allow_lists_require_auth_replays_and_sink_failures() {
    let mut d = Daemon::start(
        &[
            listener("only2", "auto", "allow = [\"127.0.0.2\"]"),
            listener("strict", "auto", "require_auth = true"),
            listener("native", "native", ""),
            "\n[device.\"cam\"]\nsecret = \"s3cret\"\n".to_string(),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    // Allow list: 127.0.0.1 is turned away at once, 127.0.0.2 is served.
    let mut stranger = connect(d.addr("only2"));
    let local = stranger.local_addr().unwrap();
    wait_closed_by_server(&mut stranger, WAIT).unwrap();
    d.wait_for_log(
        &[
            &format!("connection from {local}"),
            "not in the listener's allow list",
        ],
        WAIT,
    );
    let frame = jpeg(900, 3000);
    let ok = connect_from(std::net::IpAddr::from([127, 0, 0, 2]), d.addr("only2"));
    send_and_finish(ok, &encode(Wire::U32Le, std::slice::from_ref(&frame)));
    assert_frames_eq(&d.wait_for_frames("127.0.0.2", "only2", 1), &[frame]);

    // require_auth: a legacy device is refused, nothing stored.
    let mut legacy = connect(d.addr("strict"));
    let local = legacy.local_addr().unwrap();
    let _ = legacy.write_all(&encode(Wire::U32Le, &[jpeg(901, 2000)]));
    wait_closed_by_server(&mut legacy, WAIT).unwrap();
    d.wait_for_log(
        &[
            &format!("connection from {local}"),
            "a legacy framing refused",
        ],
        WAIT,
    );

    // A recorded HELLO + AUTH replayed on a new connection meets a new nonce: refused.
    let hello = Message::Hello {
        device: "cam".into(),
        has_secret: true,
    };
    let mut first = Client::connect(&d, "strict");
    first.send(hello.clone(), &[]);
    let Some(Message::Challenge { nonce }) = first.recv() else {
        panic!("no challenge")
    };
    let recorded = auth_tag(b"s3cret", &nonce, "cam");
    first.send(Message::Auth { tag: recorded }, &[]);
    assert!(matches!(first.recv(), Some(Message::Welcome { .. })));
    let mut replay = Client::connect(&d, "strict");
    replay.send(hello, &[]);
    assert!(matches!(replay.recv(), Some(Message::Challenge { .. })));
    replay.send(Message::Auth { tag: recorded }, &[]);
    assert!(matches!(
        replay.recv(),
        Some(Message::Goodbye {
            reason: Reason::NotAuthorised,
            ..
        })
    ));
    // The authenticated session keeps streaming.
    first.frame(1, &jpeg(902, 2000));
    assert_eq!(first.recv_reply(), Some(Message::Ack { seq: 1 }));

    // NACK "malformed" (seq 0) and "rejected by sink" (the file sink cannot write).
    std::fs::write(
        d.frames_root().join("blocked"),
        b"a file where a directory must go",
    )
    .unwrap();
    let mut c = Client::connect(&d, "native");
    c.hello("blocked");
    c.frame(0, &jpeg(903, 1000));
    expect_nack(c.recv_reply(), 0, Reason::Malformed);
    c.frame(1, &jpeg(904, 1000));
    let text = expect_nack(c.recv_reply(), 1, Reason::RejectedBySink);
    assert!(text.contains("Not a directory"), "{text}");
    assert!(d.terminate().success());
    assert!(
        d.frames_root().join("blocked").is_file(),
        "nothing stored for it"
    );
}

#[test]
fn a_frame_beyond_the_window_is_refused() {
    let mut d = Daemon::start(
        &[
            listener("one", "native", "max_in_flight = 1"),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let mut c = Client::connect(&d, "one");
    c.hello("cam");
    // Two frames in one write: the second is decoded while the first is still in the sinks
    // (commits are taken only after the loop finished reading).
    let (a, b) = (jpeg(910, 1000), jpeg(911, 1000));
    let mut bytes = Vec::new();
    for (seq, payload) in [(1u64, &a), (2, &b)] {
        Message::Frame(jpeg_header(seq, payload)).encode(&mut bytes);
        bytes.extend_from_slice(payload);
    }
    c.stream.write_all(&bytes).unwrap();
    let mut replies = vec![c.recv_reply().unwrap(), c.recv_reply().unwrap()];
    replies.sort_by_key(|m| matches!(m, Message::Ack { .. }));
    assert_eq!(replies[1], Message::Ack { seq: 1 }, "{replies:?}");
    expect_nack(Some(replies.swap_remove(0)), 2, Reason::WindowExceeded);
    assert!(d.terminate().success());
    assert_frames_eq(&d.frames("cam", "one"), &[a]);
}

/// A damaged frame reaches no sink (neither of two, nor a hook that follows one of them), is
/// NACKed with its reason, logged with the peer, counted against the device rather than the
/// sinks, and stored once when the device sends it again.
#[test]
fn a_damaged_frame_reaches_no_sink_and_its_resend_is_stored_once() {
    let dir = tempfile::TempDir::new().unwrap();
    hook_script(dir.path(), "hook.sh", "echo \"$1\" >> \"$2\"\n");
    let config = [
        listener("native", "native", "max_frame_bytes = \"100KB\""),
        FILE_SINK.to_string(),
        r#"
[[sink]]
name = "copy"
type = "file"
path = "@DIR@/copy/{device}/{seq}.{ext}"

[[sink]]
name = "hook"
type = "exec"
after = "files"
input = "none"
command = ["@DIR@/hook.sh", "{seq}", "@DIR@/hook.log"]
"#
        .to_string(),
    ]
    .concat();
    let mut d = Daemon::start_in(dir.path(), &config);
    let mut c = Client::connect(&d, "native");
    assert!(matches!(c.hello("cam"), Message::Welcome { .. }));
    let good = jpeg(300, 5000);
    let mut damaged = good.clone();
    damaged[100] ^= 0x40;
    c.send(
        Message::Frame(FrameHeader {
            seq: 1,
            captured_us: 1_700_000_000_000_000,
            content_type: ContentType::Jpeg,
            meta: vec![],
            payload_len: damaged.len() as u32,
            crc32c: checksum(&good),
        }),
        &damaged,
    );
    let text = expect_nack(c.recv_reply(), 1, Reason::ChecksumMismatch);
    assert!(text.contains("CRC-32C"), "{text}");
    let line = d.wait_for_log(&["device cam", "#1 refused (checksum mismatch)"], WAIT);
    assert!(line.contains("127.0.0.1:"), "names the peer: {line}");
    // Too large: refused and logged the same way.
    c.frame(2, &jpeg(301, 150_000));
    expect_nack(c.recv_reply(), 2, Reason::TooLarge);
    d.wait_for_log(
        &["device cam", "#2 refused (too large)", "max_frame_bytes"],
        WAIT,
    );
    // The device sends frame 1 again, undamaged.
    c.frame(1, &good);
    assert_eq!(c.recv_reply(), Some(Message::Ack { seq: 1 }));

    let status = framegate(&[
        "status",
        "--json",
        "--config",
        d.dir.join("framegate.toml").to_str().unwrap(),
    ]);
    assert_ok("status", &status);
    let status: framegate::status::Status = serde_json::from_slice(&status.stdout).unwrap();
    let cam = status.devices.iter().find(|x| x.device == "cam").unwrap();
    assert_eq!(cam.errors, 2, "both refusals count against the device");
    for sink in &status.sinks {
        assert_eq!(sink.failed, 0, "not a failure of sink {}", sink.name);
    }
    assert!(d.terminate().success());

    assert_eq!(
        std::fs::read(dir.path().join("copy/cam/1.jpg")).unwrap(),
        good
    );
    assert_eq!(walk(&dir.path().join("copy")).len(), 1);
    let stored = d.frames("cam", "native");
    assert_eq!(assert_frames_eq(&stored, &[good]), [1]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hook.log")).unwrap(),
        "1\n",
        "the hook ran once, for the good copy"
    );
}

/// A device that sends without reading its ACKs would make the daemon hold the replies: once
/// more wait than a device keeping to its window can leave unread, the connection is closed
/// with a log line naming the peer. Its committed frame stays stored once, and the device, the
/// next time round, and everyone else are served.
#[test]
fn a_device_that_never_reads_its_acks_is_closed_and_others_keep_streaming() {
    let mut d = daemon();
    let addr = d.addr("native");
    // A small receive buffer, so the kernel's share of the unread replies fills soon.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), WAIT).unwrap();
    let mut c = Client {
        stream: socket.into(),
        decoder: MessageDecoder::new(u64::MAX),
    };
    c.stream.set_read_timeout(Some(WAIT)).unwrap();
    c.stream.set_write_timeout(Some(WAIT)).unwrap();
    assert!(matches!(c.hello("deaf-cam"), Message::Welcome { .. }));
    // Small, so that each resend makes the most reply bytes.
    let payload = jpeg(920, 8);
    c.frame(1, &payload);
    assert_eq!(c.recv_reply(), Some(Message::Ack { seq: 1 }));

    // From now on the device only writes: resends of frame 1, each answered with an ACK of
    // 16 bytes and stored nowhere. 1000 of them per write, for at most 64 MiB.
    let mut resend = Vec::new();
    let header = jpeg_header(1, &payload);
    for _ in 0..1000 {
        Message::Frame(header.clone()).encode(&mut resend);
        resend.extend_from_slice(&payload);
    }
    let mut sent = 0;
    let refused = loop {
        assert!(
            sent < 64 << 20,
            "the daemon still reads from a device that left {sent} bytes of resends unanswered"
        );
        match c.stream.write_all(&resend) {
            Ok(()) => sent += resend.len(),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            refused.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the daemon should have closed the connection, got {refused} after {sent} bytes"
    );
    let line = d.wait_for_log(&["deaf-cam", "bytes of replies wait unread"], WAIT);
    assert!(line.contains("127.0.0.1:"), "the peer is named: {line}");

    // Another device streams as usual; the deaf one, reconnected, learns frame 1 is committed.
    let mut other = Client::connect(&d, "native");
    assert!(matches!(other.hello("porch"), Message::Welcome { .. }));
    let porch = jpeg(921, 5000);
    other.frame(1, &porch);
    assert_eq!(other.recv_reply(), Some(Message::Ack { seq: 1 }));
    let mut again = Client::connect(&d, "native");
    assert!(matches!(
        again.hello("deaf-cam"),
        Message::Welcome {
            committed_through: 1,
            ..
        }
    ));
    assert!(d.terminate().success());
    assert_frames_eq(&d.frames("deaf-cam", "native"), &[payload]);
    assert_frames_eq(&d.frames("porch", "native"), &[porch]);
}
