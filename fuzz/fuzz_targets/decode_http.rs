//! HTTP requests: the first byte's bits 0-1 pick max_body_bytes (0, 16, 4096, 32 MiB), all of it
//! seeds the cuts. The rest is the stream, decoded whole, a byte at a time and at seeded cuts:
//! every run must give the same requests and end, bodies within the limit, errors final, and
//! multipart extraction must stay inside the body (`invariants.rs`, `target_http`).
#![no_main]

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::target_http(data));
