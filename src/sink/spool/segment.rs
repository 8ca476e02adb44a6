//! A spool's files: numbered segment files of records, and beside each an append-only list of
//! the records the upstream acknowledged.
//!
//! `<id:020>.spool` holds records ([`super::record`]) back to back. `<id:020>.acked` holds
//! 12-byte entries, the offset (u64 LE) of an acknowledged record and the CRC-32C of those 8
//! bytes. Acknowledgements are never fsynced: one lost in a crash only makes the forwarder
//! send that frame again, and the upstream recognises it (same device and seq) and does not
//! store it twice. The CRC keeps a crash's zero-filled or torn tail from reading as
//! "offset 0 acknowledged".

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::record::{self, HEADER_LEN};

const SEGMENT_EXT: &str = "spool";
const ACKS_EXT: &str = "acked";
/// Bytes of one acknowledgement entry.
pub const ACK_ENTRY_LEN: usize = 12;

/// The file of segment `id`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{SEGMENT_EXT}"))
}

/// The acknowledgement list of segment `id`.
pub fn acks_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{ACKS_EXT}"))
}

/// The ids of the segment files in `dir`, oldest first. Acknowledgement lists whose segment
/// is gone (a crash between the two deletions) are removed.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    let mut ack_lists = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(id) = stem.parse::<u64>() else {
            continue;
        };
        match ext {
            SEGMENT_EXT => segments.push(id),
            ACKS_EXT => ack_lists.push(id),
            _ => {}
        }
    }
    for orphan in ack_lists.iter().filter(|id| !segments.contains(id)) {
        let _ = fs::remove_file(acks_path(dir, *orphan));
    }
    segments.sort_unstable();
    Ok(segments)
}

/// A record a scan found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it starts in the segment.
    pub offset: u64,
    /// Its length, header included.
    pub len: u64,
    /// Its device.
    pub device: String,
    /// Its sequence number.
    pub seq: u64,
}

/// What reading a segment from its start found.
#[derive(Debug)]
pub struct Scan {
    /// The intact records, in file order.
    pub records: Vec<Found>,
    /// Bytes up to the end of the last intact record.
    pub valid_len: u64,
    /// The file's length.
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Reads the records of a segment until its end or the first record that is cut short or
/// corrupt; everything from there on is unusable (its records were never reported committed
/// if the tail is a torn write, see [`super::Spool`]).
pub fn scan(path: &Path) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan {
        records: Vec::new(),
        valid_len: 0,
        file_len,
        problem: None,
    };
    let mut body = Vec::new();
    while scan.valid_len < file_len {
        let offset = scan.valid_len;
        if file_len - offset < HEADER_LEN as u64 {
            scan.problem = Some(format!("a record header cut short at offset {offset}"));
            break;
        }
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header)?;
        let len = match record::body_len(&header) {
            Ok(len) => u64::from(len),
            Err(e) => {
                scan.problem = Some(format!("{e} at offset {offset}"));
                break;
            }
        };
        if offset + HEADER_LEN as u64 + len > file_len {
            scan.problem = Some(format!("a record cut short at offset {offset}"));
            break;
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body)?;
        match record::decode_body(&header, &body) {
            Ok((head, _)) => scan.records.push(Found {
                offset,
                len: HEADER_LEN as u64 + len,
                device: head.device,
                seq: head.seq,
            }),
            Err(e) => {
                scan.problem = Some(format!("{e} at offset {offset}"));
                break;
            }
        }
        scan.valid_len = offset + HEADER_LEN as u64 + len;
    }
    Ok(scan)
}

/// One acknowledgement entry for the record at `offset`.
pub fn ack_entry(offset: u64) -> [u8; ACK_ENTRY_LEN] {
    let bytes = offset.to_le_bytes();
    let mut entry = [0u8; ACK_ENTRY_LEN];
    entry[..8].copy_from_slice(&bytes);
    entry[8..].copy_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    entry
}

/// The offsets an acknowledgement list holds; invalid entries (a torn or zero-filled tail
/// after a crash) are skipped. A missing list is empty.
pub fn read_acks(path: &Path) -> io::Result<HashSet<u64>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    Ok(bytes
        .chunks_exact(ACK_ENTRY_LEN)
        .filter_map(|entry| {
            let offset: [u8; 8] = entry[..8].try_into().expect("8 bytes");
            let crc = u32::from_le_bytes(entry[8..].try_into().expect("4 bytes"));
            (crc32c::crc32c(&offset) == crc).then(|| u64::from_le_bytes(offset))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_entries_survive_and_garbage_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = acks_path(dir.path(), 1);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&ack_entry(0));
        bytes.extend_from_slice(&[0u8; ACK_ENTRY_LEN]); // a zero-filled tail after a crash
        bytes.extend_from_slice(&ack_entry(4096));
        bytes.extend_from_slice(&ack_entry(77)[..5]); // a torn last write
        fs::write(&path, bytes).unwrap();
        assert_eq!(read_acks(&path).unwrap(), HashSet::from([0, 4096]));
        assert!(read_acks(&acks_path(dir.path(), 2)).unwrap().is_empty());
    }

    #[test]
    fn list_finds_segments_in_order_and_drops_orphaned_ack_lists() {
        let dir = tempfile::tempdir().unwrap();
        for id in [3, 1, 20] {
            File::create(segment_path(dir.path(), id)).unwrap();
        }
        File::create(acks_path(dir.path(), 1)).unwrap();
        File::create(acks_path(dir.path(), 2)).unwrap();
        File::create(dir.path().join("lock")).unwrap();
        assert_eq!(list(dir.path()).unwrap(), [1, 3, 20]);
        assert!(acks_path(dir.path(), 1).exists());
        assert!(!acks_path(dir.path(), 2).exists());
    }
}
