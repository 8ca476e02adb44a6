//! Sink workers: a bounded queue and worker threads per sink, and the loop's accounting of them.
//!
//! The event loop is the only producer. It counts frames in flight per sink and submits a frame
//! only when every sink has room ([`SinkPool::has_room`]), so a submit never blocks and never
//! fails; when a sink is full, the loop stops reading the connection instead (TCP backpressure).
//! Submitted frames are staged and handed to the workers together by [`SinkPool::flush`], once
//! per turn of the loop (see [`super::queue`]).
//! Workers report each commit through the `notify` callback, which the loop wires to its
//! completion channel and `mio::Waker`.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::discard::DiscardSink;
use super::file::FileSink;
use super::queue::WorkQueue;
use super::{Committed, Sink, SinkError};
use crate::config::{SinkConfig, SinkKind};
use crate::frame::Frame;

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
    queue: Arc<WorkQueue<Arc<Frame>>>,
    /// Submitted this turn, not yet handed to the workers.
    staged: Vec<Arc<Frame>>,
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
            SinkKind::Discard => Arc::new(DiscardSink::new()),
            SinkKind::Forward(forward) => Arc::new(
                super::forward::ForwardSink::open(&config.name, config.workers, forward)
                    .map_err(std::io::Error::other)?,
            ),
        };
        let queue = Arc::new(WorkQueue::new());
        let mut workers = Vec::with_capacity(config.workers);
        for w in 0..config.workers {
            let (sink, queue, notify) = (sink.clone(), queue.clone(), self.notify.clone());
            workers.push(
                thread::Builder::new()
                    .name(format!("fg-sink-{}-{w}", config.name))
                    .spawn(move || work(index, &*sink, &queue, &*notify))?,
            );
        }
        self.slots.push(Slot {
            name: config.name.clone(),
            config: config.clone(),
            active: true,
            queue,
            staged: Vec::new(),
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
                slot.queue.close();
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
            for worker in slot.workers.drain(..) {
                let _ = worker.join();
            }
        }
    }

    /// True when every sink that blocks when full can take one more frame (sinks that drop
    /// never hold devices back).
    pub fn has_room(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| s.active && s.config.when_full == WhenFull::Block)
            .all(|s| s.in_flight < s.capacity)
    }

    /// Stages `frame` for every sink whose `match` takes it; [`SinkPool::flush`] hands it to
    /// the workers. The caller checked [`SinkPool::has_room`]. Returns how many sinks will
    /// report on it (0: it matches none).
    pub fn submit(&mut self, frame: Arc<Frame>) -> Submitted {
        assert!(self.has_room(), "submit without room");
        let mut done = Submitted::default();
        for slot in self
            .slots
            .iter_mut()
            .filter(|s| s.active && s.config.matches.accepts(&frame))
        {
            if slot.in_flight >= slot.capacity {
                match slot.config.when_full {
                    WhenFull::Block => unreachable!("has_room checked blocking sinks"),
                    WhenFull::DropNewest => {
                        slot.note_drop();
                        continue;
                    }
                    WhenFull::DropOldest => {
                        // Staged frames are the oldest no worker has seen yet only if the
                        // queue is empty; take from the queue first.
                        let oldest = slot
                            .queue
                            .take_oldest()
                            .or_else(|| (!slot.staged.is_empty()).then(|| slot.staged.remove(0)));
                        match oldest {
                            Some(old) => {
                                slot.in_flight -= 1;
                                slot.note_drop();
                                let why = format!(
                                    "sink {:?} was full and dropped it for a newer frame (when_full = \"drop_oldest\")",
                                    slot.name
                                );
                                done.evicted.push((old, why));
                            }
                            // Everything is in the workers' hands: skip the new one instead.
                            None => {
                                slot.note_drop();
                                continue;
                            }
                        }
                    }
                }
            }
            slot.in_flight += 1;
            slot.staged.push(frame.clone());
            done.sinks += 1;
        }
        done
    }

    /// True if some active sink's `match` takes `frame`.
    pub fn matches_any(&self, frame: &Frame) -> bool {
        self.slots
            .iter()
            .any(|s| s.active && s.config.matches.accepts(frame))
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

    /// Closes the queues and waits for the workers, which finish what was queued (and
    /// staged) first.
    pub fn stop(&mut self) {
        self.flush();
        for slot in &mut self.slots {
            slot.queue.close();
        }
        for slot in &mut self.slots {
            for worker in slot.workers.drain(..) {
                let _ = worker.join();
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

fn work(index: usize, sink: &dyn Sink, queue: &WorkQueue<Arc<Frame>>, notify: &dyn Fn(Completion)) {
    // The queue's lock is held only to take a frame, never while committing it.
    while let Some(frame) = queue.pop() {
        let started = Instant::now();
        let result = sink.commit(&frame);
        notify(Completion {
            sink: index,
            frame,
            result,
            elapsed: started.elapsed(),
        });
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
        }];
        let mut pool = SinkPool::start(
            &configs,
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();

        for seq in 1..=3 {
            assert!(pool.has_room());
            assert_eq!(pool.submit(frame(seq)).sinks, 1);
        }
        assert!(!pool.has_room(), "capacity 3 reached");
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
        assert!(pool.has_room());
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
        pool.submit(frame(4));
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
        assert_eq!(pool.submit(frame(1)).sinks, 2);
        assert_eq!(pool.submit(frame(2)).sinks, 2);
        assert!(pool.has_room(), "dropping sinks never hold devices back");
        let third = pool.submit(frame(3));
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
}
