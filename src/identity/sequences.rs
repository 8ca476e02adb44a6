//! Per-device sequence numbers that never repeat, across restarts and crashes too.
//!
//! Sans-IO: the event loop hands out numbers from blocks that the [`super::SequenceStore`] has
//! already made durable on disk. Before a device's block runs low, a larger block is requested;
//! a number is handed out only below the durable mark, so after a crash the next run starts
//! above every number ever used. A crash can leave a gap of at most [`RESERVE_BLOCK`] numbers;
//! a clean shutdown records the exact next number, so there is none.

use std::collections::HashMap;
use std::sync::Arc;

/// Reservations to make durable: (device, first number not reserved).
pub type Reservations = Vec<(Arc<str>, u64)>;

/// How many numbers one reservation makes durable for a device.
pub const RESERVE_BLOCK: u64 = 1024;

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// The next number to hand out.
    next: u64,
    /// Numbers below this are durably reserved.
    durable: u64,
    /// The mark already requested from the store (≥ durable).
    requested: u64,
}

/// The loop's view of every device's counter.
#[derive(Debug, Default)]
pub struct Sequences {
    counters: HashMap<Arc<str>, Counter>,
    wanted: Reservations,
}

impl Sequences {
    /// Starts from the marks loaded from disk: for each device, the first number not yet
    /// reserved by any earlier run.
    pub fn new(loaded: HashMap<String, u64>) -> Self {
        let counters = loaded
            .into_iter()
            .map(|(device, mark)| {
                let c = Counter {
                    next: mark.max(1),
                    durable: mark.max(1),
                    requested: mark.max(1),
                };
                (Arc::from(device), c)
            })
            .collect();
        Sequences {
            counters,
            wanted: Vec::new(),
        }
    }

    /// The next number for `device`, or `None` if it must wait for a reservation to become
    /// durable (one has been requested; see [`Sequences::take_wanted`]).
    pub fn next(&mut self, device: &Arc<str>) -> Option<u64> {
        let counter = self.counters.entry(device.clone()).or_insert(Counter {
            next: 1,
            durable: 1,
            requested: 1,
        });
        if counter.durable - counter.next < RESERVE_BLOCK / 2
            && counter.requested == counter.durable
        {
            counter.requested = counter.next + RESERVE_BLOCK;
            self.wanted.push((device.clone(), counter.requested));
        }
        if counter.next < counter.durable {
            counter.next += 1;
            Some(counter.next - 1)
        } else {
            None
        }
    }

    /// Reservations to make durable: (device, new mark). The caller sends them to the store.
    pub fn take_wanted(&mut self) -> Reservations {
        std::mem::take(&mut self.wanted)
    }

    /// The store made `mark` durable for `device`.
    pub fn reserved(&mut self, device: &Arc<str>, mark: u64) {
        if let Some(c) = self.counters.get_mut(device) {
            c.durable = c.durable.max(mark);
        }
    }

    /// The store failed to persist a reservation: allow asking again on the next frame.
    pub fn reservation_failed(&mut self, device: &Arc<str>) {
        if let Some(c) = self.counters.get_mut(device) {
            c.requested = c.durable;
        }
    }

    /// Each device's exact next number, for a clean shutdown to record.
    pub fn exact_marks(&self) -> Vec<(Arc<str>, u64)> {
        self.counters
            .iter()
            .map(|(d, c)| (d.clone(), c.next))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_first_reservation_then_counts_from_one() {
        let mut seqs = Sequences::new(HashMap::new());
        let cam: Arc<str> = Arc::from("cam");
        assert_eq!(seqs.next(&cam), None);
        assert_eq!(seqs.take_wanted(), vec![(cam.clone(), 1 + RESERVE_BLOCK)]);
        assert_eq!(
            seqs.next(&cam),
            None,
            "no second request while one is pending"
        );
        assert!(seqs.take_wanted().is_empty());
        seqs.reserved(&cam, 1 + RESERVE_BLOCK);
        assert_eq!(seqs.next(&cam), Some(1));
        assert_eq!(seqs.next(&cam), Some(2));
    }

    #[test]
    fn requests_the_next_block_before_running_out() {
        let mut seqs = Sequences::new(HashMap::from([("cam".to_string(), 100)]));
        let cam: Arc<str> = Arc::from("cam");
        assert_eq!(seqs.next(&cam), None);
        let mark = seqs.take_wanted()[0].1;
        seqs.reserved(&cam, mark);
        let mut last = 0;
        for _ in 0..RESERVE_BLOCK {
            match seqs.next(&cam) {
                Some(n) => last = n,
                None => break,
            }
            for (d, mark) in seqs.take_wanted() {
                seqs.reserved(&d, mark);
            }
        }
        assert_eq!(last, 100 + RESERVE_BLOCK - 1, "never had to wait");
    }

    #[test]
    fn never_hands_out_a_number_at_or_above_the_durable_mark() {
        let mut seqs = Sequences::new(HashMap::from([("cam".to_string(), 10)]));
        let cam: Arc<str> = Arc::from("cam");
        let _ = seqs.next(&cam);
        seqs.reserved(&cam, 13);
        assert_eq!(seqs.next(&cam), Some(10));
        assert_eq!(seqs.next(&cam), Some(11));
        assert_eq!(seqs.next(&cam), Some(12));
        assert_eq!(seqs.next(&cam), None);
        assert_eq!(seqs.exact_marks(), vec![(cam, 13)]);
    }
}
