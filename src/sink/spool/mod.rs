//! The forward sink's spool: a durable queue of frames on disk, from the moment a frame is
//! committed until the upstream acknowledges it.
//!
//! Layout: `<dir>/<id:020>.spool` segment files of checksummed records ([`record`]), each with
//! an `.acked` list beside it (`segment.rs`), and a `lock` file held with `flock` so two
//! processes (two daemons sharing a `state_dir`) never use one spool.
//!
//! **Appending** ([`Spool::reserve`], then [`Reservation::append`]) writes the record to the
//! active segment and waits until an fsync covers it: group commit. The first waiter becomes
//! the leader; it waits for committers that reserved a place but have not written yet and for
//! frames that keep arriving (until every committer the sink has joined, or none came for
//! 0.5 ms), but no longer than an fsync has been taking and at most `fsync_interval`; then it
//! syncs and releases everyone its sync covered. On a slow disk frames committed together
//! share one fsync; where fsyncs cost nothing, nobody waits. Only synced records become
//! visible to the forwarder. A new segment starts when the active one would pass a size
//! (an eighth of `max_bytes`, 64 KiB–64 MiB); the old one is synced first.
//!
//! **Forwarding** ([`Spool::claim_next`], [`Spool::read`], [`Spool::ack`]): records are kept
//! per device in sequence-number order; the forwarder claims them one at a time, reads them
//! back (checking the CRC again), and acknowledges or releases them. A record of a device is
//! not claimable while a frame of the same device with a lower number is still being
//! committed, so a device's frames leave in order even when several workers commit them.
//! Acknowledged records are appended to the segment's `.acked` list; a segment whose records
//! are all acknowledged is deleted.
//!
//! The code: appending in `commit.rs`, opening and recovery in `recover.rs`, the files in
//! `segment.rs` and `record.rs`, the rest here.
//!
//! **Recovery** ([`Spool::open`]) reads every segment, truncates a torn or corrupt tail (those
//! records were never reported committed: their fsync had not returned), skips the records
//! the `.acked` lists name, and queues the rest. A record that appears twice (a device resent
//! a frame the gateway had spooled but not yet ACKed when it crashed) is queued once.
//!
//! **Full**: an append that would take the spool's segment files past `max_bytes` fails with
//! [`SpoolError::Full`]; nothing already spooled is ever dropped to make room.

mod commit;
pub mod record;
mod recover;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use self::commit::Reservation;
use self::commit::INITIAL_SYNC_COST;
use self::record::{RecordHead, HEADER_LEN};
use self::recover::{lock_dir, LOCK_WAIT};

/// A fully acknowledged active segment larger than this is deleted at once; a smaller one is
/// kept for the next frames, so a trickle of frames does not create and delete a file each.
const RETIRE_ACTIVE_AT: u64 = 1 << 20;
/// Where a spool lives and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Its directory (created if missing).
    pub dir: PathBuf,
    /// Most bytes its segment files may take together.
    pub max_bytes: u64,
    /// How long a group commit waits for frames being committed at the same moment.
    pub fsync_interval: Duration,
    /// Most frames committed at the same moment (the sink's workers): a group commit that has
    /// them all syncs without waiting further.
    pub committers: usize,
}

/// Where a record lives: its segment and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    segment: u64,
    offset: u64,
}

/// Why the spool could not take or give a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolError {
    /// Taking the record would pass `max_bytes`.
    Full {
        /// The record's size.
        need: u64,
        /// Bytes the spool takes now.
        used: u64,
        /// Its limit.
        max: u64,
    },
    /// The frame does not fit a record (a field over the layout's limits).
    Unfit(String),
    /// Reading or writing failed; the text names the file and the OS error.
    Io(String),
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full { need, used, max } => write!(
                f,
                "spool full: {used} of spool_max_bytes = {max} bytes used, the frame needs {need} more; it waits for the upstream to acknowledge older frames"
            ),
            SpoolError::Unfit(why) | SpoolError::Io(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SpoolError {}

/// What `framegate status` shows about a spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records not acknowledged upstream yet.
    pub frames: u64,
    /// Bytes its segment files take on disk.
    pub bytes: u64,
    /// Records acknowledged upstream since the spool was opened.
    pub forwarded: u64,
    /// Records the upstream refused for good, removed since the spool was opened.
    pub rejected: u64,
    /// fsyncs of group commits since the spool was opened.
    pub syncs: u64,
}

/// A record the forwarder claimed: it is the forwarder's until acknowledged or released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Where it is.
    pub id: RecordId,
    /// Its sequence number.
    pub seq: u64,
}

/// A record read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Its identity.
    pub head: RecordHead,
    body: Vec<u8>,
    payload_at: usize,
}

impl Spooled {
    /// The frame's payload, as the device sent it.
    pub fn payload(&self) -> &[u8] {
        &self.body[self.payload_at..]
    }
}

/// Called (outside the spool's lock) when records became claimable.
pub type OnReady = Arc<dyn Fn() + Send + Sync>;

/// A durable queue of frames; see the module docs.
pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    /// Frames queued for the sink's workers and not reserved yet ([`Spool::announce`]): they
    /// hold back higher-numbered records of their device like frames being committed, but a
    /// group commit does not wait for them. A lock of its own, because the event loop takes
    /// it: never behind a worker's write or fsync, which hold `state`. Taken after `state`
    /// when both are needed.
    announced: Mutex<HashMap<Arc<str>, BTreeMap<u64, usize>>>,
    /// Group commit: the leader's sync finished, or a reserved frame was written.
    changed: Condvar,
    /// Held with `flock` for the spool's lifetime.
    _lock: File,
}

struct Segment {
    file: Arc<File>,
    len: u64,
    /// Records in it not acknowledged yet (synced or not).
    live: usize,
    /// Its `.acked` list, opened on the first acknowledgement.
    acks: Option<File>,
}

/// A written record waiting for the fsync that makes it visible.
struct Arrival {
    device: Arc<str>,
    seq: u64,
    id: RecordId,
}

#[derive(Debug)]
struct Entry {
    id: RecordId,
    claimed: bool,
}

struct State {
    max_bytes: u64,
    fsync_interval: Duration,
    committers: usize,
    /// How long an fsync has been taking (a moving average).
    sync_cost: Duration,
    segments: BTreeMap<u64, Segment>,
    /// The segment appended to.
    active: Option<u64>,
    next_segment: u64,
    /// Bytes of every segment file.
    disk_bytes: u64,
    /// Records appended (a ticket each) and the highest ticket an fsync covered.
    appended: u64,
    synced: u64,
    syncing: bool,
    /// Ticket ranges whose fsync failed, with the error.
    failed: Vec<(u64, u64, String)>,
    unsynced: Vec<(u64, Arrival)>,
    /// Sequence numbers being committed per device (reserved, not yet visible).
    in_commit: HashMap<Arc<str>, BTreeMap<u64, usize>>,
    in_commit_total: usize,
    /// Visible records per device, by sequence number.
    queues: HashMap<Arc<str>, BTreeMap<u64, Entry>>,
    /// Devices with records that became claimable since [`Spool::take_fresh`].
    fresh: HashSet<Arc<str>>,
    on_ready: Option<OnReady>,
    stats: SpoolStats,
}

impl Spool {
    /// Opens (creating it if needed) and recovers the spool in `config.dir`; see the module
    /// docs. Fails if another process holds it for longer than a few seconds.
    pub fn open(config: &SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        let io_err = |what: &str, e: io::Error| {
            SpoolError::Io(format!("spool {}: {what}: {e}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create the directory", e))?;
        let lock = lock_dir(&dir, LOCK_WAIT)?;
        let mut state = State {
            max_bytes: config.max_bytes,
            fsync_interval: config.fsync_interval,
            committers: config.committers.max(1),
            sync_cost: INITIAL_SYNC_COST,
            segments: BTreeMap::new(),
            active: None,
            next_segment: 1,
            disk_bytes: 0,
            appended: 0,
            synced: 0,
            syncing: false,
            failed: Vec::new(),
            unsynced: Vec::new(),
            in_commit: HashMap::new(),
            in_commit_total: 0,
            queues: HashMap::new(),
            fresh: HashSet::new(),
            on_ready: None,
            stats: SpoolStats::default(),
        };
        let ids = segment::list(&dir).map_err(|e| io_err("cannot list", e))?;
        for (i, &id) in ids.iter().enumerate() {
            state.recover(&dir, id, i + 1 == ids.len())?;
            state.next_segment = id + 1;
        }
        state.fresh = state.queues.keys().cloned().collect();
        if state.stats.frames > 0 {
            log::info!(
                "spool {}: {} frame(s) ({} bytes) from before the start wait to be forwarded",
                dir.display(),
                state.stats.frames,
                state.disk_bytes
            );
        }
        Ok(Spool {
            dir,
            state: Mutex::new(state),
            announced: Mutex::default(),
            changed: Condvar::new(),
            _lock: lock,
        })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Applies new limits (a reload changed the sink's settings).
    pub fn set_limits(&self, max_bytes: u64, fsync_interval: Duration, committers: usize) {
        let mut st = self.lock();
        st.max_bytes = max_bytes;
        st.fsync_interval = fsync_interval;
        st.committers = committers.max(1);
    }

    /// Sets what to call when records become claimable (the forwarder's wake-up).
    pub fn set_on_ready(&self, on_ready: Option<OnReady>) {
        self.lock().on_ready = on_ready;
    }

    /// Takes the devices whose records became claimable since the last call.
    pub fn take_fresh(&self) -> Vec<Arc<str>> {
        self.lock().fresh.drain().collect()
    }

    /// True if `device` has visible records nobody claimed.
    pub fn has_unclaimed(&self, device: &str) -> bool {
        self.lock()
            .queues
            .get(device)
            .is_some_and(|q| q.values().any(|e| !e.claimed))
    }

    fn lock_announced(&self) -> MutexGuard<'_, HashMap<Arc<str>, BTreeMap<u64, usize>>> {
        self.announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Announces frame `seq` of `device`, queued for the sink's workers (called on the event
    /// loop as the frame is queued, so no worker's scheduling can let a later frame of the
    /// device overtake it): higher-numbered records of the device are held back until it is
    /// reserved ([`Spool::reserve`] then [`Spool::unannounce`]) or withdrawn.
    pub fn announce(&self, device: &Arc<str>, seq: u64) {
        *self
            .lock_announced()
            .entry(device.clone())
            .or_default()
            .entry(seq)
            .or_default() += 1;
    }

    /// Ends an announcement: the frame was reserved (which holds back from then on) or will
    /// never be committed (dropped from the queue).
    pub fn unannounce(&self, device: &Arc<str>, seq: u64) {
        {
            let mut announced = self.lock_announced();
            let Some(seqs) = announced.get_mut(device) else {
                return;
            };
            if let Some(count) = seqs.get_mut(&seq) {
                *count -= 1;
                if *count == 0 {
                    seqs.remove(&seq);
                }
            }
            if seqs.is_empty() {
                announced.remove(device);
            }
        }
        let mut st = self.lock();
        st.fresh.insert(device.clone());
        let on_ready = st.on_ready.clone();
        drop(st);
        // The forwarder may be waiting for this hold-back to lift.
        if let Some(on_ready) = on_ready {
            on_ready();
        }
    }

    /// Claims the lowest-numbered unclaimed record of `device`, unless a lower-numbered frame
    /// of it is queued for the sink or still being committed.
    pub fn claim_next(&self, device: &str) -> Option<Claim> {
        let mut st = self.lock();
        let first = |m: &HashMap<Arc<str>, BTreeMap<u64, usize>>| {
            m.get(device).and_then(|m| m.keys().next().copied())
        };
        let announced = first(&self.lock_announced());
        let limit = match (first(&st.in_commit), announced) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let queue = st.queues.get_mut(device)?;
        let (&seq, entry) = queue.iter_mut().find(|(_, e)| !e.claimed)?;
        if limit.is_some_and(|l| l < seq) {
            return None;
        }
        entry.claimed = true;
        Some(Claim { id: entry.id, seq })
    }

    /// Returns every claimed record of `device` to the queue (its link closed).
    pub fn release(&self, device: &str) {
        let mut st = self.lock();
        let Some(key) = st.queues.get_key_value(device).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(queue) = st.queues.get_mut(device) {
            queue.values_mut().for_each(|e| e.claimed = false);
        }
        st.fresh.insert(key);
    }

    /// Returns one claimed record to the queue (the upstream asked for it again later).
    pub fn unclaim(&self, device: &str, seq: u64) {
        if let Some(entry) = self
            .lock()
            .queues
            .get_mut(device)
            .and_then(|q| q.get_mut(&seq))
        {
            entry.claimed = false;
        }
    }

    /// Returns every claimed record (the forwarder stops).
    pub fn release_all(&self) {
        let mut st = self.lock();
        let devices: Vec<Arc<str>> = st.queues.keys().cloned().collect();
        for queue in st.queues.values_mut() {
            queue.values_mut().for_each(|e| e.claimed = false);
        }
        st.fresh.extend(devices);
    }

    /// Reads a record back, checking its CRC again.
    pub fn read(&self, id: RecordId) -> Result<Spooled, SpoolError> {
        let (file, segment_len) = {
            let st = self.lock();
            let segment = st.segments.get(&id.segment).ok_or_else(|| {
                SpoolError::Io(format!(
                    "spool {}: segment {} is gone",
                    self.dir.display(),
                    id.segment
                ))
            })?;
            (segment.file.clone(), segment.len)
        };
        let fail = |e: String| {
            SpoolError::Io(format!(
                "spool {}: record at {} of segment {}: {e}",
                self.dir.display(),
                id.offset,
                id.segment
            ))
        };
        let mut header = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header, id.offset)
            .map_err(|e| fail(e.to_string()))?;
        let len = record::body_len(&header).map_err(|e| fail(e.to_string()))?;
        // A header damaged since it was written must not make us allocate gigabytes.
        if id.offset + HEADER_LEN as u64 + u64::from(len) > segment_len {
            return Err(fail(format!(
                "its length {len} runs past the segment's end"
            )));
        }
        let mut body = vec![0u8; len as usize];
        file.read_exact_at(&mut body, id.offset + HEADER_LEN as u64)
            .map_err(|e| fail(e.to_string()))?;
        let (head, payload_at) =
            record::decode_body(&header, &body).map_err(|e| fail(e.to_string()))?;
        Ok(Spooled {
            head,
            body,
            payload_at,
        })
    }

    /// The upstream acknowledged frame `seq` of `device`: it leaves the spool. False if no
    /// such record was queued.
    pub fn ack(&self, device: &str, seq: u64) -> bool {
        let mut st = self.lock();
        let done = st.remove(&self.dir, device, seq);
        if done {
            st.stats.forwarded += 1;
        }
        done
    }

    /// The upstream refused frame `seq` of `device` for good (or it cannot be read back): it
    /// leaves the spool. False if no such record was queued.
    pub fn reject(&self, device: &str, seq: u64) -> bool {
        let mut st = self.lock();
        let done = st.remove(&self.dir, device, seq);
        if done {
            st.stats.rejected += 1;
        }
        done
    }

    /// Records, bytes and totals now.
    pub fn stats(&self) -> SpoolStats {
        let st = self.lock();
        SpoolStats {
            bytes: st.disk_bytes,
            ..st.stats
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state completes before anything that can panic, so a poisoned
        // lock still guards a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Takes a record out of its device's queue and settles it; false if it was not there.
    fn remove(&mut self, dir: &Path, device: &str, seq: u64) -> bool {
        let Some(queue) = self.queues.get_mut(device) else {
            return false;
        };
        let Some(entry) = queue.remove(&seq) else {
            return false;
        };
        if queue.is_empty() {
            self.queues.remove(device);
        }
        self.settle(dir, entry.id);
        true
    }

    /// Records that a record is done with: noted in its segment's `.acked` list; a segment
    /// left with nothing to forward is deleted.
    fn settle(&mut self, dir: &Path, id: RecordId) {
        let Some(seg) = self.segments.get_mut(&id.segment) else {
            return;
        };
        if seg.acks.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment::acks_path(dir, id.segment))
            {
                Ok(file) => seg.acks = Some(file),
                Err(e) => log::warn!(
                    "spool {}: cannot open the acknowledgement list of segment {} ({e}); its frames are sent again after a restart (the upstream stores them once)",
                    dir.display(),
                    id.segment
                ),
            }
        }
        if let Some(acks) = &mut seg.acks {
            if let Err(e) = acks.write_all(&segment::ack_entry(id.offset)) {
                log::warn!(
                    "spool {}: cannot note an acknowledgement in segment {} ({e}); the frame is sent again after a restart (the upstream stores it once)",
                    dir.display(),
                    id.segment
                );
            }
        }
        seg.live -= 1;
        self.stats.frames -= 1;
        let retire =
            seg.live == 0 && (self.active != Some(id.segment) || seg.len >= RETIRE_ACTIVE_AT);
        if retire {
            if self.active == Some(id.segment) {
                self.active = None;
            }
            self.delete_segment(dir, id.segment);
        }
    }

    fn delete_segment(&mut self, dir: &Path, id: u64) {
        if let Some(seg) = self.segments.remove(&id) {
            self.disk_bytes -= seg.len;
        }
        // The segment first: an `.acked` list left without it is removed at the next open.
        for path in [segment::segment_path(dir, id), segment::acks_path(dir, id)] {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("spool: cannot delete {}: {e}", path.display());
                }
            }
        }
    }
}
