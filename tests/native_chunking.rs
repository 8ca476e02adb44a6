//! Property test: any sequence of native-protocol messages, encoded and cut anywhere, decodes
//! to the same messages, through `feed` and with payloads received in place.

use framegate::protocol::wire::checksum;
use framegate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};
use proptest::collection::vec;
use proptest::prelude::*;

/// What the stream should decode to, and its bytes.
#[derive(Debug, Clone)]
enum Item {
    Control(Message),
    Frame(FrameHeader, Vec<u8>),
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9 é]{0,20}".prop_map(|s| s.chars().take(20).collect())
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        any::<u64>().prop_map(|token| Item::Control(Message::Ping { token })),
        any::<u64>().prop_map(|seq| Item::Control(Message::Ack { seq })),
        (any::<u64>(), 1u8..8, text()).prop_map(|(seq, r, text)| Item::Control(Message::Nack {
            seq,
            reason: Reason::from_code(r),
            text
        })),
        "[a-z-]{1,64}".prop_map(|device| Item::Control(Message::Hello {
            device,
            has_secret: false
        })),
        (
            1u64..1_000_000,
            vec(("[a-z]{1,8}", "[a-z0-9]{0,12}"), 0..4),
            vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(seq, meta, payload)| {
                let header = FrameHeader {
                    seq,
                    captured_us: seq * 1000,
                    content_type: ContentType::Jpeg,
                    meta,
                    payload_len: payload.len() as u32,
                    crc32c: checksum(&payload),
                };
                Item::Frame(header, payload)
            }),
    ]
}

fn expected(items: &[Item]) -> (Vec<u8>, Vec<Decoded>) {
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    for item in items {
        match item {
            Item::Control(m) => {
                m.encode(&mut bytes);
                events.push(Decoded::Message(m.clone()));
            }
            Item::Frame(h, p) => {
                Message::Frame(h.clone()).encode(&mut bytes);
                bytes.extend_from_slice(p);
                events.push(Decoded::Frame {
                    header: h.clone(),
                    payload: p.clone(),
                });
            }
        }
    }
    (bytes, events)
}

fn decode(bytes: &[u8], cuts: &[usize], in_place: bool) -> Vec<Decoded> {
    let mut dec = MessageDecoder::new(1 << 20);
    let mut events = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for end in points {
        let mut rest = &bytes[at..end.max(at)];
        at = end.max(at);
        while !rest.is_empty() {
            if in_place {
                if let Some(spare) = dec.payload_spare() {
                    let n = spare.len().min(rest.len());
                    for (slot, b) in spare.iter_mut().zip(&rest[..n]) {
                        slot.write(*b);
                    }
                    rest = &rest[n..];
                    // SAFETY: the loop above wrote the first n bytes of the spare part.
                    events.extend(unsafe { dec.payload_spare_filled(n) });
                    continue;
                }
            }
            let fed = dec.feed(rest).expect("a well-formed stream");
            rest = &rest[fed.consumed..];
            events.extend(fed.event);
        }
    }
    assert_eq!(dec.finish(), Ok(()));
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_chunking_decodes_to_the_messages_sent(
        items in vec(item(), 1..12),
        cuts in vec(any::<usize>(), 0..10),
    ) {
        let (bytes, events) = expected(&items);
        prop_assert_eq!(&decode(&bytes, &cuts, false), &events);
        prop_assert_eq!(&decode(&bytes, &cuts, true), &events);
    }
}
