//! Retention for file sinks (`keep = { max_files, max_bytes, max_age }`): the oldest files go
//! first, so the disk never fills. The bound holds across restarts: the files already below the
//! sink's root are counted when the sink first stores a frame (on a worker thread, never the
//! event loop).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The limits; any may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// Most files kept.
    pub max_files: Option<u64>,
    /// Most bytes kept.
    pub max_bytes: Option<u64>,
    /// Files older than this go.
    pub max_age: Option<Duration>,
}

impl Keep {
    /// True when no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_files.is_none() && self.max_bytes.is_none() && self.max_age.is_none()
    }
}

/// The files a sink keeps, oldest first.
#[derive(Debug)]
pub struct Retention {
    keep: Keep,
    /// (modification time, path) → size.
    files: BTreeMap<(SystemTime, PathBuf), u64>,
    bytes: u64,
}

impl Retention {
    /// Counts the regular, non-hidden files below `root` (hidden ones are temp files).
    pub fn scan(root: &Path, keep: Keep) -> Retention {
        let mut retention = Retention {
            keep,
            files: BTreeMap::new(),
            bytes: 0,
        };
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(path);
                } else if meta.is_file() {
                    let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    retention.insert(path, meta.len(), when);
                }
            }
        }
        retention
    }

    fn insert(&mut self, path: PathBuf, size: u64, when: SystemTime) {
        if self.files.insert((when, path), size).is_none() {
            self.bytes += size;
        }
    }

    /// Files kept now, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        (self.files.len() as u64, self.bytes)
    }

    /// Records a file just stored, of a frame received at `received`; returns the files to
    /// delete to stay within the limits, oldest (by receive time) first. That may be the new
    /// file itself, when workers committed it after newer frames; never a file that alone is
    /// over `max_bytes`, which is kept.
    pub fn add(
        &mut self,
        path: PathBuf,
        size: u64,
        received: SystemTime,
        now: SystemTime,
    ) -> Vec<PathBuf> {
        self.insert(path.clone(), size, received);
        self.enforce(&path, now)
    }

    /// Returns the files to delete to stay within the limits, never `newest`.
    pub fn enforce(&mut self, newest: &Path, now: SystemTime) -> Vec<PathBuf> {
        let path = newest;
        let mut doomed = self.expire(now);
        loop {
            let over_files = self
                .keep
                .max_files
                .is_some_and(|max| self.files.len() as u64 > max);
            let over_bytes = self.keep.max_bytes.is_some_and(|max| self.bytes > max);
            if !(over_files || over_bytes) {
                break;
            }
            let Some(((when, oldest), _)) = self.files.iter().next() else {
                break;
            };
            if *oldest == path && self.files.len() == 1 {
                break; // the new file alone is over max_bytes: keep it, it is the point
            }
            let key = (*when, oldest.clone());
            let size = self.files.remove(&key).expect("just seen");
            self.bytes -= size;
            doomed.push(key.1);
        }
        doomed
    }

    /// Removes and returns the files older than `max_age`.
    pub fn expire(&mut self, now: SystemTime) -> Vec<PathBuf> {
        let Some(age) = self.keep.max_age else {
            return Vec::new();
        };
        let Some(cutoff) = now.checked_sub(age) else {
            return Vec::new();
        };
        let mut doomed = Vec::new();
        while let Some((&(when, ref path), &size)) = self.files.iter().next() {
            if when >= cutoff {
                break;
            }
            let path = path.clone();
            self.files.remove(&(when, path.clone()));
            self.bytes -= size;
            doomed.push(path);
        }
        doomed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn oldest_go_first_by_count_bytes_and_age() {
        let keep = Keep {
            max_files: Some(3),
            max_bytes: Some(250),
            max_age: Some(Duration::from_secs(100)),
        };
        let mut r = Retention {
            keep,
            files: BTreeMap::new(),
            bytes: 0,
        };
        assert!(r.add("a".into(), 50, at(1000), at(1000)).is_empty());
        assert!(r.add("b".into(), 50, at(1001), at(1001)).is_empty());
        assert!(r.add("c".into(), 50, at(1002), at(1002)).is_empty());
        assert_eq!(
            r.add("d".into(), 50, at(1003), at(1003)),
            [PathBuf::from("a")]
        );
        // 50 + 50 + 50 + 120 = 270 > 250 bytes, and 4 files > 3: the oldest goes.
        assert_eq!(
            r.add("e".into(), 120, at(1004), at(1004)),
            [PathBuf::from("b")]
        );
        assert_eq!(r.totals(), (3, 220));
        // Bytes alone: 220 + 60 > 250 removes c, then 4 > 3 files is fixed too.
        assert_eq!(
            r.add("f".into(), 60, at(1005), at(1005)),
            [PathBuf::from("c")]
        );
        // Age: at 1104 everything from before 1004 is older than 100 s.
        assert_eq!(r.expire(at(1104)), [PathBuf::from("d")]);
        // A single file over max_bytes stays (it is the newest frame).
        let gone = r.add("huge".into(), 1000, at(1106), at(1106));
        assert_eq!(gone, [PathBuf::from("e"), PathBuf::from("f")]);
        assert_eq!(r.totals(), (1, 1000));
    }

    #[test]
    fn scan_counts_existing_files_but_not_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cam/2026")).unwrap();
        std::fs::write(dir.path().join("cam/2026/1.jpg"), b"12345").unwrap();
        std::fs::write(dir.path().join("cam/2.jpg"), b"123").unwrap();
        std::fs::write(dir.path().join("cam/.framegate-x.tmp"), b"temp").unwrap();
        let r = Retention::scan(dir.path(), Keep::default());
        assert_eq!(r.totals(), (2, 8));
    }

    #[test]
    fn a_frame_committed_after_newer_ones_is_ordered_by_receive_time() {
        let mut r = Retention {
            keep: Keep {
                max_files: Some(2),
                ..Keep::default()
            },
            files: BTreeMap::new(),
            bytes: 0,
        };
        assert!(r.add("2".into(), 1, at(2), at(10)).is_empty());
        assert!(r.add("3".into(), 1, at(3), at(11)).is_empty());
        // Frame 1 was received first but committed last: it is the oldest, and it goes.
        assert_eq!(r.add("1".into(), 1, at(1), at(12)), [PathBuf::from("1")]);
        assert_eq!(r.totals(), (2, 2));
    }
}
