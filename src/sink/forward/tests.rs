//! The forward sink against a small in-process upstream that speaks the server side of the
//! protocol and records what arrives.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::frame::NativeOrigin;
use crate::framing::signature;
use crate::protocol::{Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// What the fake upstream does.
#[derive(Default, Clone)]
struct Behaviour {
    /// (device, seq) answered NACK "rejected by a sink" the first time.
    nack_once: HashSet<(String, u64)>,
    /// Devices refused with GOODBYE "not authorised".
    refuse: HashSet<String>,
    /// Never answer frames (so they stay unacknowledged).
    silent: bool,
}

/// A frame as the upstream received it.
#[derive(Debug, Clone)]
struct Got {
    device: String,
    header: FrameHeader,
    payload: Vec<u8>,
}

struct Upstream {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn upstream(behaviour: Behaviour) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (got2, stop2) = (got.clone(), stop.clone());
    thread::spawn(move || {
        let nacked = Arc::new(Mutex::new(HashSet::new()));
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (got, stop, b, nacked) = (
                        got2.clone(),
                        stop2.clone(),
                        behaviour.clone(),
                        nacked.clone(),
                    );
                    thread::spawn(move || serve(stream, &got, &stop, &b, &nacked));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    Upstream { addr, got, stop }
}

fn serve(
    mut stream: TcpStream,
    got: &Mutex<Vec<Got>>,
    stop: &AtomicBool,
    b: &Behaviour,
    nacked: &Mutex<HashSet<(String, u64)>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut decoder = MessageDecoder::new(u64::MAX);
    let mut device = String::new();
    let mut buf = vec![0u8; 64 << 10];
    let send = |stream: &mut TcpStream, m: Message| {
        let mut out = Vec::new();
        m.encode(&mut out);
        let _ = stream.write_all(&out);
    };
    while !stop.load(Ordering::SeqCst) {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            let fed = decoder.feed(input).unwrap();
            input = &input[fed.consumed..];
            match fed.event {
                Some(Decoded::Message(Message::Hello { device: d, .. })) => {
                    if b.refuse.contains(&d) {
                        send(
                            &mut stream,
                            Message::Goodbye {
                                reason: Reason::NotAuthorised,
                                text: "who are you".into(),
                            },
                        );
                        return;
                    }
                    device = d;
                    send(
                        &mut stream,
                        Message::Welcome {
                            max_frame_bytes: 1 << 20,
                            max_in_flight: 4,
                            heartbeat_secs: 10,
                            committed_through: 0,
                        },
                    );
                }
                Some(Decoded::Frame { header, payload }) => {
                    let seq = header.seq;
                    got.lock().unwrap().push(Got {
                        device: device.clone(),
                        header,
                        payload,
                    });
                    if b.silent {
                        continue;
                    }
                    let key = (device.clone(), seq);
                    if b.nack_once.contains(&key) && nacked.lock().unwrap().insert(key) {
                        send(
                            &mut stream,
                            Message::Nack {
                                seq,
                                reason: Reason::RejectedBySink,
                                text: "disk full".into(),
                            },
                        );
                    } else {
                        send(&mut stream, Message::Ack { seq });
                    }
                }
                Some(Decoded::Message(Message::Ping { token })) => {
                    send(&mut stream, Message::Pong { token })
                }
                _ => {}
            }
        }
    }
}

/// An address that refuses connections: a bound socket that never listens (nothing else can
/// take the port while it is held).
fn refusing() -> (socket2::Socket, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr.to_string())
}

fn config(dir: &Path, to: Vec<String>) -> ForwardSinkConfig {
    ForwardSinkConfig {
        to,
        secret: None,
        via: Some("gw-1".into()),
        connect_timeout: Duration::from_secs(1),
        spool_dir: dir.join("spool"),
        spool_max_bytes: 64 << 20,
        spool_fsync_interval: Duration::from_millis(1),
    }
}

fn frame(device: &str, seq: u64, native: bool) -> Frame {
    let mut payload = b"\xff\xd8\xff\xe0".to_vec();
    payload.extend((0..5000u32).map(|i| (i as u64 * 31 + seq) as u8));
    Frame {
        listener: Arc::from("lan"),
        device: Arc::from(device),
        peer: "127.0.0.1:9".parse().unwrap(),
        seq,
        received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seq),
        format: signature::image_format(&payload),
        payload,
        native: native.then(|| NativeOrigin {
            captured_us: 1_700_000_000_000_000 + seq,
            meta: vec![("exp".into(), format!("{seq}ms"))],
            reply_to: 0,
        }),
    }
}

/// Waits (bounded) until `done` holds for what the upstream received.
fn wait_for(up: &Upstream, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = up.got.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "upstream never got {what}; got {:?}",
            got.iter()
                .map(|g| format!("{}#{}", g.device, g.header.seq))
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn has(got: &[Got], device: &str, seq: u64) -> bool {
    got.iter()
        .any(|g| g.device == device && g.header.seq == seq)
}

#[test]
fn frames_arrive_with_their_identity_after_failover_and_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, dead) = refusing();
    let up = upstream(Behaviour {
        nack_once: HashSet::from([("cam-n".to_string(), 2)]),
        refuse: HashSet::from(["intruder".to_string()]),
        silent: false,
    });
    let sink = ForwardSink::open(
        "fwd-identity",
        4,
        &config(dir.path(), vec![dead, up.addr.to_string()]),
    )
    .unwrap();
    let mut sent = Vec::new();
    for seq in 1..=5 {
        sent.push(frame("cam-n", seq, true));
    }
    for seq in 1..=3 {
        sent.push(frame("10.0.0.9", seq, false));
    }
    for f in &sent {
        sink.commit(f).unwrap();
    }
    sink.commit(&frame("intruder", 1, true)).unwrap();
    let got = wait_for(&up, "every frame, cam-n#2 twice", |got| {
        sent.iter().all(|f| has(got, &f.device, f.seq))
            && got
                .iter()
                .filter(|g| g.device == "cam-n" && g.header.seq == 2)
                .count()
                == 2
    });
    for f in &sent {
        let g = got
            .iter()
            .find(|g| g.device == *f.device && g.header.seq == f.seq)
            .unwrap();
        assert!(
            g.payload == f.payload,
            "{}#{} bytes differ",
            f.device,
            f.seq
        );
        assert_eq!(g.header.content_type, crate::protocol::ContentType::Jpeg);
        match &f.native {
            Some(n) => {
                assert_eq!(g.header.captured_us, n.captured_us);
                let mut meta = n.meta.clone();
                meta.push(("via".into(), "gw-1".into()));
                assert_eq!(g.header.meta, meta);
            }
            None => {
                assert_eq!(g.header.captured_us, micros(f.received_at));
                assert_eq!(g.header.meta, [("via".to_string(), "gw-1".to_string())]);
            }
        }
    }
    // Per device, in sequence order (the NACKed frame came again after its backoff).
    let order: Vec<u64> = got
        .iter()
        .filter(|g| g.device == "cam-n")
        .map(|g| g.header.seq)
        .collect();
    assert_eq!(order.iter().filter(|&&s| s == 2).count(), 2, "{order:?}");
    assert_eq!(&order[..2], [1, 2], "{order:?}");
    // Everything but the refused device's frame left the spool.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = spool_stats("fwd-identity").unwrap();
        if stats.forwarded == 8 || Instant::now() > deadline {
            break stats;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((stats.frames, stats.forwarded, stats.rejected), (1, 8, 0));
    assert!(!has(&got, "intruder", 1));
}

#[test]
fn unacknowledged_frames_go_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let silent = upstream(Behaviour {
        silent: true,
        ..Behaviour::default()
    });
    let sink = ForwardSink::open(
        "fwd-restart",
        4,
        &config(dir.path(), vec![silent.addr.to_string()]),
    )
    .unwrap();
    let sent: Vec<Frame> = (1..=3).map(|seq| frame("cam", seq, true)).collect();
    for f in &sent {
        sink.commit(f).unwrap();
    }
    wait_for(&silent, "3 frames", |got| got.len() == 3);
    drop(sink); // the daemon stops: nothing was acknowledged
    assert!(spool_stats("fwd-restart").is_none());

    let up = upstream(Behaviour::default());
    let sink = ForwardSink::open(
        "fwd-restart",
        4,
        &config(dir.path(), vec![up.addr.to_string()]),
    )
    .unwrap();
    let got = wait_for(&up, "the 3 frames again", |got| got.len() == 3);
    assert_eq!(
        got.iter().map(|g| g.header.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool_stats("fwd-restart").unwrap().frames > 0 {
        assert!(Instant::now() < deadline, "the spool never emptied");
        thread::sleep(Duration::from_millis(10));
    }
    drop(sink);
}

#[test]
fn frames_are_refused_when_the_device_id_cannot_go_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, dead) = refusing();
    let sink = ForwardSink::open("fwd-refuse", 4, &config(dir.path(), vec![dead])).unwrap();
    let err = sink.commit(&frame(&"x".repeat(65), 1, false)).unwrap_err();
    assert!(err.to_string().contains("cannot be forwarded"), "{err}");
    // Spooled while the upstream is unreachable: committed all the same.
    sink.commit(&frame("cam", 1, false)).unwrap();
    assert_eq!(spool_stats("fwd-refuse").unwrap().frames, 1);
}

#[test]
fn a_rebuilt_sink_shares_the_spool_with_the_instance_still_finishing() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, dead) = refusing();
    let old = ForwardSink::open("fwd-reload", 4, &config(dir.path(), vec![dead])).unwrap();
    old.commit(&frame("cam", 1, true)).unwrap();
    // A reload changed `to`: the new instance opens while the old one still commits.
    let up = upstream(Behaviour::default());
    let new = ForwardSink::open(
        "fwd-reload",
        4,
        &config(dir.path(), vec![up.addr.to_string()]),
    )
    .unwrap();
    old.commit(&frame("cam", 2, true)).unwrap();
    new.commit(&frame("cam", 3, true)).unwrap();
    drop(old);
    // One forwarder, the new settings: everything goes to the new upstream, in order.
    let got = wait_for(&up, "3 frames", |got| got.len() == 3);
    assert_eq!(
        got.iter().map(|g| g.header.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    drop(new);
}
