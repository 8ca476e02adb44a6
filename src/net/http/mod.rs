//! `framing = "http"` listeners, served by the event loop like every other connection:
//! uploads (`POST /frames/{device}`, or any path as the ESP32-CAM sketch posts), the live view
//! (`/`, `/devices/{id}/latest`, `/devices/{id}/stream`, `/api/devices`) and `/metrics`.
//!
//! [`HttpFront`] owns the HTTP connections; the loop gives it readiness events and calls its
//! hooks (a frame done by the sinks, figures, the sweep). Uploads go through the same
//! [`Intake`] as every framing (identity, routing, limits, sinks), and their `201` goes out
//! only after every sink committed the frame, as imagezmq's `OK` does. Nothing here blocks:
//! reads stop at `WouldBlock`, writes queue, slow clients are cut off by timeouts in
//! [`HttpFront::sweep`], and MJPEG viewers hold at most the part being written and the newest
//! frame, so a viewer that stops reading costs a bounded amount and never slows a device.

mod auth;
mod conn;
pub mod live;
pub mod metrics;
mod routes;
pub mod transcode;

use std::collections::{HashMap, HashSet};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, log};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use self::conn::{Chunk, HttpConn, Phase, ReadOutcome, PENDING_MAX, READ_BUDGET};
use self::live::Live;
use self::metrics::{Gauges, Metrics};
use self::transcode::{Transcoded, Transcoder};
use super::connection::{Admit, Peer};
use super::intake::Intake;
use super::ratelimit::{LineLimiter, Verdict};
use crate::config::{Config, ListenerConfig};
use crate::frame::Frame;
use crate::http::{response, Event, Limits, RequestDecoder};
use crate::status::Status;

/// How long an upload may wait for sink room before it gets `503` (the ESP32-CAM sketch
/// gives up after 10 s).
pub const HOLD_LIMIT: Duration = Duration::from_secs(5);
/// How long a closing connection's input is drained after its last response.
const LINGER: Duration = Duration::from_secs(2);
/// Room for multipart framing around an upload's file, beyond `max_frame_bytes`.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// What a pump left the connection doing, for the loop's queues.
#[derive(Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Waiting for readiness.
    Idle,
    /// Used its read budget; pump again after others.
    MoreToRead,
    /// Holds an upload the sinks cannot take yet; pump again when they report progress.
    Stalled,
    /// Gone.
    Closed,
}

/// What the loop lends a pump.
pub struct Ctx<'a> {
    /// Admission (the same as every framing's).
    pub intake: &'a mut Intake,
    /// For read/write interest.
    pub registry: &'a Registry,
    /// The loop is shutting down: answer, then close.
    pub shutting_down: bool,
}

/// Every HTTP connection and what the HTTP side keeps.
pub struct HttpFront {
    conns: HashMap<Token, HttpConn>,
    /// Per listener index: its settings, updated on reload.
    listeners: HashMap<usize, Arc<ListenerConfig>>,
    live: Live,
    viewers: HashMap<Arc<str>, HashSet<Token>>,
    transcoder: Transcoder,
    metrics: Metrics,
    max_device_labels: usize,
    /// Connections with output queued this turn, written at its end.
    dirty: HashSet<Token>,
    /// Connections to pump again: a response went out and pipelined input may wait.
    again: Vec<Token>,
    /// Connections waiting for `/api/devices` or `/metrics` figures.
    figures: Vec<Token>,
    limiter: LineLimiter,
    /// Devices whose frames could not be transcoded, logged once each.
    untranscodable: HashSet<Arc<str>>,
}

impl HttpFront {
    /// The HTTP side for `config`; transcoded JPEGs are reported through `done`.
    pub fn new(config: &Config, done: Arc<dyn Fn(Transcoded) + Send + Sync>) -> Self {
        let mut listeners = HashMap::new();
        for (i, l) in config.listeners.iter().enumerate() {
            listeners.insert(i, Arc::new(l.clone()));
        }
        HttpFront {
            conns: HashMap::new(),
            listeners,
            live: Live::new(config.live_max_bytes),
            viewers: HashMap::new(),
            transcoder: Transcoder::start(done),
            metrics: Metrics::default(),
            max_device_labels: config.max_device_labels,
            dirty: HashSet::new(),
            again: Vec::new(),
            figures: Vec::new(),
            limiter: LineLimiter::new(config.device_lines_per_minute),
            untranscodable: HashSet::new(),
        }
    }

    /// Settings of listener `index` from now on (start, reload).
    pub fn configure(&mut self, index: usize, listener: &ListenerConfig) {
        self.listeners.insert(index, Arc::new(listener.clone()));
    }

    /// `[live]`, `[metrics]` and log settings after a reload.
    pub fn reconfigure(&mut self, config: &Config) {
        self.max_device_labels = config.max_device_labels;
        self.limiter = LineLimiter::new(config.device_lines_per_minute);
        if config.live_max_bytes != self.live_max() {
            // Rebuilt with the new bound; the next frame of each device fills it again.
            self.live = Live::new(config.live_max_bytes);
        }
    }

    fn live_max(&self) -> u64 {
        self.live.max_bytes()
    }

    /// True when `token` is an HTTP connection.
    pub fn owns(&self, token: Token) -> bool {
        self.conns.contains_key(&token)
    }

    /// Open HTTP connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when no HTTP connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Counters the loop feeds (sink latency, errors of other listeners).
    pub fn metrics(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// Takes a connection accepted on an `http` listener (registered for reading already).
    pub fn accept(&mut self, token: Token, stream: TcpStream, peer: Peer, now: Instant) {
        let max_frame_bytes = self
            .listeners
            .get(&peer.listener)
            .map_or(crate::config::DEFAULT_MAX_FRAME_BYTES, |l| {
                l.max_frame_bytes
            });
        let decoder = RequestDecoder::new(Limits {
            max_head_bytes: crate::http::request::DEFAULT_MAX_HEAD_BYTES,
            max_headers: crate::http::request::DEFAULT_MAX_HEADERS,
            max_body_bytes: max_frame_bytes + MULTIPART_OVERHEAD,
        });
        self.conns
            .insert(token, HttpConn::new(stream, peer, decoder, now));
    }

    /// Reads and serves `token`: decodes requests while it is reading, keeps a pipelined
    /// request's bytes while a response is pending, discards input while streaming or closing.
    pub fn pump(&mut self, token: Token, scratch: &mut [u8], ctx: &mut Ctx<'_>) -> Pumped {
        let Some(mut conn) = self.conns.remove(&token) else {
            return Pumped::Idle;
        };
        let now = Instant::now();
        let outcome = self.pump_conn(token, &mut conn, scratch, ctx, now);
        match outcome {
            Err(why) => {
                self.conns.insert(token, conn);
                self.close(token, &why, ctx);
                Pumped::Closed
            }
            Ok(p) => {
                self.conns.insert(token, conn);
                p
            }
        }
    }

    fn pump_conn(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        scratch: &mut [u8],
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> Result<Pumped, Closing> {
        if let Phase::Held(..) = conn.phase {
            let Phase::Held(frame, since) = std::mem::replace(&mut conn.phase, Phase::Committing)
            else {
                unreachable!("matched above")
            };
            if let Err(frame) = ctx.intake.admit(&conn.peer, frame) {
                conn.phase = Phase::Held(frame, since);
                return Ok(Pumped::Stalled);
            }
            conn.frames += 1;
        }
        let mut budget = READ_BUDGET;
        loop {
            match conn.phase {
                Phase::Reading => {
                    if !conn.pending.is_empty() {
                        let pending = std::mem::take(&mut conn.pending);
                        let used = self.decode(token, conn, &pending, ctx, now)?;
                        conn.pending.extend_from_slice(&pending[used..]);
                        if matches!(conn.phase, Phase::Reading) && used < pending.len() {
                            unreachable!("decode stops early only when the phase changes");
                        }
                        continue;
                    }
                    if conn.peer_closed {
                        return match conn.decoder.finish() {
                            Ok(()) => Err(Closing::Quiet),
                            Err(e) => Err(Closing::Error(format!("{e}"))),
                        };
                    }
                    if budget == 0 {
                        return Ok(Pumped::MoreToRead);
                    }
                    match conn.read_once(scratch, now).map_err(io_closing)? {
                        ReadOutcome::Data(n) => {
                            budget = budget.saturating_sub(n);
                            let used = self.decode(token, conn, &scratch[..n], ctx, now)?;
                            conn.pending.extend_from_slice(&scratch[used..n]);
                        }
                        ReadOutcome::Drained => return Ok(Pumped::Idle),
                        ReadOutcome::Eof => {}
                    }
                }
                Phase::Held(..) => return Ok(Pumped::Stalled),
                Phase::Committing | Phase::Figures(_) => {
                    // The response is pending: keep a little of the next request, then let
                    // TCP hold the rest (the pump runs again once the response went out).
                    if conn.pending.len() >= PENDING_MAX || conn.peer_closed {
                        return Ok(Pumped::Idle);
                    }
                    let room = (PENDING_MAX - conn.pending.len()).min(scratch.len());
                    match conn
                        .read_once(&mut scratch[..room], now)
                        .map_err(io_closing)?
                    {
                        ReadOutcome::Data(n) => conn.pending.extend_from_slice(&scratch[..n]),
                        ReadOutcome::Drained | ReadOutcome::Eof => return Ok(Pumped::Idle),
                    }
                }
                Phase::Streaming(_) | Phase::Closing(_) => {
                    if budget == 0 {
                        return Ok(Pumped::MoreToRead);
                    }
                    match conn.read_once(scratch, now).map_err(io_closing)? {
                        ReadOutcome::Data(n) => budget = budget.saturating_sub(n),
                        ReadOutcome::Drained => return Ok(Pumped::Idle),
                        ReadOutcome::Eof => return Err(Closing::Quiet),
                    }
                }
            }
        }
    }

    /// Feeds `bytes` to the decoder while the connection is reading requests; returns how
    /// many were used (fewer when a request changed the phase).
    fn decode(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        bytes: &[u8],
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> Result<usize, Closing> {
        let mut used = 0;
        while used < bytes.len() && matches!(conn.phase, Phase::Reading) {
            if !conn.decoder.is_mid_request() {
                conn.request_started = Some(now);
            }
            let fed = match conn.decoder.feed(&bytes[used..]) {
                Ok(fed) => fed,
                Err(e) => {
                    self.refuse(token, conn, e.status(), &e.to_string(), ctx);
                    return Ok(bytes.len());
                }
            };
            used += fed.consumed;
            match fed.event {
                None => {}
                Some(Event::Head) => {
                    conn.body_started = Some(now);
                    self.on_head(token, conn, ctx);
                }
                Some(Event::Request(request)) => {
                    conn.request_started = None;
                    conn.body_started = None;
                    self.on_request(token, conn, request, ctx, now);
                }
            }
        }
        // A refusal ends the connection: what followed is not read as requests.
        if matches!(conn.phase, Phase::Closing(_)) {
            return Ok(bytes.len());
        }
        Ok(used)
    }

    /// Queues a complete response and decides what follows it: the next request, or the end.
    fn respond(&mut self, token: Token, conn: &mut HttpConn, status: u16, bytes: Vec<u8>) {
        self.respond_chunks(token, conn, status, vec![Chunk::Owned(bytes)]);
    }

    fn respond_chunks(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        status: u16,
        chunks: Vec<Chunk>,
    ) {
        let chunks = if conn.head_only {
            head_of(chunks)
        } else {
            chunks
        };
        for chunk in chunks {
            conn.out.push(chunk);
        }
        conn.requests += 1;
        self.metrics.response(&conn.peer.listener_name, status);
        conn.phase = if conn.close_after {
            Phase::Closing(Instant::now() + LINGER)
        } else {
            Phase::Reading
        };
        self.dirty.insert(token);
        self.again.push(token);
    }

    /// Answers with an error and ends the connection after it.
    fn refuse(
        &mut self,
        token: Token,
        conn: &mut HttpConn,
        status: u16,
        why: &str,
        ctx: &mut Ctx<'_>,
    ) {
        self.note_refusal(conn, status, why, ctx);
        self.respond(token, conn, status, response::error(status, why, true));
    }

    /// What every refusal does before its response: the connection closes after it, a
    /// pipelined rest is dropped, the error is counted and logged (rate limited per device).
    fn note_refusal(&mut self, conn: &mut HttpConn, status: u16, why: &str, ctx: &mut Ctx<'_>) {
        conn.close_after = true;
        conn.pending.clear();
        self.metrics.error(&conn.peer.listener_name, false);
        ctx.intake.devices.error(&conn.peer.device);
        let line = format!(
            "http: {} (device {}) on {:?}: {status} {why}; closing the connection",
            conn.peer.addr, conn.peer.device, &*conn.peer.listener_name
        );
        self.log_line(log::Level::Warn, &conn.peer.device.clone(), line);
    }

    fn log_line(&mut self, level: log::Level, device: &Arc<str>, line: String) {
        match self.limiter.check(device, Instant::now()) {
            Verdict::Log { suppressed: 0 } => log!(level, "{line}"),
            Verdict::Log { suppressed } => log!(
                level,
                "{line} ({suppressed} more such line(s) for device {device} were not logged in the last minute)"
            ),
            Verdict::Suppress => {}
        }
    }

    /// Every sink that took `frame` is done with it: the upload's response goes out.
    pub fn committed(&mut self, token: Token, frame: &Arc<Frame>, failure: Option<&str>) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        if matches!(conn.phase, Phase::Committing) {
            match failure {
                None => {
                    let body = serde_json::json!({
                        "device": &*frame.device,
                        "seq": frame.seq,
                        "bytes": frame.size(),
                        "format": frame.format_name(),
                    })
                    .to_string();
                    let mut out = response::ResponseHead::new(201)
                        .field("Content-Type", "application/json")
                        .field(
                            "Location",
                            format!("/devices/{}/latest", routes::escape_path(&frame.device)),
                        )
                        .finish(Some(body.len()), conn.close_after);
                    out.extend_from_slice(body.as_bytes());
                    debug!(
                        "http: {} upload {}#{} ({} bytes) stored",
                        conn.peer.addr,
                        frame.device,
                        frame.seq,
                        frame.size()
                    );
                    self.respond(token, &mut conn, 201, out);
                }
                Some(why) => {
                    let why = format!("not stored: {why}; send it again");
                    let out = response::json(
                        503,
                        &serde_json::json!({ "error": why, "status": 503 }),
                        &[("Retry-After", "1")],
                        conn.close_after,
                    );
                    self.respond(token, &mut conn, 503, out);
                }
            }
        }
        self.conns.insert(token, conn);
    }

    /// A frame (any framing) is done by the sinks: it is counted, and with an HTTP listener
    /// to show it (`serving`) it becomes its device's newest and MJPEG viewers of the device
    /// get it (JPEGs as they are, others once transcoded). Without one, no frame is held.
    pub fn frame_done(&mut self, frame: &Arc<Frame>, serving: bool) {
        self.metrics.frame(&frame.listener, frame.size());
        if !serving {
            return;
        }
        self.live.put(frame.clone());
        let watched = self
            .viewers
            .get(&frame.device)
            .is_some_and(|v| !v.is_empty());
        if !watched {
            return;
        }
        if frame.format == Some(image::ImageFormat::Jpeg) {
            self.show(&frame.device, Chunk::Frame(frame.clone()));
        } else {
            self.transcoder.request(frame.clone());
        }
    }

    /// A transcoded frame came back from the worker.
    pub fn on_transcoded(&mut self, done: Transcoded) {
        self.transcoder.finished(&done.frame.device);
        match done.jpeg {
            Ok(jpeg) => self.show(&done.frame.device, Chunk::Shared(jpeg)),
            Err(why) => {
                if self.untranscodable.insert(done.frame.device.clone()) {
                    info!(
                        "http: frames of device {} ({}) cannot be shown as MJPEG: {why}; logged once per device",
                        done.frame.device,
                        done.frame.format_name()
                    );
                }
            }
        }
    }

    /// Offers a JPEG to every viewer of `device`: written now if the viewer is idle,
    /// else kept as its newest (replacing an older one it has not started).
    fn show(&mut self, device: &Arc<str>, jpeg: Chunk) {
        let Some(tokens) = self.viewers.get(device) else {
            return;
        };
        for token in tokens {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let Phase::Streaming(viewer) = &mut conn.phase else {
                continue;
            };
            if conn.out.is_empty() {
                routes::push_part(&mut conn.out, jpeg.clone());
                viewer.parts += 1;
                self.metrics.parts_sent += 1;
                self.dirty.insert(*token);
            } else if viewer.next.replace(jpeg.clone()).is_some() {
                viewer.skipped += 1;
                self.metrics.parts_skipped += 1;
            }
        }
    }

    /// True when requests wait for figures ([`HttpFront::answer_figures`]).
    pub fn wants_figures(&self) -> bool {
        !self.figures.is_empty()
    }

    /// Answers `/api/devices` and `/metrics` with the loop's figures; `open` counts the
    /// loop's other connections per listener (HTTP ones are added here).
    pub fn answer_figures(&mut self, status: &Status, mut open: HashMap<Arc<str>, usize>) {
        for conn in self.conns.values() {
            *open.entry(conn.peer.listener_name.clone()).or_default() += 1;
        }
        let gauges = Gauges {
            open,
            live_bytes: self.live.bytes(),
            live_devices: self.live.len(),
            viewers: self.viewers.values().map(HashSet::len).sum(),
        };
        for token in std::mem::take(&mut self.figures) {
            let Some(mut conn) = self.conns.remove(&token) else {
                continue;
            };
            if let Phase::Figures(kind) = conn.phase {
                let bytes = match kind {
                    conn::Figures::Devices => response::simple(
                        200,
                        "application/json",
                        &self.devices_json(status),
                        conn.close_after,
                    ),
                    conn::Figures::Metrics => response::simple(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        self.metrics
                            .render(status, &gauges, self.max_device_labels)
                            .as_bytes(),
                        conn.close_after,
                    ),
                };
                self.respond(token, &mut conn, 200, bytes);
            }
            self.conns.insert(token, conn);
        }
    }

    /// `/api/devices`: the status figures, the server's clock, and what the live view holds.
    fn devices_json(&self, status: &Status) -> Vec<u8> {
        let live: serde_json::Map<String, serde_json::Value> = self
            .live
            .iter()
            .map(|f| {
                (
                    f.device.to_string(),
                    serde_json::json!({
                        "seq": f.seq,
                        "bytes": f.size(),
                        "format": f.format_name(),
                        "received": f.received_at
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64()),
                    }),
                )
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut value = serde_json::to_value(status).expect("status serialises");
        if let Some(object) = value.as_object_mut() {
            object.insert("now".into(), now.into());
            object.insert("live".into(), live.into());
        }
        value.to_string().into_bytes()
    }

    /// End of a loop turn: hands transcode jobs to the worker, writes queued output, and
    /// returns connections to pump again (a response went out; pipelined input may wait).
    pub fn end_turn(&mut self, ctx: &mut Ctx<'_>) -> Vec<Token> {
        self.transcoder.flush();
        for token in std::mem::take(&mut self.dirty) {
            self.flush(token, ctx);
        }
        std::mem::take(&mut self.again)
            .into_iter()
            .filter(|t| self.conns.contains_key(t))
            .collect()
    }

    /// Writes what `token` has queued; on a writable event, or at the end of a turn.
    pub fn flush(&mut self, token: Token, ctx: &mut Ctx<'_>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut progress = false;
        let more = loop {
            match conn.out.write_to(&mut conn.stream, &mut progress) {
                Err(e) => {
                    let why = Closing::Error(format!("write failed: {e}"));
                    self.close(token, &why, ctx);
                    return;
                }
                Ok(true) => break true,
                Ok(false) => {
                    // A viewer's part went out: the newest frame that arrived meanwhile next.
                    if let Phase::Streaming(viewer) = &mut conn.phase {
                        if let Some(next) = viewer.next.take() {
                            routes::push_part(&mut conn.out, next);
                            viewer.parts += 1;
                            self.metrics.parts_sent += 1;
                            continue;
                        }
                    }
                    break false;
                }
            }
        };
        if progress {
            conn.last_activity = Instant::now();
        }
        if !more {
            if let Phase::Closing(_) = conn.phase {
                // Everything said: no more from us; drain until the client closes.
                let _ = conn.stream.shutdown(Shutdown::Write);
                self.again.push(token);
            }
        }
        if conn.wants_writable != more {
            conn.wants_writable = more;
            let interest = if more {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = ctx.registry.reregister(&mut conn.stream, token, interest) {
                let why = Closing::Error(format!("cannot reregister: {e}"));
                self.close(token, &why, ctx);
            }
        }
    }

    /// Timeouts: a head slower than `header_timeout`, a body slower than `body_timeout`, a
    /// keep-alive connection idle for `idle_timeout`, an upload held longer than
    /// [`HOLD_LIMIT`], a viewer that stopped reading, a lingering close that ran out.
    pub fn sweep(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        let mut slow = Vec::new();
        let mut idle = Vec::new();
        let mut held = Vec::new();
        for (token, conn) in &self.conns {
            let listener = self.listeners.get(&conn.peer.listener).map(Arc::as_ref);
            match expiry(conn, listener, now) {
                None => {}
                Some(Expired::Slow(what, limit)) => slow.push((*token, what, limit)),
                Some(Expired::Held) => held.push(*token),
                Some(Expired::Idle) => idle.push(*token),
            }
        }
        for (token, what, limit) in slow {
            let Some(mut conn) = self.conns.remove(&token) else {
                continue;
            };
            let why = format!(
                "the {what} did not arrive within {} (header_timeout / body_timeout)",
                humantime::format_duration(limit)
            );
            if conn.decoder.in_body() {
                ctx.intake.devices.dropped(&conn.peer.device);
                self.metrics.dropped(&conn.peer.listener_name);
            }
            self.refuse(token, &mut conn, 408, &why, ctx);
            self.conns.insert(token, conn);
        }
        for token in held {
            let Some(mut conn) = self.conns.remove(&token) else {
                continue;
            };
            conn.phase = Phase::Committing;
            ctx.intake.devices.dropped(&conn.peer.device);
            let why = format!(
                "the sinks had no room for {}; send it again",
                humantime::format_duration(HOLD_LIMIT)
            );
            let out = response::json(
                503,
                &serde_json::json!({ "error": why, "status": 503 }),
                &[("Retry-After", "1")],
                conn.close_after,
            );
            self.respond(token, &mut conn, 503, out);
            self.conns.insert(token, conn);
        }
        for token in idle {
            self.close(token, &Closing::Quiet, ctx);
        }
    }

    /// A reload removed listener `index`: its connections between requests close now, the
    /// others after their current response. Returns how many there were.
    pub fn drain_listener(&mut self, index: usize, ctx: &mut Ctx<'_>) -> usize {
        let mut idle = Vec::new();
        let mut n = 0;
        for (token, conn) in self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.peer.listener == index)
        {
            conn.draining = true;
            conn.close_after = true;
            n += 1;
            let between = matches!(conn.phase, Phase::Reading) && !conn.decoder.is_mid_request();
            if between && conn.out.is_empty() && conn.pending.is_empty() {
                idle.push(*token);
            }
        }
        for token in idle {
            self.close(token, &Closing::Quiet, ctx);
        }
        n
    }

    /// Shutdown: connections not waiting for a commit close now; the others after their
    /// response.
    pub fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            conn.close_after = true;
            if !matches!(conn.phase, Phase::Committing | Phase::Held(..)) {
                self.close(token, &Closing::Quiet, ctx);
            }
        }
    }

    /// Removes a connection: deregisters it and logs why.
    fn close(&mut self, token: Token, why: &Closing, ctx: &mut Ctx<'_>) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let _ = ctx.registry.deregister(&mut conn.stream);
        if let Phase::Streaming(viewer) = &conn.phase {
            if let Some(set) = self.viewers.get_mut(&viewer.device) {
                set.remove(&token);
                if set.is_empty() {
                    self.viewers.remove(&viewer.device);
                }
            }
            info!(
                "http: {} stopped viewing {} after {} parts ({} frames skipped while it was busy)",
                conn.peer.addr, viewer.device, viewer.parts, viewer.skipped
            );
        }
        // A body cut short is a frame dropped unfinished; one refused at its head is not.
        let refused = matches!(conn.phase, Phase::Closing(_));
        if matches!(conn.phase, Phase::Held(..)) || (conn.decoder.in_body() && !refused) {
            ctx.intake.devices.dropped(&conn.peer.device);
            self.metrics.dropped(&conn.peer.listener_name);
        }
        let summary = format!(
            "{} request(s), {} upload(s), {} bytes read",
            conn.requests, conn.frames, conn.bytes
        );
        match why {
            Closing::Quiet => debug!(
                "http: connection from {} on {:?} closed: {summary}",
                conn.peer.addr, &*conn.peer.listener_name
            ),
            Closing::Error(e) => {
                self.metrics.error(&conn.peer.listener_name, false);
                let line = format!(
                    "http: connection from {} (device {}) on {:?} failed: {e}; closed after {summary}",
                    conn.peer.addr, conn.peer.device, &*conn.peer.listener_name
                );
                self.log_line(log::Level::Warn, &conn.peer.device.clone(), line);
            }
        }
    }
}

/// What ran out on a connection.
enum Expired {
    /// A request arrives too slowly: which part, and the limit.
    Slow(&'static str, Duration),
    /// An upload waited [`HOLD_LIMIT`] for sink room.
    Held,
    /// Idle between requests, a viewer not reading, or a lingering close done.
    Idle,
}

/// Whether one of `conn`'s timeouts ran out at `now`.
fn expiry(conn: &HttpConn, listener: Option<&ListenerConfig>, now: Instant) -> Option<Expired> {
    let http = listener.map(|l| l.http.clone()).unwrap_or_default();
    let idle_timeout = listener.map_or(crate::config::DEFAULT_IDLE_TIMEOUT, |l| l.idle_timeout);
    let past = |since: Option<Instant>, limit: Duration| since.is_some_and(|t| now >= t + limit);
    match &conn.phase {
        Phase::Reading if conn.decoder.in_body() => past(conn.body_started, http.body_timeout)
            .then_some(Expired::Slow("body", http.body_timeout)),
        Phase::Reading if conn.decoder.is_mid_request() => {
            past(conn.request_started, http.header_timeout).then_some(Expired::Slow(
                "request line and headers",
                http.header_timeout,
            ))
        }
        Phase::Reading => past(Some(conn.last_activity), idle_timeout).then_some(Expired::Idle),
        Phase::Held(_, since) => past(Some(*since), HOLD_LIMIT).then_some(Expired::Held),
        // A viewer that stopped reading holds one part; it is let go after idle_timeout.
        Phase::Streaming(_) => (!conn.out.is_empty()
            && past(Some(conn.last_activity), idle_timeout))
        .then_some(Expired::Idle),
        Phase::Closing(deadline) => (now >= *deadline).then_some(Expired::Idle),
        Phase::Committing | Phase::Figures(_) => None,
    }
}

/// Why a connection is being closed.
#[derive(Debug)]
pub enum Closing {
    /// The client left, or an ordinary end (idle keep-alive, response then close).
    Quiet,
    /// Something went wrong; logged with the peer.
    Error(String),
}

fn io_closing(e: std::io::Error) -> Closing {
    Closing::Error(format!("read failed: {e}"))
}

/// A response to a HEAD request: the head of `chunks` (always within the first chunk), the
/// body dropped. Its `Content-Length` stays what a GET would get.
fn head_of(chunks: Vec<Chunk>) -> Vec<Chunk> {
    let Some(first) = chunks.into_iter().next() else {
        return Vec::new();
    };
    let bytes = first.bytes();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |at| at + 4);
    vec![Chunk::Owned(bytes[..end].to_vec())]
}
