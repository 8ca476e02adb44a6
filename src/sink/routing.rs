//! Which frames a sink takes (`match = { devices, listeners, formats }`): every frame goes to
//! every sink whose match accepts it; a sink without `match` takes all.

use image::ImageFormat;

use crate::frame::{format_name, Frame};

/// What routing looks at: known before a frame is numbered, so admission can check the room
/// of exactly the sinks a frame will go to.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The device id.
    pub device: &'a str,
    /// The listener's name.
    pub listener: &'a str,
    /// The image format its magic bytes name.
    pub format: Option<ImageFormat>,
}

impl<'a> Route<'a> {
    /// The route of a frame.
    pub fn of(frame: &'a Frame) -> Route<'a> {
        Route {
            device: &frame.device,
            listener: &frame.listener,
            format: frame.format,
        }
    }
}

/// A sink's `match`; an empty list accepts anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// Device id globs (`door-*`, `cam-?`, `[ab]-cam`).
    pub devices: Vec<glob::Pattern>,
    /// Listener names.
    pub listeners: Vec<String>,
    /// Format names as `{format}` renders them: `jpeg`, `png`, …, `unknown`.
    pub formats: Vec<String>,
}

impl Match {
    /// True when the sink takes `frame`.
    pub fn accepts(&self, frame: &Frame) -> bool {
        self.takes(&Route::of(frame))
    }

    /// True when the sink takes frames on `route`.
    pub fn takes(&self, route: &Route) -> bool {
        (self.devices.is_empty() || self.devices.iter().any(|p| p.matches(route.device)))
            && (self.listeners.is_empty() || self.listeners.iter().any(|l| l == route.listener))
            && (self.formats.is_empty() || self.formats.contains(&format_name(route.format)))
    }

    /// The format names `formats` may use.
    pub fn known_formats() -> Vec<String> {
        let mut names: Vec<String> = image::ImageFormat::all()
            .map(|f| format!("{f:?}").to_ascii_lowercase())
            .collect();
        names.push("unknown".into());
        names
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;

    fn frame(device: &str, listener: &str, payload: &[u8]) -> Frame {
        Frame {
            listener: Arc::from(listener),
            device: Arc::from(device),
            peer: "127.0.0.1:9".parse().unwrap(),
            seq: 1,
            received_at: SystemTime::now(),
            format: crate::framing::signature::image_format(payload),
            payload: payload.to_vec(),
            native: None,
        }
    }

    #[test]
    fn every_list_must_accept() {
        let jpeg = b"\xff\xd8\xff\xe0 jpeg";
        let m = Match {
            devices: vec![glob::Pattern::new("door-*").unwrap()],
            listeners: vec!["lan".into()],
            formats: vec!["jpeg".into()],
        };
        assert!(m.accepts(&frame("door-1", "lan", jpeg)));
        assert!(!m.accepts(&frame("yard-1", "lan", jpeg)));
        assert!(!m.accepts(&frame("door-1", "wan", jpeg)));
        assert!(!m.accepts(&frame("door-1", "lan", b"\x89PNG\r\n\x1a\n")));
        assert!(Match::default().accepts(&frame("x", "y", b"?")));
        assert!(Match {
            formats: vec!["unknown".into()],
            ..Match::default()
        }
        .accepts(&frame("x", "y", b"not an image")));
        assert!(Match::known_formats().contains(&"webp".to_string()));
    }
}
