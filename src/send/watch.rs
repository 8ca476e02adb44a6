//! `framegate send --watch DIR`: sends images as they appear in a directory, and deletes (or
//! moves) each one only after the server acknowledged it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::is_hidden;
use super::native::{NativePlan, NativeSender};

/// How long the watcher waits for new files before tending the idle session.
const TICK: Duration = Duration::from_millis(500);

/// What to do with a file once its frame is acknowledged.
#[derive(Debug, Clone)]
pub enum AfterAck {
    /// Delete it.
    Delete,
    /// Move it into this directory.
    MoveTo(PathBuf),
}

/// Watches `dir` until the process is stopped, or `stop_after` files were handled (tests).
/// Files already there are sent first, oldest name first. A file counts as ready when its
/// writer closed it, or when it was moved in; hidden files (editors' and uploaders' temp
/// files) are ignored. Frames the server refuses for good stay in place and are not retried.
pub fn watch(
    plan: NativePlan,
    dir: &Path,
    after: &AfterAck,
    stop_after: Option<usize>,
) -> io::Result<()> {
    if let AfterAck::MoveTo(done) = after {
        fs::create_dir_all(done)?;
    }
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(io::Error::other)?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(io::Error::other)?;

    // Listed after the watch started, so a file written in between is seen one way or both.
    let mut ready: BTreeSet<PathBuf> = list(dir)?;
    let mut refused = BTreeSet::new();
    let mut handled = 0usize;
    let mut sender = NativeSender::new(plan);
    loop {
        let batch: Vec<PathBuf> = std::mem::take(&mut ready)
            .into_iter()
            .filter(|p| !refused.contains(p))
            .collect();
        for (tag, path) in batch.iter().enumerate() {
            match fs::read(path) {
                Ok(bytes) if !bytes.is_empty() => sender.push(bytes, tag),
                Ok(_) => {}
                // Gone already (another consumer), or unreadable: say so and go on.
                Err(e) => eprintln!("framegate send: skipping {}: {e}", path.display()),
            }
        }
        let mut failure = None;
        sender.deliver(&mut |tag, outcome| {
            let path = &batch[tag];
            handled += 1;
            match outcome {
                Ok(_) => {
                    if let Err(e) = dispose(path, after) {
                        failure.get_or_insert(e);
                    }
                }
                Err((reason, text)) => {
                    eprintln!(
                        "framegate send: {} refused ({reason}: {text}); left in place",
                        path.display()
                    );
                    refused.insert(path.clone());
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if stop_after.is_some_and(|n| handled >= n) {
            return Ok(());
        }
        match rx.recv_timeout(TICK) {
            Ok(Ok(event)) => {
                take_ready(&event, &mut ready);
                while let Ok(Ok(event)) = rx.try_recv() {
                    take_ready(&event, &mut ready);
                }
            }
            Ok(Err(e)) => eprintln!("framegate send: watching {}: {e}", dir.display()),
            Err(mpsc::RecvTimeoutError::Timeout) => sender.idle(Duration::from_millis(1)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the directory watcher stopped"))
            }
        }
    }
}

/// Regular, non-hidden files in `dir`.
fn list(dir: &Path) -> io::Result<BTreeSet<PathBuf>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !is_hidden(p))
        .collect())
}

/// Files an event says are complete: closed after writing, or moved in.
fn take_ready(event: &notify::Event, ready: &mut BTreeSet<PathBuf>) {
    let complete = matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    );
    if !complete {
        return;
    }
    // For a rename with both ends, the last path is where the file is now.
    if let Some(path) = event.paths.last() {
        if path.is_file() && !is_hidden(path) {
            ready.insert(path.clone());
        }
    }
}

fn dispose(path: &Path, after: &AfterAck) -> io::Result<()> {
    match after {
        AfterAck::Delete => fs::remove_file(path),
        AfterAck::MoveTo(dir) => {
            let name = path.file_name().expect("listed files have names");
            fs::rename(path, dir.join(name))
        }
    }
    .map_err(|e| io::Error::new(e.kind(), format!("{} (acknowledged): {e}", path.display())))
}
