//! Many devices at once: 200 connections from 20 device addresses, all open together, each
//! sending a few distinct frames in one of the three framings to an `auto` listener. Every frame
//! must be stored exactly once, byte for byte; each device's numbers must be 1..=N with its
//! connections' frames in the order each sent them; nothing temporary may remain.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;

const DEVICES: u8 = 20;
const CONNECTIONS_PER_DEVICE: usize = 10;

/// What one connection sends.
struct Plan {
    device: Ipv4Addr,
    wire: Wire,
    frames: Vec<Vec<u8>>,
}

fn plans() -> Vec<Plan> {
    let mut rng = Rng::new(7);
    let mut plans = Vec::new();
    for d in 0..DEVICES {
        for c in 0..CONNECTIONS_PER_DEVICE {
            let n = rng.range(3, 5);
            // Mostly small frames, some up to ~150 KB: about 40 MB in all.
            let hi = if rng.next_u64() % 4 == 0 {
                150_000
            } else {
                40_000
            };
            let wire = [Wire::Ascii, Wire::U32Le, Wire::U32Be][(d as usize + c) % 3];
            let mut frames = frames(u64::from(d) * 1000 + c as u64, n, 8, hi);
            if wire == Wire::U32Be {
                // A length that is a multiple of 256 also reads as a u32le length within
                // max_frame_bytes: every u32be device here exercises auto's rule 3
                // (ingest_legacy.rs, `auto_u32be_first_frame_a_multiple_of_256`).
                let len = (frames[0].len() / 256 * 256).max(256);
                frames[0].resize(len, 0x5a);
            }
            plans.push(Plan {
                device: Ipv4Addr::new(127, 0, 0, 10 + d),
                wire,
                frames,
            });
        }
    }
    plans
}

#[test]
fn two_hundred_devices_at_once() {
    let mut d = Daemon::start(&[listener("auto", "auto", ""), FILE_SINK.to_string()].concat());
    let to = d.addr("auto");
    let plans = Arc::new(plans());
    let total: usize = plans.iter().map(|p| p.frames.len()).sum();

    // All connections open first, then all send at once.
    let barrier = Arc::new(Barrier::new(plans.len()));
    let threads: Vec<_> = (0..plans.len())
        .map(|i| {
            let (plans, barrier) = (plans.clone(), barrier.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let plan = &plans[i];
                    let mut stream = connect_from(IpAddr::V4(plan.device), to);
                    let local = stream.local_addr().unwrap();
                    let bytes = encode(plan.wire, &plan.frames);
                    barrier.wait();
                    // In a few writes, so that frames of many connections interleave.
                    for chunk in bytes.chunks(16 * 1024) {
                        stream.write_all(chunk).expect("send");
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    wait_closed_by_server(&mut stream, WAIT).expect("server closes");
                    local
                })
                .expect("spawn a device thread")
        })
        .collect();
    let locals: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("device thread"))
        .collect();
    d.wait_for_files(total, WAIT);
    let status = d.terminate();
    assert!(status.success(), "framegate exited with {status}");

    // Exactly the frames sent, each once.
    let files = d.stored_files();
    assert_no_tmp(&d.frames_root());
    assert_eq!(files.len(), total);
    let mut stored: Vec<(usize, u64)> = Vec::new();
    // hash → (device, seq) of the stored copy.
    let mut where_stored: HashMap<u64, (String, u64)> = HashMap::new();
    for dev in 0..DEVICES {
        let device = Ipv4Addr::new(127, 0, 0, 10 + dev).to_string();
        let frames = d.frames(&device, "auto");
        let expected: usize = plans
            .iter()
            .filter(|p| p.device.to_string() == device)
            .map(|p| p.frames.len())
            .sum();
        assert_eq!(frames.len(), expected, "frames of {device}");
        let seqs: Vec<u64> = frames.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (1..=expected as u64).collect::<Vec<_>>(), "{device}");
        for s in &frames {
            let h = hash(&s.bytes);
            stored.push((s.bytes.len(), h));
            assert_eq!(s.ext, ext_of(&s.bytes), "{:?}", s.path);
            where_stored.insert(h, (device.clone(), s.seq));
        }
    }
    let mut sent: Vec<(usize, u64)> = plans
        .iter()
        .flat_map(|p| p.frames.iter().map(|f| (f.len(), hash(f))))
        .collect();
    sent.sort();
    stored.sort();
    assert_eq!(stored, sent, "stored frames differ from the sent ones");

    // Within each connection, frames were numbered in the order they were sent.
    for p in plans.iter() {
        let placed: Vec<_> = p.frames.iter().map(|f| &where_stored[&hash(f)]).collect();
        assert!(placed.iter().all(|(dev, _)| *dev == p.device.to_string()));
        assert!(
            placed.windows(2).all(|w| w[0].1 < w[1].1),
            "{}: a connection's frames out of order: {placed:?}",
            p.device
        );
    }

    // One close line per connection, with its own frame count.
    assert_eq!(d.log_lines(&["on \"auto\" closed"]).len(), plans.len());
    for (p, local) in plans.iter().zip(&locals) {
        let from = format!(
            "connection from {local} (device {}) on \"auto\" closed",
            p.device
        );
        let count = format!(": {} frames, ", p.frames.len());
        let lines = d.log_lines(&[&from, &count]);
        assert_eq!(lines.len(), 1, "{from}{count}…");
    }
}
