//! Small state files under `state_dir`, replaced atomically.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::StoreError;

/// Replaces `dir/name` with `text` so a crash leaves the old content or the new, never a torn
/// file: a temp file in the same directory, fsync, rename over the old one, directory fsync.
pub fn replace_file(dir: &Path, name: &str, text: &str) -> Result<(), StoreError> {
    let path = dir.join(name);
    let fail =
        |what: &str, e: std::io::Error| StoreError(format!("{what} {}: {e}", path.display()));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| fail("cannot create a temp file for", e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| fail("cannot write", e))?;
    tmp.persist(&path)
        .map_err(|e| fail("cannot replace", e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("cannot fsync the directory of", e))
}

/// Reads `dir/name`; `None` when it does not exist yet.
pub fn read_file(dir: &Path, name: &str) -> Result<Option<String>, StoreError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Creates `state_dir` if needed, with an error that tells the operator what to do.
pub fn create_state_dir(state_dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(state_dir).map_err(|e| {
        StoreError(format!(
            "cannot create state_dir {}: {e}; create it or point state_dir at a writable directory",
            state_dir.display()
        ))
    })
}
