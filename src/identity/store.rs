//! The durable record of sequence marks: `sequences.toml` under `state_dir`.
//!
//! One small file for all devices, replaced atomically (temp file, fsync, rename, directory
//! fsync), so a crash leaves either the old marks or the new ones, never a torn file. Writes
//! happen on the store's own thread, never on the event loop.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use serde::{Deserialize, Serialize};

use super::durable;
use super::sequences::Reservations;

/// The file name under `state_dir`.
pub const FILE_NAME: &str = "sequences.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    /// Device name → first sequence number not yet reserved.
    next_unreserved: BTreeMap<String, u64>,
}

/// A failure to read or write the state file; the message names the path and the OS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// The sequence marks, loaded at start and rewritten as reservations are made.
#[derive(Debug)]
pub struct SequenceStore {
    dir: PathBuf,
    marks: OnDisk,
}

impl SequenceStore {
    /// Opens (creating `state_dir` if needed) and loads the marks.
    pub fn open(state_dir: &Path) -> Result<SequenceStore, StoreError> {
        durable::create_state_dir(state_dir)?;
        let marks = match durable::read_file(state_dir, FILE_NAME)? {
            Some(text) => toml::from_str(&text).map_err(|e| {
                StoreError(format!(
                    "{} is damaged ({e}); sequence numbers could repeat, so framegate will not start. Restore it from a backup, or remove it only if repeating sequence numbers is acceptable",
                    state_dir.join(FILE_NAME).display()
                ))
            })?,
            None => OnDisk::default(),
        };
        Ok(SequenceStore {
            dir: state_dir.to_path_buf(),
            marks,
        })
    }

    /// Each device's first number not yet reserved.
    pub fn marks(&self) -> HashMap<String, u64> {
        self.marks
            .next_unreserved
            .iter()
            .map(|(d, m)| (d.clone(), *m))
            .collect()
    }

    /// Raises marks (reservations); a mark never goes down here.
    pub fn reserve(&mut self, updates: &[(Arc<str>, u64)]) -> Result<(), StoreError> {
        for (device, mark) in updates {
            let entry = self
                .marks
                .next_unreserved
                .entry(device.to_string())
                .or_insert(0);
            *entry = (*entry).max(*mark);
        }
        self.write()
    }

    /// Records the exact next numbers at a clean shutdown, giving back unused reservations.
    pub fn settle(&mut self, exact: &[(Arc<str>, u64)]) -> Result<(), StoreError> {
        for (device, next) in exact {
            self.marks.next_unreserved.insert(device.to_string(), *next);
        }
        self.write()
    }

    fn write(&self) -> Result<(), StoreError> {
        let text = toml::to_string(&self.marks).expect("marks serialise");
        durable::replace_file(&self.dir, FILE_NAME, &text)
    }

    /// Moves the store to a thread of its own. Each batch of reservations sent to the returned
    /// channel is written once (batches that queued up meanwhile are merged into one write) and
    /// reported through `done`, with the reservations it covered. Closing the channel ends the
    /// thread, which hands the store back through its join handle (for [`SequenceStore::settle`]).
    pub fn spawn_writer<F>(mut self, done: F) -> (mpsc::Sender<Reservations>, JoinHandle<Self>)
    where
        F: Fn(Reservations, Result<(), StoreError>) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Reservations>();
        let handle = thread::Builder::new()
            .name("fg-sequences".into())
            .spawn(move || {
                while let Ok(mut batch) = rx.recv() {
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                    let result = self.reserve(&batch);
                    done(batch, result);
                }
                self
            })
            .expect("spawn the sequence store thread");
        (tx, handle)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn marks_survive_reopen_and_only_rise_on_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let cam: Arc<str> = Arc::from("door-cam");
        let mut store = SequenceStore::open(dir.path()).unwrap();
        assert!(store.marks().is_empty());
        store.reserve(&[(cam.clone(), 1025)]).unwrap();
        store.reserve(&[(cam.clone(), 10)]).unwrap();
        let store = SequenceStore::open(dir.path()).unwrap();
        assert_eq!(store.marks()["door-cam"], 1025);
    }

    #[test]
    fn settle_records_exact_marks() {
        let dir = tempfile::tempdir().unwrap();
        let cam: Arc<str> = Arc::from("cam \"quoted\" ../x");
        let mut store = SequenceStore::open(dir.path()).unwrap();
        store.reserve(&[(cam.clone(), 2000)]).unwrap();
        store.settle(&[(cam.clone(), 17)]).unwrap();
        let store = SequenceStore::open(dir.path()).unwrap();
        assert_eq!(store.marks()[&*cam], 17);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != FILE_NAME)
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn damaged_file_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "next_unreserved = [").unwrap();
        let err = SequenceStore::open(dir.path()).unwrap_err();
        assert!(err.0.contains("damaged"), "{err}");
    }
}
