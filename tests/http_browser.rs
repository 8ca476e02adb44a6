//! The live view in a real browser: headless Chromium (Debian's `chromium`, which .ci/run
//! installs) loads `/` while three devices upload, and the page must show a decoded image in
//! each device's tile. Screenshots at laptop and phone size are kept as test artifacts in
//! `target/tmp/live-view-*.png`.

mod common;
#[path = "common/http.rs"]
mod http;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use http::*;

/// Runs headless Chromium with `args` on `url`, bounded by a timeout; returns stdout.
fn chromium(args: &[&str], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
        ])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium (install it: apt-get install -y chromium)");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert!(status.success(), "chromium failed: {status}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_streaming_devices_show_decoded_images_in_chromium() {
    let d = Daemon::start(&[listener("web", "http", ""), FILE_SINK.to_string()].concat());
    let addr = d.addr("web");
    let stop = Arc::new(AtomicBool::new(false));
    // Three devices uploading real JPEGs, 5 frames/s each, until the browser is done
    // (bounded: at most 60 s).
    let devices: Vec<_> = ["door", "garage", "yard"]
        .into_iter()
        .enumerate()
        .map(|(n, device)| {
            let stop = stop.clone();
            thread::spawn(move || {
                let started = Instant::now();
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                    let img = real_jpeg(sent + 100 * n as u32, 320, 240);
                    let path = format!("/frames/{device}");
                    let r = fetch(addr, "POST", &path, &[("Content-Type", "image/jpeg")], &img);
                    assert_eq!(r.status, 201);
                    sent += 1;
                    thread::sleep(Duration::from_millis(200));
                }
                sent
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(600));
    let url = format!("http://{addr}/");
    let dom = chromium(&["--dump-dom"], &url);
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let laptop = artifacts.join("live-view-laptop.png");
    let phone = artifacts.join("live-view-phone.png");
    chromium(
        &[
            "--window-size=1280,800",
            &format!("--screenshot={}", laptop.display()),
        ],
        &url,
    );
    chromium(
        &[
            "--window-size=390,844",
            &format!("--screenshot={}", phone.display()),
        ],
        &url,
    );
    stop.store(true, Ordering::SeqCst);
    for t in devices {
        assert!(t.join().unwrap() > 0);
    }

    // Each tile sets data-loaded="1" once its <img> decoded a frame (naturalWidth > 0).
    for device in ["door", "garage", "yard"] {
        let tile = dom
            .split("<section")
            .find(|s| s.contains(&format!("data-device=\"{device}\"")))
            .unwrap_or_else(|| panic!("no tile for {device} in the DOM:\n{dom}"));
        let tag = &tile[..tile.find('>').unwrap()];
        assert!(
            tag.contains("data-loaded=\"1\""),
            "tile {device} shows no decoded image: {tag}"
        );
    }
    for shot in [&laptop, &phone] {
        let img = image::open(shot).unwrap_or_else(|e| panic!("{shot:?}: {e}"));
        assert!(img.width() >= 390, "{shot:?} is a real screenshot");
        eprintln!("screenshot artifact: {}", shot.display());
    }
}
