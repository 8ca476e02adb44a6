//! Listening sockets, built with socket2 so the backlog is ours to choose.
//!
//! `mio::net::TcpListener::bind` listens with a backlog of 128; after a gateway restart
//! thousands of devices reconnect at once, and a short backlog turns most of them away.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// A non-blocking listener bound to `addr` with `backlog` pending connections.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted daemon must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // "[::]:1919" serves IPv4 devices too, as operators expect from a wildcard bind.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}
