//! The control socket `framegate status` connects to: a unix stream socket (mode 0660, so the
//! service's group may read it); each connection gets one JSON document, then EOF.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;

use log::{info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Poll, Token};

/// Binds the control socket and registers it with `poll`; `None` (logged) if that fails or
/// another framegate answers there already: status is a convenience, never a reason not to
/// serve devices.
pub fn open(path: &Path, poll: &Poll, token: Token) -> Option<UnixListener> {
    if StdUnixStream::connect(path).is_ok() {
        warn!(
            "control socket {} is in use by another framegate; `framegate status` will ask that one (set control_socket to give this one its own)",
            path.display()
        );
        return None;
    }
    // A socket file left by a daemon that did not exit cleanly.
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(e) => {
            warn!(
                "cannot open the control socket {}: {e}; `framegate status` will not reach this daemon",
                path.display()
            );
            return None;
        }
    };
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
    if let Err(e) = poll
        .registry()
        .register(&mut listener, token, Interest::READABLE)
    {
        warn!("cannot watch the control socket: {e}");
        return None;
    }
    info!("status on {}", path.display());
    Some(listener)
}

/// Writes `json` to a status client on a short-lived thread, then closes the connection.
pub fn reply(stream: UnixStream, json: Vec<u8>) {
    let spawned = std::thread::Builder::new()
        .name("fg-status".into())
        .spawn(move || {
            // SAFETY-free conversion: the mio stream becomes a blocking std stream.
            let std: StdUnixStream = stream.into();
            let _ = std.set_nonblocking(false);
            let _ = std.set_write_timeout(Some(std::time::Duration::from_secs(5)));
            let mut std = std;
            let _ = std.write_all(&json);
        });
    if let Err(e) = spawned {
        warn!("cannot answer a status request: {e}");
    }
}
