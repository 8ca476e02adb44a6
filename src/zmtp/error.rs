//! Why a ZMTP connection cannot go on: one enum, worded for a log line.

use std::fmt;

use crate::framing::hex;

/// The part of the stream a size limit applies to, named in [`ZmtpError::Oversize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A ZMTP command (READY, PING, ...): bounded by [`super::MAX_COMMAND_BYTES`].
    Command,
    /// An envelope frame before a request's empty delimiter: bounded by
    /// [`super::MAX_ROUTING_ID_BYTES`].
    RoutingId,
    /// imagezmq's JSON metadata frame: bounded by [`super::MAX_METADATA_BYTES`].
    Metadata,
    /// The image frame (JPEG bytes or raw array): bounded by `max_frame_bytes`.
    Image,
}

impl Part {
    fn what(self) -> &'static str {
        match self {
            Part::Command => "ZMTP command",
            Part::RoutingId => "routing-id frame",
            Part::Metadata => "imagezmq JSON metadata frame",
            Part::Image => "image frame",
        }
    }

    fn limit_name(self) -> &'static str {
        match self {
            Part::Image => "max_frame_bytes",
            Part::Command => "framegate's MAX_COMMAND_BYTES",
            Part::RoutingId => "framegate's MAX_ROUTING_ID_BYTES",
            Part::Metadata => "framegate's MAX_METADATA_BYTES",
        }
    }
}

/// Why a peer's byte stream cannot be served. Every variant ends the connection, and
/// [`super::ZmtpServer::feed`] returns the same error again on every later call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZmtpError {
    /// The first bytes are not a ZMTP 3 signature (`ff`, 8 padding bytes, `7f`).
    NotZmtp {
        /// The greeting up to the offending byte: 1 byte (not `ff`) or 10 (no `7f`).
        first_bytes: Vec<u8>,
    },
    /// The peer's greeting announces ZMTP 1.x or 2.x.
    UnsupportedVersion {
        /// The major version byte the peer sent.
        major: u8,
    },
    /// The peer asks for a security mechanism other than NULL (PLAIN, CURVE, GSSAPI).
    UnsupportedMechanism {
        /// The mechanism name, printable characters only.
        mechanism: String,
    },
    /// A frame's flags byte has bits set that ZMTP 3 reserves (bits 3-7).
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A frame announced more bytes than its part may have; nothing was allocated for it.
    Oversize {
        /// Which limit applies.
        part: Part,
        /// The size the frame header announced.
        announced: u64,
        /// The limit.
        max: u64,
    },
    /// A command frame could not be parsed (names the command and what is wrong).
    MalformedCommand {
        /// What was wrong.
        reason: String,
    },
    /// Before the peer's READY, something other than a READY arrived.
    ExpectedReady {
        /// What came instead: a command name, or "a message frame".
        got: String,
    },
    /// The peer's READY has no Socket-Type property.
    MissingSocketType,
    /// The peer's socket type cannot talk to a REP socket.
    IncompatibleSocketType {
        /// The Socket-Type the peer announced.
        socket_type: String,
    },
    /// The peer sent a ZMTP ERROR command.
    PeerError {
        /// The reason it gave.
        reason: String,
    },
    /// A second READY after the handshake.
    DuplicateReady,
    /// A request has no empty delimiter frame where REQ puts one.
    NoDelimiter {
        /// Why the frame seen cannot be part of an envelope.
        detail: String,
    },
    /// After the delimiter, a request must have exactly two parts (JSON metadata, image).
    PartCount {
        /// How many parts after the delimiter the request had (3 means "3 or more").
        parts: usize,
    },
    /// The JSON metadata frame is not what imagezmq sends.
    BadMetadata {
        /// What was wrong (from the JSON parser, or which field).
        reason: String,
        /// The start of the frame, for the log line.
        json_start: String,
    },
    /// An array's data frame does not hold `shape` × dtype's item size bytes.
    ArraySize {
        /// The dtype the metadata names.
        dtype: String,
        /// The shape the metadata names.
        shape: Vec<usize>,
        /// The bytes that shape and dtype need (`None` when the product overflows).
        expected: Option<u64>,
        /// The bytes the data frame announced.
        announced: u64,
    },
    /// The image frame is empty.
    EmptyImage {
        /// The name from the metadata.
        name: String,
    },
    /// A new request began before [`super::ZmtpServer::reply_ok`] answered the previous one.
    RequestBeforeReply,
    /// The peer keeps sending commands that need answers while our output is not written.
    OutputBacklog {
        /// Bytes queued for the peer.
        queued: usize,
    },
    /// The stream ended in the middle of something.
    Truncated {
        /// Where: "the greeting (12 of 64 bytes)", "a frame header", "a request", ...
        inside: String,
    },
}

impl fmt::Display for ZmtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZmtpError::NotZmtp { first_bytes } => write!(
                f,
                "zmtp: first bytes {} ({:?}) are not a ZMTP 3 greeting (ff, 8 padding bytes, 7f); is the peer an imagezmq/ZeroMQ client?",
                hex(first_bytes),
                first_bytes.escape_ascii().to_string()
            ),
            ZmtpError::UnsupportedVersion { major } => write!(
                f,
                "zmtp: peer speaks ZMTP major version {major}; framegate needs ZMTP 3 (libzmq >= 4.0, pyzmq >= 14)"
            ),
            ZmtpError::UnsupportedMechanism { mechanism } => write!(
                f,
                "zmtp: peer asks for security mechanism {mechanism:?}; framegate supports only NULL (no CURVE/PLAIN options on the client)"
            ),
            ZmtpError::ReservedFlags { flags } => write!(
                f,
                "zmtp: frame flags 0x{flags:02x} have reserved bits (3-7) set"
            ),
            ZmtpError::Oversize {
                part,
                announced,
                max,
            } => write!(
                f,
                "zmtp: {} of {announced} bytes exceeds {} = {max}",
                part.what(),
                part.limit_name()
            ),
            ZmtpError::MalformedCommand { reason } => write!(f, "zmtp: malformed command: {reason}"),
            ZmtpError::ExpectedReady { got } => write!(
                f,
                "zmtp: expected the peer's READY command, got {got}"
            ),
            ZmtpError::MissingSocketType => {
                write!(f, "zmtp: peer's READY has no Socket-Type property")
            }
            ZmtpError::IncompatibleSocketType { socket_type } => write!(
                f,
                "zmtp: peer socket type {socket_type:?} cannot talk to framegate's REP socket; use REQ (imagezmq's ImageSender default) or DEALER"
            ),
            ZmtpError::PeerError { reason } => write!(f, "zmtp: peer sent ERROR: {reason:?}"),
            ZmtpError::DuplicateReady => write!(f, "zmtp: peer sent a second READY"),
            ZmtpError::NoDelimiter { detail } => write!(
                f,
                "zmtp: request has no empty delimiter frame (REQ always sends one): {detail}"
            ),
            ZmtpError::PartCount { parts } => {
                let count = if *parts > 2 {
                    "more than 2".to_string()
                } else {
                    parts.to_string()
                };
                write!(
                    f,
                    "zmtp: request has {count} part(s) after the delimiter; imagezmq sends 2 (JSON metadata, image)"
                )
            }
            ZmtpError::BadMetadata { reason, json_start } => write!(
                f,
                "zmtp: imagezmq metadata {json_start:?} is not usable: {reason}"
            ),
            ZmtpError::ArraySize {
                dtype,
                shape,
                expected: Some(expected),
                announced,
            } => write!(
                f,
                "zmtp: array metadata says shape {shape:?} of {dtype} = {expected} bytes, but the data frame has {announced} bytes"
            ),
            ZmtpError::ArraySize {
                dtype,
                shape,
                expected: None,
                announced,
            } => write!(
                f,
                "zmtp: array metadata shape {shape:?} of {dtype} overflows a byte count (data frame has {announced} bytes)"
            ),
            ZmtpError::EmptyImage { name } => {
                write!(f, "zmtp: request {name:?} has an empty image frame")
            }
            ZmtpError::RequestBeforeReply => write!(
                f,
                "zmtp: peer sent a new request before the reply to its previous one (REQ/REP is lockstep)"
            ),
            ZmtpError::OutputBacklog { queued } => write!(
                f,
                "zmtp: peer keeps sending PINGs while {queued} bytes of replies to it are unwritten"
            ),
            ZmtpError::Truncated { inside } => write!(f, "zmtp: stream ended inside {inside}"),
        }
    }
}

impl std::error::Error for ZmtpError {}
