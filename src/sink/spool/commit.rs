//! Appending to a spool: a frame's reservation, its write, and the group commit that makes it
//! durable and visible (see the parent module's docs).

use std::collections::btree_map;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::record::RecordHead;
use super::{segment, Arrival, Entry, RecordId, Segment, Spool, SpoolError, State};

/// A group commit's leader syncs once no frame joined for this long (or `fsync_interval` is
/// over): workers released by the previous sync come back with their next frames within it.
const GATHER_QUIET: Duration = Duration::from_micros(500);
/// Shorter gathering waits are not worth a sleep.
const MIN_GATHER: Duration = Duration::from_micros(100);
/// What an fsync is assumed to cost until some were measured: a disk's, not a tmpfs's.
pub(super) const INITIAL_SYNC_COST: Duration = Duration::from_millis(1);
/// fsync failures remembered for the committers still to be told.
const FAILURES_KEPT: usize = 64;

impl Spool {
    /// Announces that frame `seq` of `device` is about to be appended: until it is visible
    /// (or the reservation is dropped), higher-numbered records of the device are not
    /// claimable, and a group commit waits (up to `fsync_interval`) for it to be written.
    pub fn reserve(&self, device: &Arc<str>, seq: u64) -> Reservation<'_> {
        let mut st = self.lock();
        *st.in_commit
            .entry(device.clone())
            .or_default()
            .entry(seq)
            .or_default() += 1;
        st.in_commit_total += 1;
        Reservation {
            spool: self,
            device: device.clone(),
            seq,
            written: false,
        }
    }

    /// Waits until an fsync covered `ticket`, leading a group commit when none is under way.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        ticket: u64,
    ) -> Result<(), SpoolError> {
        loop {
            if st.synced >= ticket {
                return match st
                    .failed
                    .iter()
                    .find(|(a, b, _)| (*a..=*b).contains(&ticket))
                {
                    Some((_, _, why)) => Err(SpoolError::Io(why.clone())),
                    None => Ok(()),
                };
            }
            if st.syncing {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.syncing = true;
            // Let frames on their way share this sync: those reserved but not written yet, and
            // those that keep arriving (the workers the last sync released, with their next
            // frames), until every committer joined or none came for GATHER_QUIET. That is
            // worth it only for about as long as an fsync takes: on a slow disk up to
            // fsync_interval, on a tmpfs not at all.
            let deadline = Instant::now() + st.fsync_interval.min(st.sync_cost);
            loop {
                let expected = st.in_commit_total > st.unsynced.len();
                let left = deadline.saturating_duration_since(Instant::now());
                // Sleeping (and being woken) costs more than a wait this short could gain.
                if left < MIN_GATHER || (!expected && st.unsynced.len() >= st.committers) {
                    break;
                }
                let before = st.appended;
                let (guard, waited) = self
                    .changed
                    .wait_timeout(
                        st,
                        if expected {
                            left
                        } else {
                            left.min(GATHER_QUIET)
                        },
                    )
                    .unwrap_or_else(|p| p.into_inner());
                st = guard;
                let quiet = waited.timed_out() && st.appended == before;
                if quiet && st.in_commit_total == st.unsynced.len() {
                    break;
                }
            }
            let target = st.appended;
            let file = st
                .active
                .and_then(|id| st.segments.get(&id))
                .map(|s| s.file.clone());
            drop(st);
            // Records of older segments were synced when their segment was closed.
            let synced_at = Instant::now();
            let result = file.map_or(Ok(()), |f| f.sync_data());
            let took = synced_at.elapsed();
            st = self.lock();
            st.stats.syncs += 1;
            st.sync_cost = (st.sync_cost * 3 + took) / 4;
            if let Err(e) = result {
                let why = format!("spool {}: fsync failed: {e}", self.dir.display());
                log::error!("{why}");
                let from = st.synced + 1;
                st.note_failure(from, target, why);
            }
            st.synced = target;
            st.syncing = false;
            let ready = st.make_visible(&self.dir, target);
            self.changed.notify_all();
            if ready {
                if let Some(on_ready) = st.on_ready.clone() {
                    drop(st);
                    on_ready();
                    st = self.lock();
                }
            }
        }
    }

    /// Makes group commits assume an fsync takes `cost` (tests: a slow disk on any disk).
    #[cfg(test)]
    pub(super) fn assume_sync_cost(&self, cost: Duration) {
        self.lock().sync_cost = cost;
    }
}

/// A frame's place in the commit order; see [`Spool::reserve`].
pub struct Reservation<'a> {
    spool: &'a Spool,
    device: Arc<str>,
    seq: u64,
    written: bool,
}

impl Reservation<'_> {
    /// Writes the record and waits until an fsync covers it. `head.device` and `head.seq`
    /// must be the reserved ones.
    pub fn append(mut self, head: &RecordHead, payload: &[u8]) -> Result<(), SpoolError> {
        debug_assert!(*head.device == *self.device && head.seq == self.seq);
        let prefix = head.encode(payload).ok_or_else(|| {
            SpoolError::Unfit(format!(
                "frame {}#{} does not fit a spool record (a name or metadata over the record's limits, or over 4 GiB)",
                head.device, head.seq
            ))
        })?;
        let len = (prefix.len() + payload.len()) as u64;
        let spool = self.spool;
        let mut st = spool.lock();
        if len > st.max_bytes {
            return Err(SpoolError::Unfit(format!(
                "frame {}#{} takes {len} bytes in the spool, more than spool_max_bytes = {}: it can never be spooled",
                head.device, head.seq, st.max_bytes
            )));
        }
        if st.disk_bytes + len > st.max_bytes {
            return Err(SpoolError::Full {
                need: len,
                used: st.disk_bytes,
                max: st.max_bytes,
            });
        }
        let segment = st.segment_for(&spool.dir, len)?;
        let seg = st.segments.get_mut(&segment).expect("segment_for made it");
        let offset = seg.len;
        let written = seg
            .file
            .write_all_at(&prefix, offset)
            .and_then(|()| seg.file.write_all_at(payload, offset + prefix.len() as u64));
        if let Err(e) = written {
            // Leave no partial record behind for the next append to follow.
            let _ = seg.file.set_len(offset);
            return Err(SpoolError::Io(format!(
                "spool {}: cannot write segment {segment}: {e}",
                spool.dir.display()
            )));
        }
        seg.len += len;
        seg.live += 1;
        st.disk_bytes += len;
        st.stats.frames += 1;
        st.appended += 1;
        let ticket = st.appended;
        st.unsynced.push((
            ticket,
            Arrival {
                device: self.device.clone(),
                seq: self.seq,
                id: RecordId { segment, offset },
            },
        ));
        // From here the record leaves `in_commit` when it becomes visible, not on drop.
        self.written = true;
        spool.changed.notify_all();
        spool.wait_durable(st, ticket)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let mut st = self.spool.lock();
        st.end_commit(&self.device, self.seq);
        st.fresh.insert(self.device.clone());
        let on_ready = st.on_ready.clone();
        drop(st);
        // A leader may be waiting for this frame, the forwarder for the hold-back to lift.
        self.spool.changed.notify_all();
        if let Some(on_ready) = on_ready {
            on_ready();
        }
    }
}

impl State {
    /// The size at which a new segment starts: an eighth of the limit, within 64 KiB–64 MiB,
    /// so space comes back in useful steps as segments are fully acknowledged.
    fn segment_target(&self) -> u64 {
        (self.max_bytes / 8).clamp(64 << 10, 64 << 20)
    }

    /// The segment a record of `len` bytes goes to: the active one, or a new one.
    fn segment_for(&mut self, dir: &Path, len: u64) -> Result<u64, SpoolError> {
        if let Some(id) = self.active {
            let seg = &self.segments[&id];
            if seg.len == 0 || seg.len + len <= self.segment_target() {
                return Ok(id);
            }
            // Later fsyncs cover only the new segment: make this one durable now.
            if let Err(e) = seg.file.sync_data() {
                let why = format!("spool {}: fsync of segment {id} failed: {e}", dir.display());
                log::error!("{why}");
                let (from, to) = (self.synced + 1, self.appended);
                self.note_failure(from, to, why.clone());
                return Err(SpoolError::Io(why));
            }
            self.active = None;
            if seg.live == 0 {
                self.delete_segment(dir, id);
            }
        }
        let id = self.next_segment;
        let path = segment::segment_path(dir, id);
        let io_err =
            |e: io::Error| SpoolError::Io(format!("spool: cannot create {}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        // The new file's name must survive a crash as much as the records in it.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        self.next_segment += 1;
        self.segments.insert(
            id,
            Segment {
                file: Arc::new(file),
                len: 0,
                live: 0,
                acks: None,
            },
        );
        self.active = Some(id);
        Ok(id)
    }

    fn note_failure(&mut self, from: u64, to: u64, why: String) {
        if from > to {
            return;
        }
        if self.failed.len() >= FAILURES_KEPT {
            self.failed.remove(0);
        }
        self.failed.push((from, to, why));
    }

    fn end_commit(&mut self, device: &Arc<str>, seq: u64) {
        if let Some(seqs) = self.in_commit.get_mut(device) {
            if let Some(count) = seqs.get_mut(&seq) {
                *count -= 1;
                if *count == 0 {
                    seqs.remove(&seq);
                }
                self.in_commit_total -= 1;
            }
            if seqs.is_empty() {
                self.in_commit.remove(device);
            }
        }
    }

    /// Queues the records an fsync covered (through `target`); true if any became claimable.
    fn make_visible(&mut self, dir: &Path, target: u64) -> bool {
        let split = self.unsynced.partition_point(|(t, _)| *t <= target);
        let arrived: Vec<(u64, Arrival)> = self.unsynced.drain(..split).collect();
        let mut ready = false;
        for (_, a) in arrived {
            self.end_commit(&a.device, a.seq);
            let queue = self.queues.entry(a.device.clone()).or_default();
            match queue.entry(a.seq) {
                // The device resent a frame that is spooled already: one copy is enough.
                btree_map::Entry::Occupied(_) => self.settle(dir, a.id),
                btree_map::Entry::Vacant(place) => {
                    place.insert(Entry {
                        id: a.id,
                        claimed: false,
                    });
                }
            }
            self.fresh.insert(a.device);
            ready = true;
        }
        ready
    }
}
