//! zmtp: the first byte picks max_frame_bytes (bits 0-1), whether a valid client greeting and
//! READY come first (bit 2, so most inputs reach the request layer), and the cut seed (all).
//! The rest of the input is the client's byte stream, served whole, a byte at a time and at two
//! seeded sets of cuts, answering every image with `reply_ok` and draining output after every
//! call: every run must give the same events, error, output and `finish()`, and the checks in
//! `check_call` and `check_run` must hold.
#![no_main]

#[path = "../invariants.rs"]
mod invariants;

use framegate::zmtp::{array_to_png, Event, Part, Payload, ZmtpError, ZmtpServer};
use framegate::zmtp::{MAX_COMMAND_BYTES, MAX_METADATA_BYTES, MAX_ROUTING_ID_BYTES};

/// A REQ client's greeting (ZMTP 3.1, NULL) and READY (Socket-Type REQ), as libzmq sends them.
const HANDSHAKE: &[u8] = b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03\x01NULL\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x04\x26\x05READY\x0bSocket-Type\x00\x00\x00\x03REQ\x08Identity\x00\x00\x00\x00";

/// Everything one run produced; none of it may depend on the chunking.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Event>,
    error: Option<ZmtpError>,
    output: Vec<u8>,
    finish: Result<(), ZmtpError>,
}

fn serve(max: u64, chunks: &[&[u8]]) -> Run {
    let mut server = ZmtpServer::new(max);
    let mut output = Vec::new();
    let mut events = Vec::new();
    let mut error = None;
    'chunks: for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            match server.feed(rest) {
                Ok(fed) => {
                    assert!(fed.consumed <= rest.len(), "consumed past the input");
                    assert!(fed.consumed > 0 || fed.event.is_some(), "no progress");
                    rest = &rest[fed.consumed..];
                    if let Some(event) = fed.event {
                        check_event(max, &events, &event);
                        if let Event::Image(_) = event {
                            assert!(server.awaiting_reply());
                            assert!(server.reply_ok());
                            assert!(!server.awaiting_reply() && !server.reply_ok());
                        }
                        events.push(event);
                    }
                }
                Err(err) => {
                    check_error(max, &err);
                    assert_eq!(server.feed(b"\0"), Err(err.clone()), "errors are final");
                    assert_eq!(server.finish(), Err(err.clone()));
                    error = Some(err);
                    break 'chunks;
                }
            }
            output.extend_from_slice(server.output());
            server.consume_output(server.output().len());
            assert!(!server.wants_write());
        }
    }
    output.extend_from_slice(server.output());
    Run {
        events,
        error,
        output,
        finish: server.finish(),
    }
}

fn check_event(max: u64, before: &[Event], event: &Event) {
    match event {
        Event::Connected { socket_type, .. } => {
            assert!(before.is_empty(), "Connected is the first event, once");
            assert!(socket_type == "REQ" || socket_type == "DEALER");
        }
        Event::Image(frame) => {
            assert!(
                matches!(before.first(), Some(Event::Connected { .. })),
                "an image before the handshake"
            );
            let data = match &frame.payload {
                Payload::Jpeg(data) => data,
                Payload::Array { dtype, shape, data } => {
                    if let Some(item) = framegate::zmtp::array::itemsize(dtype) {
                        let bytes = shape.iter().fold(item, |acc, &d| acc * d as u64);
                        assert_eq!(bytes, data.len() as u64, "array size unchecked");
                    }
                    // Must not panic whatever the shape; small arrays only, to keep runs fast.
                    if data.len() <= 4096 {
                        let _ = array_to_png(dtype, shape, data);
                    }
                    data
                }
            };
            assert!(!data.is_empty() && data.len() as u64 <= max, "image size");
        }
    }
}

fn check_error(max: u64, err: &ZmtpError) {
    if let ZmtpError::Oversize {
        part,
        announced,
        max: limit,
    } = err
    {
        let want = match part {
            Part::Image => max,
            Part::Command => MAX_COMMAND_BYTES,
            Part::Metadata => MAX_METADATA_BYTES,
            Part::RoutingId => MAX_ROUTING_ID_BYTES,
        };
        assert_eq!(*limit, want, "Oversize names the wrong limit");
        assert!(announced > limit, "Oversize below the limit");
    }
    assert!(!err.to_string().is_empty());
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max = invariants::MAXES[usize::from(control & 3)];
    // 64 greeting bytes and a 40-byte READY.
    debug_assert_eq!(HANDSHAKE.len(), 104);
    let stream = if control & 4 != 0 {
        [HANDSHAKE, rest].concat()
    } else {
        rest.to_vec()
    };
    let seed = u64::from(control) ^ (stream.len() as u64) << 8;

    let whole = serve(max, &[&stream]);
    assert!(
        whole.output.starts_with(b"\xff") && whole.output.len() >= 64,
        "our greeting comes first"
    );
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(serve(max, &bytewise), whole, "byte by byte");
    for seed in [seed, !seed] {
        let cuts = invariants::seeded_cuts(stream.len(), seed);
        let chunks = invariants::chunks_at(&stream, &cuts);
        assert_eq!(serve(max, &chunks), whole, "cuts {cuts:?}");
    }
});
