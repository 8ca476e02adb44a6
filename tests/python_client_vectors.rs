//! Keeps docs/PROTOCOL.md, the Rust codec and the Python client in agreement: runs the Python
//! client's unit tests, and checks every hex vector in the document with this crate's encoder
//! and decoder.

use std::path::Path;
use std::process::Command;

use framegate::protocol::wire::{auth_tag, checksum, NONCE_LEN};
use framegate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn python_client_tests_pass() {
    let output = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "-v",
            "clients/python/test_framegate_client.py",
        ])
        .current_dir(ROOT)
        .output()
        .expect("python3 must be installed to run the Python client's tests");
    assert!(
        output.status.success(),
        "python3 -m unittest clients/python/test_framegate_client.py: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What a vector of the document holds.
enum Vector {
    Message(Message),
    Frame(FrameHeader, Vec<u8>),
    Tag([u8; NONCE_LEN]),
}

/// The meaning of each named vector, as docs/PROTOCOL.md describes it.
fn expected(name: &str) -> Option<Vector> {
    let nonce = [7u8; NONCE_LEN];
    let tag = auth_tag(b"s3cret", &nonce, "door-cam");
    let message = match name {
        "hello" => Message::Hello {
            device: "door-cam".into(),
            has_secret: true,
        },
        "challenge" => Message::Challenge { nonce },
        "auth" => Message::Auth { tag },
        "welcome" => Message::Welcome {
            max_frame_bytes: 32 << 20,
            max_in_flight: 16,
            heartbeat_secs: 10,
            committed_through: 41,
        },
        "ack" => Message::Ack { seq: 42 },
        "nack" => Message::Nack {
            seq: 43,
            reason: Reason::ChecksumMismatch,
            text: "crc".into(),
        },
        "ping" => Message::Ping { token: 7 },
        "pong" => Message::Pong { token: 7 },
        "goodbye" => Message::Goodbye {
            reason: Reason::ShuttingDown,
            text: String::new(),
        },
        "auth-tag" => return Some(Vector::Tag(tag)),
        "frame" => {
            let payload = vec![0xff, 0xd8, 0xff, 0xd9];
            let header = FrameHeader {
                seq: 42,
                captured_us: 1_700_000_000_000_000,
                content_type: ContentType::Jpeg,
                meta: vec![("exp".into(), "10".into())],
                payload_len: 4,
                crc32c: checksum(&payload),
            };
            return Some(Vector::Frame(header, payload));
        }
        _ => return None,
    };
    Some(Vector::Message(message))
}

/// `(name, bytes)` of every `<!-- vector NAME -->` followed by a ```text block, in order.
fn doc_vectors() -> Vec<(String, Vec<u8>)> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let (marker, fence) = ("<!-- vector ", "```text\n");
    let mut vectors = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let name = &rest[..rest.find(" -->").expect("marker end")];
        let open = rest.find(fence).expect("a ```text block after the marker") + fence.len();
        let close = open + rest[open..].find("```").expect("block end");
        let digits: String = rest[open..close].split_whitespace().collect();
        let bytes = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
            .collect();
        vectors.push((name.to_string(), bytes));
        rest = &rest[close..];
    }
    vectors
}

/// The one message `bytes` holds.
fn decode(bytes: &[u8]) -> Decoded {
    let mut decoder = MessageDecoder::new(1 << 20);
    let (mut rest, mut events) = (bytes, Vec::new());
    while !rest.is_empty() {
        let fed = decoder.feed(rest).expect("a valid message");
        rest = &rest[fed.consumed..];
        events.extend(fed.event);
    }
    decoder.finish().expect("ends between messages");
    assert_eq!(events.len(), 1, "one message");
    events.pop().expect("one message")
}

#[test]
fn every_vector_in_the_protocol_doc_matches_the_rust_codec() {
    let vectors = doc_vectors();
    let names: Vec<&str> = vectors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hello",
            "challenge",
            "auth",
            "welcome",
            "frame",
            "ack",
            "nack",
            "ping",
            "pong",
            "goodbye",
            "auth-tag"
        ]
    );
    for (name, bytes) in vectors {
        let mut encoded = Vec::new();
        match expected(&name).expect("every vector has an expectation") {
            Vector::Tag(tag) => encoded.extend_from_slice(&tag),
            Vector::Message(message) => {
                message.encode(&mut encoded);
                assert_eq!(
                    decode(&bytes),
                    Decoded::Message(message),
                    "{name}: decoding"
                );
            }
            Vector::Frame(header, payload) => {
                Message::Frame(header.clone()).encode(&mut encoded);
                encoded.extend_from_slice(&payload);
                assert_eq!(
                    decode(&bytes),
                    Decoded::Frame { header, payload },
                    "{name}: decoding"
                );
            }
        }
        assert_eq!(encoded, bytes, "{name}: encoding");
    }
    // The CRC-32C check value the document gives.
    assert_eq!(checksum(b"123456789"), 0xE306_9283);
}
