//! imagezmq's request layout on top of ZMTP message frames.
//!
//! imagezmq's `ImageSender` (REQ) sends, per image, a 2-part message: JSON metadata, then the
//! image. `send_jpg(name, buf)` sends `{"msg": name}` and the encoded bytes;
//! `send_image(name, ndarray)` sends `{"msg": name, "dtype": "uint8", "shape": [h, w, 3]}` and
//! the array's bytes in C order (pyzmq `send_json` = Python `json.dumps`, so `", "` and `": "`
//! separators and `\uXXXX` escapes). REQ puts an empty delimiter frame before them; a ROUTER/
//! DEALER proxy in between adds routing-id frames before that. The envelope (everything up
//! to and including the delimiter) goes back unchanged in front of the reply.

use serde::Deserialize;

use super::array::itemsize;
use super::error::{Part, ZmtpError};
use super::{MAX_ENVELOPE_FRAMES, MAX_METADATA_BYTES, MAX_ROUTING_ID_BYTES};

/// One image an imagezmq client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagezmqFrame {
    /// The `msg` field of the metadata: the client's name for the image or camera. A
    /// non-string `msg` (imagezmq passes any JSON value through) is kept as its JSON text.
    pub name: String,
    /// The image itself.
    pub payload: Payload,
}

/// The image part of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// From `send_jpg`: the bytes as sent (normally JPEG; the format is not checked).
    Jpeg(Vec<u8>),
    /// From `send_image`: a raw numpy array. For the dtypes [`super::array::itemsize`] knows,
    /// `data.len()` was checked to be the product of `shape` times the item size.
    Array {
        /// numpy's dtype name, e.g. `"uint8"`.
        dtype: String,
        /// The array's shape, e.g. `[480, 640, 3]` (rows, columns, channels).
        shape: Vec<usize>,
        /// The elements in C order, as numpy holds them.
        data: Vec<u8>,
    },
}

/// The metadata frame as imagezmq writes it; unknown fields are ignored.
#[derive(Deserialize)]
struct RawMetadata {
    msg: serde_json::Value,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    shape: Option<Vec<usize>>,
}

/// What the metadata frame said, kept until the image frame arrives.
#[derive(Debug)]
struct Metadata {
    name: String,
    /// dtype and shape for `send_image`; `None` for `send_jpg`.
    array: Option<(String, Vec<usize>)>,
}

/// Where the next message frame belongs.
#[derive(Debug)]
enum Next {
    /// Routing ids or the delimiter.
    Envelope,
    /// The JSON metadata.
    Metadata,
    /// The image, described by the metadata.
    Image(Metadata),
}

/// A complete request: the envelope to echo, and the image.
#[derive(Debug)]
pub struct Request {
    /// The frames up to and including the empty delimiter.
    pub envelope: Vec<Vec<u8>>,
    /// The image.
    pub frame: ImagezmqFrame,
}

/// Assembles message frames into requests, checking each frame's header before its body is
/// allocated.
#[derive(Debug)]
pub struct Assembler {
    next: Next,
    envelope: Vec<Vec<u8>>,
    max_frame_bytes: u64,
}

impl Assembler {
    /// An assembler that refuses images larger than `max_frame_bytes`.
    pub fn new(max_frame_bytes: u64) -> Self {
        Assembler {
            next: Next::Envelope,
            envelope: Vec::new(),
            max_frame_bytes,
        }
    }

    /// True between requests.
    pub fn is_idle(&self) -> bool {
        matches!(self.next, Next::Envelope) && self.envelope.is_empty()
    }

    /// Checks the header of the next message frame: its size against the limit of the part it
    /// will be, and its MORE flag against the request layout.
    pub fn check_header(&self, size: u64, more: bool) -> Result<(), ZmtpError> {
        match &self.next {
            Next::Envelope => {
                if size > MAX_ROUTING_ID_BYTES {
                    return Err(ZmtpError::NoDelimiter {
                        detail: format!(
                            "frame {} is {size} bytes, too long for a routing id",
                            self.envelope.len() + 1
                        ),
                    });
                }
                if !more {
                    return Err(ZmtpError::NoDelimiter {
                        detail: format!(
                            "the message ended after {} frame(s)",
                            self.envelope.len() + 1
                        ),
                    });
                }
                if size > 0 && self.envelope.len() + 1 >= MAX_ENVELOPE_FRAMES {
                    return Err(ZmtpError::NoDelimiter {
                        detail: format!("none among the first {MAX_ENVELOPE_FRAMES} frames"),
                    });
                }
                Ok(())
            }
            Next::Metadata => {
                if size > MAX_METADATA_BYTES {
                    return Err(ZmtpError::Oversize {
                        part: Part::Metadata,
                        announced: size,
                        max: MAX_METADATA_BYTES,
                    });
                }
                if !more {
                    return Err(ZmtpError::PartCount { parts: 1 });
                }
                Ok(())
            }
            Next::Image(meta) => {
                if size > self.max_frame_bytes {
                    return Err(ZmtpError::Oversize {
                        part: Part::Image,
                        announced: size,
                        max: self.max_frame_bytes,
                    });
                }
                if more {
                    return Err(ZmtpError::PartCount { parts: 3 });
                }
                if size == 0 {
                    return Err(ZmtpError::EmptyImage {
                        name: meta.name.clone(),
                    });
                }
                if let Some((dtype, shape)) = &meta.array {
                    check_array_size(dtype, shape, size)?;
                }
                Ok(())
            }
        }
    }

    /// Takes a complete message frame whose header passed [`Assembler::check_header`];
    /// returns the request once its image frame is in.
    pub fn push(&mut self, body: Vec<u8>) -> Result<Option<Request>, ZmtpError> {
        match std::mem::replace(&mut self.next, Next::Envelope) {
            Next::Envelope => {
                let delimiter = body.is_empty();
                self.envelope.push(body);
                if delimiter {
                    self.next = Next::Metadata;
                }
                Ok(None)
            }
            Next::Metadata => {
                self.next = Next::Image(parse_metadata(&body)?);
                Ok(None)
            }
            Next::Image(meta) => {
                let payload = match meta.array {
                    None => Payload::Jpeg(body),
                    Some((dtype, shape)) => Payload::Array {
                        dtype,
                        shape,
                        data: body,
                    },
                };
                Ok(Some(Request {
                    envelope: std::mem::take(&mut self.envelope),
                    frame: ImagezmqFrame {
                        name: meta.name,
                        payload,
                    },
                }))
            }
        }
    }
}

/// Parses imagezmq's JSON metadata.
fn parse_metadata(json: &[u8]) -> Result<Metadata, ZmtpError> {
    let bad = |reason: String| ZmtpError::BadMetadata {
        reason,
        json_start: String::from_utf8_lossy(&json[..json.len().min(80)]).into_owned(),
    };
    let raw: RawMetadata = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let name = match raw.msg {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let array = match (raw.dtype, raw.shape) {
        (None, None) => None,
        (Some(dtype), Some(shape)) => Some((dtype, shape)),
        (Some(_), None) => return Err(bad("\"dtype\" without \"shape\"".into())),
        (None, Some(_)) => return Err(bad("\"shape\" without \"dtype\"".into())),
    };
    Ok(Metadata { name, array })
}

/// For a dtype of known item size, the data frame must hold exactly the array's bytes.
fn check_array_size(dtype: &str, shape: &[usize], announced: u64) -> Result<(), ZmtpError> {
    let Some(item) = itemsize(dtype) else {
        return Ok(());
    };
    let expected = shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
    if expected == Some(announced) {
        return Ok(());
    }
    Err(ZmtpError::ArraySize {
        dtype: dtype.to_string(),
        shape: shape.to_vec(),
        expected,
        announced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(asm: &mut Assembler, frames: &[(&[u8], bool)]) -> Result<Request, ZmtpError> {
        for &(body, more) in frames {
            asm.check_header(body.len() as u64, more)?;
            if let Some(req) = asm.push(body.to_vec())? {
                return Ok(req);
            }
        }
        panic!("no request");
    }

    #[test]
    fn jpg_and_array_requests() {
        let mut asm = Assembler::new(100);
        let req = request(
            &mut asm,
            &[
                (b"", true),
                (br#"{"msg": "cam-1"}"#, true),
                (b"\xff\xd8", false),
            ],
        )
        .unwrap();
        assert_eq!(req.envelope, vec![Vec::<u8>::new()]);
        assert_eq!(req.frame.name, "cam-1");
        assert_eq!(req.frame.payload, Payload::Jpeg(b"\xff\xd8".to_vec()));
        assert!(asm.is_idle());
        let req = request(
            &mut asm,
            &[
                (b"proxy-id", true),
                (b"", true),
                (
                    br#"{"msg": "caf\u00e9", "dtype": "uint8", "shape": [1, 2]}"#,
                    true,
                ),
                (b"\x01\x02", false),
            ],
        )
        .unwrap();
        assert_eq!(req.envelope, vec![b"proxy-id".to_vec(), Vec::new()]);
        assert_eq!(req.frame.name, "café");
        assert_eq!(
            req.frame.payload,
            Payload::Array {
                dtype: "uint8".into(),
                shape: vec![1, 2],
                data: vec![1, 2]
            }
        );
    }

    #[test]
    fn non_string_names_keep_their_json_text() {
        let mut asm = Assembler::new(100);
        let req = request(
            &mut asm,
            &[(b"", true), (br#"{"msg": 7}"#, true), (b"x", false)],
        );
        assert_eq!(req.unwrap().frame.name, "7");
    }

    #[test]
    fn layout_errors() {
        let mut asm = Assembler::new(100);
        // A DEALER sending imagezmq's two parts without a delimiter.
        let err = asm.check_header(300, true).unwrap_err();
        assert!(err.to_string().contains("300 bytes"), "{err}");
        assert!(matches!(
            asm.check_header(0, false),
            Err(ZmtpError::NoDelimiter { .. })
        ));
        asm.push(Vec::new()).unwrap();
        assert_eq!(
            asm.check_header(10, false),
            Err(ZmtpError::PartCount { parts: 1 })
        );
        let err = asm.check_header(MAX_METADATA_BYTES + 1, true).unwrap_err();
        assert!(matches!(
            err,
            ZmtpError::Oversize {
                part: Part::Metadata,
                ..
            }
        ));
        asm.push(br#"{"msg": "a", "dtype": "uint8", "shape": [2, 3]}"#.to_vec())
            .unwrap();
        assert_eq!(
            asm.check_header(6, true),
            Err(ZmtpError::PartCount { parts: 3 })
        );
        let err = asm.check_header(7, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "zmtp: array metadata says shape [2, 3] of uint8 = 6 bytes, but the data frame has 7 bytes"
        );
        let err = asm.check_header(101, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "zmtp: image frame of 101 bytes exceeds max_frame_bytes = 100"
        );
        assert_eq!(asm.check_header(6, false), Ok(()));
    }

    #[test]
    fn metadata_errors() {
        for (json, want) in [
            (&b"not json"[..], "expected"),
            (br#"{"name": "x"}"#, "missing field `msg`"),
            (br#"{"msg": "x", "dtype": "uint8"}"#, "without \"shape\""),
            (br#"{"msg": "x", "shape": [1]}"#, "without \"dtype\""),
            (
                br#"{"msg": "x", "dtype": "uint8", "shape": [-1]}"#,
                "invalid",
            ),
        ] {
            let err = parse_metadata(json).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn overflowing_shapes_are_refused() {
        let shape = [usize::MAX, 2];
        let err = check_array_size("uint16", &shape, 4).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        // Unknown dtypes are passed through unchecked.
        assert_eq!(check_array_size("<U3", &shape, 4), Ok(()));
    }
}
