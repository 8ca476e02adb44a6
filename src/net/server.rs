//! The event loop: one thread, one `mio::Poll`, every listener and device socket.
//!
//! Fixed tokens for the waker and signals, one per listener, and a counter that only grows for
//! connections (a stale event can never reach a newer connection). Nothing here blocks: frames
//! go to sink workers through bounded queues, completions and sequence reservations come back
//! through one channel and one `Waker`. A connection whose frame the sinks cannot take yet
//! stops being read, so TCP flow control pushes back on that device and memory stays bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use super::connection::{Admit, Closed, Connection, Origin, Peer, Pumped};
use super::http::transcode::Transcoded;
use super::http::{self as web, HttpFront};
use super::imagezmq::{Converted, Converter};
use super::intake::{Intake, NativeDevices, Waiting};
use super::native::Limits;
use super::ratelimit::{LineLimiter, Verdict};
use super::replies::ReplyWriter;
use super::{activation, control, limits, listener, reload};
use crate::config::{Config, ListenerConfig};
use crate::frame::Frame;
use crate::framing::{DecodeError, Decoder, Framing};
use crate::heap;
use crate::identity::committed::{Committed, Pending, Recorder};
use crate::identity::{canonical, DeviceNames, Reservations, SequenceStore, Sequences, StoreError};
use crate::notify::Notifier;
use crate::protocol::Reason;
use crate::sink::pool::{Completion, SinkPool};
use crate::status::{DeviceCounters, SinkStatus, Status};

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_LISTENER: usize = 2;
const FIRST_CONNECTION: usize = 1 << 20;
/// The control socket (`framegate status`).
const CONTROL: Token = Token(FIRST_CONNECTION - 1);

/// A turn that answers at least this many connections hands their replies to the reply
/// writer thread. Below it the loop writes them itself, so a single busy device is answered
/// without a thread switch (a prototype that handed off every reply slowed that shape).
/// Turns that answer anyone in a 1000-device burst mostly answer 4 or 16 connections;
/// docs/BENCHMARKS.md ("The reply writer") has the comparison.
const HAND_OFF_MIN: usize = 4;

/// Size of the one read buffer all connections share (the loop reads one socket at a time).
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// How often idle connections are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How long the config file must be quiet before a change is reloaded.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(300);
/// How often `STATUS=` goes to systemd.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// What worker threads send back to the loop.
enum Message {
    Sink(Completion),
    Reserved(Reservations, Result<(), StoreError>),
    /// Native commits written to `committed.toml`: their ACKs may go out.
    Recorded(Vec<Pending>, Result<(), StoreError>),
    /// An imagezmq array encoded (or not) as PNG.
    Converted(Converted),
    /// Something happened to the config file.
    ConfigChanged,
    /// A frame transcoded to JPEG for MJPEG viewers.
    Transcoded(Transcoded),
}

struct ListenerSlot {
    config: ListenerConfig,
    name: Arc<str>,
    socket: TcpListener,
}

/// A failure that stops the daemon from starting; the message says what to fix.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The running daemon.
pub struct Server {
    poll: Poll,
    listeners: Vec<Option<ListenerSlot>>,
    conns: HashMap<Token, Connection>,
    next_token: usize,
    max_connections: usize,
    accept_paused: bool,
    names: DeviceNames,
    intake: Intake,
    messages: Receiver<Message>,
    /// Encodes imagezmq arrays to PNG off the loop.
    converter: Converter,
    /// Where native commits go to be recorded durably before their ACK.
    recorder: Option<mpsc::Sender<Vec<Pending>>>,
    recorder_thread: Option<JoinHandle<()>>,
    /// Native commits sent to the recorder and not yet reported back.
    recording: usize,
    /// How long SIGTERM waits for the sinks.
    shutdown_timeout: Duration,
    /// Where `framegate status` asks.
    control: Option<mio::net::UnixListener>,
    control_path: PathBuf,
    /// Watches the config file (reload on change); dropped with the server.
    _config_watch: Option<reload::ConfigWatch>,
    /// A change to the config file was seen: reload at this time (debounced).
    reload_due: Option<Instant>,
    /// Some connection is draining (its listener was removed by a reload).
    draining: bool,
    /// When the sweep next does its slower housekeeping.
    next_tidy: Instant,
    /// A frame finished or a connection closed since free memory was last given back
    /// ([`heap::release_free`]).
    heap_used: bool,
    /// Keeps one failing device from drowning the log.
    log_limiter: LineLimiter,
    started: Instant,
    /// The config file (or the embedded default's name), checked on SIGHUP.
    config_source: String,
    /// Where state lives; a reload does not move it (forward sinks keep their spools here).
    state_dir: PathBuf,
    /// systemd notifications.
    notifier: Notifier,
    next_watchdog: Instant,
    next_status: Instant,
    /// Native commits of this turn, sent to the recorder together.
    to_record: Vec<Pending>,
    /// Connections given replies this turn, written once at its end.
    answered: HashSet<Token>,
    /// Writes native replies for turns that answered many connections.
    replies: ReplyWriter,
    /// Set by the first message since the loop last drained; see [`Wake`].
    wake_pending: Arc<AtomicBool>,
    store_thread: Option<JoinHandle<SequenceStore>>,
    /// Connections holding a frame the sinks could not take, oldest first.
    stalled: VecDeque<Token>,
    /// Connections that used their read budget and may have more to read.
    runnable: VecDeque<Token>,
    scratch: Box<[u8]>,
    signals: Signals,
    shutdown_deadline: Option<Instant>,
    /// Shutdown timed out and the sinks were told to give up: failures from now on are the
    /// shutdown's doing, and devices hear "shutting down", not "rejected by a sink".
    aborted: bool,
    next_sweep: Instant,
    /// `framing = "http"` connections, the live view and metrics.
    http: HttpFront,
}

impl Server {
    /// Opens the state, starts the sinks, binds every listener. Logs `listening on ADDR` for
    /// each, then `framegate ready`.
    pub fn start(config: &Config) -> Result<Server, StartError> {
        // First, before this function starts any thread: it clears LISTEN_* from the
        // environment.
        let mut inherited = activation::take_inherited();
        let fail = |what: &str, e: &dyn std::fmt::Display| StartError(format!("{what}: {e}"));
        match limits::raise_nofile() {
            Ok(limit) if limit < config.max_connections as u64 + limits::RESERVED_FDS => warn!(
                "open-file limit is {limit}, below max_connections = {} plus {}; raise LimitNOFILE (systemd) or ulimit -n",
                config.max_connections,
                limits::RESERVED_FDS
            ),
            Ok(_) => {}
            Err(e) => warn!("cannot raise the open-file limit: {e}"),
        }
        if !heap::tune() {
            warn!(
                "the C allocator refused framegate's settings; frames will cost more page faults"
            );
        }
        let store = SequenceStore::open(&config.state_dir).map_err(|e| StartError(e.0))?;
        let sequences = Sequences::new(store.marks());
        let committed = Committed::load(&config.state_dir).map_err(|e| StartError(e.0))?;

        let poll = Poll::new().map_err(|e| fail("cannot create the event loop", &e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(|e| fail("cannot create the waker", &e))?,
        );
        let (tx, messages) = mpsc::channel();
        let wake = Wake {
            waker,
            pending: Arc::new(AtomicBool::new(false)),
        };
        let wake_pending = wake.pending.clone();

        let (sink_tx, sink_wake) = (tx.clone(), wake.clone());
        let pool = SinkPool::start(
            &config.sinks,
            Arc::new(move |c| {
                let _ = sink_tx.send(Message::Sink(c));
                sink_wake.wake();
            }),
        )
        .map_err(|e| fail("cannot start sink workers", &e))?;

        let record = Arc::new(Recorder::new(committed.clone(), &config.state_dir));
        let (recorder_tx, recorder_wake) = (tx.clone(), wake.clone());
        let (recorder, recorder_thread) = record.spawn_writer(move |batch, result| {
            let _ = recorder_tx.send(Message::Recorded(batch, result));
            recorder_wake.wake();
        });

        let (convert_tx, convert_wake) = (tx.clone(), wake.clone());
        let converter = Converter::start(
            std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            Arc::new(move |done| {
                let _ = convert_tx.send(Message::Converted(done));
                convert_wake.wake();
            }),
        );

        let (watch_tx, watch_wake) = (tx.clone(), wake.clone());
        let config_path = std::path::Path::new(&config.source);
        let config_watch = if config_path.is_file() {
            match reload::watch(config_path, move || {
                let _ = watch_tx.send(Message::ConfigChanged);
                watch_wake.wake();
            }) {
                Ok(watch) => Some(watch),
                Err(e) => {
                    warn!(
                        "cannot watch {} for changes ({e}); reload with SIGHUP",
                        config.source
                    );
                    None
                }
            }
        } else {
            None
        };

        let (http_tx, http_wake) = (tx.clone(), wake.clone());
        let http = HttpFront::new(
            config,
            Arc::new(move |done| {
                let _ = http_tx.send(Message::Transcoded(done));
                http_wake.wake();
            }),
        );

        let (store_tx, store_wake) = (tx, wake);
        let (reservations, store_thread) = store.spawn_writer(move |batch, result| {
            let _ = store_tx.send(Message::Reserved(batch, result));
            store_wake.wake();
        });

        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (i, lc) in config.listeners.iter().enumerate() {
            let mut socket = match activation::claim(&mut inherited, &lc.name, lc.bind) {
                Some(passed) => {
                    info!(
                        "listener {:?} uses the socket systemd passed ({}, bound to {})",
                        lc.name,
                        if passed.name.is_empty() { "unnamed" } else { &passed.name },
                        passed.addr
                    );
                    passed
                        .socket
                        .set_nonblocking(true)
                        .map_err(|e| fail("cannot use the passed socket", &e))?;
                    mio::net::TcpListener::from_std(passed.socket)
                }
                None => listener::bind(lc.bind, lc.backlog).map_err(|e| {
                    StartError(format!(
                        "listener {:?} cannot listen on {}: {e}; is another program using the port?",
                        lc.name, lc.bind
                    ))
                })?,
            };
            let local = socket
                .local_addr()
                .map_err(|e| fail("cannot read the bound address", &e))?;
            poll.registry()
                .register(&mut socket, Token(FIRST_LISTENER + i), Interest::READABLE)
                .map_err(|e| fail("cannot register a listener", &e))?;
            info!(
                "listener {:?} ({}, max_frame_bytes {}, idle_timeout {}) listening on {local}",
                lc.name,
                lc.framing,
                lc.max_frame_bytes,
                humantime::format_duration(lc.idle_timeout)
            );
            listeners.push(Some(ListenerSlot {
                name: Arc::from(lc.name.as_str()),
                config: lc.clone(),
                socket,
            }));
        }
        let control = control::open(&config.control_socket, &poll, CONTROL);
        for unused in inherited {
            warn!(
                "socket activation: the socket {:?} bound to {} matches no [[listener]] (by name or bind address); it is closed",
                unused.name, unused.addr
            );
        }
        let replies =
            ReplyWriter::start().map_err(|e| fail("cannot start the reply writer thread", &e))?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
            .map_err(|e| fail("cannot install signal handlers", &e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| fail("cannot register signals", &e))?;

        let sinks: Vec<String> = config
            .sinks
            .iter()
            .map(|s| format!("{} ({})", s.name, s.kind.type_name()))
            .collect();
        // Every listener is bound and the sinks are built: tell systemd (Type=notify).
        let notifier = Notifier::from_env();
        notifier.ready(&format!(
            "serving {} listener(s), sinks {}",
            listeners.len(),
            sinks.join(", ")
        ));
        info!(
            "framegate ready: {} listener(s), sinks {}, state in {}",
            listeners.len(),
            sinks.join(", "),
            config.state_dir.display()
        );
        Ok(Server {
            poll,
            listeners,
            conns: HashMap::new(),
            next_token: FIRST_CONNECTION,
            max_connections: config.max_connections,
            accept_paused: false,
            names: DeviceNames::new(&config.devices),
            intake: Intake {
                pool,
                sequences,
                reservations,
                native: NativeDevices {
                    secrets: config.secrets.clone(),
                    committed,
                    in_flight: HashMap::new(),
                },
                replies: HashMap::new(),
                devices: DeviceCounters::default(),
                outstanding: HashMap::new(),
                finished: Vec::new(),
                refusals: Vec::new(),
                unmatched_logged: HashSet::new(),
                recorder: record,
            },
            control,
            control_path: config.control_socket.clone(),
            _config_watch: config_watch,
            reload_due: None,
            log_limiter: LineLimiter::new(config.device_lines_per_minute),
            draining: false,
            next_tidy: Instant::now() + STATUS_EVERY,
            heap_used: false,
            started: Instant::now(),
            converter,
            recorder: Some(recorder),
            recorder_thread: Some(recorder_thread),
            recording: 0,
            to_record: Vec::new(),
            answered: HashSet::new(),
            replies,

            messages,
            wake_pending,
            store_thread: Some(store_thread),
            stalled: VecDeque::new(),
            runnable: VecDeque::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            signals,
            shutdown_deadline: None,
            aborted: false,
            next_sweep: Instant::now() + SWEEP_EVERY,
            shutdown_timeout: config.shutdown_timeout,
            config_source: config.source.clone(),
            state_dir: config.state_dir.clone(),
            notifier,
            next_watchdog: Instant::now(),
            next_status: Instant::now(),
            http,
        })
    }

    /// The address each listener is bound to, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .flatten()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// Runs until SIGTERM or SIGINT and a graceful drain.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if self.runnable.is_empty() {
                self.next_sweep.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            // Frames no sink takes are done at once (their devices are answered).
            if !self.intake.finished.is_empty() {
                for (frame, failure) in std::mem::take(&mut self.intake.finished) {
                    self.frame_done(&frame, failure, None);
                }
                self.send_records();
                self.flush_answered();
            }
            // Frames admitted during the last turn go to the workers in one batch per sink.
            self.intake.pool.flush();
            self.converter.flush();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {} // drained below, whatever woke us
                    SIGNALS => self.on_signal(),
                    CONTROL => self.answer_status_requests(),
                    Token(t) if t < FIRST_CONNECTION => self.accept(t - FIRST_LISTENER),
                    token if self.http.owns(token) => {
                        if event.is_writable() {
                            self.flush_http(token);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.pump_http(token);
                        }
                    }
                    token => {
                        if event.is_writable() {
                            self.flush_conn(token);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.pump(token, !event.is_read_closed() && !event.is_error());
                        }
                    }
                }
            }
            self.drain_messages();
            for _ in 0..self.runnable.len() {
                if let Some(token) = self.runnable.pop_front() {
                    self.pump(token, false);
                }
            }
            for (device, line) in std::mem::take(&mut self.intake.refusals) {
                self.device_warning(&device, line);
            }
            if Instant::now() >= self.next_sweep {
                self.sweep();
            }
            if self.shutdown_done() {
                break;
            }
        }
        self.finish();
        Ok(())
    }

    fn accept(&mut self, index: usize) {
        let Some(Some(slot)) = self.listeners.get(index) else {
            return;
        };
        loop {
            if self.conns.len() + self.http.len() >= self.max_connections {
                if !self.accept_paused {
                    warn!(
                        "max_connections = {} reached; new devices wait in the listen backlog until a connection closes",
                        self.max_connections
                    );
                }
                self.accept_paused = true;
                return;
            }
            let (mut stream, addr) = match slot.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection stays in the backlog; retry on the
                    // next sweep rather than spin.
                    error!("listener {:?}: accept failed: {e}", slot.config.name);
                    self.accept_paused = true;
                    return;
                }
            };
            if !slot.config.allow.is_empty() {
                let ip = canonical(addr.ip());
                if !slot.config.allow.iter().any(|net| net.contains(&ip)) {
                    warn!(
                        "connection from {addr} on {:?} refused: {ip} is not in the listener's allow list",
                        slot.config.name
                    );
                    continue; // dropping the stream closes it
                }
            }
            // Native ACKs and imagezmq replies are small writes a device waits for; Nagle
            // would hold them back until the device's delayed ACK (~40 ms).
            let _ = stream.set_nodelay(true);
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                error!("connection from {addr}: cannot register: {e}");
                continue;
            }
            let peer = Peer {
                listener: index,
                listener_name: slot.name.clone(),
                device: self.names.name_for(addr.ip()),
                addr,
                conn: token.0,
            };
            info!(
                "connection from {addr} (device {}) on {:?}",
                peer.device, slot.config.name
            );
            let lc = &slot.config;
            if lc.framing == Framing::Http {
                self.http.accept(token, stream, peer, Instant::now());
                self.runnable.push_back(token);
                continue;
            }
            let decoder = Decoder::new(lc.framing, lc.max_frame_bytes);
            let limits = Limits {
                max_frame_bytes: lc.max_frame_bytes,
                max_in_flight: lc.max_in_flight,
                heartbeat: lc.heartbeat,
                require_auth: lc.require_auth,
            };
            let mut conn = Connection::new(stream, peer, decoder, limits, Instant::now());
            match lc.framing {
                Framing::Native => conn = conn.native(),
                Framing::Imagezmq => conn = conn.imagezmq(),
                _ => {}
            }
            self.conns.insert(token, conn);
            // Data may have arrived before registration; edge-triggered events would not say.
            self.runnable.push_back(token);
        }
    }

    /// `edge`: a fresh readiness event without read-closed triggered this (see
    /// [`Connection::pump`]).
    fn pump(&mut self, token: Token, edge: bool) {
        if self.http.owns(token) {
            return self.pump_http(token);
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // a spurious or stale event
        };
        if conn.is_stalled() || self.shutdown_deadline.is_some() {
            return; // resumed from drain_messages; shutdown reads nothing new
        }
        let outcome = conn.pump(&mut self.scratch, &mut self.intake, Instant::now(), edge);
        self.after_pump(token, outcome);
    }

    fn after_pump(&mut self, token: Token, outcome: Pumped) {
        if let Some(job) = self.conns.get_mut(&token).and_then(Connection::take_array) {
            self.converter.submit(job);
        }
        if !matches!(outcome, Pumped::Closed(Closed::PeerClosed | Closed::Io(_))) {
            // Native replies (WELCOME, PONG, NACK, GOODBYE) the pump queued.
            self.flush_conn(token);
        }
        match outcome {
            Pumped::Idle => {}
            Pumped::MoreToRead => self.runnable.push_back(token),
            Pumped::Stalled => self.stalled.push_back(token),
            Pumped::Closed(why) => self.close(token, why),
        }
    }

    /// Applies completions and reservations, then lets stalled connections retry.
    fn drain_messages(&mut self) {
        // Cleared before draining: a message sent after this point wakes the loop again.
        self.wake_pending.store(false, Ordering::SeqCst);
        let mut progress = false;
        while let Ok(message) = self.messages.try_recv() {
            progress = true;
            match message {
                Message::Sink(c) => {
                    self.frame_progress(&c);
                    let sink = self.intake.pool.complete(&c).to_string();
                    let latency = SystemTime::now()
                        .duration_since(c.frame.received_at)
                        .unwrap_or_default();
                    self.http.metrics().committed(&sink, latency);
                    let f = &c.frame;
                    match &c.result {
                        Ok(done) => debug!(
                            "frame {}#{} ({} bytes, {}) committed by {sink} in {:?}{}",
                            f.device,
                            f.seq,
                            f.size(),
                            f.format_name(),
                            c.elapsed,
                            done.path
                                .as_ref()
                                .map(|p| format!(" as {}", p.display()))
                                .unwrap_or_default()
                        ),
                        Err(e) => {
                            let line = format!(
                                "sink {sink}: frame {}#{} from {} ({} bytes) not stored: {e}",
                                f.device,
                                f.seq,
                                f.peer,
                                f.size()
                            );
                            self.device_line(log::Level::Error, &f.device.clone(), line);
                        }
                    }
                }
                Message::Recorded(batch, result) => self.on_recorded(batch, result),
                Message::Converted(done) => self.on_converted(done),
                Message::Transcoded(done) => self.http.on_transcoded(done),
                // Editors write in several steps: reload once things are quiet.
                Message::ConfigChanged => {
                    self.reload_due = Some(Instant::now() + RELOAD_DEBOUNCE);
                }
                Message::Reserved(batch, Ok(())) => {
                    for (device, mark) in &batch {
                        self.intake.sequences.reserved(device, *mark);
                    }
                }
                Message::Reserved(batch, Err(e)) => {
                    error!("cannot reserve sequence numbers, frames wait: {e}");
                    for (device, _) in &batch {
                        self.intake.sequences.reservation_failed(device);
                    }
                }
            }
        }
        self.send_records();
        self.flush_answered();
        if progress {
            self.resume_stalled();
        }
    }

    /// Hands the commits gathered this turn to the recorder, in one message.
    fn send_records(&mut self) {
        if self.to_record.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.to_record);
        let count = batch.len();
        if let Some(recorder) = &self.recorder {
            if recorder.send(batch).is_ok() {
                self.recording += count;
            }
        }
    }

    /// Writes the replies queued this turn, once per connection however many it got.
    fn flush_answered(&mut self) {
        let hand_off = self.answered.len() >= HAND_OFF_MIN;
        for token in std::mem::take(&mut self.answered) {
            self.write_replies(token, hand_off);
        }
        self.end_http_turn();
    }

    /// Gives each stalled connection, oldest first, a chance to hand over its frame.
    fn resume_stalled(&mut self) {
        for _ in 0..self.stalled.len() {
            if !self.intake.pool.any_room() {
                return;
            }
            let Some(token) = self.stalled.pop_front() else {
                return;
            };
            if self.http.owns(token) {
                self.pump_http(token);
                continue;
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            let outcome = if self.shutdown_deadline.is_some() {
                // Hand over the frame already received; read nothing new.
                match conn.hand_over(&mut self.intake) {
                    true => Pumped::Closed(Closed::PeerClosed),
                    false => Pumped::Stalled,
                }
            } else {
                conn.pump(&mut self.scratch, &mut self.intake, Instant::now(), false)
            };
            self.after_pump(token, outcome);
        }
    }

    /// Counts a sink's completion against its frame; once every sink finished a native frame,
    /// records it as committed and answers the device.
    fn frame_progress(&mut self, c: &Completion) {
        let key = Arc::as_ptr(&c.frame) as usize;
        let Some(entry) = self.intake.outstanding.get_mut(&key) else {
            return;
        };
        entry.0 -= 1;
        if let Err(e) = &c.result {
            entry.1.get_or_insert_with(|| e.to_string());
        }
        if entry.0 > 0 {
            return;
        }
        let (_, failure) = self
            .intake
            .outstanding
            .remove(&key)
            .expect("entry just seen");
        self.frame_done(&c.frame, failure, c.recorded.clone());
    }

    /// Every sink that took `frame` finished it (or none took it): answer its device.
    /// `recorded`: the sink's worker already recorded the native frame's commit, with this
    /// result; otherwise it goes to the recorder now, and is answered once recorded.
    fn frame_done(
        &mut self,
        frame: &Arc<Frame>,
        failure: Option<String>,
        recorded: Option<Result<(), StoreError>>,
    ) {
        self.heap_used = true;
        let key = Arc::as_ptr(frame) as usize;
        // The live view and MJPEG viewers get every frame, whatever its framing; without an
        // HTTP listener there is nobody to show it to, and no memory is spent on it.
        let serving = self
            .listeners
            .iter()
            .flatten()
            .any(|l| l.config.framing == Framing::Http);
        self.http.frame_done(frame, serving);
        if let Some(conn) = self.intake.replies.remove(&key) {
            let token = Token(conn);
            if self.http.owns(token) {
                self.http.committed(token, frame, failure.as_deref());
                return;
            }
            if let Some(session) = self.conns.get_mut(&token).and_then(Connection::zmtp) {
                session.answer(failure.map_or(Ok(()), Err));
                self.answered.insert(token);
            }
            return;
        }
        let Some(origin) = &frame.native else {
            return;
        };
        let seq = frame.seq;
        // The connection that sent it, and any that resent it meanwhile.
        let waiting = self
            .intake
            .native
            .in_flight
            .remove(&(frame.device.clone(), seq))
            .unwrap_or(Waiting {
                sender: origin.reply_to,
                resent: Vec::new(),
            });
        match failure {
            None => {
                // Known at once (a resend is recognised), ACKed once it is on disk.
                self.intake.native.committed.record(&frame.device, seq);
                match recorded {
                    // The sink's worker recorded it: ACK now, without a batch of one.
                    Some(result) => {
                        if let Err(e) = result {
                            log_unrecorded(1, &e);
                        }
                        for token in waiting.connections() {
                            self.answer(Token(token), seq, Ok(()));
                        }
                    }
                    None => self.to_record.extend(
                        waiting
                            .connections()
                            .map(|token| (frame.device.clone(), seq, token)),
                    ),
                }
            }
            // Left unanswered: the goodbye NACKs it "shutting down", so the device resends.
            Some(_) if self.aborted => {}
            Some(why) => {
                self.intake.devices.error(&frame.device);
                for token in waiting.connections() {
                    self.answer(Token(token), seq, Err(why.clone()));
                }
            }
        }
    }

    /// An imagezmq array came back from the converter: offer the PNG as the connection's
    /// frame, or tell the sender why there is none.
    fn on_converted(&mut self, done: Converted) {
        let token = Token(done.conn);
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // the sender left meanwhile
        };
        match done.png {
            Ok(png) => {
                if !conn.deliver(png, Origin::Imagezmq(done.device), &mut self.intake) {
                    self.stalled.push_back(token);
                }
            }
            Err(why) => {
                warn!(
                    "connection from {} (imagezmq sender {:?}): array not stored: {why}",
                    conn.peer.addr, &*done.device
                );
                if let Some(session) = conn.zmtp() {
                    session.answer(Err(why));
                }
                self.flush_conn(token);
            }
        }
    }

    /// Sends a native frame's ACK or NACK, if its connection is still there.
    fn answer(&mut self, token: Token, seq: u64, result: Result<(), String>) {
        if let Some(session) = self.conns.get_mut(&token).and_then(Connection::session) {
            session.committed(seq, result);
            self.answered.insert(token);
        }
    }

    /// The recorder thread wrote (or failed to write) these commits: ACK them.
    fn on_recorded(&mut self, batch: Vec<Pending>, result: Result<(), StoreError>) {
        self.recording -= batch.len();
        self.acknowledge(batch, result);
    }

    /// These commits were recorded (or failed to be): ACK them. A failed record is logged but
    /// still ACKed: the frames are stored, and a NACK would make the device send them again;
    /// only a resend after a restart could then store one twice.
    fn acknowledge(&mut self, batch: Vec<Pending>, result: Result<(), StoreError>) {
        if let Err(e) = result {
            log_unrecorded(batch.len(), &e);
        }
        for (_, seq, token) in batch {
            self.answer(Token(token), seq, Ok(()));
        }
    }

    /// Writes a connection's queued native replies; waits for writability if the socket is
    /// full, and closes the connection if writing failed.
    fn flush_conn(&mut self, token: Token) {
        self.write_replies(token, false);
    }

    /// [`Self::flush_conn`], or with `hand_off` gives native replies to the reply writer.
    fn write_replies(&mut self, token: Token, hand_off: bool) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let interest = match conn.flush(&self.replies, hand_off) {
            Ok(true) => Interest::READABLE | Interest::WRITABLE,
            Ok(false) => Interest::READABLE,
            Err(e) => {
                self.close(token, Closed::Io(e));
                return;
            }
        };
        if let Some((unsent, limit)) = conn.replies_overdue() {
            self.close(token, Closed::RepliesUnread { unsent, limit });
            return;
        }
        if conn.wants_writable != interest.is_writable() {
            conn.wants_writable = interest.is_writable();
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut conn.socket.source(), token, interest)
            {
                self.close(token, Closed::Io(e));
            }
        }
    }

    fn close(&mut self, token: Token, why: Closed) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        // Its buffers are free now: worth giving back once the loop is quiet.
        self.heap_used = true;
        let _ = self.poll.registry().deregister(&mut conn.socket.source());
        let listener = conn.peer.listener_name.to_string();
        let (addr, device) = (conn.peer.addr, conn.peer.device.clone());
        let counts = format!("{} frames, {} bytes", conn.frames, conn.bytes);
        // The device id a native session gave, else the listener's name for the peer.
        let named = conn
            .session()
            .and_then(|s| s.device().cloned())
            .unwrap_or_else(|| device.clone());
        if !matches!(why, Closed::PeerClosed | Closed::EndOfStream) {
            let dropped =
                matches!(why, Closed::Decode(DecodeError::Truncated { .. })) || conn.is_mid_frame();
            self.http.metrics().error(&conn.peer.listener_name, dropped);
            self.intake.devices.error(&named);
            if dropped {
                self.intake.devices.dropped(&named);
            }
        }
        match why {
            Closed::PeerClosed | Closed::EndOfStream => info!(
                "connection from {addr} (device {device}) on {listener:?} closed{}: {counts}",
                if matches!(why, Closed::EndOfStream) {
                    " after end-of-stream marker"
                } else {
                    ""
                }
            ),
            Closed::Decode(DecodeError::Truncated {
                announced,
                received,
            }) => self.device_warning(&device, format!(
                "connection from {addr} (device {device}) on {listener:?} closed mid-frame ({received} of {announced} payload bytes); partial frame dropped, {counts}"
            )),
            Closed::Decode(e) => self.device_warning(&device, format!(
                "connection from {addr} (device {device}) on {listener:?} rejected: {e}; closed after {counts}"
            )),
            Closed::Protocol(why) => self.device_warning(&device, format!(
                "connection from {addr} (device {device}) on {listener:?} ended by the native session: {why}; closed after {counts}"
            )),
            Closed::Io(e) => self.device_warning(&device, format!(
                "connection from {addr} (device {device}) on {listener:?} failed: {e}; closed after {counts}"
            )),
            Closed::RepliesUnread { unsent, limit } => self.device_warning(&named, format!(
                "connection from {addr} (device {named}) on {listener:?} closed: {unsent} bytes of replies wait unread, more than the {limit} a device that keeps to its window can leave; the device sends without reading its ACKs (frames already committed stay stored and are ACKed again when it resends them); closed after {counts}"
            )),
        }
        if self.accept_paused && self.conns.len() < self.max_connections {
            self.resume_accepting();
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused = false;
        for index in 0..self.listeners.len() {
            self.accept(index);
        }
    }

    /// Closes connections of listeners a reload removed, once they are between frames.
    fn close_drained(&mut self) {
        if !self.draining {
            return;
        }
        self.draining = self.conns.values().any(|c| c.draining);
        let done: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.draining && !c.is_mid_frame() && !c.is_stalled() && c.native_in_flight() == 0
            })
            .map(|(t, _)| *t)
            .collect();
        for token in done {
            if let Some(session) = self.conns.get_mut(&token).and_then(Connection::session) {
                session.goodbye(Reason::ShuttingDown, "this listener was removed; reconnect");
                self.flush_conn(token);
            }
            self.close(token, Closed::PeerClosed);
        }
    }

    /// Closes connections silent for longer than their listener's `idle_timeout`.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.next_sweep = now + SWEEP_EVERY;
        if self.reload_due.is_some_and(|due| now >= due) {
            self.reload_due = None;
            self.reload("the config file changed");
        }
        self.close_drained();
        self.intake.pool.reap();
        if now >= self.next_tidy {
            // Housekeeping that need not run every sweep: forget quiet devices' log windows.
            self.next_tidy = now + STATUS_EVERY;
            self.log_limiter.forget_quiet(now);
            // Frames passed or connections closed since the last look, and no frame is in
            // the daemon now: give the buffers they left free back to the kernel (see
            // `heap`).
            if self.heap_used && self.intake.pool.in_flight() == 0 && self.stalled.is_empty() {
                self.heap_used = false;
                heap::release_free();
            }
        }
        self.tell_systemd(now);
        self.sweep_http(now);
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        for (token, conn) in &mut self.conns {
            // A listener a reload removed leaves its draining connections the defaults.
            let (idle_timeout, heartbeat) = match self.listeners.get(conn.peer.listener) {
                Some(Some(slot)) => (slot.config.idle_timeout, slot.config.heartbeat),
                _ => (
                    crate::config::DEFAULT_IDLE_TIMEOUT,
                    crate::config::DEFAULT_HEARTBEAT,
                ),
            };
            // A stalled connection is silent because we stopped reading it, not the device.
            if conn.is_stalled() {
                continue;
            }
            let silent = now.duration_since(conn.last_activity);
            let last_activity = conn.last_activity;
            let native = conn.session().is_some();
            if silent >= idle_timeout {
                idle.push((*token, idle_timeout));
            } else if native && silent >= heartbeat * 3 {
                // Three heartbeats without a byte, PONG included: the peer is gone.
                idle.push((*token, heartbeat * 3));
            } else if native && silent >= heartbeat && conn.pinged_at != Some(last_activity) {
                conn.pinged_at = Some(last_activity);
                ping.push(*token);
            }
        }
        for token in ping {
            if let Some(session) = self.conns.get_mut(&token).and_then(Connection::session) {
                session.ping();
                self.flush_conn(token);
            }
        }
        for (token, timeout) in idle {
            let Some(mut conn) = self.conns.remove(&token) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut conn.socket.source());
            let listener = conn.peer.listener_name.to_string();
            let mut dropped = conn.is_mid_frame();
            let mut inside = match (conn.is_mid_frame(), conn.announced()) {
                (true, Some(size)) => {
                    format!(" inside a frame of {size} bytes; partial frame dropped")
                }
                (true, None) => " inside a length header; partial header dropped".to_string(),
                (false, _) => " between frames".to_string(),
            };
            if let Some(frame) = conn.end_idle() {
                // Complete all along; only its framing waited for more bytes. Offered like
                // any frame; if the sinks have no room this instant it cannot wait (the
                // connection is going), which is rare enough to log.
                let size = frame.payload.len();
                inside = match self.intake.admit(&conn.peer, frame) {
                    Ok(()) => {
                        dropped = false;
                        conn.frames += 1;
                        format!(" after a {size}-byte frame whose framing the silence settled")
                    }
                    Err(_) => format!(
                        " after a {size}-byte frame whose framing the silence settled; the sinks were full, frame dropped"
                    ),
                };
            }
            if dropped {
                self.intake.devices.dropped(&conn.peer.device);
                self.http.metrics().dropped(&conn.peer.listener_name);
            }
            let (addr, device) = (&conn.peer.addr, conn.peer.device.clone());
            let line = format!(
                "connection from {addr} (device {device}) on {listener:?} idle for {}{inside}; closed after {} frames, {} bytes",
                humantime::format_duration(timeout),
                conn.frames,
                conn.bytes
            );
            self.device_warning(&device, line);
        }
        if self.accept_paused && self.conns.len() + self.http.len() < self.max_connections {
            self.resume_accepting();
        }
    }

    /// The counters `framegate status` shows.
    fn status(&mut self) -> Status {
        let mut connections: HashMap<Arc<str>, usize> = HashMap::new();
        for conn in self.conns.values_mut() {
            let device = conn
                .session()
                .and_then(|s| s.device().cloned())
                .unwrap_or_else(|| conn.peer.device.clone());
            *connections.entry(device).or_default() += 1;
        }
        let queued: Vec<usize> = self.intake.pool.queued();
        let details = self.intake.pool.details();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            connections: self.conns.len() + self.http.len(),
            devices: self.intake.devices.rows(&connections),
            sinks: self
                .intake
                .pool
                .counts()
                .into_iter()
                .zip(queued)
                .zip(details)
                .map(|(((name, c), queued), details)| SinkStatus {
                    name: name.to_string(),
                    committed: c.committed,
                    bytes: c.bytes,
                    failed: c.failed,
                    dropped: c.dropped,
                    queued,
                    details: details
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    spool: crate::sink::forward::spool_stats(name).map(Into::into),
                })
                .collect(),
        }
    }

    /// Answers every waiting `framegate status`: one JSON document each, written on a thread
    /// of its own (the reader may be slow; the loop never waits for it).
    fn answer_status_requests(&mut self) {
        loop {
            let Some(control) = &self.control else { return };
            let stream = match control.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    return;
                }
            };
            let json = serde_json::to_vec(&self.status()).expect("status serialises");
            control::reply(stream, json);
        }
    }

    /// Logs a warning about `device`, at most `[log] device_lines_per_minute` a minute per
    /// device; the count of lines held back comes with its next line.
    fn device_warning(&mut self, device: &Arc<str>, line: String) {
        self.device_line(log::Level::Warn, device, line);
    }

    /// [`Server::device_warning`] at any level.
    fn device_line(&mut self, level: log::Level, device: &Arc<str>, line: String) {
        match self.log_limiter.check(device, Instant::now()) {
            Verdict::Log { suppressed: 0 } => log::log!(level, "{line}"),
            Verdict::Log { suppressed } => log::log!(
                level,
                "{line} ({suppressed} more such line(s) for device {device} were not logged in the last minute)"
            ),
            Verdict::Suppress => {}
        }
    }

    /// Watchdog keep-alives and the status line `systemctl status` shows.
    fn tell_systemd(&mut self, now: Instant) {
        if let Some(every) = self.notifier.watchdog_every() {
            if now >= self.next_watchdog {
                self.notifier.watchdog();
                self.next_watchdog = now + every;
            }
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_EVERY;
            let (mut frames, mut failed) = (0, 0);
            for (_, counts) in self.intake.pool.counts() {
                frames += counts.committed;
                failed += counts.failed;
            }
            self.notifier.status(&format!(
                "{} connection(s); {frames} frame commits, {failed} failed",
                self.conns.len()
            ));
        }
    }

    /// Reloads the config file (SIGHUP, or the file changed). An invalid file is refused with
    /// one log line and the running configuration stays in force.
    fn reload(&mut self, why: &str) {
        let path = std::path::Path::new(&self.config_source).to_path_buf();
        if !path.is_file() {
            warn!(
                "reload ({why}): running on {}, there is no file to reload",
                self.config_source
            );
            return;
        }
        self.notifier.reloading();
        match Config::load(&path) {
            Err(e) => {
                error!("reload ({why}) refused: {e}; the running configuration stays in force")
            }
            Ok(new) => {
                self.apply(new);
                info!("reloaded {} ({why})", self.config_source);
            }
        }
        self.notifier.ready("serving (reloaded)");
    }

    /// Applies a validated configuration: unchanged listeners keep their sockets and devices;
    /// removed or re-bound listeners stop accepting and their connections end at their next
    /// frame boundary; sinks are rebuilt as `SinkPool::reconfigure` says. `state_dir` and the
    /// control socket stay as they were (they take a restart).
    fn apply(&mut self, mut new: Config) {
        crate::sink::forward::place_spools(&mut new.sinks, &self.state_dir);
        self.names = DeviceNames::new(&new.devices);
        self.http.reconfigure(&new);
        self.intake.native.secrets = new.secrets.clone();
        self.max_connections = new.max_connections;
        self.shutdown_timeout = new.shutdown_timeout;
        self.log_limiter = LineLimiter::new(new.device_lines_per_minute);
        if std::env::var_os("FRAMEGATE_LOG").is_none() {
            log::set_max_level(new.log_level);
        }
        let mut kept = Vec::new();
        for index in 0..self.listeners.len() {
            let Some(slot) = &mut self.listeners[index] else {
                continue;
            };
            match new.listeners.iter().find(|l| l.name == slot.config.name) {
                Some(l) if l.bind == slot.config.bind && l.framing == slot.config.framing => {
                    if *l != slot.config {
                        info!("listener {:?}: new settings apply", l.name);
                    }
                    slot.config = l.clone();
                    self.http.configure(index, l);
                    kept.push(l.name.clone());
                }
                changed => {
                    let mut slot = self.listeners[index].take().expect("checked above");
                    let _ = self.poll.registry().deregister(&mut slot.socket);
                    let (http, mut ctx, _) = self.http_ctx();
                    let mut draining = http.drain_listener(index, &mut ctx);
                    for conn in self.conns.values_mut().filter(|c| c.peer.listener == index) {
                        conn.draining = true;
                        draining += 1;
                    }
                    self.draining |= draining > 0;
                    info!(
                        "listener {:?} {}: no longer accepting; its {draining} connection(s) close after their current frame",
                        slot.config.name,
                        if changed.is_some() { "changed its bind or framing" } else { "removed" }
                    );
                }
            }
        }
        for lc in new.listeners.iter().filter(|l| !kept.contains(&l.name)) {
            let index = self.listeners.len();
            match listener::bind(lc.bind, lc.backlog).and_then(|mut socket| {
                self.poll
                    .registry()
                    .register(&mut socket, Token(FIRST_LISTENER + index), Interest::READABLE)
                    .map(|()| socket)
            }) {
                Ok(socket) => {
                    self.http.configure(index, lc);
                    let local = socket.local_addr().map_or(lc.bind, |a| a);
                    info!(
                        "listener {:?} ({}, max_frame_bytes {}, idle_timeout {}) listening on {local}",
                        lc.name,
                        lc.framing,
                        lc.max_frame_bytes,
                        humantime::format_duration(lc.idle_timeout)
                    );
                    self.listeners.push(Some(ListenerSlot {
                        name: Arc::from(lc.name.as_str()),
                        config: lc.clone(),
                        socket,
                    }));
                }
                Err(e) => error!(
                    "reload: listener {:?} cannot listen on {}: {e}; it stays off until the next reload",
                    lc.name, lc.bind
                ),
            }
        }
        match self.intake.pool.reconfigure(&new.sinks) {
            Ok(changes) => {
                for change in changes {
                    info!("{change}");
                }
            }
            Err(e) => error!("reload: cannot start a sink's workers: {e}"),
        }
    }

    fn on_signal(&mut self) {
        let received: Vec<i32> = self.signals.pending().collect();
        if received.is_empty() {
            return;
        }
        if received.contains(&SIGHUP) {
            self.reload("SIGHUP");
        }
        if received.contains(&SIGUSR1) {
            info!(
                "status (SIGUSR1):\n{}",
                self.status().table(SystemTime::now())
            );
        }
        let Some(&stop) = received.iter().find(|&&s| s != SIGHUP && s != SIGUSR1) else {
            return;
        };
        if self.shutdown_deadline.is_some() {
            warn!("second signal: exiting at once");
            std::process::exit(1);
        }
        self.notifier.stopping(&format!(
            "shutting down: finishing {} frame(s) in the sinks",
            self.intake.pool.in_flight() + self.stalled.len()
        ));
        info!(
            "shutting down (signal {}): no new connections or frames; finishing {} frame(s) in the sinks",
            stop,
            self.intake.pool.in_flight() + self.stalled.len()
        );
        self.shutdown_deadline = Some(Instant::now() + self.shutdown_timeout);
        for slot in self.listeners.iter_mut() {
            if let Some(mut slot) = slot.take() {
                let _ = self.poll.registry().deregister(&mut slot.socket);
            }
        }
        self.shutdown_http();
        // Connections with no complete frame waiting have nothing more to deliver; native ones
        // stay until the ACKs of their frames in the sinks went out (see `finish`).
        let idle: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.is_stalled() && c.native_in_flight() == 0)
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            self.say_goodbye(token);
            if let Some(conn) = self.conns.remove(&token) {
                let _ = self.poll.registry().deregister(&mut conn.socket.source());
                if conn.is_mid_frame() {
                    self.intake.devices.dropped(&conn.peer.device);
                    info!(
                        "connection from {} closed by shutdown; its partial frame was dropped",
                        conn.peer.addr
                    );
                }
            }
        }
    }

    fn shutdown_done(&self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        let drained =
            self.stalled.is_empty() && self.intake.pool.in_flight() == 0 && self.recording == 0;
        if !drained && Instant::now() >= deadline {
            error!(
                "shutdown timed out after {:?} with {} frame(s) unfinished",
                self.shutdown_timeout,
                self.intake.pool.in_flight() + self.stalled.len()
            );
            return true;
        }
        drained
    }

    /// Tells a native device the server is going away (best effort: what fits the socket now).
    fn say_goodbye(&mut self, token: Token) {
        if let Some(session) = self.conns.get_mut(&token).and_then(Connection::session) {
            // Frames the shutdown did not let finish (shutdown_timeout passed) are not stored
            // for sure: the device must send them again.
            session.refuse_in_flight(
                Reason::ShuttingDown,
                "framegate shut down before storing it",
            );
            session.goodbye(
                Reason::ShuttingDown,
                "framegate is shutting down; resend later",
            );
            if let Some(conn) = self.conns.get_mut(&token) {
                let _ = conn.flush(&self.replies, false);
            }
        }
    }

    /// Stops the workers, records exact sequence marks, logs totals.
    fn finish(mut self) {
        if self.control.take().is_some() {
            let _ = std::fs::remove_file(&self.control_path);
        }
        if self.intake.pool.in_flight() > 0 {
            // Shutdown timed out: what still runs (hooks) is stopped rather than waited for.
            self.aborted = true;
            self.intake.pool.abort();
        }
        self.intake.pool.stop();
        while let Ok(message) = self.messages.try_recv() {
            match message {
                Message::Sink(c) => {
                    self.frame_progress(&c);
                    self.intake.pool.complete(&c);
                }
                Message::Recorded(batch, result) => self.on_recorded(batch, result),
                Message::Reserved(..)
                | Message::Converted(_)
                | Message::Transcoded(_)
                | Message::ConfigChanged => {}
            }
        }
        // The recorder writes what it was sent, then ends; its last reports ACK those frames.
        self.send_records();
        self.recorder = None;
        if let Some(thread) = self.recorder_thread.take() {
            let _ = thread.join();
        }
        while let Ok(message) = self.messages.try_recv() {
            if let Message::Recorded(batch, result) = message {
                self.on_recorded(batch, result);
            }
        }
        self.flush_answered();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.say_goodbye(token);
        }
        for (name, counts) in self.intake.pool.counts() {
            info!(
                "sink {name}: {} frames ({} bytes) committed, {} failed",
                counts.committed, counts.bytes, counts.failed
            );
        }
        let marks = self.intake.sequences.exact_marks();
        let store_thread = self.store_thread.take();
        // Closing the channel ends the store thread, which returns the store.
        drop(self.intake);
        if let Some(thread) = store_thread {
            match thread.join() {
                Ok(mut store) => {
                    if let Err(e) = store.settle(&marks) {
                        error!("cannot record exact sequence marks (the reserved ones stay in force): {e}");
                    }
                }
                Err(_) => error!("the sequence store thread panicked"),
            }
        }
        info!("framegate stopped");
    }
}

/// Says that `count` committed native frames could not be recorded in `committed.log`. They
/// are ACKed anyway (they are stored; a NACK would only make the device send them again), so
/// the operator learns what is at stake: a resend after a restart could store them twice.
fn log_unrecorded(count: usize, e: &StoreError) {
    error!(
        "cannot record {count} committed native frame(s), a resend after a restart could store them twice: {e}"
    );
}

/// The hooks of HTTP connections ([`HttpFront`]): each lends it the parts of the loop it needs.
impl Server {
    fn http_ctx(&mut self) -> (&mut HttpFront, web::Ctx<'_>, &mut [u8]) {
        (
            &mut self.http,
            web::Ctx {
                intake: &mut self.intake,
                registry: self.poll.registry(),
                shutting_down: self.shutdown_deadline.is_some(),
            },
            &mut self.scratch,
        )
    }

    fn pump_http(&mut self, token: Token) {
        let (http, mut ctx, scratch) = self.http_ctx();
        match http.pump(token, scratch, &mut ctx) {
            web::Pumped::Idle => {}
            web::Pumped::MoreToRead => self.runnable.push_back(token),
            web::Pumped::Stalled => self.stalled.push_back(token),
            web::Pumped::Closed => self.after_http_close(),
        }
        if self.http.wants_figures() {
            self.answer_http_figures();
        }
        // Answers go out now, not at the end of a turn that may sleep first.
        self.end_http_turn();
    }

    fn flush_http(&mut self, token: Token) {
        let (http, mut ctx, _) = self.http_ctx();
        http.flush(token, &mut ctx);
        self.after_http_close();
    }

    /// Writes what HTTP connections queued this turn; those that answered a request are
    /// pumped again (a pipelined request may wait in their buffer).
    fn end_http_turn(&mut self) {
        let (http, mut ctx, _) = self.http_ctx();
        let again = http.end_turn(&mut ctx);
        self.runnable.extend(again);
        self.after_http_close();
    }

    fn sweep_http(&mut self, now: Instant) {
        let (http, mut ctx, _) = self.http_ctx();
        http.sweep(now, &mut ctx);
        self.end_http_turn();
    }

    fn shutdown_http(&mut self) {
        let (http, mut ctx, _) = self.http_ctx();
        http.shutdown(&mut ctx);
    }

    /// `/api/devices` and `/metrics` need the loop's figures.
    fn answer_http_figures(&mut self) {
        let status = self.status();
        let mut open: HashMap<Arc<str>, usize> = HashMap::new();
        for conn in self.conns.values() {
            *open.entry(conn.peer.listener_name.clone()).or_default() += 1;
        }
        self.http.answer_figures(&status, open);
    }

    fn after_http_close(&mut self) {
        if self.accept_paused && self.conns.len() + self.http.len() < self.max_connections {
            self.resume_accepting();
        }
    }
}

/// Wakes the loop for a message from another thread, at most once until the loop drains.
///
/// Under load workers finish frames faster than the loop turns; one eventfd write per
/// completion would cost a syscall each for nothing, so only the first message after a drain
/// writes it.
#[derive(Clone)]
struct Wake {
    waker: Arc<Waker>,
    pending: Arc<AtomicBool>,
}

impl Wake {
    /// Call after sending the message.
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            // Fails only if the loop is gone, and then nobody is waiting for the message.
            let _ = self.waker.wake();
        }
    }
}
