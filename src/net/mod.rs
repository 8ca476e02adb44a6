//! The mio shell around the sans-IO decoders: listeners, connections, the event loop.

pub mod activation;
pub mod codec;
pub mod connection;
pub mod control;
pub mod http;
pub mod imagezmq;
pub mod intake;
pub mod limits;
pub mod listener;
pub mod native;
pub mod ratelimit;
pub mod reload;
pub mod replies;
pub mod server;

pub use self::server::{Server, StartError};
