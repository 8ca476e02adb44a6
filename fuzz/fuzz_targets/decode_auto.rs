//! auto: the first byte picks max_frame_bytes and the cut seed.
//! The rest of the input is the stream, decoded whole, a byte at a time, at seeded cuts and through
//! the zero-copy path: every run must give the same events and end, no frame may exceed max, and
//! the other invariants in `invariants.rs` must hold.
#![no_main]

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::target_auto(data));
