//! Which device-chosen sequence numbers (native protocol) were committed, per device, so a
//! resent frame is ACKed again without being stored twice, across restarts too.
//!
//! Two files under `state_dir`, written by a [`Recorder`] before the ACKs they cover go out:
//! `committed.log`, to which each batch of commits is appended (`SEQ<TAB>DEVICE` lines) and
//! fsynced, so a batch costs its own size whatever the number of devices; and
//! `committed.toml`, the compact ranges, rewritten atomically only when the log has grown
//! ([`COMPACT_AFTER`] lines), after which the log is emptied. Loading reads the ranges, then
//! replays the log (a torn last line is ignored: it was never acknowledged).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use serde::{Deserialize, Serialize};

use super::{durable, StoreError};

/// The compact record under `state_dir`.
pub const FILE_NAME: &str = "committed.toml";
/// The append-only log under `state_dir`.
pub const LOG_NAME: &str = "committed.log";
/// Log lines after which the record is compacted into [`FILE_NAME`].
pub const COMPACT_AFTER: usize = 100_000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    /// Device id → committed sequence numbers as inclusive `[first, last]` ranges.
    devices: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Most separate ranges kept per device. Devices number frames upwards, so one range is the
/// norm; each frame refused for good (NACK "too large") leaves a hole and a new range. Past
/// this many, the two oldest ranges are merged: a hole that old belongs to a frame the device
/// gave up long ago.
pub const MAX_RANGES: usize = 1024;

/// A set of sequence numbers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges {
    ranges: Vec<(u64, u64)>,
}

impl SeqRanges {
    /// True if `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end < seq);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= seq)
    }

    /// Adds `seq`, merging ranges it joins.
    pub fn insert(&mut self, seq: u64) {
        let i = self
            .ranges
            .partition_point(|&(_, end)| end.saturating_add(1) < seq);
        match self.ranges.get_mut(i) {
            Some((start, end)) if *start <= seq => {
                if *end >= seq {
                    return; // already in
                }
                *end = seq; // just after this range
            }
            Some((start, _)) if *start == seq + 1 => *start = seq,
            _ => self.ranges.insert(i, (seq, seq)),
        }
        // Join with the next range if they now touch.
        if let Some(&(next_start, next_end)) = self.ranges.get(i + 1) {
            if self.ranges[i].1.saturating_add(1) >= next_start {
                self.ranges[i].1 = self.ranges[i].1.max(next_end);
                self.ranges.remove(i + 1);
            }
        }
        if self.ranges.len() > MAX_RANGES {
            let (_, end) = self.ranges.remove(1);
            self.ranges[0].1 = end;
        }
    }

    /// Adds every number from `first` to `last`.
    pub fn insert_range(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        self.insert(first);
        self.insert(last);
        // The two ends are in; whatever lies between joins them into one range.
        let i = self.ranges.partition_point(|&(_, end)| end < first);
        let j = self.ranges.partition_point(|&(_, end)| end < last);
        let end = self.ranges[j].1;
        self.ranges.drain(i + 1..=j);
        self.ranges[i].1 = end;
    }

    /// The highest number in the set (0 when empty).
    pub fn highest(&self) -> u64 {
        self.ranges.last().map_or(0, |&(_, end)| end)
    }

    /// The ranges, for persisting.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

/// The append-only half of the record, kept by the [`Recorder`] behind its lock.
struct Log {
    dir: PathBuf,
    file: Option<File>,
    /// Lines in the log since the last compaction (or start).
    lines: usize,
}

impl Log {
    fn new(dir: PathBuf) -> Log {
        Log {
            dir,
            file: None,
            // Whatever the log held at start counts towards compaction as soon as it is
            // appended to; a slightly late compaction is harmless.
            lines: 0,
        }
    }

    fn fail(&self, what: &str, e: std::io::Error) -> StoreError {
        StoreError(format!("{what} {}: {e}", self.dir.join(LOG_NAME).display()))
    }

    /// Appends one line per commit and makes them durable.
    fn append(&mut self, batch: &[Entry]) -> Result<(), StoreError> {
        if self.file.is_none() {
            let path = self.dir.join(LOG_NAME);
            let created = !path.exists();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| self.fail("cannot open", e))?;
            if created {
                // The new file's name must be durable before anything in it counts.
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| self.fail("cannot fsync the directory of", e))?;
            }
            self.file = Some(file);
        }
        let mut text = String::with_capacity(batch.len() * 24);
        for (device, seq) in batch {
            text.push_str(&format!("{seq}\t{device}\n"));
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError(format!("cannot append to {LOG_NAME}: {e}")))?;
        self.lines += batch.len();
        Ok(())
    }

    /// Writes the compact record, then empties the log (a crash in between leaves both, and
    /// replaying the log over the record changes nothing).
    fn compact(&mut self, toml: &str) -> Result<(), StoreError> {
        durable::replace_file(&self.dir, FILE_NAME, toml)?;
        let file = self.file.as_mut().expect("appended before compacting");
        file.set_len(0)
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError(format!("cannot empty {LOG_NAME}: {e}")))?;
        self.lines = 0;
        Ok(())
    }
}

/// Committed sequence numbers of every native device.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    devices: HashMap<String, SeqRanges>,
}

/// One frame's commit waiting to be recorded: device, sequence number, and the caller's tag
/// (the loop's connection token) for the ACK.
pub type Pending = (Arc<str>, u64, usize);

/// One line of the log: device and sequence number.
pub type Entry = (Arc<str>, u64);

/// Failed writes remembered for the writers that queued their entries into them.
const FAILURES_KEPT: usize = 1024;

/// The durable record, shared by every thread that records commits: a sink worker records
/// the frame it alone took right after committing it (so its ACK needs no further hand-off),
/// and the loop's writer thread ([`Recorder::spawn_writer`]) records frames that several
/// sinks took.
///
/// Group commit: a writer queues its entries, then takes the log; whoever holds the log
/// writes everything queued so far in one append and one fsync, so writers that queued
/// meanwhile find their entries written when they get the log in turn.
pub struct Recorder {
    queue: Mutex<Queue>,
    written: Mutex<Written>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

/// Entries not written yet. Each entry gets the next ticket number as it is queued.
#[derive(Default)]
struct Queue {
    entries: Vec<Entry>,
    last_ticket: u64,
}

/// The log and what was written to it.
struct Written {
    log: Log,
    /// Everything recorded, for compacting the log.
    committed: Committed,
    /// Every ticket up to this one was written (or its write failed).
    through: u64,
    /// Ticket ranges whose write failed, and why (the newest [`FAILURES_KEPT`]).
    failures: VecDeque<(u64, u64, StoreError)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer leaves nothing half-updated that matters here: the log is
    // append-only and a torn line is ignored on load.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// The record under `state_dir`, starting from `committed` (as loaded from there).
    pub fn new(committed: Committed, state_dir: &Path) -> Recorder {
        Recorder {
            queue: Mutex::new(Queue::default()),
            written: Mutex::new(Written {
                log: Log::new(state_dir.to_path_buf()),
                committed,
                through: 0,
                failures: VecDeque::new(),
            }),
        }
    }

    /// Records `entries` as committed; returns once they are durable (appended and
    /// fsynced), or why they could not be made so. Blocks on disk: never call it on the
    /// event loop.
    pub fn record(&self, entries: impl IntoIterator<Item = Entry>) -> Result<(), StoreError> {
        let (first, last) = {
            let mut queue = lock(&self.queue);
            let first = queue.last_ticket + 1;
            for entry in entries {
                queue.entries.push(entry);
                queue.last_ticket += 1;
            }
            (first, queue.last_ticket)
        };
        if last < first {
            return Ok(());
        }
        let mut written = lock(&self.written);
        if written.through < last {
            // Nobody wrote ours yet: write everything queued, ours included.
            let (batch, through) = {
                let mut queue = lock(&self.queue);
                (std::mem::take(&mut queue.entries), queue.last_ticket)
            };
            let start = written.through + 1;
            let result = written.write(&batch);
            written.through = through;
            if let Err(e) = result {
                if written.failures.len() == FAILURES_KEPT {
                    written.failures.pop_front();
                }
                written.failures.push_back((start, through, e));
            }
        }
        match written
            .failures
            .iter()
            .find(|(start, end, _)| *start <= last && first <= *end)
        {
            Some((_, _, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Starts the thread that records batches sent by the event loop (frames that several
    /// sinks took, whose last commit the loop is the first to know of): each batch sent to
    /// the returned channel is recorded through this record (batches that queued meanwhile
    /// are merged) and reported through `done`. Closing the channel ends the thread.
    pub fn spawn_writer<F>(
        self: &Arc<Self>,
        done: F,
    ) -> (mpsc::Sender<Vec<Pending>>, JoinHandle<()>)
    where
        F: Fn(Vec<Pending>, Result<(), StoreError>) + Send + 'static,
    {
        let recorder = self.clone();
        let (tx, rx) = mpsc::channel::<Vec<Pending>>();
        let handle = thread::Builder::new()
            .name("fg-committed".into())
            .spawn(move || {
                while let Ok(mut batch) = rx.recv() {
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                    let result = recorder.record(batch.iter().map(|(d, seq, _)| (d.clone(), *seq)));
                    done(batch, result);
                }
            })
            .expect("spawn the committed-record thread");
        (tx, handle)
    }
}

impl Written {
    /// Appends `batch` to the log, compacting it when it has grown long.
    fn write(&mut self, batch: &[Entry]) -> Result<(), StoreError> {
        for (device, seq) in batch {
            self.committed.record(device, *seq);
        }
        self.log.append(batch)?;
        if self.log.lines >= COMPACT_AFTER {
            self.log.compact(&self.committed.to_toml())?;
        }
        Ok(())
    }
}

impl Committed {
    /// Loads `committed.toml` from `state_dir` (empty if it does not exist yet).
    pub fn load(state_dir: &Path) -> Result<Committed, StoreError> {
        durable::create_state_dir(state_dir)?;
        let damaged = |name: &str, why: String| {
            StoreError(format!(
                "{} is damaged ({why}); resent native frames could be stored twice, so framegate \
                 will not start. Restore it from a backup, or remove it if duplicates are acceptable",
                state_dir.join(name).display()
            ))
        };
        let mut committed = Committed::default();
        if let Some(text) = durable::read_file(state_dir, FILE_NAME)? {
            let on_disk: OnDisk =
                toml::from_str(&text).map_err(|e| damaged(FILE_NAME, e.to_string()))?;
            for (device, ranges) in on_disk.devices {
                let set = committed.devices.entry(device).or_default();
                for (first, last) in ranges {
                    set.insert_range(first, last);
                }
            }
        }
        if let Some(log) = durable::read_file(state_dir, LOG_NAME)? {
            // Only whole lines count: a crash mid-append leaves a torn last line, whose commit
            // was never acknowledged.
            let whole = log.rfind('\n').map_or("", |end| &log[..end]);
            for (n, line) in whole.lines().enumerate() {
                let parsed = line
                    .split_once('\t')
                    .and_then(|(seq, device)| Some((seq.parse::<u64>().ok()?, device)));
                let Some((seq, device)) = parsed else {
                    return Err(damaged(LOG_NAME, format!("line {} is {line:?}", n + 1)));
                };
                committed.record(device, seq);
            }
        }
        Ok(committed)
    }

    fn to_toml(&self) -> String {
        let devices = self
            .devices
            .iter()
            .map(|(d, r)| (d.clone(), r.ranges().to_vec()))
            .collect();
        toml::to_string(&OnDisk { devices }).expect("ranges serialise")
    }

    /// Records that `device` committed `seq`.
    pub fn record(&mut self, device: &str, seq: u64) {
        // Looked up first: `entry` would allocate the key for every frame of a known device.
        match self.devices.get_mut(device) {
            Some(ranges) => ranges.insert(seq),
            None => self
                .devices
                .entry(device.to_string())
                .or_default()
                .insert(seq),
        }
    }

    /// True if `device` committed `seq`.
    pub fn contains(&self, device: &str, seq: u64) -> bool {
        self.devices.get(device).is_some_and(|r| r.contains(seq))
    }

    /// The device's highest committed number (0: none).
    pub fn highest(&self, device: &str) -> u64 {
        self.devices.get(device).map_or(0, SeqRanges::highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_answer_membership() {
        let mut r = SeqRanges::default();
        for seq in [5, 7, 6, 1, 3, 2, 10] {
            r.insert(seq);
        }
        assert_eq!(r.ranges(), [(1, 3), (5, 7), (10, 10)]);
        r.insert(4);
        r.insert(4);
        assert_eq!(r.ranges(), [(1, 7), (10, 10)]);
        for seq in 1..=7 {
            assert!(r.contains(seq));
        }
        assert!(!r.contains(0) && !r.contains(8) && !r.contains(9) && r.contains(10));
        assert_eq!(r.highest(), 10);
        r.insert(9);
        r.insert(8);
        assert_eq!(r.ranges(), [(1, 10)]);
    }

    #[test]
    fn ranges_fill_between_their_ends() {
        let mut r = SeqRanges::default();
        r.insert(5);
        r.insert(20);
        r.insert_range(3, 12);
        assert_eq!(r.ranges(), [(3, 12), (20, 20)]);
        r.insert_range(10, 30);
        assert_eq!(r.ranges(), [(3, 30)]);
    }

    #[test]
    fn the_record_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let committed = Committed::load(dir.path()).unwrap();
        let (tx, done_rx) = mpsc::channel();
        let recorder = Arc::new(Recorder::new(committed, dir.path()));
        let (writer, thread) = recorder.spawn_writer(move |batch, result| {
            tx.send((batch, result)).unwrap();
        });
        let cam: Arc<str> = Arc::from("cam \"q\" ../x");
        writer
            .send(vec![
                (cam.clone(), 2, 7),
                (cam.clone(), 3, 7),
                (cam.clone(), 9, 8),
            ])
            .unwrap();
        let (batch, result) = done_rx.recv().unwrap();
        assert_eq!(result, Ok(()));
        assert_eq!(batch.len(), 3);
        drop(writer);
        thread.join().unwrap();
        let again = Committed::load(dir.path()).unwrap();
        assert!(again.contains(&cam, 2) && again.contains(&cam, 3) && again.contains(&cam, 9));
        assert!(!again.contains(&cam, 4));
        assert_eq!(again.highest(&cam), 9);
    }

    #[test]
    fn the_log_is_replayed_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        // A compact record, a log on top of it, and a torn last line (never acknowledged).
        std::fs::write(dir.path().join(FILE_NAME), "[devices]\ncam = [[1, 3]]\n").unwrap();
        std::fs::write(dir.path().join(LOG_NAME), "4\tcam\n7\tother cam\n9\tca").unwrap();
        let c = Committed::load(dir.path()).unwrap();
        assert!((1..=4).all(|s| c.contains("cam", s)) && !c.contains("cam", 9));
        assert!(c.contains("other cam", 7));

        // Appends go to the log; the record is rewritten only when it is compacted.
        let (tx, rx) = mpsc::channel();
        let recorder = Arc::new(Recorder::new(c, dir.path()));
        let (writer, thread) = recorder.spawn_writer(move |_, r| tx.send(r).unwrap());
        let cam: Arc<str> = Arc::from("cam");
        let big: Vec<Pending> = (5..5 + COMPACT_AFTER as u64)
            .map(|s| (cam.clone(), s, 0))
            .collect();
        writer.send(vec![(cam.clone(), 5, 0)]).unwrap();
        assert_eq!(rx.recv().unwrap(), Ok(()));
        let log = std::fs::read_to_string(dir.path().join(LOG_NAME)).unwrap();
        assert!(log.ends_with("5\tcam\n"), "{log:?}");
        writer.send(big).unwrap();
        assert_eq!(rx.recv().unwrap(), Ok(()));
        assert_eq!(
            std::fs::read(dir.path().join(LOG_NAME)).unwrap(),
            b"",
            "compacted"
        );
        drop(writer);
        thread.join().unwrap();
        let again = Committed::load(dir.path()).unwrap();
        assert_eq!(again.highest("cam"), 4 + COMPACT_AFTER as u64);
        assert!(again.contains("other cam", 7));
    }

    #[test]
    fn writers_on_many_threads_share_appends_and_each_returns_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::new(Committed::default(), dir.path()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let recorder = recorder.clone();
                thread::spawn(move || {
                    let device: Arc<str> = Arc::from(format!("cam-{t}"));
                    for seq in 1..=200 {
                        recorder.record([(device.clone(), seq)]).unwrap();
                        // Returned: the line is in the log already.
                        let log = std::fs::read_to_string(recorder_log(&recorder)).unwrap();
                        assert!(log.contains(&format!("{seq}\t{device}\n")));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let again = Committed::load(dir.path()).unwrap();
        for t in 0..8 {
            assert_eq!(again.highest(&format!("cam-{t}")), 200);
            assert!((1..=200).all(|s| again.contains(&format!("cam-{t}"), s)));
        }
        let lines = std::fs::read_to_string(dir.path().join(LOG_NAME))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, 8 * 200, "every entry written exactly once");
    }

    fn recorder_log(recorder: &Recorder) -> PathBuf {
        lock(&recorder.written).log.dir.join(LOG_NAME)
    }

    #[test]
    fn a_failed_write_fails_only_the_writers_whose_entries_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let recorder = Recorder::new(Committed::default(), &state);
        // The state directory does not exist: the log cannot be opened.
        let err = recorder.record([(Arc::from("cam"), 1)]).unwrap_err();
        assert!(err.0.contains("cannot open"), "{err}");
        std::fs::create_dir(&state).unwrap();
        assert_eq!(recorder.record([(Arc::from("cam"), 2)]), Ok(()));
        assert_eq!(recorder.record(std::iter::empty()), Ok(()));
        let again = Committed::load(&state).unwrap();
        assert!(again.contains("cam", 2) && !again.contains("cam", 1));
    }

    #[test]
    fn a_damaged_record_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "devices = [").unwrap();
        let err = Committed::load(dir.path()).unwrap_err();
        assert!(err.0.contains("damaged"), "{err}");
    }

    #[test]
    fn the_oldest_holes_are_closed_past_the_cap() {
        let mut r = SeqRanges::default();
        for i in 0..(MAX_RANGES as u64 + 5) {
            r.insert(i * 2 + 1);
        }
        assert_eq!(r.ranges().len(), MAX_RANGES);
        assert!(r.contains(2), "an old hole was closed");
        assert!(
            !r.contains(MAX_RANGES as u64 * 2 + 8),
            "recent holes stay open"
        );
    }
}
