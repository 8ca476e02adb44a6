//! Opening a spool: its lock, and its segments read back (see the parent module's docs).

use std::collections::btree_map;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{segment, Entry, RecordId, Segment, SpoolError, State};

/// How long [`super::Spool::open`] waits for another holder of the spool's lock to let go.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(10);
impl State {
    /// Reads segment `id` at start-up and queues its unacknowledged records.
    pub(super) fn recover(&mut self, dir: &Path, id: u64, newest: bool) -> Result<(), SpoolError> {
        let path = segment::segment_path(dir, id);
        let io_err = |what: &str, e: io::Error| {
            SpoolError::Io(format!("spool: {what} {}: {e}", path.display()))
        };
        let scan = segment::scan(&path).map_err(|e| io_err("cannot read", e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("cannot open", e))?;
        if let Some(problem) = &scan.problem {
            let dropped = scan.file_len - scan.valid_len;
            if newest {
                log::warn!(
                    "spool: {}: {problem}; the last {dropped} byte(s) are cut off (a write the crash interrupted: those frames were never reported stored)",
                    path.display()
                );
            } else {
                log::error!(
                    "spool: {}: {problem}; the last {dropped} byte(s) of this older segment are unreadable and cut off (disk corruption?): frames in them are lost",
                    path.display()
                );
            }
            file.set_len(scan.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err("cannot truncate", e))?;
        }
        let acked = segment::read_acks(&segment::acks_path(dir, id))
            .map_err(|e| io_err("cannot read the acknowledgements of", e))?;
        let mut seg = Segment {
            file: Arc::new(file),
            len: scan.valid_len,
            live: 0,
            acks: None,
        };
        let mut duplicates = Vec::new();
        for found in scan.records {
            if acked.contains(&found.offset) {
                continue;
            }
            let device: Arc<str> = Arc::from(found.device);
            let queue = self.queues.entry(device).or_default();
            let id = RecordId {
                segment: id,
                offset: found.offset,
            };
            seg.live += 1;
            self.stats.frames += 1;
            match queue.entry(found.seq) {
                btree_map::Entry::Occupied(_) => duplicates.push(id),
                btree_map::Entry::Vacant(place) => {
                    place.insert(Entry { id, claimed: false });
                }
            }
        }
        self.disk_bytes += seg.len;
        self.segments.insert(id, seg);
        for dup in duplicates {
            self.settle(dir, dup);
        }
        if self.segments.get(&id).is_some_and(|s| s.live == 0) {
            self.delete_segment(dir, id);
        }
        Ok(())
    }
}

/// Takes the spool's lock file, waiting up to `wait` for a holder that is going away.
pub(super) fn lock_dir(dir: &Path, wait: Duration) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SpoolError::Io(format!("spool: cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock || Instant::now() >= deadline {
            return Err(SpoolError::Io(format!(
                "spool {} is in use ({e}): does another framegate use the same state_dir?",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
