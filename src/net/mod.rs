//! The mio shell around the sans-IO decoders: listeners, connections, the event loop.

pub mod connection;
pub mod intake;
pub mod limits;
pub mod listener;
pub mod server;

pub use self::server::{Server, StartError};
