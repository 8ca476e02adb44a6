//! Keeping rejected frames for a look: `quarantine = "/var/lib/framegate/quarantine"`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::frame::Frame;
use crate::sink::template::sanitize;

/// Writes `frame`'s payload to `dir` as `<device>-<seq>.<ext>` (created whole or not at all)
/// and the reason beside it as `<device>-<seq>.txt`. Returns the payload's path.
pub fn keep(dir: &Path, frame: &Frame, why: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stem = format!("{}-{}", sanitize(&frame.device), frame.seq);
    let path = dir.join(format!("{stem}.{}", frame.extension()));
    write_atomically(&path, &frame.payload)?;
    let note = format!(
        "device: {}\nseq: {}\nlistener: {}\npeer: {}\nbytes: {}\nrejected: {why}\n",
        frame.device,
        frame.seq,
        frame.listener,
        frame.peer,
        frame.size()
    );
    write_atomically(&dir.join(format!("{stem}.txt")), note.as_bytes())?;
    Ok(path)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".framegate-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
