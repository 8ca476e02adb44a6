//! ZMTP 3.x bytes: the 64-byte greeting, frame headers, and the commands a NULL-mechanism REP
//! server meets (READY, PING/PONG, ERROR). Incremental readers and pure encoders; the state
//! machine that uses them is in [`super`].

use super::error::{Part, ZmtpError};
use super::MAX_COMMAND_BYTES;

/// A greeting is always 64 bytes.
pub const GREETING_LEN: usize = 64;
/// Frame flag: more frames of the same message follow.
pub const FLAG_MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes (big-endian) instead of 1.
pub const FLAG_LONG: u8 = 0x02;
/// Frame flag: the frame is a command, not a message frame.
pub const FLAG_COMMAND: u8 = 0x04;
/// Bits 3-7 of the flags byte, which ZMTP 3 requires to be zero.
const FLAGS_RESERVED: u8 = !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND);
/// ZMTP 3.1 caps a PING's context at 16 bytes; libzmq truncates longer ones, and so do we.
pub const MAX_PING_CONTEXT: usize = 16;

/// Our greeting: ZMTP 3.1, mechanism NULL, as-server 0 (NULL has no server role).
///
/// Minor version 1 because we answer PING (3.1); a 3.0 peer ignores the minor version.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Collects the peer's greeting and checks each field as soon as its bytes are in, so a
/// non-ZMTP peer is refused on its first bytes rather than after 64 (libzmq itself sends
/// only 10 or 11 bytes, then waits for ours).
#[derive(Debug)]
pub struct GreetingReader {
    buf: [u8; GREETING_LEN],
    len: usize,
}

impl GreetingReader {
    /// An empty reader.
    pub fn new() -> Self {
        GreetingReader {
            buf: [0; GREETING_LEN],
            len: 0,
        }
    }

    /// Greeting bytes received so far.
    pub fn received(&self) -> usize {
        self.len
    }

    /// Takes greeting bytes from `input`; returns how many it used and, once all 64 are in and
    /// valid, the peer's (major, minor) version.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<(u8, u8)>), ZmtpError> {
        let n = input.len().min(GREETING_LEN - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&input[..n]);
        self.len += n;
        // Fields are checked in order, each once complete, so the first error is the same
        // however the greeting was split.
        let g = &self.buf[..self.len];
        // The error shows the bytes up to the offending one, not all that arrived, so it too
        // is the same for every split.
        if g.first().is_some_and(|&b| b != 0xff) {
            return Err(ZmtpError::NotZmtp {
                first_bytes: g[..1].to_vec(),
            });
        }
        if g.get(9).is_some_and(|&b| b != 0x7f) {
            return Err(ZmtpError::NotZmtp {
                first_bytes: g[..10].to_vec(),
            });
        }
        // Bytes 1-8 are padding; libzmq puts a ZMTP 1.0 length there (00..01), so any value.
        if let Some(&major) = g.get(10) {
            // RFC 23: a peer MUST accept higher versions and talk 3.x to them.
            if major < 3 {
                return Err(ZmtpError::UnsupportedVersion { major });
            }
        }
        if g.len() >= 32 {
            let mechanism = &g[12..32];
            let name_len = mechanism.iter().position(|&b| b == 0).unwrap_or(20);
            if &mechanism[..name_len] != b"NULL" || mechanism[name_len..].iter().any(|&b| b != 0) {
                return Err(ZmtpError::UnsupportedMechanism {
                    mechanism: printable(&mechanism[..name_len]),
                });
            }
        }
        // Byte 32 (as-server) means nothing for NULL, and 33-63 are filler: not checked.
        let version = (self.len == GREETING_LEN).then(|| (g[10], g[11]));
        Ok((n, version))
    }
}

/// A complete frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The flags byte (reserved bits already checked to be zero).
    pub flags: u8,
    /// The body size.
    pub size: u64,
}

impl Header {
    /// True for a command frame.
    pub fn is_command(self) -> bool {
        self.flags & FLAG_COMMAND != 0
    }

    /// True when more frames of the same message follow.
    pub fn more(self) -> bool {
        self.flags & FLAG_MORE != 0
    }
}

/// Collects a frame header: a flags byte, then 1 or 8 size bytes.
#[derive(Debug, Default)]
pub struct HeaderReader {
    buf: [u8; 9],
    len: usize,
}

impl HeaderReader {
    /// True when some but not all header bytes have arrived.
    pub fn is_partial(&self) -> bool {
        self.len > 0
    }

    /// Takes header bytes from `input`; returns how many it used and the header once complete
    /// (the reader is then empty again for the next frame).
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Header>), ZmtpError> {
        let mut used = 0;
        while used < input.len() {
            self.buf[self.len] = input[used];
            self.len += 1;
            used += 1;
            let flags = self.buf[0];
            if self.len == 1 && flags & FLAGS_RESERVED != 0 {
                return Err(ZmtpError::ReservedFlags { flags });
            }
            let want = if flags & FLAG_LONG != 0 { 9 } else { 2 };
            if self.len == want {
                let size = if want == 9 {
                    u64::from_be_bytes(self.buf[1..9].try_into().expect("8 bytes"))
                } else {
                    u64::from(self.buf[1])
                };
                self.len = 0;
                return Ok((used, Some(Header { flags, size })));
            }
        }
        Ok((used, None))
    }
}

/// A READY metadata property: name and value.
pub type Property<'a> = (&'a [u8], &'a [u8]);

/// A parsed command body.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// READY with its metadata properties (name, value), in order.
    Ready(Vec<Property<'a>>),
    /// PING; the context to echo in the PONG (already capped at [`MAX_PING_CONTEXT`]).
    Ping {
        /// The context bytes.
        context: &'a [u8],
    },
    /// PONG (we never PING, so it is only tolerated).
    Pong,
    /// ERROR with its reason.
    Error {
        /// The reason text, lossily decoded.
        reason: String,
    },
    /// Any other command (SUBSCRIBE, CANCEL, future ones), by name.
    Other {
        /// The command name.
        name: &'a [u8],
    },
}

/// Splits a command body into name and data and parses the commands we act on.
pub fn parse_command(body: &[u8]) -> Result<Command<'_>, ZmtpError> {
    let malformed = |reason: String| ZmtpError::MalformedCommand { reason };
    let (&name_len, rest) = body
        .split_first()
        .ok_or_else(|| malformed("empty command frame".into()))?;
    let name_len = usize::from(name_len);
    if name_len == 0 || rest.len() < name_len {
        return Err(malformed(format!(
            "name size {name_len} in a {}-byte command",
            body.len()
        )));
    }
    let (name, data) = rest.split_at(name_len);
    match name {
        b"READY" => parse_metadata(data).map(Command::Ready),
        b"PING" => {
            // TTL (2 bytes, tenths of a second) is for the peer's own timer; we keep no clock.
            let context = data.get(2..).ok_or_else(|| {
                malformed(format!(
                    "PING has {} data bytes, fewer than its 2-byte TTL",
                    data.len()
                ))
            })?;
            Ok(Command::Ping {
                context: &context[..context.len().min(MAX_PING_CONTEXT)],
            })
        }
        b"PONG" => Ok(Command::Pong),
        b"ERROR" => {
            let (&len, reason) = data.split_first().unwrap_or((&0, &[]));
            let reason = &reason[..reason.len().min(usize::from(len))];
            Ok(Command::Error {
                reason: String::from_utf8_lossy(reason).into_owned(),
            })
        }
        _ => Ok(Command::Other { name }),
    }
}

/// Parses READY metadata: properties of a 1-byte name size, name, 4-byte big-endian value
/// size, value. The command was size-checked, so the list is bounded by it.
fn parse_metadata(mut data: &[u8]) -> Result<Vec<Property<'_>>, ZmtpError> {
    let malformed = |reason: String| ZmtpError::MalformedCommand {
        reason: format!("READY metadata: {reason}"),
    };
    let mut props = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        if name_len == 0 || rest.len() < name_len + 4 {
            return Err(malformed(format!(
                "property name size {name_len} with {} bytes left",
                rest.len()
            )));
        }
        let (name, rest) = rest.split_at(name_len);
        let (size, rest) = rest.split_at(4);
        let value_len = u32::from_be_bytes(size.try_into().expect("4 bytes"));
        let value_len = usize::try_from(value_len).unwrap_or(usize::MAX);
        if rest.len() < value_len {
            return Err(malformed(format!(
                "property {} announces a {value_len}-byte value with {} bytes left",
                printable(name),
                rest.len()
            )));
        }
        let (value, rest) = rest.split_at(value_len);
        props.push((name, value));
        data = rest;
    }
    Ok(props)
}

/// Appends one frame (header and body) to `out`.
pub fn encode_frame(flags: u8, body: &[u8], out: &mut Vec<u8>) {
    match u8::try_from(body.len()) {
        Ok(size) => out.extend_from_slice(&[flags, size]),
        Err(_) => {
            out.push(flags | FLAG_LONG);
            out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(body);
}

/// Appends a command frame `name` + `data` to `out`.
pub fn encode_command(name: &[u8], data: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!name.is_empty() && name.len() < 256, "command name size");
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body.extend_from_slice(data);
    encode_frame(FLAG_COMMAND, &body, out);
}

/// Appends our READY (`Socket-Type` = `socket_type`) to `out`.
pub fn encode_ready(socket_type: &[u8], out: &mut Vec<u8>) {
    let name = b"Socket-Type";
    let mut data = Vec::with_capacity(1 + name.len() + 4 + socket_type.len());
    data.push(name.len() as u8);
    data.extend_from_slice(name);
    data.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    data.extend_from_slice(socket_type);
    encode_command(b"READY", &data, out);
}

/// Checks a command header against [`MAX_COMMAND_BYTES`]; commands never have MORE set.
pub fn check_command_header(header: Header) -> Result<(), ZmtpError> {
    if header.more() {
        return Err(ZmtpError::MalformedCommand {
            reason: "command frame has the MORE flag set".into(),
        });
    }
    if header.size > MAX_COMMAND_BYTES {
        return Err(ZmtpError::Oversize {
            part: Part::Command,
            announced: header.size,
            max: MAX_COMMAND_BYTES,
        });
    }
    Ok(())
}

/// Bytes as text for a log line: ASCII kept, anything else escaped.
pub fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_greeting_matches_libzmq_apart_from_its_padding() {
        // libzmq 4.3 (pyzmq 27) REP greeting, captured; libzmq puts 00..01 in the padding
        // for ZMTP 1.0 peers, we put zeros (the padding is not interpreted).
        let mut libzmq = [0u8; 64];
        libzmq[..12].copy_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1]);
        libzmq[12..16].copy_from_slice(b"NULL");
        let ours = greeting();
        assert_eq!(ours[9..], libzmq[9..]);
        assert_eq!(ours[0], 0xff);
    }

    #[test]
    fn our_ready_matches_libzmq_rep() {
        let mut out = Vec::new();
        encode_ready(b"REP", &mut out);
        let mut libzmq = vec![0x04, 0x19, 0x05];
        libzmq.extend_from_slice(b"READY\x0bSocket-Type\x00\x00\x00\x03REP");
        assert_eq!(out, libzmq);
    }

    #[test]
    fn greeting_errors_come_with_the_first_bad_byte() {
        let mut r = GreetingReader::new();
        assert!(matches!(r.feed(b"G"), Err(ZmtpError::NotZmtp { .. })));
        let mut r = GreetingReader::new();
        let zmtp2 = [0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1];
        assert_eq!(r.feed(&zmtp2[..10]), Ok((10, None)));
        assert_eq!(
            r.feed(&zmtp2[10..]),
            Err(ZmtpError::UnsupportedVersion { major: 1 })
        );
        let mut curve = greeting();
        curve[12..17].copy_from_slice(b"CURVE");
        let err = GreetingReader::new().feed(&curve).unwrap_err();
        assert_eq!(
            err,
            ZmtpError::UnsupportedMechanism {
                mechanism: "CURVE".into()
            }
        );
        assert!(err.to_string().contains("only NULL"), "{err}");
    }

    #[test]
    fn higher_versions_are_accepted() {
        let mut g = greeting();
        g[10] = 4;
        g[11] = 7;
        assert_eq!(GreetingReader::new().feed(&g), Ok((64, Some((4, 7)))));
    }

    #[test]
    fn headers_short_and_long() {
        let mut r = HeaderReader::default();
        assert_eq!(
            r.feed(&[0x01, 0x00, 0xaa]),
            Ok((
                2,
                Some(Header {
                    flags: 0x01,
                    size: 0
                })
            ))
        );
        let long = [0x02, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(r.feed(&long[..5]), Ok((5, None)));
        assert!(r.is_partial());
        assert_eq!(
            r.feed(&long[5..]),
            Ok((
                4,
                Some(Header {
                    flags: 0x02,
                    size: 65536
                })
            ))
        );
        assert_eq!(
            r.feed(&[0x80]),
            Err(ZmtpError::ReservedFlags { flags: 0x80 })
        );
    }

    #[test]
    fn long_frames_are_encoded_with_8_size_bytes() {
        let mut out = Vec::new();
        encode_frame(0, &[7; 300], &mut out);
        assert_eq!(out[..9], [0x02, 0, 0, 0, 0, 0, 0, 1, 44]);
        assert_eq!(out.len(), 309);
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_command(b"\x04PING\x00\x0aabc"),
            Ok(Command::Ping { context: b"abc" })
        );
        let long_context = [b"\x04PING\x00\x00".as_slice(), &[9; 40]].concat();
        assert_eq!(
            parse_command(&long_context),
            Ok(Command::Ping { context: &[9; 16] })
        );
        assert!(parse_command(b"\x04PING\x00").is_err());
        assert!(parse_command(b"").is_err());
        assert!(parse_command(b"\x09READY").is_err());
        assert_eq!(
            parse_command(b"\x05ERROR\x03bad"),
            Ok(Command::Error {
                reason: "bad".into()
            })
        );
        assert_eq!(
            parse_command(b"\x09SUBSCRIBE"),
            Ok(Command::Other { name: b"SUBSCRIBE" })
        );
        let ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03REQ\x08Identity\x00\x00\x00\x00";
        assert_eq!(
            parse_command(ready),
            Ok(Command::Ready(vec![
                (b"Socket-Type".as_slice(), b"REQ".as_slice()),
                (b"Identity".as_slice(), b"".as_slice())
            ]))
        );
        let truncated = b"\x05READY\x0bSocket-Type\x00\x00\x00\x09REQ";
        assert!(matches!(
            parse_command(truncated),
            Err(ZmtpError::MalformedCommand { .. })
        ));
    }
}
