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

    /// True when every sink can take one more frame.
    pub fn has_room(&self) -> bool {
        self.slots
            .iter()
            .filter(|s| s.active)
            .all(|s| s.in_flight < s.capacity)
    }

    /// Stages `frame` for every sink whose `match` takes it; [`SinkPool::flush`] hands it to
    /// the workers. The caller checked [`SinkPool::has_room`]. Returns how many sinks will
    /// report on it (0: it matches none).
    pub fn submit(&mut self, frame: Arc<Frame>) -> usize {
        assert!(self.has_room(), "submit without room");
        let mut sinks = 0;
        for slot in self
            .slots
            .iter_mut()
            .filter(|s| s.active && s.config.matches.accepts(&frame))
        {
            slot.in_flight += 1;
            slot.staged.push(frame.clone());
            sinks += 1;
        }
        sinks
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
        }];
        let mut pool = SinkPool::start(
            &configs,
            Arc::new(move |c| tx.lock().unwrap().send(c).unwrap()),
        )
        .unwrap();

        for seq in 1..=3 {
            assert!(pool.has_room());
            pool.submit(frame(seq));
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
                failed: 0
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
}
