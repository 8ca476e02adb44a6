//! Admission: turning a complete payload into a numbered [`Frame`] and queueing it for the
//! sinks, or refusing it for now so the connection pauses.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use image::ImageFormat;

use super::connection::{Admit, Origin, Peer, Received};
use super::native::Directory;
use crate::frame::{Frame, NativeOrigin};
use crate::framing::signature;
use crate::identity::committed::{Committed, Recorder};
use crate::identity::{Reservations, Sequences};
use crate::sink::pool::SinkPool;
use crate::sink::routing::Route;
use crate::status::DeviceCounters;

/// Everything admission needs, owned by the event loop.
pub struct Intake {
    /// The sinks' queues.
    pub pool: SinkPool,
    /// Per-device sequence counters.
    pub sequences: Sequences,
    /// Where reservations go to be made durable.
    pub reservations: Sender<Reservations>,
    /// Native devices' secrets and committed sequence numbers.
    pub native: NativeDevices,
    /// imagezmq frames in the sinks (by the frame's address) → the connection waiting for
    /// the reply.
    pub replies: HashMap<usize, usize>,
    /// Per-device counters for `framegate status`.
    pub devices: DeviceCounters,
    /// Frames done without (more) sink reports, and their failure if any: matched no sink,
    /// or dropped by every sink that took them. The loop answers their devices.
    pub finished: Vec<(Arc<Frame>, Option<String>)>,
    /// Native frames NACKed this turn for their device's own fault: the device and a log
    /// line naming the peer, for the loop to log (rate-limited per device).
    pub refusals: Vec<(Arc<str>, String)>,
    /// Devices whose unmatched frames were logged already.
    pub unmatched_logged: std::collections::HashSet<Arc<str>>,
    /// Frames in the sinks (by the frame's address): sinks still to report, first failure.
    /// Counted at submission, so a reload that changes the sinks meanwhile cannot confuse it.
    pub outstanding: HashMap<usize, (usize, Option<String>)>,
    /// The durable record of native commits, which a sink's worker writes to when its sink
    /// alone takes a native frame.
    pub recorder: Arc<Recorder>,
}

/// What the loop knows about native-protocol devices.
#[derive(Debug, Default)]
pub struct NativeDevices {
    /// Device id → secret.
    pub secrets: HashMap<String, Vec<u8>>,
    /// Committed sequence numbers per device.
    pub committed: Committed,
    /// Frames in the sinks, by device and number, with the connections waiting for their ACK:
    /// a frame resent on a new connection while the first copy is still being committed
    /// waits for that copy instead of being stored twice.
    pub in_flight: HashMap<(Arc<str>, u64), Waiting>,
}

/// The connections waiting for one native frame's commit: the one that sent it, and any that
/// resent it meanwhile (rare: `resent` stays empty and unallocated).
#[derive(Debug)]
pub struct Waiting {
    /// The connection the frame came in on.
    pub sender: usize,
    /// Connections that sent it again while it was in the sinks.
    pub resent: Vec<usize>,
}

impl Waiting {
    /// Every waiting connection, the sender first.
    pub fn connections(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.sender).chain(self.resent.iter().copied())
    }
}

impl Directory for NativeDevices {
    fn secret(&self, device: &str) -> Option<&[u8]> {
        self.secrets.get(device).map(Vec::as_slice)
    }
    fn committed_through(&self, device: &str) -> u64 {
        self.committed.highest(device)
    }
    fn is_committed(&self, device: &str, seq: u64) -> bool {
        self.committed.contains(device, seq)
    }
}

impl Intake {
    fn submit(&mut self, frame: Arc<Frame>) {
        let key = Arc::as_ptr(&frame) as usize;
        let recorder = frame.native.is_some().then_some(&self.recorder);
        let submitted = self.pool.submit(frame.clone(), recorder);
        for (old, why) in submitted.evicted {
            self.settle_one(&old, why);
        }
        if submitted.sinks > 0 {
            self.outstanding.insert(key, (submitted.sinks, None));
            return;
        }
        if self.pool.matches_any(&frame) {
            // Every sink that takes it was full and drops rather than blocks.
            let why = "every sink that takes it was full (when_full drops)".to_string();
            self.finished.push((frame, Some(why)));
            return;
        }
        // No sink's `match` takes it: nothing to store; it is done (and acknowledged) as is.
        self.devices.unmatched(&frame.device);
        if self.unmatched_logged.insert(frame.device.clone()) {
            log::warn!(
                "frame {}#{} ({}, on {:?}) matches no sink and is not stored; counted in status, logged once per device",
                frame.device,
                frame.seq,
                frame.format_name(),
                &*frame.listener
            );
        }
        self.finished.push((frame, None));
    }

    /// One sink will never report on `frame` (it dropped it): count that as its report.
    fn settle_one(&mut self, frame: &Arc<Frame>, why: String) {
        let key = Arc::as_ptr(frame) as usize;
        let Some(entry) = self.outstanding.get_mut(&key) else {
            return;
        };
        entry.0 -= 1;
        entry.1.get_or_insert(why);
        if entry.0 == 0 {
            let (_, failure) = self.outstanding.remove(&key).expect("just seen");
            self.finished.push((frame.clone(), failure));
        }
    }

    /// A native frame: the device numbers it itself, and its ACK goes back to its connection.
    /// A resend of a frame still in the sinks waits for that copy. Never refused: the caller
    /// checked for room.
    fn admit_native(&mut self, peer: &Peer, frame: Received, format: Option<ImageFormat>) {
        let Origin::Native(device, header) = frame.origin else {
            unreachable!("called for native frames only");
        };
        match self.native.in_flight.entry((device.clone(), header.seq)) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().resent.push(peer.conn);
                return;
            }
            Entry::Vacant(slot) => {
                slot.insert(Waiting {
                    sender: peer.conn,
                    resent: Vec::new(),
                });
            }
        }
        self.devices.frame(&device, frame.payload.len(), frame.at);
        self.submit(Arc::new(Frame {
            listener: peer.listener_name.clone(),
            device,
            peer: peer.addr,
            seq: header.seq,
            received_at: frame.at,
            format,
            payload: frame.payload,
            native: Some(NativeOrigin {
                captured_us: header.captured_us,
                meta: header.meta,
                reply_to: peer.conn,
            }),
        }));
    }

    /// Sends reservations the counters asked for to the store's thread.
    fn request_reservations(&mut self) {
        let wanted = self.sequences.take_wanted();
        if !wanted.is_empty() {
            // The store thread lives as long as the loop; if it died, frames simply wait and
            // the failure was logged where it happened.
            let _ = self.reservations.send(wanted);
        }
    }
}

impl Admit for Intake {
    fn admit(&mut self, peer: &Peer, frame: Received) -> Result<(), Received> {
        // Room first: a number is handed out only to a frame that is certain to be queued.
        // Only the sinks this frame goes to count: a full sink holds back only its devices.
        let device = match &frame.origin {
            Origin::Native(device, _) => device.clone(),
            Origin::Legacy => peer.device.clone(),
            Origin::Imagezmq(name) | Origin::Http(name) => name.clone(),
        };
        let format = signature::image_format(&frame.payload);
        let route = Route {
            device: &device,
            listener: &peer.listener_name,
            format,
        };
        if !self.pool.has_room_for(&route) {
            return Err(frame);
        }
        if let Origin::Native(..) = frame.origin {
            self.admit_native(peer, frame, format);
            return Ok(());
        }
        let seq = self.sequences.next(&device);
        self.request_reservations();
        let Some(seq) = seq else {
            return Err(frame);
        };
        self.devices.frame(&device, frame.payload.len(), frame.at);
        let answer = matches!(frame.origin, Origin::Imagezmq(_) | Origin::Http(_));
        let frame = Arc::new(Frame {
            listener: peer.listener_name.clone(),
            device,
            peer: peer.addr,
            seq,
            received_at: frame.at,
            format,
            payload: frame.payload,
            native: None,
        });
        if answer {
            // imagezmq's sender and an HTTP upload wait for their reply until the sinks are
            // done with this frame.
            self.replies.insert(Arc::as_ptr(&frame) as usize, peer.conn);
        }
        self.submit(frame);
        Ok(())
    }

    fn directory(&self) -> &dyn Directory {
        &self.native
    }

    fn refused(&mut self, peer: &Peer, device: &Arc<str>, line: String) {
        self.devices.error(device);
        self.refusals.push((
            device.clone(),
            format!("connection from {} (device {device}): {line}", peer.addr),
        ));
    }
}
