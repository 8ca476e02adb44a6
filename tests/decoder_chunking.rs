//! Property tests: a decoder's output does not depend on how its input was chunked.
//!
//! Streams are realistic (frames whose payloads start with real image signatures, encoded in
//! every framing and separator variant) or arbitrary bytes. Each is decoded whole, a byte at a
//! time and at random cuts, through `feed` and through the zero-copy `payload_window` path; the
//! events and the final error or `finish()` result must be identical, and the invariants in
//! `fuzz/invariants.rs` (shared with the fuzz targets) must hold. The crash inputs the fuzzers
//! found, kept under `fuzz/regressions/<target>/`, are replayed here too.

#[path = "../fuzz/invariants.rs"]
mod invariants;

use framegate::framing::{DecodeError, Event, Framing};
use invariants::{check_chunkings, decode, Outcome};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Real image signatures, as cameras send them.
fn signature() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\xff\xd8\xff\xe0".to_vec()),
        Just(b"\xff\xd8\xff\xdb".to_vec()),
        Just(b"\x89PNG\r\n\x1a\n".to_vec()),
        Just(b"GIF89a".to_vec()),
        Just(b"GIF87a".to_vec()),
        Just(b"BM".to_vec()),
        any::<[u8; 4]>().prop_map(|size| [&b"RIFF"[..], &size, b"WEBP"].concat()),
        Just(b"II*\0".to_vec()),
        Just(b"MM\0*".to_vec()),
    ]
}

/// A signature and random bytes after it: mostly tiny, so streams hold many frame boundaries,
/// sometimes a few KB.
fn image() -> impl Strategy<Value = Vec<u8>> {
    let tail = prop_oneof![3 => vec(any::<u8>(), 0..24), 1 => vec(any::<u8>(), 0..3000)];
    (signature(), tail).prop_map(|(sig, tail)| [sig, tail].concat())
}

/// A frame to send: an image, or (`None`) an empty frame where the framing allows one.
fn items() -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    vec(
        prop_oneof![9 => image().prop_map(Some), 1 => Just(None)],
        0..6,
    )
}

/// How a device puts frames on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire {
    /// ASCII length, then this separator.
    Ascii(&'static [u8]),
    /// u32le, with or without the zero-length end marker.
    U32Le {
        end_marker: bool,
    },
    U32Be,
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        Just(Wire::Ascii(b"")),
        Just(Wire::Ascii(b"\n")),
        Just(Wire::Ascii(b"\r\n")),
        Just(Wire::Ascii(b" ")),
        any::<bool>().prop_map(|end_marker| Wire::U32Le { end_marker }),
        Just(Wire::U32Be),
    ]
}

impl Wire {
    fn framing(self) -> Framing {
        match self {
            Wire::Ascii(_) => Framing::AsciiLength,
            Wire::U32Le { .. } => Framing::U32Le,
            Wire::U32Be => Framing::U32Be,
        }
    }

    /// The length header for a payload of `len` bytes.
    fn header(self, len: u64) -> Vec<u8> {
        match self {
            Wire::Ascii(sep) => [len.to_string().as_bytes(), sep].concat(),
            Wire::U32Le { .. } => (len as u32).to_le_bytes().to_vec(),
            Wire::U32Be => (len as u32).to_be_bytes().to_vec(),
        }
    }

    /// Encodes `items`; returns the bytes and the events a decoder must give for them.
    fn encode(self, items: &[Option<Vec<u8>>]) -> (Vec<u8>, Vec<Event>) {
        let mut stream = Vec::new();
        let mut events = Vec::new();
        for item in items {
            match item {
                Some(payload) => {
                    stream.extend(self.header(payload.len() as u64));
                    stream.extend(payload);
                    events.push(Event::Frame(payload.clone()));
                }
                // u32le's zero length is the end marker, and an ASCII "0" with no separator
                // would run into the next length's digits: no empty frame there.
                None => match self {
                    Wire::Ascii(b"") | Wire::U32Le { .. } => {}
                    _ => stream.extend(self.header(0)),
                },
            }
        }
        if let Wire::U32Le { end_marker: true } = self {
            stream.extend([0; 4]);
            events.push(Event::End);
        }
        (stream, events)
    }
}

/// Random cut offsets, as indices into any length.
fn cut_sets() -> impl Strategy<Value = Vec<Vec<Index>>> {
    vec(vec(any::<Index>(), 0..24), 1..3)
}

fn cuts_for(len: usize, sets: &[Vec<Index>]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = sets
        .iter()
        .map(|set| set.iter().map(|i| i.index(len + 1)).collect())
        .collect();
    // Small fixed-size chunks too, so every offset modulo the size is a boundary.
    out.extend((2..=5).map(|size| (size..len).step_by(size).collect()));
    out
}

/// Bytes that look like parts of streams: digits, separators, zero lengths, small binary
/// lengths, signatures, noise. Arbitrary bytes rarely reach the decoders' deeper states.
fn tokens() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        (0u32..2000).prop_map(|n| n.to_string().into_bytes()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just(vec![0; 4]),
        (1u32..300).prop_map(|n| n.to_le_bytes().to_vec()),
        (1u32..300).prop_map(|n| n.to_be_bytes().to_vec()),
        signature(),
        vec(any::<u8>(), 1..8),
    ];
    vec(token, 0..24).prop_map(|t| t.concat())
}

const FRAMINGS: [Framing; 4] = [
    Framing::Auto,
    Framing::AsciiLength,
    Framing::U32Le,
    Framing::U32Be,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Well-formed streams decode to exactly the payloads sent, in every framing and through
    /// `auto`, for any chunking, with `max_frame_bytes` at or above the largest payload.
    #[test]
    fn well_formed_streams_round_trip(
        wire in wire(),
        items in items(),
        slack in prop_oneof![Just(0u64), 0u64..5000],
        cuts in cut_sets(),
    ) {
        let (stream, expected) = wire.encode(&items);
        let largest = items.iter().flatten().map(|p| p.len() as u64).max().unwrap_or(1);
        // Below 64 KiB a binary length's other-endian reading never fits, so auto is unambiguous.
        let max = largest + slack;
        let cuts = cuts_for(stream.len(), &cuts);
        let want = Outcome { events: expected, end: Ok(()) };
        prop_assert_eq!(&check_chunkings(wire.framing(), max, &stream, &cuts), &want);
        // Four zero bytes first are u32le's end marker to auto, not u32be's empty frame; and a
        // whole stream shorter than a length header ends before auto can decide (Truncated).
        if !stream.starts_with(&[0; 4]) && stream.len() >= 4 {
            prop_assert_eq!(&check_chunkings(Framing::Auto, max, &stream, &cuts), &want);
        }
    }

    /// A frame announcing more than `max_frame_bytes` is refused as oversize, after the frames
    /// before it, and never delivered.
    #[test]
    fn oversize_frames_are_refused(
        wire in wire(),
        before in vec(image(), 0..3),
        big in image(),
        excess in prop_oneof![Just(1u64), 1u64..100_000, 1u64..u32::MAX as u64],
        cuts in cut_sets(),
    ) {
        let largest_before = before.iter().map(|p| p.len() as u64).max().unwrap_or(0);
        let max = largest_before.max(big.len() as u64 / 2).max(1);
        let announced = (max + excess).min(u32::MAX as u64);
        let items: Vec<_> = before.iter().cloned().map(Some).collect();
        let (mut stream, mut events) = wire.encode(&items);
        if let Some(Event::End) = events.last() {
            // The end marker belongs after the last frame, not before the oversize one.
            stream.truncate(stream.len() - 4);
            events.pop();
        }
        stream.extend(wire.header(announced));
        stream.extend(&big);
        let cuts = cuts_for(stream.len(), &cuts);
        let got = check_chunkings(wire.framing(), max, &stream, &cuts);
        prop_assert_eq!(&got.events, &events);
        match got.end {
            Err(DecodeError::Oversize { announced: a, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert!(a > max);
                // Every framing names the size the device announced, ASCII too.
                prop_assert_eq!(a, announced);
            }
            other => prop_assert!(false, "expected Oversize, got {:?}", other),
        }
        // Through auto: the same when the framing was already decided by earlier frames;
        // otherwise the first frame is ambiguous, and only the invariants must hold.
        let auto = check_chunkings(Framing::Auto, max, &stream, &cuts);
        if !before.is_empty() {
            prop_assert_eq!(&auto.events, &events);
            prop_assert!(matches!(auto.end, Err(DecodeError::Oversize { .. })), "{:?}", auto.end);
        }
    }

    /// Arbitrary bytes: whatever they decode to, every chunking agrees and no invariant breaks.
    #[test]
    fn garbage_decodes_the_same_for_any_chunking(
        framing in proptest::sample::select(&FRAMINGS[..]),
        max in prop_oneof![1u64..16, 16u64..4096, Just(32u64 << 20)],
        stream in prop_oneof![vec(any::<u8>(), 0..600), tokens()],
        cuts in cut_sets(),
    ) {
        let cuts = cuts_for(stream.len(), &cuts);
        check_chunkings(framing, max, &stream, &cuts);
    }

    /// A well-formed stream with garbage after it: the frames before the garbage still come out
    /// identically for every chunking.
    #[test]
    fn frames_then_garbage(
        wire in wire(),
        items in items(),
        garbage in prop_oneof![vec(any::<u8>(), 1..64), tokens()],
        cuts in cut_sets(),
    ) {
        let (mut stream, _) = wire.encode(&items);
        stream.extend(garbage);
        let cuts = cuts_for(stream.len(), &cuts);
        check_chunkings(wire.framing(), 4096, &stream, &cuts);
        check_chunkings(Framing::Auto, 4096, &stream, &cuts);
    }
}

/// Every crash input the fuzzers found goes through the same checks as in the fuzz target it
/// was found by (`fuzz/regressions/<target>/<input>`).
#[test]
fn fuzz_regressions_replay() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for target in std::fs::read_dir(&root).expect("fuzz/regressions is part of the repo") {
        let target = target.expect("readable fuzz/regressions");
        if !target.path().is_dir() {
            continue;
        }
        let name = target.file_name().into_string().expect("UTF-8 target name");
        for input in std::fs::read_dir(target.path()).expect("readable regressions dir") {
            let path = input.expect("readable regression").path();
            let data = std::fs::read(&path).expect("readable regression file");
            let result = std::panic::catch_unwind(|| invariants::run_target(&name, &data));
            assert!(result.is_ok(), "regression {} fails again", path.display());
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no regression inputs under {}",
        root.display()
    );
}

/// Examples the properties stand for, readable on their own.
#[test]
fn auto_short_ascii_frames_decided_late_lose_nothing() {
    // "1X1Y": auto decides ascii-length at the 4th byte, when both 1-byte frames are complete.
    for chunks in [
        &[&b"1X1Y"[..]][..],
        &[b"1", b"X", b"1", b"Y"],
        &[b"1X1", b"Y"],
    ] {
        let run = decode(Framing::Auto, 1000, chunks);
        assert_eq!(
            run.outcome,
            Outcome {
                events: vec![Event::Frame(b"X".to_vec()), Event::Frame(b"Y".to_vec())],
                end: Ok(())
            },
            "chunks {chunks:?}"
        );
    }
}
