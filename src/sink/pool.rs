//! Sink workers: a bounded queue and worker threads per sink, and the loop's accounting of them.
//!
//! The event loop is the only producer. It counts frames in flight per sink and submits a frame
//! only when every sink it goes to has room ([`SinkPool::has_room_for`]), so a submit never
//! blocks and never fails; when such a sink is full, the loop stops reading that connection
//! instead (TCP backpressure), while devices whose frames go elsewhere carry on.
//! Submitted frames are staged and handed to the workers together by [`SinkPool::flush`], once
//! per turn of the loop (see [`super::queue`]).
//! Workers report each commit through the `notify` callback, which the loop wires to its
//! completion channel and `mio::Waker`.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::discard::DiscardSink;
use super::exec::ExecSink;
use super::file::FileSink;
use super::image::Staged;
use super::queue::WorkQueue;
use super::routing::Route;
use super::{Committed, Sink, SinkError};
use crate::config::{SinkConfig, SinkKind};
use crate::frame::Frame;
use crate::identity::committed::Recorder;
use crate::identity::StoreError;

/// One sink's verdict on one frame, sent back to the event loop.
#[derive(Debug)]
pub struct Completion {
    /// Index of the sink in config order.
    pub sink: usize,
    /// The frame that was handled.
    pub frame: Arc<Frame>,
    /// Committed, or why not.
    pub result: Result<Committed, SinkError>,
    /// How long the commit took.
    pub elapsed: Duration,
    /// For a native frame this sink alone took: the worker recorded the commit (see
    /// [`Recorder`]), and this is how that went. `None`: not recorded here.
    pub recorded: Option<Result<(), StoreError>>,
}

/// One frame for one sink's workers.
#[derive(Debug)]
pub struct Job {
    /// The frame.
    pub frame: Arc<Frame>,
    /// For a sink with `after`: what the sink it follows committed (the file's path).
    pub after: Option<Committed>,
    /// Sinks that follow this one for this frame (`after = "<this sink>"`): each gets the
    /// frame once this sink committed it, or a failure report if it did not.
    then: Vec<Follower>,
    /// Records the commit once made: set for a native frame that this sink alone takes, so
    /// its ACK can go out as soon as the loop hears of the commit.
    record: Option<Arc<Recorder>>,
}

/// A sink waiting for another sink's commit of a frame; it was counted (and its room
/// reserved) when the frame was submitted.
#[derive(Debug)]
struct Follower {
    sink: usize,
    name: String,
    queue: Arc<WorkQueue<Job>>,
}

/// Called on a worker thread for each completion.
pub type Notify = Arc<dyn Fn(Completion) + Send + Sync>;

/// Per-sink totals, for logs and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Frames committed.
    pub committed: u64,
    /// Bytes committed.
    pub bytes: u64,
    /// Frames the sink failed to commit.
    pub failed: u64,
    /// Frames dropped because its queue was full (`when_full` = drop_newest or drop_oldest).
    pub dropped: u64,
}

/// What a sink does with a frame when its queue is full (`when_full`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: the loop stops reading the devices (TCP pushes back). Nothing is lost.
    #[default]
    Block,
    /// This sink skips the new frame (other sinks still take it).
    DropNewest,
    /// This sink discards its oldest queued frame to take the new one.
    DropOldest,
}

/// What [`SinkPool::submit`] did with a frame.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Sinks that will report on it.
    pub sinks: usize,
    /// Older frames that sinks with `drop_oldest` discarded for it: each will never be
    /// reported by that sink (the caller settles them).
    pub evicted: Vec<(Arc<Frame>, String)>,
}

struct Slot {
    name: String,
    /// What it was built from; a reload keeps the slot only if this is unchanged.
    config: SinkConfig,
    /// False once a reload replaced or removed it: it takes no new frames, finishes its queue.
    active: bool,
    queue: Arc<WorkQueue<Job>>,
    /// Submitted this turn, not yet handed to the workers.
    staged: Vec<Job>,
    /// The sink itself, shared with its workers (for its [`Sink::details`]).
    sink: Arc<dyn Sink>,
    capacity: usize,
    in_flight: usize,
    counts: SinkCounts,
    workers: Vec<JoinHandle<()>>,
    /// Drops not logged yet, and when the last drop line was logged.
    unlogged_drops: u64,
    last_drop_log: Option<std::time::Instant>,
}

/// Every configured sink with its queue and workers. Sinks are identified by their slot index,
/// which never changes: a reload appends new slots and retires old ones.
pub struct SinkPool {
    slots: Vec<Slot>,
    notify: Notify,
}

impl SinkPool {
    /// Builds each sink and starts its workers.
    pub fn start(configs: &[SinkConfig], notify: Notify) -> std::io::Result<SinkPool> {
        let mut pool = SinkPool {
            slots: Vec::with_capacity(configs.len()),
            notify,
        };
        for config in configs {
            pool.add(config)?;
        }
        Ok(pool)
    }

    fn add(&mut self, config: &SinkConfig) -> std::io::Result<()> {
        let index = self.slots.len();
        let sink: Arc<dyn Sink> = match &config.kind {
            SinkKind::File(file) => Arc::new(FileSink::new(&config.name, file.clone())),
            SinkKind::Exec(exec) => Arc::new(ExecSink::new(&config.name, exec.clone())),
            SinkKind::Discard => Arc::new(DiscardSink::new()),
            SinkKind::Forward(forward) => Arc::new(
                super::forward::ForwardSink::open(&config.name, config.workers, forward)
                    .map_err(std::io::Error::other)?,
            ),
        };
        let sink: Arc<dyn Sink> = match &config.image {
            Some(stage) => Arc::new(Staged::new(&config.name, stage.clone(), sink)),
            None => sink,
        };
        let queue = Arc::new(WorkQueue::new());
        let mut workers = Vec::with_capacity(config.workers);
        for w in 0..config.workers {
            let (sink, queue, notify) = (sink.clone(), queue.clone(), self.notify.clone());
            let name = config.name.clone();
            workers.push(
                thread::Builder::new()
                    .name(format!("fg-sink-{}-{w}", config.name))
                    .spawn(move || work(index, &name, &*sink, &queue, &*notify))?,
            );
        }
        self.slots.push(Slot {
            name: config.name.clone(),
            config: config.clone(),
            active: true,
            queue,
            staged: Vec::new(),
            sink,
            capacity: config.queue_capacity,
            in_flight: 0,
            counts: SinkCounts::default(),
            workers,
            unlogged_drops: 0,
            last_drop_log: None,
        });
        Ok(())
    }

    /// Applies a new set of sinks: an unchanged sink (same name, same settings) keeps running;
    /// a changed one is rebuilt, and a removed one stops taking frames; the frames already
    /// queued on a replaced or removed sink finish there. Returns a line per change.
    pub fn reconfigure(&mut self, configs: &[SinkConfig]) -> std::io::Result<Vec<String>> {
        self.flush();
        let mut changes = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            if !configs.contains(&slot.config) {
                slot.active = false;
                // A retired sink may still get frames it reserved room for as a follower
                // (`after`); its queue closes once nothing is in flight (see `reap`).
                if slot.in_flight == 0 {
                    slot.queue.close();
                }
                let replaced = configs.iter().any(|c| c.name == slot.name);
                changes.push(format!(
                    "sink {:?} {}; its {} queued frame(s) finish on the old one",
                    slot.name,
                    if replaced {
                        "changed: rebuilt"
                    } else {
                        "removed"
                    },
                    slot.in_flight
                ));
            }
        }
        for config in configs {
            let kept = self.slots.iter().any(|s| s.active && &s.config == config);
            if !kept {
                if !changes
                    .iter()
                    .any(|c| c.starts_with(&format!("sink {:?} changed", config.name)))
                {
                    changes.push(format!("sink {:?} added", config.name));
                }
                self.add(config)?;
            }
        }
        Ok(changes)
    }

    /// Joins the workers of retired sinks that finished their queues.
    pub fn reap(&mut self) {
        for slot in self
            .slots
            .iter_mut()
            .filter(|s| !s.active && s.in_flight == 0)
        {
            slot.queue.close();
            for worker in slot.workers.drain(..) {
                let _ = worker.join();
            }
        }
    }

    /// True when every sink that blocks when full and would take a frame on `route` (itself,
    /// or as a follower of a sink that takes it) can take one more. Sinks that drop never
    /// hold devices back, and a full sink holds back only the devices whose frames it takes.
    pub fn has_room_for(&self, route: &Route) -> bool {
        self.slots
            .iter()
            .filter(|s| {
                s.active && s.config.when_full == WhenFull::Block && s.in_flight >= s.capacity
            })
            .all(|full| !self.would_take(full, route))
    }

    /// True when some sink that blocks when full has room: a stalled connection may get on.
    pub fn any_room(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.active && s.config.when_full == WhenFull::Block && s.in_flight < s.capacity)
            || !self
                .slots
                .iter()
                .any(|s| s.active && s.config.when_full == WhenFull::Block)
    }

    /// Would `slot` get a frame on `route`?
    fn would_take(&self, slot: &Slot, route: &Route) -> bool {
        if !slot.config.matches.takes(route) {
            return false;
        }
        match slot.config.after() {
            None => true,
            Some(leader) => self
                .slots
                .iter()
                .any(|l| l.active && l.name == leader && l.config.matches.takes(route)),
        }
    }

    /// Stages `frame` for every sink whose `match` takes it; [`SinkPool::flush`] hands it to
    /// the workers. Sinks that follow another (`after`) are counted and their room reserved
    /// now, and get the frame from the sink they follow once it committed it. The caller
    /// checked [`SinkPool::has_room`]. Returns how many sinks will report on it (0: it matches
    /// none) and the older frames that `drop_oldest` sinks discarded for it.
    ///
    /// With `recorder` (a native frame), a frame that exactly one sink takes is recorded as
    /// committed by that sink's worker right after its commit, and its completion says so;
    /// a frame several sinks take is left for the caller to record once all of them did.
    pub fn submit(&mut self, frame: Arc<Frame>, recorder: Option<&Arc<Recorder>>) -> Submitted {
        assert!(self.has_room_for(&Route::of(&frame)), "submit without room");
        let mut done = Submitted::default();
        let mut last_taker = None;
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if !slot.active || slot.config.after().is_some() || !slot.config.matches.accepts(&frame)
            {
                continue;
            }
            if slot.in_flight >= slot.capacity && !self.make_room(index, &mut done) {
                continue;
            }
            let then = self.reserve_followers(index, &frame);
            done.sinks += 1 + then.len();
            let slot = &mut self.slots[index];
            slot.in_flight += 1;
            slot.sink.accepted(&frame);
            slot.staged.push(Job {
                frame: frame.clone(),
                after: None,
                then,
                record: None,
            });
            last_taker = Some(index);
        }
        if let (1, Some(index), Some(recorder)) = (done.sinks, last_taker, recorder) {
            // One sink and no followers: its job is the one just staged.
            let job = self.slots[index].staged.last_mut().expect("just staged");
            job.record = Some(recorder.clone());
        }
        done
    }

    /// A full sink that drops: frees a place (`drop_oldest`) or skips the new frame
    /// (`drop_newest`, or nothing queued to evict). Returns true if the frame may be queued.
    fn make_room(&mut self, index: usize, done: &mut Submitted) -> bool {
        let slot = &mut self.slots[index];
        match slot.config.when_full {
            WhenFull::Block => unreachable!("has_room_for checked blocking sinks"),
            WhenFull::DropNewest => {
                slot.note_drop();
                false
            }
            WhenFull::DropOldest => {
                // Staged frames are the oldest no worker has seen yet only if the queue is
                // empty; take from the queue first.
                let oldest = slot
                    .queue
                    .take_oldest()
                    .or_else(|| (!slot.staged.is_empty()).then(|| slot.staged.remove(0)));
                let Some(old) = oldest else {
                    // Everything is in the workers' hands: skip the new one instead.
                    slot.note_drop();
                    return false;
                };
                slot.in_flight -= 1;
                slot.note_drop();
                slot.sink.withdrawn(&old.frame);
                let why = format!(
                    "sink {:?} was full and dropped it for a newer frame (when_full = \"drop_oldest\")",
                    slot.name
                );
                // Its followers will never see it either: release their room, settle them.
                for follower in &old.then {
                    self.slots[follower.sink].in_flight -= 1;
                    self.slots[follower.sink].sink.withdrawn(&old.frame);
                    done.evicted.push((old.frame.clone(), why.clone()));
                }
                done.evicted.push((old.frame, why));
                true
            }
        }
    }

    /// Reserves room on every active sink that follows sink `index` and takes `frame`. A
    /// follower that is full and drops skips the frame (for followers, `drop_oldest` acts as
    /// `drop_newest`: what they hold is already in their workers' hands or promised).
    fn reserve_followers(&mut self, index: usize, frame: &Frame) -> Vec<Follower> {
        let leader = self.slots[index].name.clone();
        let mut then = Vec::new();
        for (sink, slot) in self.slots.iter_mut().enumerate() {
            if !slot.active
                || slot.config.after() != Some(leader.as_str())
                || !slot.config.matches.accepts(frame)
            {
                continue;
            }
            if slot.in_flight >= slot.capacity && slot.config.when_full != WhenFull::Block {
                slot.note_drop();
                continue;
            }
            slot.in_flight += 1;
            slot.sink.accepted(frame);
            then.push(Follower {
                sink,
                name: slot.name.clone(),
                queue: slot.queue.clone(),
            });
        }
        then
    }

    /// True if some active sink's `match` takes `frame`.
    pub fn matches_any(&self, frame: &Frame) -> bool {
        self.slots
            .iter()
            .any(|s| s.active && s.config.after().is_none() && s.config.matches.accepts(frame))
    }

    /// Hands every staged frame to its sink's workers. The loop calls this before it waits
    /// for events, so no frame is left staged while the loop sleeps.
    pub fn flush(&mut self) {
        for slot in &mut self.slots {
            slot.queue.push_batch(&mut slot.staged);
        }
    }

    /// Accounts for a completion; returns the sink's name for logging.
    pub fn complete(&mut self, completion: &Completion) -> &str {
        let slot = &mut self.slots[completion.sink];
        slot.in_flight -= 1;
        match &completion.result {
            Ok(_) => {
                slot.counts.committed += 1;
                slot.counts.bytes += completion.frame.size() as u64;
            }
            Err(_) => slot.counts.failed += 1,
        }
        &slot.name
    }

    /// Frames queued or being committed, per active sink in config order.
    pub fn queued(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.in_flight)
            .collect()
    }

    /// Frames queued or being committed, over all sinks (retired ones included).
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|s| s.in_flight).sum()
    }

    /// Names and totals of every active sink, in config order.
    pub fn counts(&self) -> Vec<(&str, &SinkCounts)> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .map(|s| (s.name.as_str(), &s.counts))
            .collect()
    }

    /// Each active sink's type-specific figures ([`Sink::details`]), in config order.
    pub fn details(&self) -> Vec<Vec<(&'static str, u64)>> {
        self.slots
            .iter()
            .filter(|s| s.active)
            .map(|s| s.sink.details())
            .collect()
    }

    /// Tells every sink to give up its work in progress and what is queued (shutdown timed
    /// out); [`SinkPool::stop`] then returns promptly.
    pub fn abort(&self) {
        for slot in &self.slots {
            slot.sink.abort();
        }
    }

    /// Closes the queues and waits for the workers, which finish what was queued (and
    /// staged) first. Sinks that others follow finish first, so their followers get every
    /// frame they were promised before their own queues close.
    pub fn stop(&mut self) {
        self.flush();
        for followers in [false, true] {
            for slot in &mut self.slots {
                if slot.config.after().is_some() == followers {
                    slot.queue.close();
                }
            }
            for slot in &mut self.slots {
                if slot.config.after().is_some() == followers {
                    for worker in slot.workers.drain(..) {
                        let _ = worker.join();
                    }
                }
            }
        }
    }
}

impl Slot {
    /// Counts a drop; logs the drops at most once a minute per sink.
    fn note_drop(&mut self) {
        self.counts.dropped += 1;
        self.unlogged_drops += 1;
        if self
            .last_drop_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            log::warn!(
                "sink {:?} is full (queue_capacity {}): dropped {} frame(s) (when_full = {:?})",
                self.name,
                self.capacity,
                self.unlogged_drops,
                self.config.when_full
            );
            self.unlogged_drops = 0;
            self.last_drop_log = Some(std::time::Instant::now());
        }
    }
}

impl Drop for SinkPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Most commits a worker holds to record together ([`work`]).
const RECORD_BATCH: usize = 256;
/// Longest a worker holds a commit to record it with later ones.
const RECORD_DELAY: Duration = Duration::from_millis(2);

fn work(
    index: usize,
    name: &str,
    sink: &dyn Sink,
    queue: &WorkQueue<Job>,
    notify: &dyn Fn(Completion),
) {
    let mut held = HeldCommits::default();
    loop {
        // The queue's lock is held only to take a frame, never while committing it.
        let job = if held.is_empty() {
            queue.pop()
        } else {
            queue.take_oldest()
        };
        let Some(job) = job else {
            if held.is_empty() {
                return; // closed, and everything taken
            }
            held.record(notify);
            continue;
        };
        let started = Instant::now();
        let result = match &job.after {
            Some(before) => sink.commit_after(&job.frame, before),
            None => sink.commit(&job.frame),
        };
        let elapsed = started.elapsed();
        for follower in job.then {
            match &result {
                Ok(committed) => follower.queue.push(Job {
                    frame: job.frame.clone(),
                    after: Some(committed.clone()),
                    then: Vec::new(),
                    record: None,
                }),
                Err(e) => notify(Completion {
                    sink: follower.sink,
                    frame: job.frame.clone(),
                    result: Err(SinkError::new(format!(
                        "sink {:?} did not run: sink {name:?}, which it follows (after), did not store the frame: {e}",
                        follower.name
                    ))),
                    elapsed: Duration::ZERO,
                    recorded: None,
                }),
            }
        }
        let completion = Completion {
            sink: index,
            frame: job.frame,
            result,
            elapsed,
            recorded: None,
        };
        match job.record {
            Some(recorder) if completion.result.is_ok() => held.hold(completion, recorder),
            _ => notify(completion),
        }
        // A slow sink gains nothing from holding commits back; a fast one holds them briefly.
        if held.is_due(elapsed) {
            held.record(notify);
        }
    }
}

/// Commits a worker records itself (native frames only its sink takes), held while more
/// frames are queued and commits are quick, then recorded in one append and fsync: a frame's
/// ACK waits for the record, and one record per frame would cost a fast sink (discard, a
/// tmpfs) more than the commits.
#[derive(Default)]
struct HeldCommits {
    completions: Vec<Completion>,
    /// Where they go (the same record for every frame of a daemon).
    recorder: Option<Arc<Recorder>>,
    /// When the first of them was committed.
    since: Option<Instant>,
}

impl HeldCommits {
    fn is_empty(&self) -> bool {
        self.completions.is_empty()
    }

    fn hold(&mut self, completion: Completion, recorder: Arc<Recorder>) {
        self.since.get_or_insert_with(Instant::now);
        self.recorder = Some(recorder);
        self.completions.push(completion);
    }

    /// True when they should be recorded now: enough of them, held long enough, or the last
    /// commit (it took `last_commit`) shows a slow sink.
    fn is_due(&self, last_commit: Duration) -> bool {
        !self.is_empty()
            && (self.completions.len() >= RECORD_BATCH
                || last_commit >= RECORD_DELAY
                || self.since.is_some_and(|t| t.elapsed() >= RECORD_DELAY))
    }

    /// Records them (one append and fsync for all), then reports each with the result.
    fn record(&mut self, notify: &dyn Fn(Completion)) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        let result = recorder.record(
            self.completions
                .iter()
                .map(|c| (c.frame.device.clone(), c.frame.seq)),
        );
        self.since = None;
        for mut completion in self.completions.drain(..) {
            completion.recorded = Some(result.clone());
            notify(completion);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Mutex};
    use std::time::SystemTime;

    use super::*;

    fn frame(seq: u64) -> Arc<Frame> {
        Arc::new(Frame {
            listener: Arc::from("l"),
            device: Arc::from("d"),
            peer: "127.0.0.1:9".parse().unwrap(),
            seq,
            received_at: SystemTime::now(),
            format: None,
            payload: vec![seq as u8; 10],
            native: None,
        })
    }

    /// A blocking discard sink with one worker that takes only devices matching `device`.
    fn discard_for(name: &str, device: &str, queue_capacity: usize) -> SinkConfig {
        SinkConfig {
            name: name.into(),
            workers: 1,
            queue_capacity,
            kind: SinkKind::Discard,
            matches: crate::sink::routing::Match {
                devices: vec![glob::Pattern::new(device).unwrap()],
                ..Default::default()
            },
            when_full: WhenFull::Block,
            image: None,
        }
    }

    #[test]
    fn the_worker_records_a_frame_only_its_sink_takes() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        // "alone" takes device a; "both-1" and "both-2" take device b.
        let configs = [
            discard_for("alone", "a", 8),
            discard_for("both-1", "b", 8),
            discard_for("both-2", "b", 8),
        ];
        let mut pool = SinkPool::start(
            &configs,
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();
        let state = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::new(Default::default(), state.path()));
        let native = |device: &str, seq| {
            Arc::new(Frame {
                device: Arc::from(device),
                ..(*frame(seq)).clone()
            })
        };
        assert_eq!(pool.submit(native("a", 1), Some(&recorder)).sinks, 1);
        assert_eq!(pool.submit(native("b", 2), Some(&recorder)).sinks, 2);
        pool.flush();
        let mut recorded = Vec::new();
        for _ in 0..3 {
            let c = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            recorded.push((c.frame.seq, c.recorded));
        }
        recorded.sort_by_key(|(seq, _)| *seq);
        assert_eq!(recorded, [(1, Some(Ok(()))), (2, None), (2, None)]);
        let log = std::fs::read_to_string(state.path().join(crate::identity::committed::LOG_NAME))
            .unwrap();
        assert_eq!(log, "1\ta\n", "recorded before the completion was sent");
    }

    #[test]
    fn staged_frames_reach_the_workers_on_flush_and_room_returns_on_completion() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let configs = [SinkConfig {
            name: "drop".into(),
            workers: 2,
            queue_capacity: 3,
            kind: SinkKind::Discard,
            matches: Default::default(),
            when_full: WhenFull::Block,
            image: None,
        }];
        let mut pool = SinkPool::start(
            &configs,
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();

        for seq in 1..=3 {
            assert!(pool.has_room_for(&Route::of(&frame(seq))));
            assert_eq!(pool.submit(frame(seq), None).sinks, 1);
        }
        assert!(
            !pool.has_room_for(&Route::of(&frame(4))),
            "capacity 3 reached"
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "nothing reaches a worker before flush"
        );
        pool.flush();
        let mut seqs = Vec::new();
        for _ in 0..3 {
            let c = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(c.result.is_ok());
            pool.complete(&c);
            seqs.push(c.frame.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(pool.has_room_for(&Route::of(&frame(4))));
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(
            pool.counts()[0].1,
            &SinkCounts {
                committed: 3,
                bytes: 30,
                failed: 0,
                dropped: 0
            }
        );

        // Staged but never flushed: stop hands it over before closing, so it is committed.
        pool.submit(frame(4), None);
        pool.stop();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap().frame.seq,
            4
        );
    }

    #[test]
    fn full_sinks_that_drop_never_block_and_count_their_drops() {
        let (tx, _rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sink = |name: &str, when_full| SinkConfig {
            name: name.into(),
            workers: 1,
            queue_capacity: 2,
            kind: SinkKind::Discard,
            matches: Default::default(),
            when_full,
            image: None,
        };
        let mut pool = SinkPool::start(
            &[
                sink("newest", WhenFull::DropNewest),
                sink("oldest", WhenFull::DropOldest),
            ],
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();
        // Nothing flushed: the frames stay staged, so both queues fill at 2.
        assert_eq!(pool.submit(frame(1), None).sinks, 2);
        assert_eq!(pool.submit(frame(2), None).sinks, 2);
        assert!(
            pool.has_room_for(&Route::of(&frame(3))),
            "dropping sinks never hold devices back"
        );
        let third = pool.submit(frame(3), None);
        assert_eq!(
            third.sinks, 1,
            "drop_newest skipped it, drop_oldest took it"
        );
        assert_eq!(third.evicted.len(), 1);
        assert_eq!(third.evicted[0].0.seq, 1, "the oldest made room");
        let counts = pool.counts();
        assert_eq!((counts[0].1.dropped, counts[1].1.dropped), (1, 1));
        assert_eq!(pool.queued(), [2, 2]);
    }

    fn follower_pool(dir: &std::path::Path) -> (SinkPool, mpsc::Receiver<Completion>) {
        use crate::sink::exec::args::ArgTemplate;
        use crate::sink::exec::{Ack, ExecSinkConfig, Input};
        use crate::sink::file::FileSinkConfig;
        use crate::sink::template::PathTemplate;
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let archive = SinkConfig {
            name: "archive".into(),
            workers: 1,
            queue_capacity: 4,
            kind: SinkKind::File(FileSinkConfig {
                path: PathTemplate::parse(&format!("{}/{{seq}}.{{ext}}", dir.display())).unwrap(),
                fsync: false,
                time_zone: Default::default(),
                keep: Default::default(),
            }),
            matches: Default::default(),
            when_full: WhenFull::Block,
            image: None,
        };
        // The hook succeeds only if the file it is given exists.
        let command = ["/bin/sh", "-c", "test -f \"$1\"", "sh", "{path}"];
        let hook = SinkConfig {
            name: "hook".into(),
            workers: 1,
            queue_capacity: 4,
            kind: SinkKind::Exec(ExecSinkConfig {
                command: command
                    .iter()
                    .map(|a| ArgTemplate::parse(a).unwrap())
                    .collect(),
                input: Input::None,
                after: Some("archive".into()),
                env: Vec::new(),
                env_passthrough: Vec::new(),
                concurrency: 1,
                timeout: Some(Duration::from_secs(30)),
                kill_grace: Duration::from_secs(1),
                retries: 0,
                retry_backoff: Duration::from_secs(1),
                ack: Ack::Exit,
            }),
            matches: Default::default(),
            when_full: WhenFull::Block,
            image: None,
        };
        let pool = SinkPool::start(
            &[hook, archive],
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();
        (pool, rx)
    }

    #[test]
    fn a_follower_gets_the_path_its_leader_committed_and_is_counted_at_submission() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pool, rx) = follower_pool(dir.path());
        let submitted = pool.submit(frame(1), None);
        assert_eq!(submitted.sinks, 2, "the follower is counted up front");
        assert_eq!(pool.queued(), [1, 1], "and its room reserved");
        pool.flush();
        let mut reports = Vec::new();
        for _ in 0..2 {
            let c = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            pool.complete(&c);
            reports.push((c.sink, c.result));
        }
        reports.sort_by_key(|r| r.0);
        let path = dir.path().join("1.bin");
        assert_eq!(reports[0].1.as_ref().unwrap().path.as_deref(), Some(&*path));
        assert_eq!(reports[1].1.as_ref().unwrap().path.as_deref(), Some(&*path));
        assert_eq!(pool.in_flight(), 0);
    }

    #[test]
    fn when_the_leader_fails_the_follower_reports_a_failure_without_running() {
        let dir = tempfile::tempdir().unwrap();
        // The archive's directory is a file: every commit fails (ENOTDIR).
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"not a directory").unwrap();
        let (mut pool, rx) = follower_pool(&blocked);
        assert_eq!(pool.submit(frame(1), None).sinks, 2);
        pool.flush();
        let mut errors = Vec::new();
        for _ in 0..2 {
            let c = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            pool.complete(&c);
            errors.push(c.result.unwrap_err().message);
        }
        assert!(
            errors
                .iter()
                .any(|e| e.contains("did not run") && e.contains("\"archive\"")),
            "{errors:?}"
        );
        assert_eq!(pool.counts()[0].1.failed, 1);
        assert_eq!(pool.counts()[1].1.failed, 1);
    }

    #[test]
    fn a_full_sink_holds_back_only_the_devices_it_takes_frames_from() {
        let (tx, _rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut pool = SinkPool::start(
            &[discard_for("a", "cam-a", 1), discard_for("b", "cam-b", 1)],
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();
        fn from(device: &str) -> Route<'_> {
            Route {
                device,
                listener: "l",
                format: None,
            }
        }
        let mut first = frame(1);
        Arc::get_mut(&mut first).unwrap().device = Arc::from("cam-a");
        assert_eq!(pool.submit(first, None).sinks, 1);
        assert!(!pool.has_room_for(&from("cam-a")), "sink a is full");
        assert!(pool.has_room_for(&from("cam-b")), "cam-b's sink has room");
        assert!(pool.has_room_for(&from("cam-c")), "nothing takes cam-c");
        assert!(pool.any_room());
    }
}
