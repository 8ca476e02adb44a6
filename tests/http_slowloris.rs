//! Slowloris: hundreds of connections on the HTTP port, each sending one header byte a
//! second, neither stop uploads on that port nor frames on another listener, and each is cut
//! off once its `header_timeout` passed.

mod common;
#[path = "common/http.rs"]
mod http;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use http::*;

const SLOW_CLIENTS: usize = 300;
const HEADER_TIMEOUT_SECS: u64 = 5;

/// True once the server closed (or answered and closed) this connection.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the 408 response; the close follows
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_stops_neither_uploads_nor_other_listeners_and_is_cut_off() {
    let mut d = Daemon::start(
        &[
            listener(
                "web",
                "http",
                &format!("header_timeout = \"{HEADER_TIMEOUT_SECS}s\""),
            ),
            listener("raw", "u32le", ""),
            FILE_SINK.to_string(),
        ]
        .concat(),
    );
    let (web, raw) = (d.addr("web"), d.addr("raw"));
    let done = Arc::new(AtomicBool::new(false));
    let attack = {
        let done = done.clone();
        thread::spawn(move || {
            let mut conns: Vec<(TcpStream, Instant, Option<Duration>)> = (0..SLOW_CLIENTS)
                .map(|_| {
                    let s = connect(web);
                    s.set_nonblocking(true).unwrap();
                    (s, Instant::now(), None)
                })
                .collect();
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            // One byte a second per connection, for at most 12 s (bounded).
            for second in 0..12 {
                for (s, opened, closed) in conns.iter_mut().filter(|c| c.2.is_none()) {
                    if closed_by_server(s) {
                        *closed = Some(opened.elapsed());
                        continue;
                    }
                    let byte = head[second % head.len()];
                    if s.write(&[byte]).is_err() {
                        *closed = Some(opened.elapsed());
                    }
                }
                if conns.iter().all(|c| c.2.is_some()) || done.load(Ordering::SeqCst) && second > 8
                {
                    break;
                }
                thread::sleep(Duration::from_secs(1));
            }
            conns.into_iter().map(|c| c.2).collect::<Vec<_>>()
        })
    };
    // While they trickle: uploads on the same port and frames on the other listener.
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for i in 0..20 {
        let img = jpeg(i, 30_000);
        let t = Instant::now();
        let r = fetch(
            web,
            "POST",
            "/frames/cam",
            &[("Content-Type", "image/jpeg")],
            &img,
        );
        assert_eq!(r.status, 201);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "upload {i} took {:?}",
            t.elapsed()
        );
    }
    let sent = frames(3, 20, 1000, 20_000);
    send_and_finish(connect(raw), &encode(Wire::U32Le, &sent));
    assert_frames_eq(&d.wait_for_frames("127.0.0.1", "raw", 20), &sent);
    assert_eq!(d.wait_for_frames("cam", "web", 20).len(), 20);
    assert!(
        started.elapsed() < Duration::from_secs(HEADER_TIMEOUT_SECS),
        "all served while the slow clients were still connected"
    );
    done.store(true, Ordering::SeqCst);

    let closed = attack.join().unwrap();
    let cut: Vec<Duration> = closed.iter().flatten().copied().collect();
    assert_eq!(cut.len(), SLOW_CLIENTS, "every slow client was cut off");
    let latest = cut.iter().max().unwrap();
    assert!(
        *latest >= Duration::from_secs(HEADER_TIMEOUT_SECS - 1)
            && *latest < Duration::from_secs(HEADER_TIMEOUT_SECS + 4),
        "cut off after {latest:?}, header_timeout is {HEADER_TIMEOUT_SECS}s"
    );
    d.wait_for_log(&["408", "did not arrive within 5s"], WAIT);
}
