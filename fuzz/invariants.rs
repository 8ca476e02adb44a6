//! Invariants every decoder keeps on any input, whatever its chunking.
//!
//! Shared by the fuzz targets in `fuzz_targets/` and by `tests/decoder_chunking.rs`, which both
//! include this file with `#[path]`, so a crash input kept under `regressions/` is replayed by
//! plain `cargo test` through exactly the checks the fuzzer ran. Checks panic on failure, which
//! is what both libFuzzer and proptest report.
#![allow(dead_code)]

use framegate::framing::{DecodeError, Decoder, Event, Framing};

/// Every framing, in the order a fuzz input's control byte selects them.
pub const FRAMINGS: [Framing; 4] = [
    Framing::Auto,
    Framing::AsciiLength,
    Framing::U32Le,
    Framing::U32Be,
];

/// The `max_frame_bytes` a control byte selects: tiny (almost everything is oversize), small
/// (frames fit in a fuzz input), a few KB, and a real listener's default.
pub const MAXES: [u64; 4] = [3, 64, 4096, 32 << 20];

/// What a stream decoded to: the events in order and how it ended. This is what must not depend
/// on the chunking.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The first error, or `end()` after the last byte.
    pub end: Result<(), DecodeError>,
}

/// One decode run: its outcome and the framing `auto` chose, if a call ever reported one.
#[derive(Debug)]
pub struct Run {
    /// Events and end.
    pub outcome: Outcome,
    /// `Decoder::framing()` the first time it was `Some`.
    pub chosen: Option<Framing>,
}

/// Cuts `data` at the given offsets (any order, duplicates and out-of-range ones ignored).
pub fn chunks_at<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < data.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        chunks.push(&data[start..cut]);
        start = cut;
    }
    chunks.push(&data[start..]);
    chunks
}

/// Cut offsets drawn from `seed` (splitmix64): chunk sizes up to a seed-chosen bound, so some
/// seeds cut every few bytes and others rarely.
pub fn seeded_cuts(len: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let bound = 1u64 << (next() % 12);
    let mut cuts = Vec::new();
    let mut at = 0usize;
    // Each step advances at least one byte, so this ends within `len` steps.
    while at < len {
        at += 1 + (next() % bound) as usize;
        cuts.push(at);
    }
    cuts
}

/// Feeds `chunks` with plain `feed` calls, checking each call's contract.
pub fn decode(framing: Framing, max: u64, chunks: &[&[u8]]) -> Run {
    drive(framing, max, chunks, false)
}

/// Like [`decode`], but whenever the decoder offers a payload window (or spare part) the bytes
/// are copied straight into it and reported with `payload_filled` (or `payload_spare_filled`),
/// as the event loop's direct reads do.
pub fn decode_zero_copy(framing: Framing, max: u64, chunks: &[&[u8]]) -> Run {
    drive(framing, max, chunks, true)
}

fn drive(framing: Framing, max: u64, chunks: &[&[u8]], zero_copy: bool) -> Run {
    let mut dec = Decoder::new(framing, max);
    let mut events = Vec::new();
    let mut chosen = None;
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            if let Some(announced) = dec.announced() {
                assert!(announced <= max, "announced {announced} > max {max}");
            }
            if zero_copy {
                // Both direct paths, mixed within a payload: uninitialised memory (what the
                // event loop's socket reads use), and the initialised window.
                if rest.len() % 2 == 0 {
                    if let Some(spare) = dec.payload_spare() {
                        assert!(!spare.is_empty(), "empty spare part offered");
                        let n = spare.len().min(rest.len());
                        for (slot, byte) in spare.iter_mut().zip(&rest[..n]) {
                            slot.write(*byte);
                        }
                        rest = &rest[n..];
                        // SAFETY: the loop above wrote the first n bytes of the spare part.
                        events.extend(unsafe { dec.payload_spare_filled(n) });
                        continue;
                    }
                }
                if let Some(window) = dec.payload_window() {
                    assert!(!window.is_empty(), "empty payload window offered");
                    let n = window.len().min(rest.len());
                    window[..n].copy_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    events.extend(dec.payload_filled(n));
                    continue;
                }
            }
            match dec.feed(rest) {
                Ok(fed) => {
                    assert!(fed.consumed <= rest.len(), "consumed past the input");
                    assert!(
                        fed.consumed > 0 || fed.event.is_some(),
                        "feed made no progress on {} bytes",
                        rest.len()
                    );
                    rest = &rest[fed.consumed..];
                    events.extend(fed.event);
                    chosen = chosen.or(dec.framing());
                }
                Err(err) => {
                    // Errors are final: the same error for any later bytes and at EOF.
                    assert_eq!(dec.feed(b"1\xff\0").as_ref(), Err(&err), "error not final");
                    assert_eq!(dec.finish().as_ref(), Err(&err), "finish forgot the error");
                    assert!(!dec.is_mid_frame(), "a failed decoder is not mid-frame");
                    assert!(dec.payload_window().is_none(), "window after an error");
                    assert!(dec.payload_spare().is_none(), "spare part after an error");
                    return Run {
                        outcome: Outcome {
                            events,
                            end: Err(err),
                        },
                        chosen,
                    };
                }
            }
        }
    }
    let mid_frame = dec.is_mid_frame();
    let finished = dec.finish();
    let end = match dec.end() {
        Ok(last) => {
            // Only auto's rule 3 completes a frame at the end of the stream; finish() saw it
            // as a truncated frame until end() settled it.
            if last.is_some() {
                assert_eq!(framing, Framing::Auto, "{framing} completed a frame at end");
                assert!(
                    finished.is_err(),
                    "end() completed a frame finish() accepted"
                );
            } else {
                assert_eq!(finished, Ok(()), "end() and finish() disagree");
            }
            events.extend(last);
            Ok(())
        }
        Err(err) => {
            assert_eq!(finished.as_ref(), Err(&err), "end() and finish() disagree");
            Err(err)
        }
    };
    assert_eq!(
        mid_frame,
        finished.is_err(),
        "is_mid_frame disagrees with finish"
    );
    Run {
        outcome: Outcome { events, end },
        chosen,
    }
}

/// Checks what must hold of any outcome, whatever the input.
pub fn check_outcome(framing: Framing, max: u64, outcome: &Outcome) {
    for (i, event) in outcome.events.iter().enumerate() {
        match event {
            Event::Frame(payload) => {
                assert!(!payload.is_empty(), "empty frame delivered");
                assert!(
                    payload.len() as u64 <= max,
                    "frame of {} bytes > max {max}",
                    payload.len()
                );
            }
            Event::End => {
                assert!(
                    matches!(framing, Framing::U32Le | Framing::Auto),
                    "End from {framing}"
                );
                assert_eq!(i + 1, outcome.events.len(), "event after End");
                assert!(
                    matches!(outcome.end, Ok(()) | Err(DecodeError::DataAfterEnd)),
                    "after End the stream either closes or errs with DataAfterEnd: {:?}",
                    outcome.end
                );
            }
            Event::HandOver { .. } => {
                // auto hands a native HELLO or a ZMTP greeting over, before any frame.
                assert_eq!(framing, Framing::Auto, "HandOver from {framing}");
                assert_eq!(outcome.events.len(), 1, "events besides HandOver");
                assert!(
                    matches!(outcome.end, Ok(()) | Err(DecodeError::HandedOver)),
                    "after HandOver the stream either closes or errs with HandedOver: {:?}",
                    outcome.end
                );
            }
        }
    }
    if outcome.end == Err(DecodeError::DataAfterEnd) {
        assert_eq!(
            outcome.events.last(),
            Some(&Event::End),
            "DataAfterEnd without End"
        );
    }
    match &outcome.end {
        Err(DecodeError::Oversize { announced, max: m }) => {
            assert_eq!(*m, max, "Oversize reports the wrong max");
            assert!(*announced > max, "Oversize for {announced} <= max {max}");
        }
        Err(DecodeError::Truncated {
            announced,
            received,
        }) => {
            assert!(*announced <= max, "Truncated frame larger than max");
            assert!(
                received < announced || (*announced == 0 && *received == 0),
                "Truncated with all {received} of {announced} bytes"
            );
        }
        Err(DecodeError::Unrecognised { first_bytes }) => {
            assert_eq!(framing, Framing::Auto, "Unrecognised from {framing}");
            assert!(first_bytes.len() <= framegate::framing::auto::SNIFF_LIMIT);
            assert!(outcome.events.is_empty(), "Unrecognised after a frame");
        }
        _ => {}
    }
}

/// Decodes `data` whole, a byte at a time and cut at each of `cut_sets`, each through both
/// `feed` and the zero-copy path, asserts they all give the same outcome and that the outcome
/// keeps the invariants; for `auto`, also that it equals the chosen framing's own outcome.
pub fn check_chunkings(
    framing: Framing,
    max: u64,
    data: &[u8],
    cut_sets: &[Vec<usize>],
) -> Outcome {
    let whole = decode(framing, max, &[data]);
    check_outcome(framing, max, &whole.outcome);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let mut chunkings = vec![vec![data], bytes];
    chunkings.extend(cut_sets.iter().map(|cuts| chunks_at(data, cuts)));
    let mut chosen = whole.chosen;
    for chunks in &chunkings {
        for zero_copy in [false, true] {
            let run = drive(framing, max, chunks, zero_copy);
            assert_eq!(
                run.outcome,
                whole.outcome,
                "{framing} max {max}: chunk sizes {:?} (zero-copy {zero_copy}) differ from whole",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
            if let (Some(a), Some(b)) = (chosen, run.chosen) {
                assert_eq!(a, b, "auto chose differently for another chunking");
            }
            chosen = chosen.or(run.chosen);
        }
    }
    if framing == Framing::Auto {
        if let Some(chosen) = chosen {
            // Once auto has chosen, every byte (the sniffed ones too) reaches that decoder.
            let direct = decode(chosen, max, &[data]);
            assert_eq!(
                whole.outcome, direct.outcome,
                "auto chose {chosen} but decoded differently from {chosen} itself"
            );
        }
    }
    whole.outcome
}

/// The fuzz check: `control` picks `max` (bits 0-1) and the cut seed (the rest).
pub fn check_stream(framing: Framing, control: u8, stream: &[u8]) {
    let max = MAXES[usize::from(control & 3)];
    let seed = u64::from(control >> 2);
    let cut_sets = [
        seeded_cuts(stream.len(), seed),
        seeded_cuts(stream.len(), seed ^ 0xa5a5),
    ];
    check_chunkings(framing, max, stream, &cut_sets);
}

/// Target `decode`: the first byte's top bits pick the framing, the rest as in [`check_stream`].
pub fn target_decode(data: &[u8]) {
    if let Some((&control, stream)) = data.split_first() {
        check_stream(FRAMINGS[usize::from(control >> 6)], control & 0x3f, stream);
    }
}

/// Target `decode_ascii_length`.
pub fn target_ascii_length(data: &[u8]) {
    if let Some((&control, stream)) = data.split_first() {
        check_stream(Framing::AsciiLength, control, stream);
    }
}

/// Target `decode_u32`: the first byte's top bit picks little or big endian.
pub fn target_u32(data: &[u8]) {
    if let Some((&control, stream)) = data.split_first() {
        let framing = if control & 0x80 == 0 {
            Framing::U32Le
        } else {
            Framing::U32Be
        };
        check_stream(framing, control & 0x7f, stream);
    }
}

/// Target `decode_auto`.
pub fn target_auto(data: &[u8]) {
    if let Some((&control, stream)) = data.split_first() {
        check_stream(Framing::Auto, control, stream);
    }
}

/// Runs the target named like a directory under `regressions/` on one input.
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "decode" => target_decode(data),
        "decode_ascii_length" => target_ascii_length(data),
        "decode_u32" => target_u32(data),
        "decode_auto" => target_auto(data),
        "decode_http" => target_http(data),
        other => panic!("regressions/{other}: no fuzz target of that name"),
    }
}

/// The HTTP request decoder's `max_body_bytes` a control byte selects (bits 0-1).
pub const HTTP_MAX_BODIES: [u64; 4] = [0, 16, 4096, 32 << 20];

/// What an HTTP stream decoded to: requests (head `Debug` text, body), `Head` events, end.
fn decode_http_chunks(max_body: u64, chunks: &[&[u8]]) -> (Vec<String>, Result<(), String>) {
    use framegate::http::{Event as HttpEvent, Limits, RequestDecoder};
    let mut decoder = RequestDecoder::new(Limits {
        max_head_bytes: 2048,
        max_headers: 32,
        max_body_bytes: max_body,
    });
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        // Every call uses a byte or reports an event, so twice the length (plus slack) bounds it.
        let mut calls = 0;
        while !rest.is_empty() {
            calls += 1;
            assert!(calls <= 2 * chunk.len() + 2, "feed made no progress");
            match decoder.feed(rest) {
                Ok(fed) => {
                    assert!(fed.consumed <= rest.len());
                    assert!(fed.consumed > 0 || fed.event.is_some(), "no progress");
                    rest = &rest[fed.consumed..];
                    match fed.event {
                        Some(HttpEvent::Head) => {
                            assert!(decoder.head().is_some() && decoder.in_body());
                            events.push("head".to_string());
                        }
                        Some(HttpEvent::Request(r)) => {
                            assert!(r.body.len() as u64 <= max_body, "body over the limit");
                            check_upload(&r);
                            events.push(format!("{:?}", r));
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    // Errors are final.
                    assert_eq!(decoder.feed(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(), e);
                    return (events, Err(e.to_string()));
                }
            }
        }
    }
    (events, decoder.finish().map_err(|e| e.to_string()))
}

/// Multipart extraction on whatever body arrived: no panic, and a file inside the body.
fn check_upload(r: &framegate::http::Request) {
    let Some(boundary) = r
        .head
        .header_str("content-type")
        .and_then(framegate::http::multipart::boundary)
    else {
        return;
    };
    if let Ok(up) = framegate::http::multipart::extract(&r.body, &boundary) {
        assert!(up.file.start <= up.file.end && up.file.end <= r.body.len());
    }
}

/// `decode_http`: bits 0-1 of the first byte pick `max_body_bytes`, the rest seeds the cuts.
/// The stream is decoded whole, a byte at a time and at two seeded sets of cuts; every run
/// must give the same requests and end, bodies within the limit, errors final.
pub fn target_http(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let max = HTTP_MAX_BODIES[usize::from(control & 3)];
    let whole = decode_http_chunks(max, &[stream]);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        decode_http_chunks(max, &bytes),
        whole,
        "byte-at-a-time differs"
    );
    for seed in [u64::from(control), u64::from(control) << 8 | 0xa5] {
        let cuts = seeded_cuts(stream.len(), seed);
        let chunks = chunks_at(stream, &cuts);
        assert_eq!(
            decode_http_chunks(max, &chunks),
            whole,
            "seeded cuts differ"
        );
    }
}
