//! `multipart/form-data` (RFC 7578) bodies, reduced to what a camera upload needs: the one file
//! part, and the small text fields beside it (a `device` field names the device).
//!
//! Works on a complete body, which the request decoder has already bounded by the listener's
//! limit; it only looks and returns offsets, so the image is never copied here.

use std::fmt;
use std::ops::Range;

/// Most bytes of one part's headers.
const MAX_PART_HEAD: usize = 8 * 1024;
/// Text fields longer than this are not kept (they are not ids).
const MAX_FIELD_VALUE: usize = 256;

/// The file of an upload and the text fields sent with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Where the file's bytes are in the body.
    pub file: Range<usize>,
    /// The file part's field name (`imageFile`).
    pub name: Option<String>,
    /// Its `filename`.
    pub filename: Option<String>,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Short text fields, in order: (name, value).
    pub fields: Vec<(String, String)>,
}

/// Why a body is not a usable upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The body does not follow the multipart syntax for its boundary.
    Malformed(&'static str),
    /// Well-formed, but no part is a file.
    NoFile,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::Malformed(why) => write!(f, "malformed multipart body: {why}"),
            MultipartError::NoFile => write!(
                f,
                "the multipart body has no file part; send the image as a part with a filename (e.g. curl -F imageFile=@img.jpg)"
            ),
        }
    }
}

impl std::error::Error for MultipartError {}

/// The boundary of a `multipart/form-data` content type, or `None` if it is something else.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 70).then(|| value.to_string())
    })
}

/// One part's place and headers.
struct Part {
    body: Range<usize>,
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
}

/// Finds the file part of `body`: the first part with a `filename`, else the first whose
/// content type is an image or an octet stream. Other parts are text fields.
pub fn extract(body: &[u8], boundary: &str) -> Result<Upload, MultipartError> {
    let parts = parts(body, boundary)?;
    let file = parts
        .iter()
        .position(|p| p.filename.is_some())
        .or_else(|| {
            parts.iter().position(|p| {
                p.content_type.as_deref().is_some_and(|t| {
                    let t = t.to_ascii_lowercase();
                    t.starts_with("image/") || t.starts_with("application/octet-stream")
                })
            })
        })
        .ok_or(MultipartError::NoFile)?;
    let fields = parts
        .iter()
        .enumerate()
        .filter(|(i, p)| *i != file && p.body.len() <= MAX_FIELD_VALUE)
        .filter_map(|(_, p)| {
            let value = std::str::from_utf8(&body[p.body.clone()]).ok()?;
            Some((p.name.clone()?, value.to_string()))
        })
        .collect();
    let part = &parts[file];
    Ok(Upload {
        file: part.body.clone(),
        name: part.name.clone(),
        filename: part.filename.clone(),
        content_type: part.content_type.clone(),
        fields,
    })
}

fn parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter: at the start, or after a preamble and CRLF.
    let mut at = if body.starts_with(delimiter) {
        0
    } else {
        let mut crlf = b"\r\n".to_vec();
        crlf.extend_from_slice(delimiter);
        find(body, &crlf, 0).ok_or(MultipartError::Malformed("no boundary line"))? + 2
    };
    let mut close = b"\r\n".to_vec();
    close.extend_from_slice(delimiter);
    let mut parts = Vec::new();
    loop {
        let mut i = at + delimiter.len();
        if body[i..].starts_with(b"--") {
            return Ok(parts); // the close delimiter; an epilogue may follow
        }
        // Transport padding, then the line end.
        while matches!(body.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i = skip_line_end(body, i).ok_or(MultipartError::Malformed(
            "boundary line not followed by CRLF",
        ))?;
        let head_end = find(&body[..body.len().min(i + MAX_PART_HEAD)], b"\r\n\r\n", i)
            .map(|e| e + 4)
            .or_else(|| {
                // A part with no headers at all starts with the blank line.
                body[i..].starts_with(b"\r\n").then_some(i + 2)
            })
            .ok_or(MultipartError::Malformed("part headers do not end"))?;
        let mut part = Part {
            body: 0..0,
            name: None,
            filename: None,
            content_type: None,
        };
        for line in body[i..head_end].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let Some((key, value)) = line.trim_end_matches('\r').split_once(':') else {
                continue;
            };
            let value = value.trim();
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = param(value, "name");
                part.filename = param(value, "filename");
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.to_string());
            }
        }
        let end = find(body, &close, head_end).ok_or(MultipartError::Malformed(
            "no closing boundary after a part",
        ))?;
        part.body = head_end..end;
        parts.push(part);
        at = end + 2;
    }
}

/// `key="value"` (or unquoted) from a `Content-Disposition` value.
fn param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(key) {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

fn skip_line_end(body: &[u8], i: usize) -> Option<usize> {
    if body[i..].starts_with(b"\r\n") {
        Some(i + 2)
    } else if body[i..].starts_with(b"\n") {
        Some(i + 1)
    } else {
        None
    }
}

/// The first offset ≥ `from` where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() || from > hay.len() - needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    let last = hay.len() - needle.len();
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => i += p,
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}
