//! Sink workers: a bounded queue and worker threads per sink, and the loop's accounting of them.
//!
//! The event loop is the only producer. It counts frames in flight per sink and submits a frame
//! only when every sink has room ([`SinkPool::has_room`]), so a submit never blocks and never
//! fails; when a sink is full, the loop stops reading the connection instead (TCP backpressure).
//! Workers report each commit through the `notify` callback, which the loop wires to its
//! completion channel and `mio::Waker`.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::discard::DiscardSink;
use super::file::FileSink;
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
    queue: Option<SyncSender<Arc<Frame>>>,
    capacity: usize,
    in_flight: usize,
    counts: SinkCounts,
    workers: Vec<JoinHandle<()>>,
}

/// Every configured sink with its queue and workers.
pub struct SinkPool {
    slots: Vec<Slot>,
}

impl SinkPool {
    /// Builds each sink and starts its workers.
    pub fn start(configs: &[SinkConfig], notify: Notify) -> std::io::Result<SinkPool> {
        let mut slots = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let sink: Arc<dyn Sink> = match &config.kind {
                SinkKind::File(file) => Arc::new(FileSink::new(&config.name, file.clone())),
                SinkKind::Discard => Arc::new(DiscardSink::new()),
            };
            let (tx, rx) = mpsc::sync_channel::<Arc<Frame>>(config.queue_capacity);
            let rx = Arc::new(Mutex::new(rx));
            let mut workers = Vec::with_capacity(config.workers);
            for w in 0..config.workers {
                let (sink, rx, notify) = (sink.clone(), rx.clone(), notify.clone());
                workers.push(
                    thread::Builder::new()
                        .name(format!("fg-sink-{}-{w}", config.name))
                        .spawn(move || work(index, &*sink, &rx, &*notify))?,
                );
            }
            slots.push(Slot {
                name: config.name.clone(),
                queue: Some(tx),
                capacity: config.queue_capacity,
                in_flight: 0,
                counts: SinkCounts::default(),
                workers,
            });
        }
        Ok(SinkPool { slots })
    }

    /// True when every sink can take one more frame.
    pub fn has_room(&self) -> bool {
        self.slots.iter().all(|s| s.in_flight < s.capacity)
    }

    /// Queues `frame` for every sink. The caller checked [`SinkPool::has_room`].
    pub fn submit(&mut self, frame: Arc<Frame>) {
        assert!(self.has_room(), "submit without room");
        for slot in &mut self.slots {
            slot.in_flight += 1;
            if let Some(queue) = &slot.queue {
                // Cannot block or fail: in_flight never exceeds the channel's capacity, and the
                // workers hold the receiver until the queue is closed.
                queue
                    .try_send(frame.clone())
                    .expect("sink queue has room, as counted");
            }
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

    /// Frames queued or being committed, over all sinks.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().map(|s| s.in_flight).sum()
    }

    /// Names and totals of every sink.
    pub fn counts(&self) -> Vec<(&str, &SinkCounts)> {
        self.slots
            .iter()
            .map(|s| (s.name.as_str(), &s.counts))
            .collect()
    }

    /// Closes the queues and waits for the workers, which finish what was queued first.
    pub fn stop(&mut self) {
        for slot in &mut self.slots {
            slot.queue = None;
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

fn work(
    index: usize,
    sink: &dyn Sink,
    queue: &Mutex<Receiver<Arc<Frame>>>,
    notify: &dyn Fn(Completion),
) {
    loop {
        // Hold the lock only to take a frame, never while committing it.
        let next = queue.lock().map(|rx| rx.recv());
        let Ok(Ok(frame)) = next else { return };
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
