//! Sans-IO HTTP/1.1 for `framing = "http"` listeners: requests in ([`request`], with
//! [`chunked`] bodies and [`multipart`] uploads), response heads out ([`response`]).
//!
//! No socket and no clock here: the event loop's HTTP connections (`net::http`) feed bytes
//! in and write what comes out, and the fuzz target drives the same code with plain slices.

pub mod chunked;
pub mod multipart;
pub mod request;
pub mod response;

#[cfg(test)]
mod tests;

pub use self::request::{Event, Fed, Head, HttpError, Limits, Request, RequestDecoder};
