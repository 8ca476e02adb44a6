//! Response heads, written by hand: a status line, a few fields, `Content-Length`.

use std::fmt::Write as _;

/// The reason phrase for the statuses framegate sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response head under construction.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    text: String,
}

impl ResponseHead {
    /// `HTTP/1.1 {status} {reason}` and the fields every response carries.
    pub fn new(status: u16) -> Self {
        let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        text.push_str("Server: framegate\r\n");
        ResponseHead { text }
    }

    /// Adds a field. Values come from framegate, never from a request, except escaped ids.
    pub fn field(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }

    /// Ends the head for a body of `length` bytes; `close` adds `Connection: close`.
    pub fn finish(self, length: Option<usize>, close: bool) -> Vec<u8> {
        let mut text = self.text;
        if let Some(length) = length {
            let _ = write!(text, "Content-Length: {length}\r\n");
        }
        if close {
            text.push_str("Connection: close\r\n");
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// A complete small response: head and body in one buffer.
pub fn simple(status: u16, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = ResponseHead::new(status)
        .field("Content-Type", content_type)
        .field("Cache-Control", "no-store")
        .finish(Some(body.len()), close);
    out.extend_from_slice(body);
    out
}

/// A JSON response with extra header fields.
pub fn json(
    status: u16,
    value: &serde_json::Value,
    fields: &[(&str, &str)],
    close: bool,
) -> Vec<u8> {
    let body = value.to_string();
    let mut head = ResponseHead::new(status).field("Content-Type", "application/json");
    for (name, v) in fields {
        head = head.field(name, v);
    }
    let mut out = head.finish(Some(body.len()), close);
    out.extend_from_slice(body.as_bytes());
    out
}

/// A JSON error body `{"error": why}` with `status`.
pub fn error(status: u16, why: &str, close: bool) -> Vec<u8> {
    let body = serde_json::json!({ "error": why, "status": status }).to_string();
    simple(status, "application/json", body.as_bytes(), close)
}

/// An HTTP date (RFC 9110 §5.6.7) for `Last-Modified`.
pub fn http_date(at: std::time::SystemTime) -> String {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
