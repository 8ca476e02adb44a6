//! Rate limiting of repeated warning and error lines per device: a device that fails the same
//! way every second (a misconfigured camera retrying forever) must not drown the log.
//!
//! Each device may log `[log] device_lines_per_minute` such lines per [`WINDOW`] (0: no
//! limit); the rest are counted and reported in one line when the device next logs after its
//! window ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default lines a device may log per window.
pub const DEFAULT_LINES_PER_WINDOW: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; first mention that this many lines were suppressed before it (if any).
    Log {
        /// Lines of this device dropped in its previous window.
        suppressed: u64,
    },
    /// Drop it (counted).
    Suppress,
}

/// Per-device windows.
#[derive(Debug)]
pub struct LineLimiter {
    per_window: u32,
    devices: HashMap<Arc<str>, (Instant, u32, u64)>,
}

impl LineLimiter {
    /// A limiter allowing `per_window` lines per device per [`WINDOW`]; 0: no limit.
    pub fn new(per_window: u32) -> Self {
        LineLimiter {
            per_window,
            devices: HashMap::new(),
        }
    }

    /// Decides about a line for `device` at `now`.
    pub fn check(&mut self, device: &Arc<str>, now: Instant) -> Verdict {
        if self.per_window == 0 {
            return Verdict::Log { suppressed: 0 };
        }
        let (start, logged, suppressed) = self.devices.entry(device.clone()).or_insert((now, 0, 0));
        if now.duration_since(*start) >= WINDOW {
            let dropped = std::mem::take(suppressed);
            *start = now;
            *logged = 1;
            return Verdict::Log {
                suppressed: dropped,
            };
        }
        if *logged < self.per_window {
            *logged += 1;
            Verdict::Log { suppressed: 0 }
        } else {
            *suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Forgets devices quiet for more than a window (bounded memory with many devices).
    pub fn forget_quiet(&mut self, now: Instant) {
        self.devices.retain(|_, (start, _, suppressed)| {
            now.duration_since(*start) < WINDOW || *suppressed > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_lines_per_minute_then_a_summary() {
        let mut limiter = LineLimiter::new(5);
        let cam: Arc<str> = Arc::from("cam");
        let other: Arc<str> = Arc::from("other");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(&cam, t0), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..7 {
            assert_eq!(
                limiter.check(&cam, t0 + Duration::from_secs(1)),
                Verdict::Suppress
            );
        }
        // Another device has its own budget.
        assert_eq!(limiter.check(&other, t0), Verdict::Log { suppressed: 0 });
        // Next window: the summary comes with the first line.
        assert_eq!(
            limiter.check(&cam, t0 + WINDOW),
            Verdict::Log { suppressed: 7 }
        );
        limiter.forget_quiet(t0 + WINDOW * 3);
        assert!(limiter.devices.is_empty());
    }
}
