//! The native protocol's messages and their byte layout (docs/PROTOCOL.md), shared by the
//! daemon and `framegate send`.
//!
//! Every message is an 8-byte header (magic `FG`, version, type, body length, little-endian)
//! and a body. Encoding writes into a caller's `Vec`; decoding is [`super::decoder`]'s job.

use std::fmt;

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"FG";
/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes in a message header.
pub const HEADER_LEN: usize = 8;
/// Longest device id, in UTF-8 bytes.
pub const MAX_DEVICE_ID: usize = 64;
/// Most metadata entries on one frame.
pub const MAX_META_ENTRIES: usize = 16;
/// Most metadata bytes (keys, values and their lengths) on one frame.
pub const MAX_META_BYTES: usize = 4096;
/// Longest reason text in a NACK or GOODBYE.
pub const MAX_TEXT: usize = 255;
/// Bytes of a FRAME body before its metadata.
pub const FRAME_FIXED_LEN: usize = 28;
/// Largest payload a FRAME can carry with room for the most metadata: the body length is 4
/// bytes.
pub const MAX_PAYLOAD: u64 = u32::MAX as u64 - FRAME_FIXED_LEN as u64 - MAX_META_BYTES as u64;
/// Bytes of a challenge nonce and of an HMAC-SHA-256 tag.
pub const NONCE_LEN: usize = 32;
/// Largest body of any message but FRAME; bounds what the decoder buffers for them.
pub const MAX_CONTROL_BODY: usize = 2 + MAX_TEXT + 8;

/// What the first bytes of a native connection are: `FG`, version 1, HELLO. `auto` listeners
/// recognise the native protocol by them.
pub const HELLO_PREFIX: [u8; 4] = [MAGIC[0], MAGIC[1], VERSION, Kind::Hello as u8];

/// Message types (header byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Device → server: who I am.
    Hello = 0x01,
    /// Server → device: prove you hold the secret.
    Challenge = 0x02,
    /// Device → server: HMAC-SHA-256 over the challenge.
    Auth = 0x03,
    /// Server → device: accepted; limits and resume point.
    Welcome = 0x04,
    /// Device → server: one frame.
    Frame = 0x10,
    /// Server → device: the frame is committed by every sink that takes it.
    Ack = 0x11,
    /// Server → device: the frame was not stored, and why.
    Nack = 0x12,
    /// Either way: are you there?
    Ping = 0x20,
    /// Either way: yes.
    Pong = 0x21,
    /// Server → device: the connection ends, and why.
    Goodbye = 0x7f,
}

impl Kind {
    /// The type with this code.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0x01 => Kind::Hello,
            0x02 => Kind::Challenge,
            0x03 => Kind::Auth,
            0x04 => Kind::Welcome,
            0x10 => Kind::Frame,
            0x11 => Kind::Ack,
            0x12 => Kind::Nack,
            0x20 => Kind::Ping,
            0x21 => Kind::Pong,
            0x7f => Kind::Goodbye,
            _ => return None,
        })
    }
}

/// Why a frame or a connection was refused. The device uses it to decide whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// The payload is larger than the server's `max_frame_bytes`. Do not retry as is.
    TooLarge = 1,
    /// The payload's CRC-32C did not match. Retry: the bytes were damaged on the way.
    ChecksumMismatch = 2,
    /// A sink failed to commit the frame (disk full, …). Retry later.
    RejectedBySink = 3,
    /// Unknown device, wrong secret, or not allowed from this address. Do not retry.
    NotAuthorised = 4,
    /// The server is shutting down. Retry later or elsewhere.
    ShuttingDown = 5,
    /// The message broke the protocol (a bug in the device). Do not retry as is.
    Malformed = 6,
    /// More frames in flight than WELCOME allowed. Retry after ACKs arrive.
    WindowExceeded = 7,
}

impl Reason {
    /// The reason with this code; unknown codes read as [`Reason::Malformed`].
    pub fn from_code(code: u8) -> Reason {
        match code {
            1 => Reason::TooLarge,
            2 => Reason::ChecksumMismatch,
            3 => Reason::RejectedBySink,
            4 => Reason::NotAuthorised,
            5 => Reason::ShuttingDown,
            7 => Reason::WindowExceeded,
            _ => Reason::Malformed,
        }
    }

    /// True when sending the same frame again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Reason::ChecksumMismatch
                | Reason::RejectedBySink
                | Reason::ShuttingDown
                | Reason::WindowExceeded
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::TooLarge => "too large",
            Reason::ChecksumMismatch => "checksum mismatch",
            Reason::RejectedBySink => "rejected by a sink",
            Reason::NotAuthorised => "not authorised",
            Reason::ShuttingDown => "server shutting down",
            Reason::Malformed => "malformed message",
            Reason::WindowExceeded => "too many frames in flight",
        })
    }
}

/// A frame's content type (FRAME byte 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ContentType {
    /// Not stated: the server detects the format from the magic bytes.
    Unknown = 0,
    /// image/jpeg
    Jpeg = 1,
    /// image/png
    Png = 2,
    /// image/gif
    Gif = 3,
    /// image/bmp
    Bmp = 4,
    /// image/webp
    Webp = 5,
    /// image/tiff
    Tiff = 6,
    /// Anything else (application/octet-stream).
    Other = 7,
}

impl ContentType {
    /// The content type with this code; unknown codes read as [`ContentType::Unknown`].
    pub fn from_code(code: u8) -> ContentType {
        match code {
            1 => ContentType::Jpeg,
            2 => ContentType::Png,
            3 => ContentType::Gif,
            4 => ContentType::Bmp,
            5 => ContentType::Webp,
            6 => ContentType::Tiff,
            7 => ContentType::Other,
            _ => ContentType::Unknown,
        }
    }

    /// The content type of a payload whose magic bytes name `format` (`None`: unknown, the
    /// server detects it).
    pub fn of_format(format: Option<image::ImageFormat>) -> ContentType {
        match format {
            Some(image::ImageFormat::Jpeg) => ContentType::Jpeg,
            Some(image::ImageFormat::Png) => ContentType::Png,
            Some(image::ImageFormat::Gif) => ContentType::Gif,
            Some(image::ImageFormat::Bmp) => ContentType::Bmp,
            Some(image::ImageFormat::WebP) => ContentType::Webp,
            Some(image::ImageFormat::Tiff) => ContentType::Tiff,
            _ => ContentType::Unknown,
        }
    }
}

/// Everything in a FRAME but the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// Device-chosen sequence number, at least 1, increasing per device.
    pub seq: u64,
    /// Capture time in microseconds since the Unix epoch; 0 when unknown.
    pub captured_us: u64,
    /// What the payload is.
    pub content_type: ContentType,
    /// Small key/value text pairs (camera settings, …), in the device's order.
    pub meta: Vec<(String, String)>,
    /// Payload bytes that follow the metadata.
    pub payload_len: u32,
    /// CRC-32C (Castagnoli) of the payload.
    pub crc32c: u32,
}

/// One message. FRAME carries its payload separately ([`super::decoder::Decoded::Frame`]) so
/// it can be received in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Device → server, first message.
    Hello {
        /// The device id (1 to [`MAX_DEVICE_ID`] bytes of UTF-8).
        device: String,
        /// The device holds a secret and will answer a CHALLENGE.
        has_secret: bool,
    },
    /// Server → device.
    Challenge {
        /// Random bytes the AUTH tag must cover.
        nonce: [u8; NONCE_LEN],
    },
    /// Device → server.
    Auth {
        /// [`auth_tag`] of the nonce.
        tag: [u8; NONCE_LEN],
    },
    /// Server → device: the session is open.
    Welcome {
        /// Largest payload the server takes.
        max_frame_bytes: u32,
        /// Most frames a device may send before their ACKs or NACKs arrive.
        max_in_flight: u16,
        /// The server pings after this many seconds of silence and drops a peer silent for
        /// three times as long; the device should do the same.
        heartbeat_secs: u16,
        /// The highest sequence number committed for this device (0: none). Number new
        /// frames above it; resend every frame you still hold unacknowledged (those already
        /// committed are ACKed again without being stored twice).
        committed_through: u64,
    },
    /// Device → server: a frame's header (the payload travels after it).
    Frame(FrameHeader),
    /// Server → device.
    Ack {
        /// The frame's sequence number.
        seq: u64,
    },
    /// Server → device.
    Nack {
        /// The frame's sequence number.
        seq: u64,
        /// Why.
        reason: Reason,
        /// Detail for the device's log (at most [`MAX_TEXT`] bytes).
        text: String,
    },
    /// Either way.
    Ping {
        /// Echoed in the PONG.
        token: u64,
    },
    /// Either way.
    Pong {
        /// The PING's token.
        token: u64,
    },
    /// Server → device: the server closes the connection after this.
    Goodbye {
        /// Why.
        reason: Reason,
        /// Detail for the device's log.
        text: String,
    },
}

impl Message {
    /// The message's type.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello { .. } => Kind::Hello,
            Message::Challenge { .. } => Kind::Challenge,
            Message::Auth { .. } => Kind::Auth,
            Message::Welcome { .. } => Kind::Welcome,
            Message::Frame(_) => Kind::Frame,
            Message::Ack { .. } => Kind::Ack,
            Message::Nack { .. } => Kind::Nack,
            Message::Ping { .. } => Kind::Ping,
            Message::Pong { .. } => Kind::Pong,
            Message::Goodbye { .. } => Kind::Goodbye,
        }
    }

    /// Appends the encoded message to `out`. For [`Message::Frame`] that is the header and
    /// metadata only: append the payload (`payload_len` bytes) right after.
    ///
    /// # Panics
    /// If a field breaks a limit (device id, metadata, text lengths, a FRAME body over
    /// 4 GiB − 1: see [`MAX_PAYLOAD`]): callers build messages from checked values;
    /// [`FrameHeader::check`] checks metadata.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind() as u8);
        out.extend_from_slice(&[0; 4]); // body length, filled in below
        match self {
            Message::Hello { device, has_secret } => {
                assert!(
                    (1..=MAX_DEVICE_ID).contains(&device.len()),
                    "device id length"
                );
                out.push(device.len() as u8);
                out.extend_from_slice(device.as_bytes());
                out.push(u8::from(*has_secret));
            }
            Message::Challenge { nonce: bytes } | Message::Auth { tag: bytes } => {
                out.extend_from_slice(bytes)
            }
            Message::Welcome {
                max_frame_bytes,
                max_in_flight,
                heartbeat_secs,
                committed_through,
            } => {
                out.extend_from_slice(&max_frame_bytes.to_le_bytes());
                out.extend_from_slice(&max_in_flight.to_le_bytes());
                out.extend_from_slice(&heartbeat_secs.to_le_bytes());
                out.extend_from_slice(&committed_through.to_le_bytes());
            }
            Message::Frame(h) => h.encode_body_start(out),
            Message::Ack { seq } => out.extend_from_slice(&seq.to_le_bytes()),
            Message::Nack { seq, reason, text } => {
                out.extend_from_slice(&seq.to_le_bytes());
                push_reason(out, *reason, text);
            }
            Message::Ping { token } | Message::Pong { token } => {
                out.extend_from_slice(&token.to_le_bytes())
            }
            Message::Goodbye { reason, text } => push_reason(out, *reason, text),
        }
        let mut body = (out.len() - start - HEADER_LEN) as u64;
        if let Message::Frame(h) = self {
            body += u64::from(h.payload_len);
        }
        let body = u32::try_from(body).expect("a message body fits the 4-byte length");
        out[start + 4..start + 8].copy_from_slice(&body.to_le_bytes());
    }
}

fn push_reason(out: &mut Vec<u8>, reason: Reason, text: &str) {
    let text = truncate_utf8(text, MAX_TEXT);
    out.push(reason as u8);
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// The longest prefix of `text` within `max` bytes that ends on a character boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl FrameHeader {
    /// Bytes the metadata takes on the wire.
    pub fn meta_len(&self) -> usize {
        self.meta
            .iter()
            .map(|(k, v)| 1 + k.len() + 2 + v.len())
            .sum()
    }

    /// Checks the metadata limits: at most [`MAX_META_ENTRIES`] entries, keys of 1 to 255
    /// bytes, values up to 65,535, [`MAX_META_BYTES`] in all.
    pub fn check(&self) -> Result<(), String> {
        if self.meta.len() > MAX_META_ENTRIES {
            return Err(format!(
                "{} metadata entries, at most {MAX_META_ENTRIES} allowed",
                self.meta.len()
            ));
        }
        if let Some((k, _)) = self
            .meta
            .iter()
            .find(|(k, _)| k.is_empty() || k.len() > 255)
        {
            return Err(format!("metadata key {k:?} must be 1 to 255 bytes"));
        }
        if self.meta_len() > MAX_META_BYTES {
            return Err(format!(
                "{} bytes of metadata, at most {MAX_META_BYTES} allowed",
                self.meta_len()
            ));
        }
        Ok(())
    }

    fn encode_body_start(&self, out: &mut Vec<u8>) {
        self.check().expect("frame metadata within limits");
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.captured_us.to_le_bytes());
        out.push(self.content_type as u8);
        out.push(self.meta.len() as u8);
        out.extend_from_slice(&(self.meta_len() as u16).to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(&self.crc32c.to_le_bytes());
        for (k, v) in &self.meta {
            out.push(k.len() as u8);
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// The AUTH tag: HMAC-SHA-256 keyed with the device's secret over
/// `"framegate-auth-v1" || nonce || device id`, so a tag is bound to one challenge and one
/// device and the secret never crosses the wire.
pub fn auth_tag(secret: &[u8], nonce: &[u8; NONCE_LEN], device: &str) -> [u8; NONCE_LEN] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"framegate-auth-v1");
    mac.update(nonce);
    mac.update(device.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Checks an AUTH tag in constant time.
pub fn verify_auth_tag(secret: &[u8], nonce: &[u8; NONCE_LEN], device: &str, tag: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"framegate-auth-v1");
    mac.update(nonce);
    mac.update(device.as_bytes());
    mac.verify_slice(tag).is_ok()
}

/// CRC-32C of a payload, as FRAME carries it.
pub fn checksum(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}
