//! Who sent a frame, and its number: device names and per-device sequence numbers.

pub mod committed;
mod devices;
mod durable;
mod sequences;
mod store;

pub use self::devices::{canonical, DeviceNames};
pub use self::sequences::{Reservations, Sequences, RESERVE_BLOCK};
pub use self::store::{SequenceStore, StoreError};
