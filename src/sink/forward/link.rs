//! One upstream connection of the forwarder: a device's native session to the upstream, its
//! socket (non-blocking, TCP keepalive) and the frames it has in flight.
//!
//! The protocol's HELLO names one device per connection, so the forwarder keeps a link per
//! device with frames to send, and closes it when the device has been quiet for a while.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use crate::protocol::client::{ClientError, ClientEvent, ClientSession};

/// An idle connection is probed after this long…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// …every this long…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// …and given up after this many unanswered probes: a silently dropped link (a NAT that
/// forgot it, an unplugged cable) is noticed within about 25 s even when nothing is sent.
const KEEPALIVE_PROBES: u32 = 3;
/// Data unacknowledged by the peer's TCP for this long ends the connection; without it a
/// dead link with frames in flight would retransmit for about 15 minutes.
const USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Encoded frames are added to a link's output only while it holds less than this, so a
/// link never holds more than about one frame beyond it in memory.
pub const OUT_SOFT_LIMIT: usize = 256 << 10;

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect under way, until this deadline.
    Connecting(Instant),
    /// HELLO sent, waiting for WELCOME until this deadline.
    Opening(Instant),
    /// Frames may flow.
    Open,
}

/// What the session's limits are once open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most frames in flight.
    pub window: usize,
    /// Largest payload the upstream takes.
    pub max_frame_bytes: u32,
    /// Ping after this much silence from us; give up after three times it from the upstream.
    pub heartbeat: Duration,
}

/// One device's connection to an upstream.
pub struct Link {
    /// The device it speaks for.
    pub device: Arc<str>,
    /// The socket.
    pub stream: mio::net::TcpStream,
    /// Which `to` address it is connected (or connecting) to.
    pub target: usize,
    /// How many addresses this connection attempt has tried, this one included.
    pub tried: usize,
    /// Where it is in its life.
    pub phase: Phase,
    /// The protocol state.
    pub session: ClientSession,
    /// Known after WELCOME.
    pub limits: Limits,
    /// Sequence numbers sent and not answered.
    pub in_flight: HashSet<u64>,
    /// Last time bytes arrived, and were sent.
    pub last_rx: Instant,
    /// See `last_rx`.
    pub last_tx: Instant,
    /// Since when it has had nothing in flight and nothing to send.
    pub idle_since: Instant,
    /// No new frames before this (the upstream asked us to retry later).
    pub paused_until: Option<Instant>,
}

/// What reading from a link found.
#[derive(Debug)]
pub enum Received {
    /// Events, in order; the link is still up.
    Events(Vec<ClientEvent>),
    /// The link is gone (closed, reset, broken protocol), and why.
    Closed(String, Vec<ClientEvent>),
    /// The upstream asked for a secret this sink does not have for the device.
    Refused(String),
}

impl Link {
    /// Starts connecting to `addr` for `device`, with HELLO queued.
    pub fn connect(
        device: Arc<str>,
        addr: SocketAddr,
        target: usize,
        tried: usize,
        secret: Option<Vec<u8>>,
        deadline: Instant,
        now: Instant,
    ) -> io::Result<Link> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // Frames go out as soon as the window allows; ACKs we wait for are small.
        socket.set_nodelay(true)?;
        socket.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(KEEPALIVE_IDLE)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(KEEPALIVE_PROBES),
        )?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        socket.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let session = ClientSession::new(&device, secret);
        Ok(Link {
            device,
            stream: mio::net::TcpStream::from_std(socket.into()),
            target,
            tried,
            phase: Phase::Connecting(deadline),
            session,
            limits: Limits {
                window: 1,
                max_frame_bytes: 0,
                heartbeat: Duration::from_secs(10),
            },
            in_flight: HashSet::new(),
            last_rx: now,
            last_tx: now,
            idle_since: now,
            paused_until: None,
        })
    }

    /// After a writable (or error) event while connecting: Ok once connected.
    pub fn finish_connect(&mut self) -> io::Result<()> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        // Not connected yet reads as ENOTCONN: wait for the next event.
        self.stream.peer_addr().map(|_| ())
    }

    /// Writes what the session queued until done or the socket is full.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        while !self.session.output().is_empty() {
            match self.stream.write(self.session.output()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.session.consume_output(n);
                    self.last_tx = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads everything available (mio is edge-triggered: until `WouldBlock`).
    pub fn read(&mut self, buf: &mut [u8], now: Instant) -> Received {
        let mut events = Vec::new();
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    return Received::Closed("the upstream closed the connection".into(), events)
                }
                Ok(n) => {
                    self.last_rx = now;
                    match self.session.feed(&buf[..n]) {
                        Ok(more) => events.extend(more),
                        Err(ClientError::NoSecret) => {
                            return Received::Refused(ClientError::NoSecret.to_string())
                        }
                        Err(e) => return Received::Closed(e.to_string(), events),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Received::Events(events),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Received::Closed(e.to_string(), events),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_probe_idle_connections_and_bound_unacknowledged_data() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let now = Instant::now();
        let link = Link::connect(
            Arc::from("cam"),
            listener.local_addr().unwrap(),
            0,
            1,
            None,
            now + Duration::from_secs(5),
            now,
        )
        .unwrap();
        let socket = socket2::SockRef::from(&link.stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
        assert!(socket.nodelay().unwrap());
        // HELLO waits to be written once connected.
        assert!(!link.session.output().is_empty());
    }
}
