//! `cargo bench --bench sinks`: throughput of the exec sink with `concurrency = 1, 4, 16`
//! for a trivial hook, and of the image stage (decode + 320 px thumbnail) per core. Results go
//! to docs/BENCHMARKS.md.
//!
//! Exec: the real daemon, one u32le device sending small frames, an exec sink running
//! `/bin/true` per frame; the baseline in the same run is the same traffic into `discard`.
//! The clock runs from the first frame to the daemon's exit after SIGTERM, which waits for
//! every hook. Image stage: in this process on one thread (so per core by construction),
//! 1280x720 JPEGs decoded, shrunk to fit 320x320 and encoded as JPEG; the baseline in the same
//! run is decoding alone. Then the daemon end to end with a worker per core, divided by cores.
//!
//! Options: `FG_BENCH_QUICK=1` (fewer frames: a smoke run). A benchmark reports; it exits
//! non-zero only when a correctness check fails (a frame not committed).

#[allow(dead_code)]
#[path = "ingest/daemon.rs"]
mod daemon;
#[allow(dead_code)]
#[path = "ingest/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "ingest/system.rs"]
mod system;

use std::io::Cursor;
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use framegate::frame::Frame;
use framegate::sink::image::{convert, Convert, ImageStageConfig, Validate};
use image::{DynamicImage, ImageFormat};

fn main() -> ExitCode {
    let quick = std::env::var("FG_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    println!("# framegate sinks benchmark\n");
    println!("machine: {}\n", system::machine());
    let mut ok = true;
    ok &= exec_bench(if quick { 200 } else { 2000 });
    ok &= image_bench(if quick { 20 } else { 150 });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The config of one run: a u32le listener and one sink described by `sink`.
fn config(dir: &Path, sink: &str) -> String {
    format!(
        "state_dir = \"{}/state\"\nshutdown_timeout = \"10m\"\n\n[[listener]]\nname = \"bench\"\nbind = \"127.0.0.1:0\"\nframing = \"u32le\"\n\n[[sink]]\nname = \"out\"\n{sink}\n",
        dir.display()
    )
}

/// Sends `frames` over one connection, waits until the daemon read them all (it closes the
/// connection after the end marker), stops it; returns frames/s and the committed count.
fn run(sink: &str, frames: &[Vec<u8>]) -> Result<(f64, u64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = daemon::Daemon::start_config(dir.path(), &config(dir.path(), sink))?;
    let mut wire = Vec::new();
    for f in frames {
        wire.extend_from_slice(&(f.len() as u32).to_le_bytes());
        wire.extend_from_slice(f);
    }
    wire.extend_from_slice(&0u32.to_le_bytes());
    let mut stream = TcpStream::connect(d.addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    std::io::Write::write_all(&mut stream, &wire).map_err(|e| e.to_string())?;
    let _ = stream.shutdown(Shutdown::Write);
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
    let stopped = d.stop()?;
    let elapsed = stopped.exited.duration_since(started).as_secs_f64();
    let committed = stopped.log.committed.map_or(0, |c| c.0);
    if committed != frames.len() as u64 {
        return Err(format!(
            "{committed} of {} frames committed; log: {:?}",
            frames.len(),
            stopped.log.problems
        ));
    }
    Ok((frames.len() as f64 / elapsed, committed))
}

fn exec_bench(count: usize) -> bool {
    println!("## Exec sink: /bin/true per frame, {count} frames of 1 KB\n");
    println!("| sink | frames/s | vs concurrency 1 |");
    println!("|---|---|---|");
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut f = vec![(i % 251) as u8; 1024];
            f[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
            f
        })
        .collect();
    let mut ok = true;
    match run("type = \"discard\"", &frames) {
        Ok((rate, _)) => println!("| discard (baseline) | {rate:.0} | |"),
        Err(e) => {
            println!("| discard (baseline) | failed: {e} | |");
            ok = false;
        }
    }
    let mut first = None;
    for concurrency in [1, 4, 16] {
        let sink = format!(
            "type = \"exec\"\ncommand = [\"/bin/true\"]\ninput = \"none\"\nconcurrency = {concurrency}\n"
        );
        match run(&sink, &frames) {
            Ok((rate, _)) => {
                let base = *first.get_or_insert(rate);
                println!(
                    "| exec, concurrency = {concurrency} | {rate:.0} | {:.2}x |",
                    rate / base
                );
            }
            Err(e) => {
                println!("| exec, concurrency = {concurrency} | failed: {e} | |");
                ok = false;
            }
        }
    }
    println!();
    ok
}

/// A 1280x720 camera-like JPEG (gradients and texture, so it compresses like a photo).
fn camera_jpeg(seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(1280, 720, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed) >> 27;
        image::Rgb([
            ((x / 5) as u8).wrapping_add(n as u8),
            ((y / 3) as u8).wrapping_add(seed as u8),
            ((x + y) / 8) as u8,
        ])
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

fn image_bench(count: usize) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("## Image stage: 1280x720 JPEG → decode → fit 320x320 → JPEG q85, {count} frames\n");
    let frames: Vec<Vec<u8>> = (0..8).map(camera_jpeg).collect();
    let stage = ImageStageConfig {
        validate: Validate::Decode,
        quarantine: None,
        convert: Some(Convert::Jpeg),
        quality: 85,
        resize: Some((320, 320)),
    };
    let frame = |payload: &[u8]| Frame {
        listener: "bench".into(),
        device: "cam".into(),
        peer: "127.0.0.1:1".parse().unwrap(),
        seq: 1,
        received_at: std::time::SystemTime::now(),
        format: Some(ImageFormat::Jpeg),
        payload: payload.to_vec(),
        native: None,
    };
    let started = Instant::now();
    for i in 0..count {
        let _ = image::load_from_memory(&frames[i % frames.len()]).unwrap();
    }
    let decode_rate = count as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut size = (0, 0);
    for i in 0..count {
        let f = frame(&frames[i % frames.len()]);
        let decoded = image::load_from_memory(&f.payload).unwrap();
        let (bytes, _) = convert(decoded, &f, &stage).unwrap();
        if i == 0 {
            let thumb = image::load_from_memory(&bytes).unwrap();
            size = (thumb.width(), thumb.height());
        }
    }
    let thumb_rate = count as f64 / started.elapsed().as_secs_f64();
    println!("| one thread (one core) | frames/s | vs decode alone |");
    println!("|---|---|---|");
    println!("| decode alone (baseline) | {decode_rate:.1} | 1.00x |");
    println!(
        "| decode + thumbnail ({}x{}) + JPEG encode | {thumb_rate:.1} | {:.2}x |",
        size.0,
        size.1,
        thumb_rate / decode_rate
    );
    let sink = "type = \"discard\"\nvalidate = \"decode\"\nconvert = \"jpeg\"\nresize = { max_width = 320, max_height = 320 }\n";
    let wire: Vec<Vec<u8>> = (0..count)
        .map(|i| frames[i % frames.len()].clone())
        .collect();
    let ok = match run(sink, &wire) {
        Ok((rate, _)) => {
            println!(
                "| daemon end to end, {cores} workers (one per core) | {:.1} per core ({rate:.1} total) | {:.2}x |",
                rate / cores as f64,
                rate / cores as f64 / decode_rate
            );
            true
        }
        Err(e) => {
            println!("| daemon end to end | failed: {e} | |");
            false
        }
    };
    println!();
    ok
}
