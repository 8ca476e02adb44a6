//! The queue between the event loop and one sink's workers.
//!
//! The loop stages the frames it completes during one turn and hands them over together
//! ([`WorkQueue::push_batch`]): one lock and at most one wake-up per idle worker per turn,
//! instead of a futex wake and a context switch per frame. Workers still take frames one at a
//! time, so a slow sink with several workers commits a batch in parallel.
//!
//! The queue itself is unbounded; the bound is the loop's in-flight count per sink
//! ([`super::pool::SinkPool::has_room`]), which never lets more than `queue_capacity` frames be
//! queued or in a worker's hands.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// A closable multi-consumer queue fed in batches.
#[derive(Debug)]
pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Workers waiting in [`WorkQueue::pop`]; wake-ups are spent only on them.
    idle: usize,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                idle: 0,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> WorkQueue<T> {
    /// An empty, open queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends every item of `batch` (leaving it empty) and wakes as many idle workers as
    /// there are new items.
    pub fn push_batch(&self, batch: &mut Vec<T>) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.lock();
        let (added, idle) = (batch.len(), state.idle);
        state.items.extend(batch.drain(..));
        drop(state);
        if added >= idle {
            self.ready.notify_all();
        } else {
            for _ in 0..added {
                self.ready.notify_one();
            }
        }
    }

    /// Appends one item (from a worker handing a frame on to a sink that follows its own).
    pub fn push(&self, item: T) {
        self.push_batch(&mut vec![item]);
    }

    /// The next item, waiting for one; `None` once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle -= 1;
        }
    }

    /// Takes the oldest item no worker has taken yet, without waiting: `None` when none is
    /// queued, also once closed (`when_full = "drop_oldest"`, and a worker that holds commits
    /// while more frames are queued).
    pub fn take_oldest(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Stops the workers once they have taken everything already queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A worker that panicked while holding the lock left the queue itself consistent:
        // every operation above completes its change before it can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;

    use super::*;

    #[test]
    fn workers_take_every_item_once_then_stop_when_closed() {
        let queue = Arc::new(WorkQueue::new());
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let queue = queue.clone();
                thread::spawn(move || {
                    let mut taken = Vec::new();
                    while let Some(item) = queue.pop() {
                        taken.push(item);
                    }
                    taken
                })
            })
            .collect();
        let mut next = 0u32;
        for batch_len in [1, 5, 0, 17, 2, 100] {
            let mut batch: Vec<u32> = (next..next + batch_len).collect();
            next += batch_len;
            queue.push_batch(&mut batch);
            assert!(batch.is_empty());
        }
        queue.close();
        let mut all: Vec<u32> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..next).collect::<Vec<_>>());
    }

    #[test]
    fn items_queued_before_close_are_still_delivered() {
        let queue = WorkQueue::new();
        queue.push_batch(&mut vec!["a", "b"]);
        queue.close();
        assert_eq!(queue.pop(), Some("a"));
        assert_eq!(queue.take_oldest(), Some("b"));
        assert_eq!(queue.take_oldest(), None);
        assert_eq!(queue.pop(), None);
    }
}
