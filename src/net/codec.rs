//! What decodes a connection's bytes: a legacy framing decoder, or a native session.

use std::mem::MaybeUninit;

use super::imagezmq::ZmtpSession;
use super::native::NativeSession;
use crate::framing::{Decoder, Event};
use crate::protocol::Decoded;

/// A connection's decoder. `auto` connections start as [`Codec::Legacy`] and become
/// [`Codec::Native`] when the first bytes are a native HELLO.
#[derive(Debug)]
pub enum Codec {
    /// ascii-length, u32le, u32be, or auto still deciding.
    Legacy(Decoder),
    /// The native protocol.
    Native(Box<NativeSession>),
    /// imagezmq (ZMTP).
    Zmtp(Box<ZmtpSession>),
}

/// What a read straight into a payload completed.
#[derive(Debug)]
pub enum Completed {
    /// A legacy frame's payload.
    Legacy(Vec<u8>),
    /// A native FRAME.
    Native(Decoded),
}

impl Codec {
    /// Payload bytes still missing, when a payload is being received.
    pub fn payload_remaining(&self) -> Option<usize> {
        match self {
            Codec::Legacy(d) => d.payload_remaining(),
            Codec::Native(s) => s.decoder.payload_remaining(),
            Codec::Zmtp(_) => None,
        }
    }

    /// The unreceived rest of the payload, for a socket read straight into it.
    pub fn payload_spare(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        match self {
            Codec::Legacy(d) => d.payload_spare(),
            Codec::Native(s) => s.decoder.payload_spare(),
            Codec::Zmtp(_) => None,
        }
    }

    /// Records `n` bytes written into [`Codec::payload_spare`].
    ///
    /// # Safety
    /// As [`Decoder::payload_spare_filled`]: the first `n` bytes of the last spare slice were
    /// written.
    pub unsafe fn payload_spare_filled(&mut self, n: usize) -> Option<Completed> {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match self {
                Codec::Legacy(d) => match d.payload_spare_filled(n) {
                    Some(Event::Frame(payload)) => Some(Completed::Legacy(payload)),
                    _ => None,
                },
                Codec::Native(s) => s.decoder.payload_spare_filled(n).map(Completed::Native),
                Codec::Zmtp(_) => panic!("no spare part on a ZMTP connection"),
            }
        }
    }

    /// True when part of a frame or message has arrived but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        match self {
            Codec::Legacy(d) => d.is_mid_frame(),
            Codec::Native(s) => s.decoder.is_mid_message(),
            Codec::Zmtp(_) => false,
        }
    }

    /// The payload size announced by a frame in progress.
    pub fn announced(&self) -> Option<u64> {
        match self {
            Codec::Legacy(d) => d.announced(),
            Codec::Native(s) => s.decoder.announced(),
            Codec::Zmtp(_) => None,
        }
    }
}
