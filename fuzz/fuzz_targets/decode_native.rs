//! The native protocol's message decoder (src/protocol/decoder.rs). The first byte picks
//! max_frame_bytes (low 2 bits) and the cut seed; the rest is the byte stream.
//!
//! The stream is decoded whole, a byte at a time, at two seeded sets of cuts, and with every
//! payload filled in place through `payload_spare` (as the event loop does): all runs must give
//! the same messages and the same end; no payload exceeds max_frame_bytes; a skipped frame's
//! header announced more than max; errors are final; every call makes progress.
#![no_main]

use framegate::protocol::{Decoded, MessageDecoder, WireError};

const MAXES: [u64; 4] = [0, 16, 4096, 32 << 20];

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Decoded>,
    end: Result<(), WireError>,
}

fn decode(max: u64, chunks: &[&[u8]], in_place: bool) -> Outcome {
    let mut dec = MessageDecoder::new(max);
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            if in_place {
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
            match dec.feed(rest) {
                Ok(fed) => {
                    assert!(fed.consumed <= rest.len());
                    assert!(fed.consumed > 0 || fed.event.is_some(), "no progress");
                    rest = &rest[fed.consumed..];
                    events.extend(fed.event);
                }
                Err(err) => {
                    assert_eq!(dec.feed(b"FG\x01").as_ref(), Err(&err), "error not final");
                    assert_eq!(dec.finish().as_ref(), Err(&err), "finish forgot the error");
                    return Outcome {
                        events,
                        end: Err(err),
                    };
                }
            }
        }
    }
    Outcome {
        events,
        end: dec.finish(),
    }
}

/// Cut points from a seed (a small xorshift), sorted, within `len`.
fn cuts(seed: u64, len: usize) -> Vec<usize> {
    let mut x = seed | 1;
    let mut cuts: Vec<usize> = (0..8)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (len as u64 + 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    cuts
}

fn split<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        parts.push(&stream[at..cut]);
        at = cut;
    }
    parts.push(&stream[at..]);
    parts
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let max = MAXES[usize::from(first & 3)];
    let seed = u64::from(first >> 2) + 1;
    let whole = decode(max, &[stream], false);
    for event in &whole.events {
        match event {
            Decoded::Frame { header, payload } => {
                assert!(payload.len() as u64 <= max, "payload over max");
                assert_eq!(payload.len(), header.payload_len as usize);
            }
            Decoded::FrameTooLarge { header } => {
                assert!(u64::from(header.payload_len) > max, "skipped a frame within max")
            }
            Decoded::Message(_) => {}
        }
    }
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(decode(max, &bytewise, false), whole, "byte by byte");
    for s in [seed, seed.wrapping_mul(0x9e37_79b9)] {
        let parts = split(stream, &cuts(s, stream.len()));
        assert_eq!(decode(max, &parts, false), whole, "cuts {s}");
        assert_eq!(decode(max, &parts, true), whole, "cuts {s}, in place");
    }
});
