//! One HTTP connection: its socket, request decoder, queued output and phase.
//!
//! Output is a queue of chunks, so a frame's bytes are written straight from the `Arc<Frame>`
//! the sinks share, never copied into a response buffer. Input is read only while the
//! connection is reading a request; while a response is pending, at most [`PENDING_MAX`]
//! bytes of a pipelined next request are kept and then reading stops (TCP pushes back).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;

use crate::frame::Frame;
use crate::http::RequestDecoder;
use crate::net::connection::{Peer, Received};

/// Bytes of a next request kept while the current one waits for its response.
pub const PENDING_MAX: usize = 64 * 1024;
/// Bytes one connection may read per turn before others get theirs.
pub const READ_BUDGET: usize = 1 << 20;

/// Bytes to write, without copying shared frames.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes made for this response (heads, JSON).
    Owned(Vec<u8>),
    /// A frame's payload, shared with the sinks and the live store.
    Frame(Arc<Frame>),
    /// Bytes shared between viewers (a transcoded JPEG).
    Shared(Arc<Vec<u8>>),
    /// Fixed bytes (the embedded page, part trailers).
    Static(&'static [u8]),
}

impl Chunk {
    /// The bytes it holds.
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Frame(f) => &f.payload,
            Chunk::Shared(v) => v,
            Chunk::Static(s) => s,
        }
    }
}

/// The output queue of one connection.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
}

impl Output {
    /// Queues a chunk.
    pub fn push(&mut self, chunk: Chunk) {
        if !chunk.bytes().is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// True when everything queued was written.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until done or the socket would block; `Ok(true)` when bytes remain queued.
    /// `progress` is set when any byte went out.
    pub fn write_to(&mut self, stream: &mut TcpStream, progress: &mut bool) -> io::Result<bool> {
        while let Some(front) = self.chunks.front() {
            let bytes = &front.bytes()[self.offset..];
            match stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *progress = true;
                    self.offset += n;
                    if self.offset == front.bytes().len() {
                        self.chunks.pop_front();
                        self.offset = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// What a request is waiting for.
#[derive(Debug)]
pub enum Phase {
    /// Reading a request, or waiting between requests (keep-alive).
    Reading,
    /// An upload the sinks could not take yet: offered again when they have room, answered
    /// 503 after [`super::HOLD_LIMIT`].
    Held(Received, Instant),
    /// An upload is in the sinks; the response goes out once they committed it.
    Committing,
    /// `/api/devices` or `/metrics`: answered by the loop, which has the figures.
    Figures(Figures),
    /// Serving `multipart/x-mixed-replace` of a device's frames.
    Streaming(Viewer),
    /// The last response is queued; once written, the write side is shut and input is
    /// discarded until EOF or this deadline, so the client reads the response before the
    /// close (closing with unread input would reset the connection and lose it).
    Closing(Instant),
}

/// Which figures a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figures {
    /// `GET /api/devices`.
    Devices,
    /// `GET /metrics`.
    Metrics,
}

/// An MJPEG viewer: the newest JPEG not yet sent, never more.
#[derive(Debug)]
pub struct Viewer {
    /// The device watched.
    pub device: Arc<str>,
    /// The newest JPEG that arrived while a part was being written; replaced, not queued.
    pub next: Option<Chunk>,
    /// Parts sent.
    pub parts: u64,
    /// Parts skipped because the viewer was still busy with an older one.
    pub skipped: u64,
}

/// One HTTP client connection.
#[derive(Debug)]
pub struct HttpConn {
    /// The socket.
    pub stream: TcpStream,
    /// Who it is (device: the `[devices]` name of its IP, or the IP).
    pub peer: Peer,
    /// The request decoder.
    pub decoder: RequestDecoder,
    /// What it is doing.
    pub phase: Phase,
    /// Bytes to write.
    pub out: Output,
    /// Read but not yet decoded (a pipelined request, while the current one is answered).
    pub pending: Vec<u8>,
    /// When the current request's first byte arrived (header timeout).
    pub request_started: Option<Instant>,
    /// When the current request's head was complete (body timeout).
    pub body_started: Option<Instant>,
    /// Last time bytes moved in either direction.
    pub last_activity: Instant,
    /// Close after the current response (the client asked, or an error).
    pub close_after: bool,
    /// The client closed its side.
    pub peer_closed: bool,
    /// Registered for writability.
    pub wants_writable: bool,
    /// Its listener was removed by a reload: close after the current response.
    pub draining: bool,
    /// The current request is a HEAD: its response goes out without a body.
    pub head_only: bool,
    /// Requests answered.
    pub requests: u64,
    /// Frames uploaded.
    pub frames: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes arrived.
    Data(usize),
    /// The socket has nothing more now.
    Drained,
    /// The peer closed its side.
    Eof,
}

impl HttpConn {
    /// A new connection.
    pub fn new(stream: TcpStream, peer: Peer, decoder: RequestDecoder, now: Instant) -> Self {
        HttpConn {
            stream,
            peer,
            decoder,
            phase: Phase::Reading,
            out: Output::default(),
            pending: Vec::new(),
            request_started: None,
            body_started: None,
            last_activity: now,
            close_after: false,
            peer_closed: false,
            wants_writable: false,
            draining: false,
            head_only: false,
            requests: 0,
            frames: 0,
            bytes: 0,
        }
    }

    /// Reads once into `scratch`; the caller decides what the bytes are for.
    pub fn read_once(&mut self, scratch: &mut [u8], now: Instant) -> io::Result<ReadOutcome> {
        loop {
            return match self.stream.read(scratch) {
                Ok(0) => {
                    self.peer_closed = true;
                    Ok(ReadOutcome::Eof)
                }
                Ok(n) => {
                    self.bytes += n as u64;
                    self.last_activity = now;
                    Ok(ReadOutcome::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}
