//! The hex test vectors of docs/PROTOCOL.md, and decoding under every chunking.

use super::wire::*;
use super::*;

fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.split_whitespace().collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// Decodes `bytes` at every split point (and byte by byte), requiring the same outcome.
fn decode_all(max: u64, bytes: &[u8]) -> (Vec<Decoded>, Result<(), WireError>) {
    let run = |chunks: Vec<&[u8]>| {
        let mut dec = MessageDecoder::new(max);
        let mut events = Vec::new();
        for chunk in chunks {
            let mut rest = chunk;
            while !rest.is_empty() {
                match dec.feed(rest) {
                    Ok(fed) => {
                        assert!(fed.consumed > 0 || fed.event.is_some());
                        rest = &rest[fed.consumed..];
                        events.extend(fed.event);
                    }
                    Err(e) => return (events, Err(e)),
                }
            }
        }
        let end = dec.finish();
        (events, end)
    };
    let whole = run(vec![bytes]);
    for cut in 0..=bytes.len() {
        assert_eq!(
            run(vec![&bytes[..cut], &bytes[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    assert_eq!(run(bytes.chunks(1).collect()), whole, "byte by byte");
    whole
}

/// The vectors from docs/PROTOCOL.md, "Test vectors": (name, message, hex).
pub fn vectors() -> Vec<(&'static str, Message, &'static str)> {
    vec![
        (
            "hello",
            Message::Hello {
                device: "door-cam".into(),
                has_secret: true,
            },
            "4647 01 01 0a000000 08 646f6f722d63616d 01",
        ),
        (
            "welcome",
            Message::Welcome {
                max_frame_bytes: 33_554_432,
                max_in_flight: 16,
                heartbeat_secs: 10,
                committed_through: 41,
            },
            "4647 01 04 10000000 00000002 1000 0a00 2900000000000000",
        ),
        (
            "ack",
            Message::Ack { seq: 42 },
            "4647 01 11 08000000 2a00000000000000",
        ),
        (
            "nack",
            Message::Nack {
                seq: 43,
                reason: Reason::ChecksumMismatch,
                text: "crc".into(),
            },
            "4647 01 12 0d000000 2b00000000000000 02 03 637263",
        ),
        (
            "ping",
            Message::Ping { token: 7 },
            "4647 01 20 08000000 0700000000000000",
        ),
        (
            "goodbye",
            Message::Goodbye {
                reason: Reason::ShuttingDown,
                text: "".into(),
            },
            "4647 01 7f 02000000 05 00",
        ),
    ]
}

/// A FRAME of the 4-byte payload `FF D8 FF D9`, seq 42, captured at 1,700,000,000 s, JPEG,
/// metadata `exp=10`.
pub fn frame_vector() -> (FrameHeader, Vec<u8>, &'static str) {
    let payload = vec![0xff, 0xd8, 0xff, 0xd9];
    let header = FrameHeader {
        seq: 42,
        captured_us: 1_700_000_000_000_000,
        content_type: ContentType::Jpeg,
        meta: vec![("exp".into(), "10".into())],
        payload_len: 4,
        crc32c: checksum(&payload),
    };
    let hex = "4647 01 10 28000000 \
               2a00000000000000 00401e18240a0600 01 01 0800 04000000 b409576c \
               03 657870 0200 3130 \
               ffd8ffd9";
    (header, payload, hex)
}

#[test]
fn control_messages_match_the_spec_vectors() {
    for (name, message, hex) in vectors() {
        let mut encoded = Vec::new();
        message.encode(&mut encoded);
        assert_eq!(encoded, unhex(hex), "{name}: encoding");
        let (events, end) = decode_all(1 << 20, &encoded);
        assert_eq!(end, Ok(()), "{name}");
        assert_eq!(events, vec![Decoded::Message(message)], "{name}: decoding");
    }
}

#[test]
fn frame_matches_the_spec_vector() {
    let (header, payload, hex) = frame_vector();
    // Cross-checked with a bitwise Python CRC-32C (which gives 0xe3069283 for "123456789").
    assert_eq!(header.crc32c, 0x6c5709b4, "CRC-32C of FF D8 FF D9");
    let mut encoded = Vec::new();
    Message::Frame(header.clone()).encode(&mut encoded);
    encoded.extend_from_slice(&payload);
    assert_eq!(encoded, unhex(hex));
    let (events, end) = decode_all(1 << 20, &encoded);
    assert_eq!(end, Ok(()));
    assert_eq!(events, vec![Decoded::Frame { header, payload }]);
}

#[test]
fn a_frame_over_the_limit_is_skipped_and_the_stream_goes_on() {
    let (header, payload, _) = frame_vector();
    let mut stream = Vec::new();
    Message::Frame(header.clone()).encode(&mut stream);
    stream.extend_from_slice(&payload);
    Message::Ping { token: 1 }.encode(&mut stream);
    let (events, end) = decode_all(3, &stream);
    assert_eq!(end, Ok(()));
    assert_eq!(
        events,
        vec![
            Decoded::FrameTooLarge { header },
            Decoded::Message(Message::Ping { token: 1 })
        ]
    );
}

#[test]
fn payload_is_received_in_place() {
    let (header, payload, _) = frame_vector();
    let mut head = Vec::new();
    Message::Frame(header.clone()).encode(&mut head);
    let mut dec = MessageDecoder::new(1 << 20);
    assert_eq!(dec.feed(&head).unwrap().event, None);
    assert_eq!(dec.payload_remaining(), Some(4));
    let spare = dec.payload_spare().unwrap();
    for (slot, byte) in spare.iter_mut().zip(&payload) {
        slot.write(*byte);
    }
    // SAFETY: the loop wrote all 4 bytes of the spare part.
    let done = unsafe { dec.payload_spare_filled(4) };
    assert_eq!(done, Some(Decoded::Frame { header, payload }));
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn bad_streams_are_refused_with_a_reason() {
    let cases: [(&str, WireError); 6] = [
        (
            "4746 01 01 00000000",
            WireError::BadMagic {
                header: *b"GF\x01\x01\0\0\0\0",
            },
        ),
        ("4647 02 01 03000000", WireError::UnsupportedVersion(2)),
        ("4647 01 55 00000000", WireError::UnknownType(0x55)),
        (
            // A HELLO announcing a huge body: refused before anything is allocated.
            "4647 01 01 ffffff7f",
            WireError::BadLength {
                kind: Kind::Hello,
                len: 0x7fff_ffff,
            },
        ),
        (
            "4647 01 01 03000000 05 6162",
            WireError::Malformed("HELLO device id of 5 bytes in a body of 3".into()),
        ),
        (
            // FRAME whose parts (28 + 0 + 4) do not add up to its body (40).
            "4647 01 10 28000000 0100000000000000 0000000000000000 00 00 0000 04000000 00000000",
            WireError::Malformed("frame 1 body is 40 bytes but its parts add up to 32".into()),
        ),
    ];
    for (hex, expected) in cases {
        let (events, end) = decode_all(1 << 20, &unhex(hex));
        assert!(events.is_empty(), "{hex}");
        assert_eq!(end, Err(expected), "{hex}");
    }
    // Cut short: truncated.
    let (_, end) = decode_all(1 << 20, &unhex("4647 01 11 08000000 2a00"));
    assert_eq!(end, Err(WireError::Truncated));
}

#[test]
fn auth_tags_bind_secret_nonce_and_device() {
    let nonce = [7u8; NONCE_LEN];
    let tag = auth_tag(b"s3cret", &nonce, "door-cam");
    assert!(verify_auth_tag(b"s3cret", &nonce, "door-cam", &tag));
    assert!(!verify_auth_tag(b"s3cret", &nonce, "yard-cam", &tag));
    assert!(!verify_auth_tag(b"other", &nonce, "door-cam", &tag));
    assert!(!verify_auth_tag(
        b"s3cret",
        &[8u8; NONCE_LEN],
        "door-cam",
        &tag
    ));
    // The vector in docs/PROTOCOL.md, computed with Python's hmac module.
    assert_eq!(
        crate::framing::hex(&tag),
        "8a7bb92b6855d759df0e0d738b2e45f19053c161c65f87d378f2012b6abc2fa8"
    );
}
