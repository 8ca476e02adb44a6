//! The forward sink's upstream addresses (`to`): which to try next, and when the whole list
//! is down, when to try again.
//!
//! Addresses are tried in order, starting with the first one that has not failed in the last
//! [`SKIP_FAILED_FOR`], so the first address is preferred again soon after it recovers. When
//! every address failed, no link tries again before a shared backoff (exponential with
//! jitter) runs out, and only one link probes at a time ([`Upstreams::is_down`]): an outage of
//! hours costs a connection attempt every few seconds, not one per device.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::send::backoff::Backoff;

/// How long a failed address is passed over when a new link picks where to connect.
pub const SKIP_FAILED_FOR: Duration = Duration::from_secs(30);
/// How often the "cannot reach the upstream" warning repeats during an outage.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The `to` list and what is known about each address.
#[derive(Debug)]
pub struct Upstreams {
    sink: String,
    to: Vec<String>,
    failed_at: Vec<Option<Instant>>,
    /// Since when every address failed; `None` while one works.
    down_since: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    last_warning: Option<Instant>,
    last_error: String,
}

impl Upstreams {
    /// The addresses of sink `sink`, in preference order (at least one).
    pub fn new(sink: &str, to: Vec<String>) -> Self {
        assert!(!to.is_empty(), "a forward sink has at least one upstream");
        Upstreams {
            sink: sink.to_string(),
            failed_at: vec![None; to.len()],
            to,
            down_since: None,
            retry_at: None,
            backoff: Backoff::new(),
            last_warning: None,
            last_error: String::new(),
        }
    }

    /// How many addresses there are (at least one).
    pub fn count(&self) -> usize {
        self.to.len()
    }

    /// Address `i` as configured.
    pub fn name(&self, i: usize) -> &str {
        &self.to[i]
    }

    /// Resolves address `i` (a host name is looked up on every attempt, so a changed DNS
    /// record is followed).
    pub fn resolve(&self, i: usize) -> io::Result<SocketAddr> {
        self.to[i].to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address")
        })
    }

    /// Where a new link connects first.
    pub fn first_choice(&self, now: Instant) -> usize {
        self.failed_at
            .iter()
            .position(|f| f.is_none_or(|at| now.duration_since(at) >= SKIP_FAILED_FOR))
            .unwrap_or(0)
    }

    /// True while every address failed and none has worked since: links wait for the backoff
    /// and probe one at a time.
    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// True if a link may try to connect now.
    pub fn may_connect(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// When links may try again, if they must wait.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Address `i` did not work (refused, timed out, no session).
    pub fn failed(&mut self, i: usize, why: &str, now: Instant) {
        self.failed_at[i] = Some(now);
        self.last_error = format!("{}: {why}", self.to[i]);
    }

    /// A link tried every address and none worked: back off. `spooled` frames wait.
    pub fn all_failed(&mut self, now: Instant, spooled: u64) {
        self.down_since.get_or_insert(now);
        if self.retry_at.is_none_or(|at| at <= now) {
            self.retry_at = Some(now + self.backoff.next());
        }
        if self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            self.last_warning = Some(now);
            log::warn!(
                "forward sink {:?}: cannot reach any upstream (last: {}); {spooled} frame(s) wait in the spool; retrying with backoff",
                self.sink,
                self.last_error
            );
        }
    }

    /// A session with address `i` opened.
    pub fn succeeded(&mut self, i: usize, now: Instant) {
        self.failed_at[i] = None;
        self.retry_at = None;
        self.backoff = Backoff::new();
        if let Some(since) = self.down_since.take() {
            self.last_warning = None;
            log::info!(
                "forward sink {:?}: reached {} again after {}",
                self.sink,
                self.to[i],
                humantime::format_duration(Duration::from_secs(
                    now.duration_since(since).as_secs()
                ))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_addresses_are_passed_over_for_a_while_then_preferred_again() {
        let mut u = Upstreams::new("up", vec!["a:1".into(), "b:1".into(), "c:1".into()]);
        let t0 = Instant::now();
        assert_eq!(u.first_choice(t0), 0);
        u.failed(0, "refused", t0);
        assert_eq!(u.first_choice(t0), 1);
        u.failed(1, "refused", t0);
        assert_eq!(u.first_choice(t0), 2);
        u.failed(2, "refused", t0);
        assert_eq!(u.first_choice(t0), 0, "all failed: start over at the first");
        assert_eq!(u.first_choice(t0 + SKIP_FAILED_FOR), 0);
        u.succeeded(2, t0);
        assert_eq!(u.first_choice(t0 + Duration::from_secs(1)), 2);
    }

    #[test]
    fn when_everything_failed_links_wait_for_a_shared_backoff() {
        let mut u = Upstreams::new("up", vec!["a:1".into()]);
        let t0 = Instant::now();
        assert!(u.may_connect(t0) && !u.is_down());
        u.failed(0, "refused", t0);
        u.all_failed(t0, 5);
        assert!(u.is_down());
        let retry = u.retry_at().unwrap();
        assert!(retry > t0 && !u.may_connect(t0));
        // A second link failing in the same round does not push the retry further out.
        u.all_failed(t0, 5);
        assert_eq!(u.retry_at(), Some(retry));
        assert!(u.may_connect(retry));
        u.succeeded(0, retry);
        assert!(!u.is_down() && u.may_connect(retry));
    }
}
