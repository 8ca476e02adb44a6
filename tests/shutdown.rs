//! SIGTERM under load: every frame a native device saw ACKed is on disk afterwards, the devices
//! hear GOODBYE "shutting down" (or NACK for frames that could not be finished), and no
//! temporary file remains.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use framegate::protocol::wire::checksum;
use framegate::protocol::{ContentType, Decoded, FrameHeader, Message, MessageDecoder, Reason};

/// Streams frames with a window of 8 until the server says goodbye; returns the frames that
/// were ACKed (seq, payload).
fn stream_until_goodbye(
    addr: std::net::SocketAddr,
    device: String,
    go: Arc<Barrier>,
) -> Vec<(u64, Vec<u8>)> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut bytes = Vec::new();
    Message::Hello {
        device: device.clone(),
        has_secret: false,
    }
    .encode(&mut bytes);
    writer.write_all(&bytes).unwrap();
    let mut decoder = MessageDecoder::new(0);
    let mut inbox = Vec::new();
    let mut next = |stream: &mut std::net::TcpStream, inbox: &mut Vec<u8>| -> Option<Message> {
        loop {
            while !inbox.is_empty() {
                let fed = decoder.feed(inbox).unwrap();
                inbox.drain(..fed.consumed);
                if let Some(Decoded::Message(m)) = fed.event {
                    return Some(m);
                }
            }
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => inbox.extend_from_slice(&buf[..n]),
            }
        }
    };
    assert!(matches!(
        next(&mut stream, &mut inbox),
        Some(Message::Welcome { .. })
    ));
    go.wait();
    let (mut acked, mut in_flight) = (Vec::new(), std::collections::HashMap::new());
    let mut seq = 0u64;
    loop {
        // Keep 8 frames in flight while the connection lasts.
        while in_flight.len() < 8 {
            seq += 1;
            let payload = jpeg(
                seq * 1000 + device.len() as u64,
                5000 + (seq as usize % 300),
            );
            let header = FrameHeader {
                seq,
                captured_us: 1_700_000_000_000_000 + seq,
                content_type: ContentType::Jpeg,
                meta: vec![],
                payload_len: payload.len() as u32,
                crc32c: checksum(&payload),
            };
            let mut bytes = Vec::new();
            Message::Frame(header).encode(&mut bytes);
            bytes.extend_from_slice(&payload);
            if writer.write_all(&bytes).is_err() {
                return acked;
            }
            in_flight.insert(seq, payload);
        }
        match next(&mut stream, &mut inbox) {
            Some(Message::Ack { seq }) => acked.push((seq, in_flight.remove(&seq).unwrap())),
            Some(Message::Nack {
                seq,
                reason: Reason::ShuttingDown,
                ..
            }) => {
                in_flight.remove(&seq);
            }
            Some(Message::Goodbye {
                reason: Reason::ShuttingDown,
                ..
            })
            | None => return acked,
            Some(Message::Ping { token }) => {
                let mut bytes = Vec::new();
                Message::Pong { token }.encode(&mut bytes);
                let _ = writer.write_all(&bytes);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn sigterm_under_load_keeps_every_acked_frame() {
    let mut d = Daemon::start(&[listener("native", "native", ""), FILE_SINK.to_string()].concat());
    let addr = d.addr("native");
    let devices = 10;
    let go = Arc::new(Barrier::new(devices + 1));
    let clients: Vec<_> = (0..devices)
        .map(|i| {
            let go = go.clone();
            thread::spawn(move || stream_until_goodbye(addr, format!("cam-{i}"), go))
        })
        .collect();
    go.wait();
    // Let them stream, then stop the daemon in the middle of it.
    d.wait_for_files(200, WAIT);
    let status = d.terminate();
    assert!(status.success(), "framegate exited with {status}");
    let mut total = 0;
    for (i, client) in clients.into_iter().enumerate() {
        let acked = client.join().unwrap();
        total += acked.len();
        let stored = d.frames(&format!("cam-{i}"), "native");
        for (seq, payload) in &acked {
            let file = stored
                .iter()
                .find(|s| s.seq == *seq)
                .unwrap_or_else(|| panic!("cam-{i} frame {seq} was ACKed but is not on disk"));
            assert!(file.bytes == *payload, "cam-{i} frame {seq} differs");
        }
    }
    assert!(total >= 200, "only {total} frames were ACKed");
    assert_no_tmp(&d.frames_root());
}
