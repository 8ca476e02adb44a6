//! systemd socket activation: listening sockets handed over in `LISTEN_FDS` (from descriptor
//! 3), so a restart never refuses a device: the kernel keeps queueing connections on the
//! socket systemd holds while framegate is down.
//!
//! A `[[listener]]` takes the inherited socket whose `LISTEN_FDNAMES` entry is its name, else
//! the one bound to its `bind` address; listeners without one bind their own.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

/// The first descriptor systemd passes.
const FIRST_FD: RawFd = 3;

/// A listening socket systemd passed, with its name and address.
#[derive(Debug)]
pub struct Inherited {
    /// Its `FileDescriptorName=` (systemd's default is the unit's name).
    pub name: String,
    /// Where it is bound.
    pub addr: SocketAddr,
    /// The socket.
    pub socket: TcpListener,
}

/// The sockets systemd passed to this process; empty without (matching) `LISTEN_PID`.
/// Clears the variables so they are not taken twice (or by child processes).
pub fn take_inherited() -> Vec<Inherited> {
    let pid_matches =
        std::env::var("LISTEN_PID").is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    let count: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY (for remove_var): called at start-up, before any thread is spawned.
        unsafe { std::env::remove_var(var) };
    }
    if !pid_matches {
        return Vec::new();
    }
    (0..count)
        .filter_map(|i| {
            let fd = FIRST_FD + i;
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                log::warn!(
                    "socket activation: LISTEN_FDS names descriptor {fd}, which is not open; ignored"
                );
                return None;
            }
            // SAFETY: the descriptor is open, systemd passed it to us (FIRST_FD ..
            // FIRST_FD+LISTEN_FDS), and nothing else in this process owns it.
            let socket = unsafe { TcpListener::from_raw_fd(fd) };
            let addr = match socket.local_addr() {
                Ok(addr) => addr,
                Err(e) => {
                    log::warn!("socket activation: descriptor {fd} is not a TCP listener ({e}); ignored");
                    return None;
                }
            };
            Some(Inherited {
                name: names.get(i as usize).cloned().unwrap_or_default(),
                addr,
                socket,
            })
        })
        .collect()
}

/// Takes the inherited socket for a listener named `name` bound to `bind`, if there is one.
pub fn claim(inherited: &mut Vec<Inherited>, name: &str, bind: SocketAddr) -> Option<Inherited> {
    let by_name = inherited.iter().position(|s| s.name == name);
    let by_addr = || inherited.iter().position(|s| s.addr == bind);
    by_name.or_else(by_addr).map(|i| inherited.remove(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(name: &str) -> Inherited {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        Inherited {
            name: name.to_string(),
            addr: socket.local_addr().unwrap(),
            socket,
        }
    }

    #[test]
    fn listeners_claim_by_name_then_by_address() {
        let mut sockets = vec![passed("a"), passed("framegate.socket")];
        let by_addr = sockets[1].addr;
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(claim(&mut sockets, "a", other).unwrap().name, "a");
        assert!(claim(&mut sockets, "b", other).is_none());
        assert_eq!(claim(&mut sockets, "b", by_addr).unwrap().addr, by_addr);
        assert!(sockets.is_empty());
    }
}
