//! One spool record on disk: a frame's identity and payload, framed and checksummed.
//!
//! ```text
//! offset  size  field
//!  0      4     magic "FGS1"
//!  4      4     body_len (u32 LE): bytes after this 12-byte header
//!  8      4     CRC-32C of the body
//! 12      …     body: seq u64, captured_us u64, received_us u64, content_type u8,
//!               device (u16 len + UTF-8), listener (u16 len + UTF-8),
//!               meta_count u8, meta entries (key: u8 len + UTF-8, value: u16 len + UTF-8),
//!               payload (the rest of the body)
//! ```
//!
//! All integers little-endian. The CRC covers identity and payload, so a torn or rotted record
//! is never forwarded: recovery stops at it, and a read checks it again.

use std::fmt;

use crate::protocol::ContentType;

/// Bytes before a record's body.
pub const HEADER_LEN: usize = 12;
/// The first bytes of every record.
pub const MAGIC: [u8; 4] = *b"FGS1";
/// Bytes of the body's fixed part: seq, captured_us, received_us, content_type.
const FIXED_LEN: usize = 8 + 8 + 8 + 1;

/// Everything a record holds but the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    /// The device id, as the upstream will see it in HELLO.
    pub device: String,
    /// The frame's sequence number (the device's own for native frames).
    pub seq: u64,
    /// Capture time in µs since the Unix epoch: the native device's, else the receive time.
    pub captured_us: u64,
    /// When the frame's last byte reached this gateway, µs since the Unix epoch.
    pub received_us: u64,
    /// The listener that received it here.
    pub listener: String,
    /// What the payload is, as FRAME states it.
    pub content_type: ContentType,
    /// The device's metadata, in its order (empty for legacy framings).
    pub meta: Vec<(String, String)>,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header announces: the end of a torn write.
    Short,
    /// The bytes are there but wrong: bad magic, checksum or layout.
    Corrupt(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Short => f.write_str("record cut short"),
            RecordError::Corrupt(why) => write!(f, "corrupt record: {why}"),
        }
    }
}

impl RecordHead {
    /// The record's header and the body up to the payload, for a payload of `payload` bytes:
    /// write these bytes, then the payload. `None` when a field does not fit the layout
    /// (a string over 65,535 bytes, more than 255 metadata entries, a body over 4 GiB).
    pub fn encode(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(64 + self.device.len() + self.listener.len());
        body.extend_from_slice(&self.seq.to_le_bytes());
        body.extend_from_slice(&self.captured_us.to_le_bytes());
        body.extend_from_slice(&self.received_us.to_le_bytes());
        body.push(self.content_type as u8);
        push_str16(&mut body, &self.device)?;
        push_str16(&mut body, &self.listener)?;
        body.push(u8::try_from(self.meta.len()).ok()?);
        for (key, value) in &self.meta {
            body.push(u8::try_from(key.len()).ok()?);
            body.extend_from_slice(key.as_bytes());
            push_str16(&mut body, value)?;
        }
        let body_len = u32::try_from(body.len() as u64 + payload.len() as u64).ok()?;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&body), payload);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        Some(out)
    }
}

fn push_str16(out: &mut Vec<u8>, text: &str) -> Option<()> {
    out.extend_from_slice(&u16::try_from(text.len()).ok()?.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Some(())
}

/// The body length a record header announces, after checking its magic.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<u32, RecordError> {
    if header[..4] != MAGIC {
        return Err(RecordError::Corrupt(format!(
            "bad magic {:02x?}",
            &header[..4]
        )));
    }
    Ok(u32::from_le_bytes(
        header[4..8].try_into().expect("4 bytes"),
    ))
}

/// Checks `body` against the header's CRC and reads its identity; the payload is
/// `body[payload_at..]`.
pub fn decode_body(
    header: &[u8; HEADER_LEN],
    body: &[u8],
) -> Result<(RecordHead, usize), RecordError> {
    let want = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let got = crc32c::crc32c(body);
    if got != want {
        return Err(RecordError::Corrupt(format!(
            "checksum {got:08x}, header says {want:08x}"
        )));
    }
    let mut r = Reader { body, at: 0 };
    let seq = r.u64()?;
    let captured_us = r.u64()?;
    let received_us = r.u64()?;
    let content_type = ContentType::from_code(r.u8()?);
    let device = r.str16()?;
    let listener = r.str16()?;
    let count = r.u8()?;
    let mut meta = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let key_len = usize::from(r.u8()?);
        let key = r.string(key_len)?;
        meta.push((key, r.str16()?));
    }
    debug_assert!(r.at >= FIXED_LEN);
    Ok((
        RecordHead {
            device,
            seq,
            captured_us,
            received_us,
            listener,
            content_type,
            meta,
        },
        r.at,
    ))
}

/// Reads a whole record (header and body) from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<(RecordHead, &[u8]), RecordError> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .ok_or(RecordError::Short)?
        .try_into()
        .expect("HEADER_LEN bytes");
    let len = body_len(header)? as usize;
    let body = bytes
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(RecordError::Short)?;
    let (head, payload_at) = decode_body(header, body)?;
    Ok((head, &body[payload_at..]))
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        let bytes = self
            .body
            .get(self.at..self.at + n)
            .ok_or_else(|| RecordError::Corrupt("fields overrun the body".into()))?;
        self.at += n;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn string(&mut self, len: usize) -> Result<String, RecordError> {
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| RecordError::Corrupt("text is not UTF-8".into()))
    }
    fn str16(&mut self) -> Result<String, RecordError> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2"));
        self.string(usize::from(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RecordHead {
        RecordHead {
            device: "door-cam".into(),
            seq: 42,
            captured_us: 1_700_000_000_123_456,
            received_us: 1_700_000_000_200_000,
            listener: "lan".into(),
            content_type: ContentType::Jpeg,
            meta: vec![
                ("exp".into(), "10ms".into()),
                ("gain".into(), String::new()),
            ],
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let payload = b"\xff\xd8\xff\xe0 payload bytes".to_vec();
        let mut bytes = head().encode(&payload).unwrap();
        bytes.extend_from_slice(&payload);
        let (read, got) = decode(&bytes).unwrap();
        assert_eq!(read, head());
        assert_eq!(got, payload);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_detected() {
        let payload = vec![7u8; 40];
        let mut bytes = head().encode(&payload).unwrap();
        bytes.extend_from_slice(&payload);
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                // A flipped length bit may also make the record look short.
                assert!(
                    decode(&bad).is_err(),
                    "flip of bit {bit:#x} at {i} undetected"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).unwrap_err(), RecordError::Short);
        }
    }

    #[test]
    fn fields_that_do_not_fit_are_refused() {
        let mut long = head();
        long.device = "x".repeat(70_000);
        assert!(long.encode(b"p").is_none());
        let mut many = head();
        many.meta = vec![("k".into(), "v".into()); 256];
        assert!(many.encode(b"p").is_none());
    }
}
