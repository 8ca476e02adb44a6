//! The server against bytes captured from real imagezmq 1.2.0 / pyzmq 27.3 (libzmq 4.3)
//! clients, under every chunking, and its error paths.
//!
//! The vectors were recorded by a TCP proxy on 127.0.0.1 between an `imagezmq.ImageSender`
//! (REQ) and a pyzmq REP socket: the client's bytes are what we must accept, the REP's are
//! what we must answer (apart from the greeting's padding, see `libzmq_rep_stream`).

use proptest::prelude::*;

use super::*;

fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// The client's 10-byte signature: libzmq sends it alone and waits for ours.
const CLIENT_SIGNATURE: &str = "ff00000000000000017f";
/// The rest of its greeting: ZMTP 3.1, NULL, as-server 0, filler.
const CLIENT_GREETING_REST: &str = "0301 4e554c4c 00000000000000000000000000000000 00 00000000000000000000000000000000000000000000000000000000000000";
/// REQ's READY: Socket-Type REQ, empty Identity.
const CLIENT_READY: &str =
    "0426 05 5245414459 0b 536f636b65742d54797065 00000003 524551 08 4964656e74697479 00000000";
/// `send_jpg("cam-1", ff d8 ff e0 "fake-jpeg" ff d9)`: delimiter, `{"msg": "cam-1"}`, bytes.
const JPG_REQUEST: &str =
    "0100 0110 7b226d7367223a202263616d2d31227d 000f ffd8ffe066616b652d6a706567ffd9";
/// `send_image("cam-1", np.arange(18, dtype=np.uint8).reshape(2, 3, 3))`.
const COLOR_REQUEST: &str = "0100 0136 7b226d7367223a202263616d2d31222c20226474797065223a202275696e7438222c20227368617065223a205b322c20332c20335d7d 0012 000102030405060708090a0b0c0d0e0f1011";
/// `send_image("gray", (np.arange(6, dtype=np.uint8) * 40).reshape(2, 3))`.
const GRAY_REQUEST: &str = "0100 0132 7b226d7367223a202267726179222c20226474797065223a202275696e7438222c20227368617065223a205b322c20335d7d 0006 00285078a0c8";
/// A libzmq heartbeat (ZMQ_HEARTBEAT_IVL/TTL set on the REQ): PING, TTL 20 (2 s), no context.
const CLIENT_PING: &str = "0407 04 50494e47 0014";
/// The pyzmq REP's answer to it.
const REP_PONG: &str = "0405 04 504f4e47";
/// The pyzmq REP's reply to each request (`rep.send(b"OK")`): delimiter, "OK".
const REP_REPLY: &str = "0100 0002 4f4b";

fn client_handshake() -> Vec<u8> {
    unhex(&[CLIENT_SIGNATURE, CLIENT_GREETING_REST, CLIENT_READY].concat())
}

/// The pyzmq REP's greeting and READY as captured, except byte 8: libzmq puts a ZMTP 1.0
/// length (01) in the padding, we put 00 (the padding is not interpreted).
fn libzmq_rep_stream() -> Vec<u8> {
    let mut greeting = unhex("ff00000000000000017f0301 4e554c4c");
    greeting.resize(64, 0);
    greeting[8] = 0;
    let ready = unhex("0419 05 5245414459 0b 536f636b65742d54797065 00000003 524550");
    [greeting, ready].concat()
}

/// Everything a run produced: events, the error that ended it, output, and `finish()`.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Event>,
    error: Option<ZmtpError>,
    output: Vec<u8>,
    finish: Result<(), ZmtpError>,
}

/// Feeds `chunks` in order, answering every image with `reply_ok` as the hub would, and
/// draining output after every call (as the event loop does).
fn run(max: u64, chunks: &[&[u8]]) -> Run {
    let mut server = ZmtpServer::new(max);
    let mut output = Vec::new();
    let mut drain = |s: &mut ZmtpServer| {
        output.extend_from_slice(s.output());
        s.consume_output(s.output().len());
    };
    drain(&mut server);
    let mut events = Vec::new();
    let mut error = None;
    'chunks: for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            match server.feed(rest) {
                Ok(fed) => {
                    assert!(fed.consumed > 0 || fed.event.is_some(), "no progress");
                    rest = &rest[fed.consumed..];
                    if let Some(Event::Image(_)) = &fed.event {
                        assert!(server.reply_ok());
                    }
                    events.extend(fed.event);
                    drain(&mut server);
                }
                Err(err) => {
                    assert_eq!(server.feed(b"x"), Err(err.clone()), "errors are final");
                    drain(&mut server);
                    error = Some(err);
                    break 'chunks;
                }
            }
        }
    }
    Run {
        events,
        error,
        output,
        finish: server.finish(),
    }
}

/// Runs `bytes` whole, byte by byte and split at every point, requiring the same result.
fn run_every_split(max: u64, bytes: &[u8]) -> Run {
    let whole = run(max, &[bytes]);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(max, &bytewise), whole, "byte by byte");
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        assert_eq!(run(max, &[a, b]), whole, "split at {cut}");
    }
    whole
}

fn connected() -> Event {
    Event::Connected {
        socket_type: "REQ".into(),
        version: (3, 1),
    }
}

fn jpg_frame() -> Event {
    Event::Image(ImagezmqFrame {
        name: "cam-1".into(),
        payload: Payload::Jpeg(unhex("ffd8ffe066616b652d6a706567ffd9")),
    })
}

fn color_frame() -> Event {
    Event::Image(ImagezmqFrame {
        name: "cam-1".into(),
        payload: Payload::Array {
            dtype: "uint8".into(),
            shape: vec![2, 3, 3],
            data: (0..18).collect(),
        },
    })
}

fn gray_frame() -> Event {
    Event::Image(ImagezmqFrame {
        name: "gray".into(),
        payload: Payload::Array {
            dtype: "uint8".into(),
            shape: vec![2, 3],
            data: vec![0, 40, 80, 120, 160, 200],
        },
    })
}

#[test]
fn greeting_is_queued_on_creation() {
    // libzmq sends 10 bytes and waits for ours: nothing may depend on the peer's greeting.
    let mut server = ZmtpServer::new(100);
    assert_eq!(server.output(), &libzmq_rep_stream()[..64]);
    let fed = server.feed(&unhex(CLIENT_SIGNATURE)).unwrap();
    assert_eq!(
        fed,
        Fed {
            consumed: 10,
            event: None
        }
    );
    assert_eq!(
        server.output().len(),
        64,
        "READY waits for a valid greeting"
    );
    server.consume_output(30);
    assert_eq!(server.output(), &libzmq_rep_stream()[30..64]);
}

#[test]
fn captured_send_jpg_session() {
    let stream = [client_handshake(), unhex(JPG_REQUEST)].concat();
    let got = run_every_split(100, &stream);
    assert_eq!(got.events, vec![connected(), jpg_frame()]);
    assert_eq!(got.error, None);
    assert_eq!(got.finish, Ok(()));
    assert_eq!(
        got.output,
        [libzmq_rep_stream(), unhex(REP_REPLY)].concat(),
        "same bytes as libzmq's REP"
    );
}

#[test]
fn captured_send_image_sessions_with_heartbeats() {
    let stream = [
        client_handshake(),
        unhex(JPG_REQUEST),
        unhex(CLIENT_PING),
        unhex(COLOR_REQUEST),
        unhex(CLIENT_PING),
        unhex(GRAY_REQUEST),
    ]
    .concat();
    let got = run_every_split(100, &stream);
    assert_eq!(
        got.events,
        vec![connected(), jpg_frame(), color_frame(), gray_frame()]
    );
    assert_eq!(got.error, None);
    let reply = unhex(REP_REPLY);
    let pong = unhex(REP_PONG);
    let want = [
        libzmq_rep_stream(),
        reply.clone(),
        pong.clone(),
        reply.clone(),
        pong,
        reply,
    ]
    .concat();
    assert_eq!(got.output, want);
}

#[test]
fn captured_arrays_encode_as_png() {
    let Event::Image(ImagezmqFrame {
        payload: Payload::Array { dtype, shape, data },
        ..
    }) = color_frame()
    else {
        unreachable!()
    };
    let png = array_to_png(&dtype, &shape, &data).unwrap();
    let img = image::load_from_memory(&png).unwrap().into_rgb8();
    // Pixel (0, 0) was B, G, R = 0, 1, 2.
    assert_eq!(img.get_pixel(0, 0).0, [2, 1, 0]);
}

proptest! {
    #[test]
    fn any_three_way_chunking_gives_the_same_run(a in 0usize..400, b in 0usize..400) {
        let stream = [
            client_handshake(),
            unhex(COLOR_REQUEST),
            unhex(CLIENT_PING),
            unhex(JPG_REQUEST),
        ]
        .concat();
        let (a, b) = (a.min(stream.len()), b.min(stream.len()));
        let (a, b) = (a.min(b), a.max(b));
        let chunked = run(100, &[&stream[..a], &stream[a..b], &stream[b..]]);
        prop_assert_eq!(chunked, run(100, &[&stream]));
    }
}

#[test]
fn oversize_image_is_refused_at_its_header() {
    // The JPEG is 15 bytes; a 14-byte limit refuses it as soon as its size is known.
    let stream = [client_handshake(), unhex(JPG_REQUEST)].concat();
    let got = run_every_split(14, &stream);
    let err = got.error.unwrap();
    assert_eq!(
        err,
        ZmtpError::Oversize {
            part: Part::Image,
            announced: 15,
            max: 14
        }
    );
    assert_eq!(
        err.to_string(),
        "zmtp: image frame of 15 bytes exceeds max_frame_bytes = 14"
    );
}

#[test]
fn huge_announced_sizes_are_refused_before_allocating() {
    // Allocating 2^62 bytes would abort the test; the header alone must be refused.
    let mut server = ZmtpServer::new(1 << 20);
    server.feed(&client_handshake()).unwrap();
    server.feed(&unhex("0100 0110")).unwrap();
    server
        .feed(&unhex("7b226d7367223a202263616d2d31227d"))
        .unwrap();
    let err = server.feed(&unhex("02 4000000000000000")).unwrap_err();
    assert_eq!(
        err,
        ZmtpError::Oversize {
            part: Part::Image,
            announced: 1 << 62,
            max: 1 << 20
        }
    );
    // Commands and metadata have their own bounds.
    let mut server = ZmtpServer::new(u64::MAX);
    server.feed(&unhex(CLIENT_SIGNATURE)).unwrap();
    server.feed(&unhex(CLIENT_GREETING_REST)).unwrap();
    let err = server.feed(&unhex("06 4000000000000000")).unwrap_err();
    assert!(matches!(
        err,
        ZmtpError::Oversize {
            part: Part::Command,
            ..
        }
    ));
}

#[test]
fn bad_greetings_are_refused() {
    let http = run_every_split(100, b"GET / HTTP/1.1\r\n");
    assert_eq!(
        http.error,
        Some(ZmtpError::NotZmtp {
            first_bytes: b"G".to_vec()
        })
    );
    assert_eq!(http.events, vec![]);
    let err = http.error.unwrap().to_string();
    assert!(err.contains("47 (\"G\")"), "{err}");
    // ZMTP 2.0 (libzmq 3.x): same signature, revision 1.
    let zmtp2 = run_every_split(100, &unhex("ff00000000000000017f 01 03"));
    let err = zmtp2.error.unwrap();
    assert_eq!(err, ZmtpError::UnsupportedVersion { major: 1 });
    assert!(err.to_string().contains("ZMTP 3"), "{err}");
    let mut plain = client_handshake();
    plain[12..17].copy_from_slice(b"PLAIN");
    let got = run(100, &[&plain]);
    assert_eq!(
        got.error,
        Some(ZmtpError::UnsupportedMechanism {
            mechanism: "PLAIN".into()
        })
    );
}

/// A READY with the given properties.
fn ready(props: &[(&str, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (name, value) in props {
        data.push(name.len() as u8);
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&(value.len() as u32).to_be_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::new();
    wire::encode_command(b"READY", &data, &mut out);
    out
}

fn greeting_then(rest: &[u8]) -> Vec<u8> {
    [
        unhex(CLIENT_SIGNATURE),
        unhex(CLIENT_GREETING_REST),
        rest.to_vec(),
    ]
    .concat()
}

#[test]
fn handshake_errors() {
    let publisher = run(100, &[&greeting_then(&ready(&[("Socket-Type", "PUB")]))]);
    let err = publisher.error.unwrap();
    assert_eq!(
        err,
        ZmtpError::IncompatibleSocketType {
            socket_type: "PUB".into()
        }
    );
    assert!(err.to_string().contains("use REQ"), "{err}");
    let untyped = run(100, &[&greeting_then(&ready(&[("Identity", "")]))]);
    assert_eq!(untyped.error, Some(ZmtpError::MissingSocketType));
    let early = run(100, &[&greeting_then(&unhex(JPG_REQUEST))]);
    assert_eq!(
        early.error,
        Some(ZmtpError::ExpectedReady {
            got: "a message frame".into()
        })
    );
    let ping_first = run(100, &[&greeting_then(&unhex(CLIENT_PING))]);
    assert_eq!(
        ping_first.error,
        Some(ZmtpError::ExpectedReady { got: "PING".into() })
    );
    let refused = run(
        100,
        &[&greeting_then(&unhex("040a 05 4552524f52 03 6e6f21"))],
    );
    assert_eq!(
        refused.error,
        Some(ZmtpError::PeerError {
            reason: "no!".into()
        })
    );
    let twice = [client_handshake(), unhex(CLIENT_READY)].concat();
    assert_eq!(run(100, &[&twice]).error, Some(ZmtpError::DuplicateReady));
}

#[test]
fn dealer_and_lowercase_property_names_are_accepted() {
    let got = run(100, &[&greeting_then(&ready(&[("socket-type", "DEALER")]))]);
    assert_eq!(got.error, None);
    assert_eq!(
        got.events,
        vec![Event::Connected {
            socket_type: "DEALER".into(),
            version: (3, 1)
        }]
    );
}

#[test]
fn a_request_before_the_reply_is_refused() {
    let mut server = ZmtpServer::new(100);
    assert!(!server.reply_ok(), "nothing to answer yet");
    server.feed(&client_handshake()).unwrap();
    let jpg = unhex(JPG_REQUEST);
    assert_eq!(server.feed(&jpg).unwrap().event, Some(jpg_frame()));
    assert!(server.awaiting_reply());
    // A PING while the request waits for its reply is fine.
    assert_eq!(server.feed(&unhex(CLIENT_PING)).unwrap().event, None);
    assert_eq!(server.feed(&jpg), Err(ZmtpError::RequestBeforeReply));

    let mut server = ZmtpServer::new(100);
    server.feed(&client_handshake()).unwrap();
    server.feed(&jpg).unwrap();
    assert!(server.reply_ok());
    assert!(!server.reply_ok(), "one reply per request");
    assert_eq!(server.feed(&jpg).unwrap().event, Some(jpg_frame()));
}

#[test]
fn a_ping_between_the_parts_of_a_request_is_answered() {
    // libzmq's heartbeat timer may fire between the frames of a multipart message.
    let jpg = unhex(JPG_REQUEST);
    let stream = [
        client_handshake(),
        jpg[..2].to_vec(),
        unhex(CLIENT_PING),
        jpg[2..].to_vec(),
    ]
    .concat();
    let got = run_every_split(100, &stream);
    assert_eq!(got.events, vec![connected(), jpg_frame()]);
    let want = [libzmq_rep_stream(), unhex(REP_PONG), unhex(REP_REPLY)].concat();
    assert_eq!(got.output, want);
}

#[test]
fn ping_contexts_are_echoed() {
    let mut server = ZmtpServer::new(100);
    server.feed(&client_handshake()).unwrap();
    server.consume_output(server.output().len());
    server.feed(&unhex("040a 04 50494e47 0014 616263")).unwrap();
    assert_eq!(server.output(), unhex("0408 04 504f4e47 616263"));
}

#[test]
fn unread_pongs_are_bounded() {
    let mut server = ZmtpServer::new(100);
    server.feed(&client_handshake()).unwrap();
    let pings = unhex(CLIENT_PING).repeat(MAX_OUTPUT_BYTES / 7 + 100);
    let err = server.feed(&pings).unwrap_err();
    assert!(matches!(err, ZmtpError::OutputBacklog { queued } if queued > MAX_OUTPUT_BYTES));
}

#[test]
fn proxy_envelopes_are_echoed_in_the_reply() {
    // A ROUTER/DEALER proxy in front adds a routing-id frame before REQ's delimiter.
    let stream = greeting_then(
        &[
            ready(&[("Socket-Type", "DEALER")]),
            unhex("0105 6964303031"),
            unhex(JPG_REQUEST),
        ]
        .concat(),
    );
    let got = run_every_split(100, &stream);
    assert_eq!(got.events.last(), Some(&jpg_frame()));
    let reply = unhex("0105 6964303031 0100 0002 4f4b");
    assert!(got.output.ends_with(&reply), "{:02x?}", got.output);
}

#[test]
fn imagezmq_layout_errors() {
    let base = client_handshake();
    // A DEALER sending imagezmq's parts without the delimiter: the JSON is not a routing id.
    let no_delim = [base.clone(), unhex(&JPG_REQUEST[5..])].concat();
    let got = run(100, &[&no_delim]);
    assert!(
        matches!(got.error, Some(ZmtpError::NoDelimiter { .. })),
        "{got:?}"
    );
    // A 3-part request.
    let three = [
        base.clone(),
        unhex("0100 0110 7b226d7367223a202263616d2d31227d 0101 61 0001 62"),
    ]
    .concat();
    assert_eq!(
        run(100, &[&three]).error,
        Some(ZmtpError::PartCount { parts: 3 })
    );
    // Array data shorter than its shape.
    let short = [
        base,
        unhex(&GRAY_REQUEST.replace("0006 00285078a0c8", "0005 00285078a0")),
    ]
    .concat();
    let err = run(100, &[&short]).error.unwrap();
    assert_eq!(
        err.to_string(),
        "zmtp: array metadata says shape [2, 3] of uint8 = 6 bytes, but the data frame has 5 bytes"
    );
}

#[test]
fn finish_reports_where_the_stream_ended() {
    assert_eq!(run(100, &[]).finish, Ok(()));
    let mid_greeting = run(100, &[&unhex(CLIENT_SIGNATURE)]);
    assert_eq!(
        mid_greeting.finish,
        Err(ZmtpError::Truncated {
            inside: "the greeting (10 of 64 bytes)".into()
        })
    );
    let jpg = unhex(JPG_REQUEST);
    let handshake = client_handshake();
    for (cut, inside) in [
        (1, "a frame header"),
        (2, "a request (between its frames)"),
        (10, "a frame (6 of 16 bytes)"),
    ] {
        let got = run(100, &[&handshake, &jpg[..cut]]);
        assert_eq!(
            got.finish,
            Err(ZmtpError::Truncated {
                inside: inside.into()
            }),
            "cut {cut}"
        );
    }
    let done = run(100, &[&handshake, &jpg]);
    assert_eq!(done.finish, Ok(()));
}
