//! A received frame: its identity and its payload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use image::ImageFormat;

use crate::framing::signature;

/// One complete frame as it travels from the event loop to the sinks.
///
/// Sinks receive it as `Arc<Frame>`, so a frame fanned out to several sinks is stored once.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Name of the listener that received it (`[[listener]] name`).
    pub listener: Arc<str>,
    /// The device: its `[devices]` name, else the peer's IP address as text.
    pub device: Arc<str>,
    /// The TCP peer the frame came from.
    pub peer: SocketAddr,
    /// Per-device sequence number; never repeats for a device, across restarts too.
    pub seq: u64,
    /// When the frame's last byte arrived.
    pub received_at: SystemTime,
    /// The image format its magic bytes name, if any.
    pub format: Option<ImageFormat>,
    /// The payload exactly as the device sent it.
    pub payload: Vec<u8>,
    /// What the native protocol adds: capture time, metadata, and where the ACK goes.
    /// `None` for legacy framings.
    pub native: Option<NativeOrigin>,
}

/// The native-protocol part of a frame's identity (`seq` is then the device's own number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOrigin {
    /// Capture time in microseconds since the Unix epoch, as the device stated it (0: unknown).
    pub captured_us: u64,
    /// The device's metadata, in its order.
    pub meta: Vec<(String, String)>,
    /// The event loop's token of the connection that waits for the ACK.
    pub reply_to: usize,
}

impl Frame {
    /// Payload size in bytes.
    pub fn size(&self) -> usize {
        self.payload.len()
    }

    /// File extension for the payload: `jpg`, `png`, … or `bin` when not an image.
    pub fn extension(&self) -> &'static str {
        signature::extension(self.format)
    }

    /// The time a frame's paths are named after: the capture time a native device stated,
    /// else the receive time. A resent native frame thus gets the same name as the first
    /// copy, which lets the file sink recognise it as stored already.
    pub fn stamp(&self) -> SystemTime {
        match &self.native {
            Some(origin) if origin.captured_us > 0 => {
                SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(origin.captured_us)
            }
            _ => self.received_at,
        }
    }

    /// Short human name of the format, for logs: `jpeg`, `png`, … or `unknown`.
    pub fn format_name(&self) -> String {
        format_name(self.format)
    }
}

/// Short human name of a format, for logs and `match`: `jpeg`, `png`, … or `unknown`.
pub fn format_name(format: Option<ImageFormat>) -> String {
    match format {
        Some(f) => format!("{f:?}").to_ascii_lowercase(),
        None => "unknown".to_string(),
    }
}

impl Frame {
    /// A copy of everything but the payload (which is left empty), for sinks that replace it.
    pub fn clone_without_payload(&self) -> Frame {
        Frame {
            listener: self.listener.clone(),
            device: self.device.clone(),
            peer: self.peer,
            seq: self.seq,
            received_at: self.received_at,
            format: self.format,
            payload: Vec::new(),
            native: self.native.clone(),
        }
    }

    /// Width and height in pixels, read from the image's header (no decoding); `None` when the
    /// payload is not an image the `image` crate can read the header of.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        let format = self.format?;
        image::ImageReader::with_format(std::io::Cursor::new(&self.payload), format)
            .into_dimensions()
            .ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A legacy frame from device `cam` carrying `payload`, for sink unit tests.
    pub(crate) fn frame_with(payload: Vec<u8>) -> Frame {
        Frame {
            listener: Arc::from("lan"),
            device: Arc::from("cam"),
            peer: "127.0.0.1:40000".parse().unwrap(),
            seq: 7,
            received_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            format: signature::image_format(&payload),
            payload,
            native: None,
        }
    }
}
