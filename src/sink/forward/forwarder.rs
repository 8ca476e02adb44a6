//! The forwarder: one thread per forward sink that sends spooled frames upstream and removes
//! them from the spool once the upstream ACKs them.
//!
//! It runs its own `mio` loop (never the daemon's): a link per device with frames to send
//! ([`super::link`]), opened when the spool says the device has some, closed after
//! [`LINK_IDLE`] without any. Each link keeps up to the upstream's window of frames in flight,
//! claimed from the spool in sequence order and read back from disk, so memory holds about one
//! frame per link whatever the spool's size. A lost link gives its unacknowledged frames back
//! to the spool; they go again, oldest first, on the next link, and the upstream's duplicate
//! suppression (device, seq) makes that safe. Connection failures fail over along `to`
//! ([`super::upstream`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::link::{Link, Phase, Received, OUT_SOFT_LIMIT};
use super::upstream::Upstreams;
use crate::protocol::client::ClientEvent;
use crate::protocol::{FrameHeader, Reason};
use crate::send::backoff::Backoff;
use crate::sink::spool::Spool;

/// A link with nothing to send for this long is closed (the upstream's connection slot is
/// freed); the next frame of its device opens a new one.
pub const LINK_IDLE: Duration = Duration::from_secs(30);
/// How often timers are looked at while links exist.
const TICK: Duration = Duration::from_millis(100);
/// Most warnings per minute about lost links and refused frames, per sink.
const WARNINGS_PER_MINUTE: u32 = 10;
const WAKER: Token = Token(0);

/// What a forwarder needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sink's name, for logs.
    pub sink: String,
    /// Upstream `host:port` addresses, in preference order.
    pub to: Vec<String>,
    /// Secret for the challenge–response of every device forwarded.
    pub secret: Option<Vec<u8>>,
    /// Value of the `via` metadata entry added to every frame, if any.
    pub via: Option<String>,
    /// How long connecting, and then the handshake, may take.
    pub connect_timeout: Duration,
}

/// The running forwarder thread; stopped (and joined) when dropped.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    spool: Arc<Spool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding `spool`'s frames per `settings`.
    pub fn start(settings: Settings, spool: Arc<Spool>) -> io::Result<Forwarder> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let wake = waker.clone();
        spool.set_on_ready(Some(Arc::new(move || {
            // Fails only when the forwarder is gone, and then nobody needs waking.
            let _ = wake.wake();
        })));
        let mut state = Loop {
            upstreams: Upstreams::new(&settings.sink, settings.to.clone()),
            settings,
            spool: spool.clone(),
            poll,
            stop: stop.clone(),
            links: HashMap::new(),
            devices: HashMap::new(),
            dirty: HashSet::new(),
            next_token: 1,
            buf: vec![0; 64 << 10].into_boxed_slice(),
            warnings: (Instant::now(), 0, 0),
            via_warned: false,
        };
        let thread = thread::Builder::new()
            .name(format!("fg-forward-{}", state.settings.sink))
            .spawn(move || state.run())?;
        Ok(Forwarder {
            stop,
            waker,
            spool,
            thread: Some(thread),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.spool.set_on_ready(None);
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A device with frames to forward, or a link.
#[derive(Debug, Default)]
struct Device {
    link: Option<Token>,
    /// It has frames to send and no link yet.
    wants: bool,
    /// No new link before this (its last one failed, or the upstream said goodbye).
    not_before: Option<Instant>,
    backoff: Backoff,
}

struct Loop {
    settings: Settings,
    spool: Arc<Spool>,
    poll: Poll,
    stop: Arc<AtomicBool>,
    upstreams: Upstreams,
    links: HashMap<Token, Link>,
    devices: HashMap<Arc<str>, Device>,
    /// Links that may be able to send more: opened, answered, unpaused, new frames.
    dirty: HashSet<Token>,
    next_token: usize,
    buf: Box<[u8]>,
    /// Rate limit for warnings: window start, lines logged in it, lines held back.
    warnings: (Instant, u32, u64),
    via_warned: bool,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::SeqCst) {
            // Work first: frames recovered from the spool are there before any wake-up.
            let now = Instant::now();
            for device in self.spool.take_fresh() {
                let entry = self.devices.entry(device).or_default();
                match entry.link {
                    Some(token) => {
                        self.dirty.insert(token);
                    }
                    None => entry.wants = true,
                }
            }
            self.timers(now);
            self.start_links(now);
            for token in std::mem::take(&mut self.dirty) {
                self.fill(token, now);
            }
            let timeout =
                (!self.links.is_empty() || self.devices.values().any(|d| d.wants)).then_some(TICK);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "forward sink {:?}: its event loop failed ({e}); frames stay in the spool until a restart",
                    self.settings.sink
                );
                break;
            }
            let now = Instant::now();
            for event in events.iter() {
                if event.token() != WAKER {
                    self.on_event(event.token(), event.is_writable(), now);
                }
            }
        }
        let tokens: Vec<Token> = self.links.keys().copied().collect();
        for token in tokens {
            self.close(token, None, Instant::now());
        }
        self.spool.release_all();
    }

    fn on_event(&mut self, token: Token, writable: bool, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return; // closed meanwhile
        };
        if let Phase::Connecting(_) = link.phase {
            match link.finish_connect() {
                Ok(()) => link.phase = Phase::Opening(now + self.settings.connect_timeout),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let why = e.to_string();
                    return self.attempt_failed(token, &why, now);
                }
            }
        }
        let (events, closed) = match link.read(&mut self.buf, now) {
            Received::Events(events) => (events, None),
            Received::Closed(why, events) => (events, Some(why)),
            Received::Refused(why) => return self.refused(token, &why, now),
        };
        for event in events {
            self.on_session_event(token, event, now);
        }
        if let Some(why) = closed {
            return self.link_lost(token, &why, now);
        }
        if writable {
            self.dirty.insert(token);
        }
        self.flush(token, now);
    }

    fn on_session_event(&mut self, token: Token, event: ClientEvent, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        let device = link.device.clone();
        match event {
            ClientEvent::Welcome {
                max_frame_bytes,
                window,
                heartbeat,
            } => {
                link.phase = Phase::Open;
                link.limits.window = window;
                link.limits.max_frame_bytes = max_frame_bytes;
                link.limits.heartbeat = heartbeat;
                link.idle_since = now;
                self.upstreams.succeeded(link.target, now);
                log::debug!(
                    "forward sink {:?}: device {device} connected to {}",
                    self.settings.sink,
                    self.upstreams.name(link.target)
                );
                self.dirty.insert(token);
            }
            ClientEvent::Ack(seq) => {
                if link.in_flight.remove(&seq) {
                    self.spool.ack(&device, seq);
                    if let Some(d) = self.devices.get_mut(&device) {
                        d.backoff = Backoff::new();
                    }
                    self.dirty.insert(token);
                }
            }
            ClientEvent::Nack { seq, reason, text } => {
                if !link.in_flight.remove(&seq) {
                    return;
                }
                self.dirty.insert(token);
                if reason.is_retryable() {
                    self.spool.unclaim(&device, seq);
                    let wait = self
                        .devices
                        .get_mut(&device)
                        .map_or(Duration::from_secs(1), |d| d.backoff.next());
                    link.paused_until = Some(now + wait);
                    let line = format!(
                        "forward sink {:?}: the upstream refused frame {device}#{seq} for now ({reason}: {text}); it is sent again in {wait:?}",
                        self.settings.sink
                    );
                    self.warn(line, now);
                } else {
                    self.spool.reject(&device, seq);
                    log::error!(
                        "forward sink {:?}: the upstream refused frame {device}#{seq} for good ({reason}: {text}); it is removed from the spool",
                        self.settings.sink
                    );
                }
            }
            ClientEvent::Goodbye { reason, text } => {
                let why = format!("the upstream said goodbye ({reason}: {text})");
                if link.phase == Phase::Open {
                    self.link_lost(token, &why, now);
                } else if reason == Reason::NotAuthorised {
                    self.refused(token, &format!("{reason}: {text}"), now);
                } else {
                    self.attempt_failed(token, &why, now);
                }
            }
        }
    }

    /// Adds frames to a link while its window and output buffer allow, and writes them.
    fn fill(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if link.phase != Phase::Open || link.paused_until.is_some_and(|t| t > now) {
            return;
        }
        while link.in_flight.len() < link.limits.window
            && link.session.output().len() < OUT_SOFT_LIMIT
        {
            let Some(claim) = self.spool.claim_next(&link.device) else {
                break;
            };
            let record = match self.spool.read(claim.id) {
                Ok(record) => record,
                Err(e) => {
                    log::error!(
                        "forward sink {:?}: frame {}#{} cannot be read back from the spool ({e}); it is dropped",
                        self.settings.sink,
                        link.device,
                        claim.seq
                    );
                    self.spool.reject(&link.device, claim.seq);
                    continue;
                }
            };
            let payload = record.payload();
            if payload.len() as u64 > u64::from(link.limits.max_frame_bytes) {
                log::error!(
                    "forward sink {:?}: frame {}#{} ({} bytes) is larger than the upstream's max_frame_bytes ({}); it is removed from the spool",
                    self.settings.sink,
                    link.device,
                    claim.seq,
                    payload.len(),
                    link.limits.max_frame_bytes
                );
                self.spool.reject(&link.device, claim.seq);
                continue;
            }
            let meta = with_via(
                &record.head.meta,
                self.settings.via.as_deref(),
                &mut self.via_warned,
                &self.settings.sink,
            );
            link.session.send_frame(
                claim.seq,
                record.head.captured_us,
                record.head.content_type,
                meta,
                payload,
            );
            link.in_flight.insert(claim.seq);
            link.idle_since = now;
        }
        self.flush(token, now);
    }

    fn flush(&mut self, token: Token, now: Instant) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if let Phase::Connecting(_) = link.phase {
            return; // HELLO waits for the connection
        }
        let had = link.session.output().len();
        if let Err(e) = link.flush(now) {
            return self.link_lost(token, &e.to_string(), now);
        }
        // Room in the output buffer again: more frames may go.
        if had >= OUT_SOFT_LIMIT && link.session.output().len() < OUT_SOFT_LIMIT {
            self.dirty.insert(token);
        }
    }

    /// Opens links for devices that want one, as far as the upstream's state allows.
    fn start_links(&mut self, now: Instant) {
        if !self.upstreams.may_connect(now) {
            return;
        }
        let mut probing =
            self.upstreams.is_down() && self.links.values().any(|l| l.phase != Phase::Open);
        let waiting: Vec<Arc<str>> = self
            .devices
            .iter()
            .filter(|(_, d)| d.wants && d.link.is_none() && d.not_before.is_none_or(|t| t <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for device in waiting {
            // While the upstream is down, one link probes; the others wait for its result.
            if probing {
                return;
            }
            if let Err(why) = super::check_device(&device) {
                self.drop_device_frames(&device, &why);
                continue;
            }
            let first = self.upstreams.first_choice(now);
            self.attempt(device, first, 1, now);
            probing = self.upstreams.is_down();
        }
    }

    /// Connects `device` to address `target` (the `tried`-th of this attempt), moving on
    /// along the list while connecting fails at once.
    fn attempt(&mut self, device: Arc<str>, mut target: usize, mut tried: usize, now: Instant) {
        loop {
            let deadline = now + self.settings.connect_timeout;
            let connected = self.upstreams.resolve(target).and_then(|addr| {
                Link::connect(
                    device.clone(),
                    addr,
                    target,
                    tried,
                    self.settings.secret.clone(),
                    deadline,
                    now,
                )
            });
            match connected {
                Ok(mut link) => {
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = self.poll.registry().register(
                        &mut link.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::error!(
                            "forward sink {:?}: cannot register a connection: {e}",
                            self.settings.sink
                        );
                        return;
                    }
                    let entry = self.devices.entry(device).or_default();
                    entry.link = Some(token);
                    entry.wants = false;
                    self.links.insert(token, link);
                    return;
                }
                Err(e) => {
                    self.upstreams.failed(target, &e.to_string(), now);
                    if tried >= self.upstreams.count() {
                        self.upstreams.all_failed(now, self.spool.stats().frames);
                        return;
                    }
                    target = (target + 1) % self.upstreams.count();
                    tried += 1;
                }
            }
        }
    }

    /// Connecting or the handshake failed: try the next address, or back off.
    fn attempt_failed(&mut self, token: Token, why: &str, now: Instant) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        let (device, target, tried) = (link.device.clone(), link.target, link.tried);
        self.upstreams.failed(target, why, now);
        self.close(token, None, now);
        if tried < self.upstreams.count() {
            self.attempt(
                device,
                (target + 1) % self.upstreams.count(),
                tried + 1,
                now,
            );
        } else {
            self.upstreams.all_failed(now, self.spool.stats().frames);
            if let Some(d) = self.devices.get_mut(&device) {
                d.wants = true;
            }
        }
    }

    /// An open link (or one refused for its device) is gone: its frames go back to the spool,
    /// and the device reconnects after its backoff.
    fn link_lost(&mut self, token: Token, why: &str, now: Instant) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        if link.phase != Phase::Open {
            return self.attempt_failed(token, why, now);
        }
        let device = link.device.clone();
        if !link.in_flight.is_empty() {
            let line = format!(
                "forward sink {:?}: link of device {} to {} lost ({why}); its {} unacknowledged frame(s) are sent again",
                self.settings.sink,
                link.device,
                self.upstreams.name(link.target),
                link.in_flight.len()
            );
            self.warn(line, now);
        }
        let wait = self
            .devices
            .get_mut(&device)
            .map_or(Duration::from_secs(1), |d| d.backoff.next());
        self.close(token, Some(wait), now);
    }

    /// The upstream answered but does not accept this device (not authorised, or it wants a
    /// secret the sink lacks). Another address would not know it either: a configuration
    /// problem for this device alone, so the upstream counts as up and other devices go on.
    fn refused(&mut self, token: Token, why: &str, now: Instant) {
        let Some(link) = self.links.get(&token) else {
            return;
        };
        let (device, target) = (link.device.clone(), link.target);
        self.upstreams.succeeded(target, now);
        let line = format!(
            "forward sink {:?}: {} does not accept device {device:?} ({why}); list it upstream as [device.{device:?}] with this sink's secret; its frames wait in the spool",
            self.settings.sink,
            self.upstreams.name(target)
        );
        self.warn(line, now);
        let wait = self
            .devices
            .get_mut(&device)
            .map_or(Duration::from_secs(1), |d| d.backoff.next());
        self.close(token, Some(wait), now);
    }

    /// Closes a link and gives its claimed frames back to the spool.
    fn close(&mut self, token: Token, retry_in: Option<Duration>, now: Instant) {
        let Some(mut link) = self.links.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut link.stream);
        self.dirty.remove(&token);
        if let Some(d) = self.devices.get_mut(&link.device) {
            d.link = None;
            d.not_before = retry_in.map(|wait| now + wait);
        }
        // Marks the device fresh if it still has frames, so it asks for a link again.
        self.spool.release(&link.device);
    }

    fn timers(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut lost = Vec::new();
        let mut idle = Vec::new();
        for (&token, link) in &mut self.links {
            match link.phase {
                Phase::Connecting(deadline) | Phase::Opening(deadline) if now >= deadline => {
                    expired.push(token)
                }
                Phase::Connecting(_) | Phase::Opening(_) => {}
                Phase::Open => {
                    let heartbeat = link.limits.heartbeat;
                    if now.duration_since(link.last_rx) >= heartbeat * 3 {
                        lost.push((
                            token,
                            format!("the upstream was silent for {:?}", heartbeat * 3),
                        ));
                    } else if now.duration_since(link.last_tx) >= heartbeat {
                        link.session.ping();
                        self.dirty.insert(token);
                    }
                    if link.paused_until.is_some_and(|t| t <= now) {
                        link.paused_until = None;
                        self.dirty.insert(token);
                    }
                    if link.in_flight.is_empty() && now.duration_since(link.idle_since) >= LINK_IDLE
                    {
                        idle.push(token);
                    }
                }
            }
        }
        for token in expired {
            let why = format!(
                "no session within connect_timeout ({:?})",
                self.settings.connect_timeout
            );
            self.attempt_failed(token, &why, now);
        }
        for (token, why) in lost {
            self.link_lost(token, &why, now);
        }
        for token in idle {
            let quiet = self
                .links
                .get(&token)
                .is_some_and(|l| !self.spool.has_unclaimed(&l.device));
            if quiet {
                self.close(token, None, now);
            }
        }
        // Devices with neither frames nor a link are forgotten.
        self.devices
            .retain(|_, d| d.wants || d.link.is_some() || d.not_before.is_some_and(|t| t > now));
    }

    /// A device id the upstream cannot take (the sink refuses these at commit; a spool from
    /// an older version might hold some): its frames leave the spool.
    fn drop_device_frames(&mut self, device: &Arc<str>, why: &str) {
        let mut dropped = 0;
        while let Some(claim) = self.spool.claim_next(device) {
            self.spool.reject(device, claim.seq);
            dropped += 1;
        }
        log::error!(
            "forward sink {:?}: device id {device:?} cannot be forwarded ({why}); its {dropped} frame(s) are removed from the spool",
            self.settings.sink
        );
        self.devices.remove(device);
    }

    /// Logs a warning, at most [`WARNINGS_PER_MINUTE`] a minute.
    fn warn(&mut self, line: String, now: Instant) {
        let (start, logged, held) = &mut self.warnings;
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *logged = 0;
        }
        if *logged >= WARNINGS_PER_MINUTE {
            *held += 1;
            return;
        }
        *logged += 1;
        if *held > 0 {
            log::warn!("{line} ({held} more such line(s) were not logged)");
            *held = 0;
        } else {
            log::warn!("{line}");
        }
    }
}

/// The frame's metadata with `via` added: appended as an entry, or, when the frame passed a
/// gateway already, joined to that entry's value with a comma. Left as it was (warned once)
/// when the addition would break the protocol's metadata limits.
fn with_via(
    meta: &[(String, String)],
    via: Option<&str>,
    warned: &mut bool,
    sink: &str,
) -> Vec<(String, String)> {
    let Some(via) = via else {
        return meta.to_vec();
    };
    let mut out = meta.to_vec();
    match out.iter_mut().find(|(k, _)| k == "via") {
        Some((_, value)) => {
            value.push(',');
            value.push_str(via);
        }
        None => out.push(("via".to_string(), via.to_string())),
    }
    let fits = FrameHeader {
        seq: 1,
        captured_us: 0,
        content_type: crate::protocol::ContentType::Unknown,
        meta: out,
        payload_len: 0,
        crc32c: 0,
    };
    if fits.check().is_ok() {
        return fits.meta;
    }
    if !*warned {
        *warned = true;
        log::warn!(
            "forward sink {sink:?}: a frame's metadata has no room for via = {via:?}; such frames are forwarded without it (logged once)"
        );
    }
    meta.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_is_added_or_joined_and_never_breaks_the_limits() {
        let mut warned = false;
        let meta = vec![("exp".to_string(), "10ms".to_string())];
        assert_eq!(with_via(&meta, None, &mut warned, "up"), meta);
        assert_eq!(
            with_via(&meta, Some("gw-1"), &mut warned, "up"),
            [
                ("exp".to_string(), "10ms".to_string()),
                ("via".to_string(), "gw-1".to_string())
            ]
        );
        let passed = vec![("via".to_string(), "gw-1".to_string())];
        assert_eq!(
            with_via(&passed, Some("gw-2"), &mut warned, "up"),
            [("via".to_string(), "gw-1,gw-2".to_string())]
        );
        let full: Vec<_> = (0..16)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(with_via(&full, Some("gw"), &mut warned, "up"), full);
        assert!(warned);
    }
}
