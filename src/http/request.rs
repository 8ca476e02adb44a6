//! An HTTP/1.1 request decoder: the head with `httparse`, then a `Content-Length` or chunked
//! body, under size limits checked before anything is allocated.
//!
//! Sans-IO like the framing decoders: [`RequestDecoder::feed`] takes whatever arrived, uses a
//! prefix of it, and reports at most one [`Event`] per call, so the caller can pause between
//! the head and the body (to refuse early or send `100 Continue`) and between pipelined
//! requests. The head is parsed again only when newly arrived bytes could end it, so a client
//! sending one byte at a time costs constant work per byte, not a re-parse of everything.

use std::fmt;

use super::chunked::{ChunkError, Chunked};

/// Size limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line and headers together.
    pub max_head_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
    /// The body (after removing chunked framing).
    pub max_body_bytes: u64,
}

/// Default `max_head_bytes`: ample for any camera or browser, small per slow client.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// Default `max_headers`.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// A request's method, target and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET`, `POST`, … as sent.
    pub method: String,
    /// The request target as sent (`/frames/cam?x=1`).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in order; names in lower case.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of header `name` as trimmed text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// True when the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        let tokens = self.header_str("connection").unwrap_or("");
        let has = |t: &str| tokens.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
        if self.minor_version == 0 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// True when the client waits for `100 Continue` before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.minor_version >= 1
            && self
                .header_str("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    }
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, target, headers.
    pub head: Head,
    /// The body, chunked framing removed.
    pub body: Vec<u8>,
}

/// What a [`RequestDecoder::feed`] call completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The head is complete ([`RequestDecoder::head`]); a body may follow. The caller may
    /// answer now instead of reading it (a refusal, or `100 Continue`).
    Head,
    /// The whole request. The decoder is ready for the next one on the connection.
    Request(Request),
}

/// The result of one [`RequestDecoder::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input used; pass the rest in the next call.
    pub consumed: usize,
    /// What they completed, if anything.
    pub event: Option<Event>,
}

/// Why a request cannot be served. Each maps to the status the client gets
/// ([`HttpError::status`]); every one ends the connection, as the rest of its bytes cannot be
/// trusted to start a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Request line and headers exceed `max_head_bytes`.
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// More than `max_headers` header fields.
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The bytes are not an HTTP/1.x request.
    Malformed(String),
    /// The body is (or is announced to be) larger than `max_body_bytes`.
    BodyTooLarge {
        /// The `Content-Length`, if the client announced one.
        announced: Option<u64>,
        /// The limit.
        max: u64,
    },
    /// A transfer coding other than `chunked`.
    UnsupportedEncoding(String),
    /// The connection ended inside a request.
    Truncated,
}

impl HttpError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::Malformed(_) | HttpError::Truncated => 400,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedEncoding(_) => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge { max } => {
                write!(f, "request line and headers exceed {max} bytes")
            }
            HttpError::TooManyHeaders { max } => write!(f, "more than {max} header fields"),
            HttpError::Malformed(why) => write!(f, "malformed request: {why}"),
            HttpError::BodyTooLarge {
                announced: Some(n),
                max,
            } => write!(
                f,
                "body of {n} bytes exceeds the listener's limit of {max} bytes (max_frame_bytes)"
            ),
            HttpError::BodyTooLarge {
                announced: None,
                max,
            } => write!(
                f,
                "chunked body exceeds the listener's limit of {max} bytes (max_frame_bytes)"
            ),
            HttpError::UnsupportedEncoding(te) => {
                write!(
                    f,
                    "transfer coding {te:?} is not supported; send chunked or a Content-Length"
                )
            }
            HttpError::Truncated => write!(f, "connection ended inside a request"),
        }
    }
}

impl std::error::Error for HttpError {}

#[derive(Debug)]
enum State {
    /// Collecting the head; `scanned` bytes of `buf` hold no head end.
    Head { scanned: usize },
    /// A `Content-Length` body with this many bytes still to come.
    Length { remaining: u64 },
    /// A chunked body.
    Chunked(Chunked),
    /// An error was returned; it is returned again.
    Failed(HttpError),
}

/// Decodes the requests of one connection.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// The head's bytes while it is incomplete.
    buf: Vec<u8>,
    head: Option<Head>,
    body: Vec<u8>,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Head { scanned: 0 },
            buf: Vec::new(),
            head: None,
            body: Vec::new(),
        }
    }

    /// The head of the request in progress, once [`Event::Head`] was reported.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// True when part of a request has arrived but not all of it.
    pub fn is_mid_request(&self) -> bool {
        match &self.state {
            State::Head { .. } => !self.buf.is_empty(),
            State::Length { .. } | State::Chunked(_) => true,
            State::Failed(_) => false,
        }
    }

    /// True while the head is complete and the body is being received.
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Length { .. } | State::Chunked(_))
    }

    /// The connection's input ended: an error if a request was cut short.
    pub fn finish(&self) -> Result<(), HttpError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            _ if self.is_mid_request() => Err(HttpError::Truncated),
            _ => Ok(()),
        }
    }

    /// Uses a prefix of `input`; see [`Fed`]. An error is final.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, HttpError> {
        let result = self.feed_state(input);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
            self.buf = Vec::new();
            self.body = Vec::new();
        }
        result
    }

    fn feed_state(&mut self, input: &[u8]) -> Result<Fed, HttpError> {
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Head { scanned } => {
                let scanned = *scanned;
                self.feed_head(input, scanned)
            }
            State::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                self.body.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                let event = (*remaining == 0).then(|| self.complete());
                Ok(Fed {
                    consumed: take,
                    event,
                })
            }
            State::Chunked(chunked) => {
                let used = chunked.feed(input, &mut self.body).map_err(|e| match e {
                    ChunkError::TooLarge { max } => HttpError::BodyTooLarge {
                        announced: None,
                        max,
                    },
                    ChunkError::Syntax(why) => HttpError::Malformed(why.to_string()),
                })?;
                let event = chunked.is_done().then(|| self.complete());
                Ok(Fed {
                    consumed: used,
                    event,
                })
            }
        }
    }

    fn feed_head(&mut self, input: &[u8], scanned: usize) -> Result<Fed, HttpError> {
        let before = self.buf.len();
        // Never hold more than the limit: a head that does not end within it is refused.
        let room = self.limits.max_head_bytes - before;
        let take = input.len().min(room);
        self.buf.extend_from_slice(&input[..take]);
        // Only bytes from `scanned` on can complete "\n\r\n" or "\n\n" (3 bytes back suffice).
        // Each candidate end is parsed as a prefix, in order, so the outcome never depends on
        // how the bytes were split: httparse sees the same prefixes either way.
        let mut from = scanned.saturating_sub(3);
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut complete = None;
        while let Some(rel) = find_head_end(&self.buf[from..]) {
            let end = from + rel;
            match httparse::Request::new(&mut fields).parse(&self.buf[..end]) {
                Ok(httparse::Status::Complete(n)) => {
                    complete = Some(n);
                    break;
                }
                // Leading blank lines: not a head yet; the next end may complete it.
                Ok(httparse::Status::Partial) => from = end - 1,
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HttpError::TooManyHeaders {
                        max: self.limits.max_headers,
                    })
                }
                Err(e) => return Err(HttpError::Malformed(e.to_string())),
            }
        }
        let Some(head_len) = complete else {
            if self.buf.len() >= self.limits.max_head_bytes {
                return Err(HttpError::HeadTooLarge {
                    max: self.limits.max_head_bytes,
                });
            }
            self.state = State::Head {
                scanned: self.buf.len(),
            };
            return Ok(Fed {
                consumed: take,
                event: None,
            });
        };
        let mut parsed = httparse::Request::new(&mut fields);
        parsed
            .parse(&self.buf[..head_len])
            .expect("the same bytes parsed a moment ago");
        let head = Head {
            method: parsed.method.unwrap_or_default().to_string(),
            target: parsed.path.unwrap_or_default().to_string(),
            minor_version: parsed.version.unwrap_or(1),
            headers: parsed
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        };
        // Bytes past the head stay in `input` for the body or the next request.
        let consumed = head_len - before;
        self.state = self.body_state(&head)?;
        self.buf = Vec::new();
        self.body = match self.state {
            // Announced and within the limit: reserved once (pages are committed as bytes
            // arrive).
            State::Length { remaining } => Vec::with_capacity(remaining as usize),
            _ => Vec::new(),
        };
        self.head = Some(head);
        let event = if matches!(self.state, State::Length { remaining: 0 }) {
            // No body: the head is the whole request; report it as such.
            Some(self.complete())
        } else {
            Some(Event::Head)
        };
        // A bodiless request still reports Head first only when a body follows.
        Ok(Fed { consumed, event })
    }

    /// How the body of a request with this head is delimited (RFC 9112 §6.3).
    fn body_state(&self, head: &Head) -> Result<State, HttpError> {
        let max = self.limits.max_body_bytes;
        let te: Vec<&[u8]> = head
            .headers
            .iter()
            .filter(|(n, _)| n == "transfer-encoding")
            .map(|(_, v)| v.as_slice())
            .collect();
        let cl: Vec<&[u8]> = head
            .headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_slice())
            .collect();
        if !te.is_empty() {
            if !cl.is_empty() {
                // Both: the classic request-smuggling shape; refused rather than guessed.
                return Err(HttpError::Malformed(
                    "both Transfer-Encoding and Content-Length".into(),
                ));
            }
            let joined = te
                .iter()
                .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(",");
            let codings: Vec<&str> = joined
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            return match codings.as_slice() {
                ["chunked"] => Ok(State::Chunked(Chunked::new(max))),
                _ => Err(HttpError::UnsupportedEncoding(joined)),
            };
        }
        let mut length: Option<u64> = None;
        for value in cl {
            // A list of equal values is allowed (RFC 9110 §8.6); anything else is refused.
            for part in value.split(|&b| b == b',') {
                let text = std::str::from_utf8(part).unwrap_or("").trim();
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 19 {
                    return Err(HttpError::Malformed(format!(
                        "Content-Length {:?} is not a number",
                        String::from_utf8_lossy(value)
                    )));
                }
                let n: u64 = text.parse().expect("checked digits");
                if length.is_some_and(|l| l != n) {
                    return Err(HttpError::Malformed(
                        "conflicting Content-Length values".into(),
                    ));
                }
                length = Some(n);
            }
        }
        let length = length.unwrap_or(0);
        if length > max {
            return Err(HttpError::BodyTooLarge {
                announced: Some(length),
                max,
            });
        }
        Ok(State::Length { remaining: length })
    }

    /// Hands out the finished request and gets ready for the next.
    fn complete(&mut self) -> Event {
        self.state = State::Head { scanned: 0 };
        let head = self.head.take().expect("a body follows a head");
        Event::Request(Request {
            head,
            body: std::mem::take(&mut self.body),
        })
    }
}

/// Where a head ends ("\n\r\n" or "\n\n"), as the offset just past it.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if bytes[i + 1] == b'\r' && bytes.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}
