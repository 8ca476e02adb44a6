//! framegate: receives images and camera frames from many devices over TCP and hands every
//! complete frame to the sinks its configuration names.
#![deny(missing_docs)]

pub mod config;
pub mod frame;
pub mod framing;
pub mod heap;
pub mod http;
pub mod identity;
pub mod logging;
pub mod net;
pub mod notify;
pub mod protocol;
pub mod send;
pub mod sink;
pub mod status;
pub mod zmtp;
