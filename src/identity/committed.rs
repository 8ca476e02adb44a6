//! Which device-chosen sequence numbers (native protocol) were committed, per device, so a
//! resent frame is ACKed again without being stored twice.

use std::collections::HashMap;

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

    /// The highest number in the set (0 when empty).
    pub fn highest(&self) -> u64 {
        self.ranges.last().map_or(0, |&(_, end)| end)
    }

    /// The ranges, for persisting.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
}

/// Committed sequence numbers of every native device.
#[derive(Debug, Default)]
pub struct Committed {
    devices: HashMap<String, SeqRanges>,
}

impl Committed {
    /// Records that `device` committed `seq`.
    pub fn record(&mut self, device: &str, seq: u64) {
        self.devices
            .entry(device.to_string())
            .or_default()
            .insert(seq);
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
