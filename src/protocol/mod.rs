//! The native framegate protocol: acknowledged frames with device ids, sequence numbers,
//! checksums, metadata and optional challenge–response authentication. The byte layout is
//! specified in docs/PROTOCOL.md; [`wire`] encodes, [`decoder`] decodes (sans-IO), [`client`]
//! is a device's side of a session (sans-IO), as the forward sink speaks it.

pub mod client;
pub mod decoder;
pub mod wire;

pub use self::decoder::{Decoded, Fed, MessageDecoder, WireError};
pub use self::wire::{ContentType, FrameHeader, Kind, Message, Reason};

#[cfg(test)]
mod tests;
