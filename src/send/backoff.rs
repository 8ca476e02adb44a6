//! Exponential backoff with jitter, for reconnects and retries: `framegate send` and the
//! forward sink's links to their upstream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First wait before a reconnect or a retry.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Makes backoffs created in the same nanosecond (a forwarder's links) jitter differently.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// Exponential backoff with jitter: 100 ms doubling to 10 s, each wait 50–150% of the step,
/// so devices that lost the server together do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32
            ^ INSTANCES
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Backoff {
            step: BACKOFF_START,
            rng: seed | 1,
        }
    }

    /// The next wait; each call doubles the step, up to [`BACKOFF_MAX`].
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let factor = 0.5 + (self.rng % 1000) as f64 / 1000.0;
        let wait = self.step.mul_f64(factor);
        self.step = (self.step * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_up_to_the_cap() {
        let mut b = Backoff::new();
        let mut step = BACKOFF_START;
        for _ in 0..12 {
            let wait = b.next();
            assert!(
                wait >= step / 2 && wait <= step * 3 / 2,
                "{wait:?} for step {step:?}"
            );
            step = (step * 2).min(BACKOFF_MAX);
        }
        let waits: Vec<_> = (0..4).map(|_| Backoff::new().next()).collect();
        assert!(
            waits.windows(2).any(|w| w[0] != w[1]),
            "backoffs made together jitter alike: {waits:?}"
        );
    }
}
