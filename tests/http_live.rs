//! The live view's HTTP side: `/devices/{id}/latest` with validators, `/api/devices`, the
//! `[live] max_bytes` bound, and MJPEG streams: parts that decode, non-JPEG frames
//! transcoded, and a viewer that never reads costing bounded memory and no device speed.

mod common;
#[path = "common/http.rs"]
mod http;

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use http::*;

/// Reads MJPEG parts from a `/devices/{id}/stream` response.
struct Mjpeg {
    client: Client,
}

impl Mjpeg {
    fn open(addr: SocketAddr, device: &str) -> Mjpeg {
        let mut client = Client::connect(addr);
        client.send(&request(
            "GET",
            &format!("/devices/{device}/stream"),
            &[],
            b"",
        ));
        let head = client.read_response();
        assert_eq!(head.status, 200);
        assert!(head
            .header("content-type")
            .unwrap()
            .starts_with("multipart/x-mixed-replace; boundary=framegate-frame"));
        Mjpeg { client }
    }

    /// The next part's bytes.
    fn part(&mut self) -> Vec<u8> {
        let r = &mut self.client.reader;
        let mut line = String::new();
        r.read_line(&mut line).expect("a boundary line");
        assert_eq!(line, "--framegate-frame\r\n");
        let mut len = None;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).expect("a part header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("Content-Length: ") {
                len = Some(v.parse::<usize>().unwrap());
            }
            if let Some(v) = h.strip_prefix("Content-Type: ") {
                assert_eq!(v, "image/jpeg");
            }
        }
        let mut body = vec![0; len.expect("Content-Length in each part")];
        r.read_exact(&mut body).unwrap();
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf).unwrap();
        assert_eq!(&crlf, b"\r\n");
        body
    }
}

fn upload(addr: SocketAddr, device: &str, body: &[u8], content_type: &str) -> Response {
    fetch(
        addr,
        "POST",
        &format!("/frames/{device}"),
        &[("Content-Type", content_type)],
        body,
    )
}

#[test]
fn latest_has_validators_and_api_lists_devices() {
    let d = Daemon::start(&[listener("web", "http", ""), FILE_SINK.to_string()].concat());
    let addr = d.addr("web");
    let img = real_jpeg(3, 64, 48);
    assert_eq!(upload(addr, "cam", &img, "image/jpeg").status, 201);
    let r = fetch(addr, "GET", "/devices/cam/latest", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, img.as_slice()));
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let etag = r.header("etag").unwrap().to_string();
    assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    let again = fetch(
        addr,
        "GET",
        "/devices/cam/latest",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!((again.status, again.body.len()), (304, 0));
    let png = real_png(1, 16, 16);
    assert_eq!(upload(addr, "cam", &png, "image/png").status, 201);
    let r = fetch(
        addr,
        "GET",
        "/devices/cam/latest",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("image/png"))
    );
    assert_eq!(r.body, png);

    let api = fetch(addr, "GET", "/api/devices", &[], b"").json();
    let cam = api["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == "cam")
        .unwrap();
    assert_eq!(cam["frames"], 2);
    assert_eq!(cam["bytes"], img.len() + png.len());
    assert_eq!(api["live"]["cam"]["format"], "png");
    assert_eq!(api["sinks"][0]["committed"], 2);
    assert!(api["now"].as_f64().unwrap() > 1e9);

    let page = fetch(addr, "GET", "/", &[], b"");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("/api/devices") && !html.contains("http://") && !html.contains("https://"),
        "self-contained, no CDN"
    );
}

#[test]
fn head_requests_get_the_get_headers_and_no_body() {
    let d = Daemon::start(&[listener("web", "http", ""), FILE_SINK.to_string()].concat());
    let addr = d.addr("web");
    let img = real_jpeg(5, 32, 24);
    assert_eq!(upload(addr, "cam", &img, "image/jpeg").status, 201);
    // One keep-alive connection: a body after any HEAD answer would break the next response.
    let mut client = Client::connect(addr);
    for path in ["/devices/cam/latest", "/", "/api/devices", "/metrics"] {
        client.send(&request("HEAD", path, &[], b""));
        let head = client.read_head();
        assert_eq!(head.status, 200, "HEAD {path}");
        let get = client.exchange(&request("GET", path, &[], b""));
        assert_eq!(get.status, 200, "GET {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        if path == "/devices/cam/latest" || path == "/" {
            assert_eq!(
                head.header("content-length"),
                Some(get.body.len().to_string().as_str()),
                "{path}"
            );
        }
    }
    client.send(&request("HEAD", "/devices/cam/stream", &[], b""));
    let head = client.read_head();
    assert!(head
        .header("content-type")
        .unwrap()
        .starts_with("multipart/x-mixed-replace"));
    let get = client.exchange(&request("GET", "/devices/cam/latest", &[], b""));
    assert_eq!(
        get.body, img,
        "the stream's HEAD registered no viewer and sent no part"
    );
    client.send(&request("HEAD", "/frames/cam", &[], b""));
    let post_only = client.read_head();
    assert_eq!(post_only.status, 405);
    assert_eq!(post_only.header("allow"), Some("POST"));
    // Still in step: the error's body was not sent either.
    let get = client.exchange(&request("GET", "/devices/cam/latest", &[], b""));
    assert_eq!(get.status, 200);
}

#[test]
fn live_memory_is_bounded_and_the_oldest_device_goes_first() {
    let d = Daemon::start(
        &[
            listener("web", "http", ""),
            FILE_SINK.to_string(),
            "[live]\nmax_bytes = \"100KB\"\n".to_string(),
        ]
        .concat(),
    );
    let addr = d.addr("web");
    for device in ["a", "b", "c"] {
        assert_eq!(
            upload(addr, device, &jpeg(1, 40_000), "image/jpeg").status,
            201
        );
    }
    assert_eq!(
        fetch(addr, "GET", "/devices/a/latest", &[], b"").status,
        404,
        "a was the oldest"
    );
    assert_eq!(
        fetch(addr, "GET", "/devices/b/latest", &[], b"").status,
        200
    );
    assert_eq!(
        fetch(addr, "GET", "/devices/c/latest", &[], b"").status,
        200
    );
    let metrics = String::from_utf8(fetch(addr, "GET", "/metrics", &[], b"").body).unwrap();
    assert!(
        metrics.contains("framegate_live_bytes 80000\n"),
        "{metrics}"
    );
}

#[test]
fn mjpeg_viewer_reads_twenty_parts_that_decode_including_transcoded_pngs() {
    let d = Daemon::start(&[listener("web", "http", ""), FILE_SINK.to_string()].concat());
    let addr = d.addr("web");
    let mut viewer = Mjpeg::open(addr, "x");
    // The uploader waits for each 201 and the viewer for each part, so no part is skipped:
    // every fifth frame is a PNG, which reaches the viewer transcoded.
    for i in 0..20u32 {
        let (body, ct) = if i % 5 == 4 {
            (real_png(i, 80, 60), "image/png")
        } else {
            (real_jpeg(i, 80 + i, 60), "image/jpeg")
        };
        assert_eq!(upload(addr, "x", &body, ct).status, 201);
        let part = viewer.part();
        let decoded = image::load_from_memory_with_format(&part, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| panic!("part {i} does not decode: {e}"));
        let want_width = if i % 5 == 4 { 80 } else { 80 + i };
        assert_eq!(decoded.width(), want_width, "part {i} is frame {i}");
        if ct == "image/jpeg" {
            assert_eq!(part, body, "JPEGs are streamed as sent");
        }
    }
}

#[test]
fn a_viewer_that_never_reads_costs_bounded_memory_and_no_device_speed() {
    let d = Daemon::start(
        &[
            listener("web", "http", ""),
            listener("raw", "u32le", ""),
            "[[sink]]\nname = \"null\"\ntype = \"discard\"\n".to_string(),
        ]
        .concat(),
    );
    let (web, raw) = (d.addr("web"), d.addr("raw"));
    let frame = jpeg(9, 200_000);
    let rounds = 300;
    // One device run: `rounds` frames of 200 KB over u32le, then the end marker; returns how
    // long the device took until the daemon closed the connection.
    let run = || {
        let started = Instant::now();
        let mut device = connect(raw);
        for _ in 0..rounds {
            device
                .write_all(&(frame.len() as u32).to_le_bytes())
                .unwrap();
            device.write_all(&frame).unwrap();
        }
        send_and_finish(device, &0u32.to_le_bytes());
        started.elapsed()
    };
    // Warm up the allocator and measure the device without a viewer.
    run();
    let alone = run();
    let rss_before = rss_kib(d.pid());

    // A viewer of that device that sends its request and never reads a byte.
    let mut stalled = connect(web);
    stalled
        .write_all(b"GET /devices/127.0.0.1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let watched = run();
    let watched_again = run();
    let rss_after = rss_kib(d.pid());

    let metrics = String::from_utf8(fetch(web, "GET", "/metrics", &[], b"").body).unwrap();
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("framegate_mjpeg_parts_skipped_total "))
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "device alone {alone:?}, with a stalled viewer {watched:?} / {watched_again:?}; RSS {rss_before} KiB -> {rss_after} KiB; {skipped} parts skipped"
    );
    // 600 frames (120 MB) went by the viewer; it holds at most the part it is stuck on and
    // the newest frame, and the socket buffer is the kernel's.
    assert!(
        skipped > 500,
        "the viewer was offered every frame and took almost none"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "daemon memory grew from {rss_before} KiB to {rss_after} KiB with a stalled viewer"
    );
    // Full speed: the same order as without the viewer (generous for a shared CI machine).
    let slowest = watched.max(watched_again);
    assert!(
        slowest < alone * 3 + Duration::from_secs(2),
        "the device took {slowest:?} with a stalled viewer, {alone:?} without"
    );
    drop(stalled);
}
