use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream as StdStream};
use std::time::{Duration, Instant};

use super::*;

/// A connected pair over loopback: the server side wrapped as the loop would, and the device.
fn pair() -> (Arc<Socket>, StdStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let device = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (Socket::new(TcpStream::from_std(server)), device)
}

/// Waits (bounded) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read_exactly(device: &mut StdStream, len: usize) -> Vec<u8> {
    device
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = vec![0; len];
    device.read_exact(&mut got).unwrap();
    got
}

/// A payload whose every byte says where it is, so a reordering or a gap shows.
fn numbered(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn hand_offs_arrive_in_order_on_every_socket() {
    let writer = ReplyWriter::start().unwrap();
    let mut pairs: Vec<_> = (0..8).map(|_| pair()).collect();
    for round in 0..3 {
        for (socket, _) in &pairs {
            writer.hand_off(socket, &numbered(round * 100, 100));
        }
    }
    for (socket, device) in &mut pairs {
        assert_eq!(read_exactly(device, 300), numbered(0, 300));
        eventually("the writer released the socket", || !socket.is_handed_off());
    }
}

#[test]
fn a_full_socket_gets_the_rest_once_the_device_reads() {
    let writer = ReplyWriter::start().unwrap();
    let (socket, mut device) = pair();
    // Far more than loopback's buffers hold: the writer must wait for room.
    let big = numbered(0, 32 << 20);
    writer.hand_off(&socket, &big[..16 << 20]);
    writer.hand_off(&socket, &big[16 << 20..]);
    eventually("the writer is waiting for room", || {
        writer.inbox.lock().unwrap().parts.is_empty()
    });
    let held = socket.unwritten();
    assert!(
        held > 0 && held <= big.len(),
        "32 MiB cannot have fit the socket; the writer holds {held} bytes"
    );
    // The count is of bytes: what the device reads makes room, and the writer holds less.
    let first = read_exactly(&mut device, 8 << 20);
    eventually("the writer holds fewer bytes", || socket.unwritten() < held);
    let rest = read_exactly(&mut device, big.len() - first.len());
    assert!([first, rest].concat() == big, "bytes lost or reordered");
    eventually("the writer released the socket", || socket.unwritten() == 0);
}

#[test]
fn a_closed_full_socket_is_given_up_and_closed() {
    let writer = ReplyWriter::start().unwrap();
    let (socket, mut device) = pair();
    writer.hand_off(&socket, &numbered(0, 32 << 20));
    eventually("the writer is waiting for room", || {
        writer.inbox.lock().unwrap().parts.is_empty()
    });
    // The loop drops its connection; only the writer's hold keeps the socket open.
    socket.close();
    let weak = Arc::downgrade(&socket);
    drop(socket);
    eventually("the writer dropped the socket", || weak.strong_count() == 0);
    // The device reads what fitted, then the end of the stream: closed, not left hanging.
    device
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    device.read_to_end(&mut got).unwrap();
    assert!(got.len() < 32 << 20, "everything fitted?");
    assert!(
        got == numbered(0, got.len()),
        "what arrived is the start, in order"
    );
}

#[test]
fn dropping_the_writer_does_not_wait_for_a_device_that_does_not_read() {
    let writer = ReplyWriter::start().unwrap();
    let (socket, _device) = pair();
    writer.hand_off(&socket, &numbered(0, 32 << 20));
    // Joins the thread: returns once what fits was written and the rest dropped.
    drop(writer);
    assert_eq!(socket.unwritten(), 0, "dropped bytes still counted");
}

/// Whether Linux has the socket in quick-ACK mode (not "pingpong", the delayed-ACK mode it
/// enters on a socket that answers what it received).
fn quickack(socket: &Socket) -> bool {
    socket2::SockRef::from(socket.tcp()).quickack().unwrap()
}

#[test]
fn replies_leave_the_socket_in_quick_ack_mode() {
    let (socket, mut device) = pair();
    // A frame arrives and the server reads it all.
    let mut frame_arrives = || {
        device.write_all(b"frame").unwrap();
        let mut got = [0u8; 5];
        eventually("the frame arrived", || {
            (&socket.tcp).read(&mut got).is_ok_and(|n| n == 5)
        });
    };
    // A reply written as any program would, soon after (within the ACK timeout, 40 ms or more;
    // retried, as a loaded machine may stall this thread longer): the kernel takes the
    // connection for interactive traffic and delays its ACKs.
    let pingpong = (0..20).any(|_| {
        frame_arrives();
        (&socket.tcp).write_all(b"ack").unwrap();
        !quickack(&socket)
    });
    assert!(pingpong, "plain replies never switched delayed ACKs on");
    // The same through write_replies: quick ACKs stay on.
    frame_arrives();
    assert_eq!(socket.write_replies(b"ACK").unwrap(), 3);
    assert!(
        quickack(&socket),
        "write_replies left the socket in delayed-ACK mode"
    );
    let mut replies = Vec::new();
    device
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    while !replies.ends_with(b"ACK") {
        let mut buf = [0u8; 64];
        let n = device.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed");
        replies.extend_from_slice(&buf[..n]);
    }
}
