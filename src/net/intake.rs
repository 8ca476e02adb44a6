//! Admission: turning a complete payload into a numbered [`Frame`] and queueing it for the
//! sinks, or refusing it for now so the connection pauses.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::connection::{Admit, Peer, Received};
use crate::frame::Frame;
use crate::framing::signature;
use crate::identity::{Reservations, Sequences};
use crate::sink::pool::SinkPool;

/// Everything admission needs, owned by the event loop.
pub struct Intake {
    /// The sinks' queues.
    pub pool: SinkPool,
    /// Per-device sequence counters.
    pub sequences: Sequences,
    /// Where reservations go to be made durable.
    pub reservations: Sender<Reservations>,
}

impl Intake {
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
        if !self.pool.has_room() {
            return Err(frame);
        }
        let seq = self.sequences.next(&peer.device);
        self.request_reservations();
        let Some(seq) = seq else {
            return Err(frame);
        };
        let format = signature::image_format(&frame.payload);
        self.pool.submit(Arc::new(Frame {
            listener: peer.listener_name.clone(),
            device: peer.device.clone(),
            peer: peer.addr,
            seq,
            received_at: frame.at,
            format,
            payload: frame.payload,
        }));
        Ok(())
    }
}
