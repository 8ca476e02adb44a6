//! The native framegate protocol: acknowledged frames with device ids, sequence numbers,
//! checksums, metadata and optional challenge–response authentication. The byte layout is
//! specified in docs/PROTOCOL.md; [`wire`] encodes, [`decoder`] decodes (sans-IO).

pub mod decoder;
pub mod wire;

pub use self::decoder::{Decoded, Fed, MessageDecoder, WireError};
pub use self::wire::{ContentType, FrameHeader, Kind, Message, Reason};

#[cfg(test)]
mod tests;
