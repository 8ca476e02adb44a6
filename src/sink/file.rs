//! The file sink: one file per frame, written so that a crash never leaves a partial frame under
//! its final name and an existing file is never replaced.
//!
//! Per frame: render the path template; create missing directories; write the payload to a
//! hidden temp file (`.framegate-*.tmp`) in the target directory; fsync it; rename it into
//! place without overwriting (`~1`, `~2`, … when the name is taken); fsync the directory.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tempfile::NamedTempFile;

use super::retention::{Keep, Retention};
use super::template::{PathTemplate, TimeZone};
use super::{Committed, Sink, SinkError};
use crate::frame::Frame;

/// How many `~N` alternatives to try when a frame's file name is taken. Bounded so that a
/// template that sends every frame to one name fails loudly instead of slowing down forever.
pub const MAX_ALTERNATIVES: u32 = 1000;

/// Held shared to look for a frame's directory and exclusively to create directories and sync
/// their parents. Process-wide rather than per sink, because two file sinks may share
/// directories, and a worker that finds a directory must not commit into it before its creator
/// has made it durable.
static DIR_CREATION: RwLock<()> = RwLock::new(());

/// Settings of one `type = "file"` sink.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkConfig {
    /// Where each frame goes.
    pub path: PathTemplate,
    /// fsync the file and its directory before reporting the frame committed.
    pub fsync: bool,
    /// Clock for date and time placeholders.
    pub time_zone: TimeZone,
    /// Retention limits (`keep`); unlimited when none is set.
    pub keep: Keep,
}

/// Writes each frame to its own file, atomically.
///
/// Holds no per-frame state, so all of the sink's workers share one instance; concurrent
/// commits into the same (even not yet existing) directory are safe.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    config: FileSinkConfig,
    /// The files kept, oldest first; counted from disk on first use. Shared with the janitor
    /// thread that enforces `max_age` while no frames arrive.
    retention: Arc<Mutex<Option<Retention>>>,
    /// Removals since the last info line: (files, bytes, when that line was logged).
    removed: Mutex<(u64, u64, Option<Instant>)>,
}

impl FileSink {
    /// A file sink named `name` (used in log lines).
    ///
    /// Logs a warning when the template lets different frames share a file name.
    pub fn new(name: &str, config: FileSinkConfig) -> FileSink {
        if let Some(why) = config.path.collision_warning() {
            log::warn!("file sink {name:?}: {why}");
        }
        let retention = Arc::new(Mutex::new(None));
        if let Some(age) = config.keep.max_age {
            spawn_janitor(name, &config, Arc::downgrade(&retention), age);
        }
        FileSink {
            retention,
            removed: Mutex::new((0, 0, None)),
            name: name.to_string(),
            config,
        }
    }

    /// Creates `dir` and any missing parents; with fsync, also makes each new directory's
    /// entry durable by syncing its parent, or a crash could lose a committed frame's directory.
    fn ensure_dir(&self, dir: &Path) -> Result<(), SinkError> {
        // The common case costs one stat under a shared lock. Seeing the directory while
        // holding the lock means whoever created it has also synced it (see below), so our
        // frame never rests on a directory entry that is not durable yet.
        {
            let _shared = DIR_CREATION.read().unwrap_or_else(PoisonError::into_inner);
            if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                return Ok(());
            }
        }
        // Creating is rare (a new device, a new day), so doing it one at a time is cheap; the
        // exclusive lock spans creation and fsync.
        let _exclusive = DIR_CREATION.write().unwrap_or_else(PoisonError::into_inner);
        // Which ancestors are missing, before creating them: those are the ones whose parent
        // must be synced. The walk is bounded by the path's depth.
        let missing: Vec<&Path> = dir
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(
                |a| matches!(fs::metadata(a), Err(e) if e.kind() == io::ErrorKind::NotFound),
            )
            .collect();
        // create_dir_all also tolerates a directory that another process creates meanwhile.
        fs::create_dir_all(dir).map_err(|e| fail("creating directory", dir, &e))?;
        if self.config.fsync {
            for created in missing.iter().rev() {
                sync_dir(parent_dir(created))?;
            }
        }
        Ok(())
    }

    /// Writes `payload` to a temp file in `dir`, synced when fsync is on.
    fn write_temp(
        &self,
        dir: &Path,
        target: &Path,
        payload: &[u8],
    ) -> Result<NamedTempFile, SinkError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".framegate-").suffix(".tmp");
        // tempfile defaults to 0600; frames are ordinary output files, so give them the mode
        // `File::create` would (0666 minus the umask) for the tools that read them.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o666));
        }
        // tempfile's error already names the temp path and keeps the "(os error N)".
        let mut temp = builder.tempfile_in(dir).map_err(|e| {
            SinkError::new(format!(
                "writing {}: creating temp file: {e}",
                target.display()
            ))
        })?;
        // From here on an early return drops `temp`, which deletes the temp file.
        temp.write_all(payload)
            .map_err(|e| fail("writing", target, &e))?;
        if self.config.fsync {
            temp.as_file()
                .sync_all()
                .map_err(|e| fail("syncing", target, &e))?;
        }
        Ok(temp)
    }

    /// Renames `temp` to `target`, or to the first free `~N` alternative; never overwrites.
    fn place(
        &self,
        mut temp: NamedTempFile,
        target: &Path,
        frame: &Frame,
    ) -> Result<PathBuf, SinkError> {
        let mut candidate = target.to_path_buf();
        for n in 1..=MAX_ALTERNATIVES + 1 {
            match temp.persist_noclobber(&candidate) {
                Ok(_) => {
                    if n > 1 {
                        log::warn!(
                            "file sink {:?}: {} already exists; stored frame {} of device {:?} as {} instead",
                            self.name,
                            target.display(),
                            frame.seq,
                            &*frame.device,
                            candidate.display()
                        );
                    }
                    return Ok(candidate);
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                    // A native frame resent after a crash (stored, but its ACK never went
                    // out) lands on the same name: the same bytes there mean it is stored.
                    if frame.native.is_some() && same_content(&candidate, &frame.payload) {
                        log::debug!(
                            "file sink {:?}: frame {} of device {:?} is already stored as {}",
                            self.name,
                            frame.seq,
                            &*frame.device,
                            candidate.display()
                        );
                        return Ok(candidate);
                    }
                    temp = e.file;
                    candidate = alternative(target, n);
                }
                // Dropping `e.file` deletes the temp file.
                Err(e) => {
                    return Err(SinkError::new(format!(
                        "writing {}: renaming the temp file into place: {}",
                        candidate.display(),
                        e.error
                    )))
                }
            }
        }
        Err(SinkError::new(format!(
            "writing {}: it and its alternatives ~1 to ~{MAX_ALTERNATIVES} all exist already; the \
             path template gives many frames the same name, add {{seq}} and {{device}} to it",
            target.display()
        )))
    }
}

impl Sink for FileSink {
    fn commit(&self, frame: &Frame) -> Result<Committed, SinkError> {
        let target = self
            .config
            .path
            .render(frame, self.config.time_zone)
            .map_err(|why| {
                SinkError::new(format!(
                    "frame {} of device {:?} not written: {why}",
                    frame.seq, &*frame.device
                ))
            })?;
        let dir = parent_dir(&target);
        self.ensure_dir(dir)?;
        let temp = self.write_temp(dir, &target, &frame.payload)?;
        let path = self.place(temp, &target, frame)?;
        if self.config.fsync {
            // The rename is only durable once the directory entry is.
            sync_dir(dir)?;
        }
        if !self.config.keep.is_unlimited() {
            self.retain(&path, frame.payload.len() as u64, frame.received_at);
        }
        Ok(Committed { path: Some(path) })
    }
}

impl FileSink {
    /// Records the stored file and deletes the oldest ones beyond `keep`.
    fn retain(&self, path: &Path, size: u64, received: SystemTime) {
        let doomed = {
            let mut guard = self
                .retention
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut() {
                Some(retention) => {
                    // Ordered by receive time, not commit time: workers may commit a frame
                    // after a newer one, and the newest frames are the ones to keep.
                    retention.add(path.to_path_buf(), size, received, SystemTime::now())
                }
                None => {
                    // The first file since start: the scan sees it already.
                    let retention =
                        guard.insert(Retention::scan(self.config.path.root(), self.config.keep));
                    retention.enforce(path, SystemTime::now())
                }
            }
        };
        remove(&self.name, &doomed, &self.removed, &self.retention);
    }
}

/// Deletes `doomed` (logged at debug), and logs the totals at info at most once a minute.
fn remove(
    name: &str,
    doomed: &[PathBuf],
    removed: &Mutex<(u64, u64, Option<Instant>)>,
    retention: &Mutex<Option<Retention>>,
) {
    if doomed.is_empty() {
        return;
    }
    let mut bytes = 0;
    for path in doomed {
        bytes += fs::metadata(path).map_or(0, |m| m.len());
        match fs::remove_file(path) {
            Ok(()) => log::debug!("file sink {name:?}: removed {} (keep)", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "file sink {name:?}: cannot remove {} to stay within keep: {e}",
                path.display()
            ),
        }
    }
    let mut r = removed.lock().unwrap_or_else(PoisonError::into_inner);
    r.0 += doomed.len() as u64;
    r.1 += bytes;
    if r.2
        .is_none_or(|last| last.elapsed() >= Duration::from_secs(60))
    {
        let (files, kept_bytes) = retention
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or((0, 0), Retention::totals);
        log::info!(
            "file sink {name:?}: removed {} oldest file(s) ({} bytes) to stay within keep; keeping {files} file(s), {kept_bytes} bytes",
            r.0,
            r.1
        );
        *r = (0, 0, Some(Instant::now()));
    }
}

/// Enforces `max_age` while no frames arrive: wakes every tenth of the age (at most a
/// minute) and ends when the sink is gone.
fn spawn_janitor(
    name: &str,
    config: &FileSinkConfig,
    retention: std::sync::Weak<Mutex<Option<Retention>>>,
    age: Duration,
) {
    let (name, root, keep) = (
        name.to_string(),
        config.path.root().to_path_buf(),
        config.keep,
    );
    let tick = (age / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let removed = Mutex::new((0, 0, None));
    let _ = std::thread::Builder::new()
        .name(format!("fg-keep-{name}"))
        .spawn(move || loop {
            std::thread::sleep(tick);
            let Some(retention) = retention.upgrade() else {
                return;
            };
            let doomed = {
                let mut guard = retention.lock().unwrap_or_else(PoisonError::into_inner);
                guard
                    .get_or_insert_with(|| Retention::scan(&root, keep))
                    .expire(SystemTime::now())
            };
            remove(&name, &doomed, &removed, &retention);
        });
}

/// The directory holding `path`; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a directory, making the names created in it durable.
fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("syncing directory", dir, &e))
}

/// True when the file at `path` holds exactly `payload`.
fn same_content(path: &Path, payload: &[u8]) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == payload.len() as u64)
        && fs::read(path).is_ok_and(|bytes| bytes == payload)
}

/// `<stem>~n.<ext>` next to `target` (`<name>~n` without an extension).
fn alternative(target: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(target.file_stem().unwrap_or_default());
    name.push(format!("~{n}"));
    if let Some(ext) = target.extension() {
        name.push(".");
        name.push(ext);
    }
    target.with_file_name(name)
}

/// `"<what> <path>: <OS error> (os error N)"`, the form operators grep their logs for.
fn fail(what: &str, path: &Path, err: &io::Error) -> SinkError {
    SinkError::new(format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Barrier};
    use std::time::SystemTime;

    fn frame(device: &str, seq: u64, payload: &[u8]) -> Frame {
        Frame {
            listener: Arc::from("lst"),
            device: Arc::from(device),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
            seq,
            received_at: SystemTime::now(),
            format: None,
            payload: payload.to_vec(),
            native: None,
        }
    }

    fn sink(template: &str, fsync: bool) -> FileSink {
        FileSink::new(
            "test",
            FileSinkConfig {
                path: PathTemplate::parse(template).unwrap(),
                fsync,
                time_zone: TimeZone::Utc,
                keep: Keep::default(),
            },
        )
    }

    /// Every file below `dir`, relative to it, sorted.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn file_sink_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<FileSink>();
    }

    #[test]
    fn commit_writes_exact_bytes_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(
            &format!("{}/a/{{device}}/{{seq:04}}.{{ext}}", root.path().display()),
            true,
        );
        let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let done = s.commit(&frame("cam", 7, &payload)).unwrap();
        let want = root.path().join("a/cam/0007.bin");
        assert_eq!(done.path.as_deref(), Some(want.as_path()));
        assert_eq!(fs::read(&want).unwrap(), payload);
        assert_eq!(files(root.path()), ["a/cam/0007.bin"]);
    }

    #[test]
    fn commit_without_fsync_works() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(
            &format!("{}/{{device}}/{{seq}}", root.path().display()),
            false,
        );
        s.commit(&frame("cam", 1, b"")).unwrap();
        s.commit(&frame("cam", 2, b"two")).unwrap();
        assert_eq!(fs::read(root.path().join("cam/1")).unwrap(), b"");
        assert_eq!(fs::read(root.path().join("cam/2")).unwrap(), b"two");
        assert_eq!(files(root.path()), ["cam/1", "cam/2"]);
    }

    #[test]
    fn hostile_device_is_written_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("r");
        let s = sink(
            &format!("{}/{{device}}/{{seq}}.{{ext}}", base.display()),
            true,
        );
        for (seq, device) in ["../../etc", "..", "a/b", "x\0y", "\n"]
            .into_iter()
            .enumerate()
        {
            let done = s.commit(&frame(device, seq as u64, b"x")).unwrap();
            assert!(done.path.unwrap().starts_with(&base), "{device:?}");
        }
        assert_eq!(
            files(root.path()),
            [
                "r/.._.._etc/0.bin",
                "r/_/4.bin",
                "r/__/1.bin",
                "r/a_b/2.bin",
                "r/x_y/3.bin"
            ]
        );
    }

    #[test]
    fn existing_file_is_not_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(&format!("{}/{{device}}.jpg", root.path().display()), true);
        let first = root.path().join("cam.jpg");
        fs::write(&first, b"old").unwrap();
        let done = s.commit(&frame("cam", 1, b"new")).unwrap();
        assert_eq!(done.path.unwrap(), root.path().join("cam~1.jpg"));
        let done = s.commit(&frame("cam", 2, b"newer")).unwrap();
        assert_eq!(done.path.unwrap(), root.path().join("cam~2.jpg"));
        assert_eq!(fs::read(&first).unwrap(), b"old");
        assert_eq!(fs::read(root.path().join("cam~1.jpg")).unwrap(), b"new");
        assert_eq!(fs::read(root.path().join("cam~2.jpg")).unwrap(), b"newer");
        assert_eq!(files(root.path()), ["cam.jpg", "cam~1.jpg", "cam~2.jpg"]);
    }

    #[test]
    fn a_resent_native_frame_is_recognised_by_name_and_content() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(
            &format!("{}/{{device}}/{{seq}}-{{time}}.jpg", root.path().display()),
            true,
        );
        let native = |payload: &[u8]| Frame {
            native: Some(crate::frame::NativeOrigin {
                captured_us: 1_700_000_000_123_000,
                meta: vec![],
                reply_to: 1,
            }),
            // Received later the second time; the name follows the capture time.
            received_at: SystemTime::now(),
            ..frame("cam", 5, payload)
        };
        let first = s.commit(&native(b"same")).unwrap().path.unwrap();
        let again = s.commit(&native(b"same")).unwrap().path.unwrap();
        assert_eq!(first, again, "the resend is the stored copy");
        assert_eq!(first, root.path().join("cam/5-221320.123.jpg"));
        // Different bytes under the same name are a different frame: never overwritten.
        let other = s.commit(&native(b"different")).unwrap().path.unwrap();
        assert_eq!(other, root.path().join("cam/5-221320.123~1.jpg"));
        // Legacy frames keep the plain rule: a clash is a new file, whatever its bytes.
        let legacy = sink(&format!("{}/{{device}}.jpg", root.path().display()), true);
        legacy.commit(&frame("x", 1, b"same")).unwrap();
        let second = legacy
            .commit(&frame("x", 2, b"same"))
            .unwrap()
            .path
            .unwrap();
        assert_eq!(second, root.path().join("x~1.jpg"));
        assert_eq!(
            files(&root.path().join("cam")),
            ["5-221320.123.jpg", "5-221320.123~1.jpg"]
        );
    }

    #[test]
    fn alternative_names() {
        assert_eq!(
            alternative(Path::new("/r/a.jpg"), 1),
            Path::new("/r/a~1.jpg")
        );
        assert_eq!(
            alternative(Path::new("/r/a.tar.gz"), 2),
            Path::new("/r/a.tar~2.gz")
        );
        assert_eq!(alternative(Path::new("/r/a"), 3), Path::new("/r/a~3"));
        assert_eq!(alternative(Path::new("/r/.bin"), 4), Path::new("/r/.bin~4"));
    }

    #[test]
    fn gives_up_after_the_bounded_alternatives() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(&format!("{}/{{device}}", root.path().display()), false);
        let target = root.path().join("cam");
        fs::write(&target, b"").unwrap();
        for n in 1..=MAX_ALTERNATIVES {
            fs::write(alternative(&target, n), b"").unwrap();
        }
        let err = s.commit(&frame("cam", 1, b"x")).unwrap_err();
        assert!(err.message.contains(&target.display().to_string()), "{err}");
        assert!(err.message.contains("all exist"), "{err}");
        assert_eq!(files(root.path()).len(), MAX_ALTERNATIVES as usize + 1);
    }

    #[test]
    fn directory_error_names_path_and_errno() {
        let root = tempfile::tempdir().unwrap();
        // A regular file where the template wants a directory: ENOTDIR even for root.
        fs::write(root.path().join("blocker"), b"").unwrap();
        let s = sink(
            &format!("{}/blocker/{{device}}/{{seq}}", root.path().display()),
            true,
        );
        let err = s.commit(&frame("cam", 1, b"x")).unwrap_err();
        let dir = root.path().join("blocker/cam");
        assert_eq!(
            err.message,
            format!(
                "creating directory {}: Not a directory (os error 20)",
                dir.display()
            )
        );
        assert_eq!(files(root.path()), ["blocker"]);
    }

    #[test]
    fn rename_error_names_path_and_errno_and_removes_temp_file() {
        let root = tempfile::tempdir().unwrap();
        // The temp name is short but the final one exceeds NAME_MAX (255): the write succeeds
        // and the rename fails with ENAMETOOLONG, after the temp file exists.
        let s = sink(
            &format!("{}/{{device}}{{device}}{{device}}", root.path().display()),
            true,
        );
        let device = "d".repeat(100);
        let err = s.commit(&frame(&device, 1, b"x")).unwrap_err();
        let target = root.path().join(device.repeat(3));
        assert!(err.message.contains(&target.display().to_string()), "{err}");
        assert!(err.message.ends_with("(os error 36)"), "{err}");
        assert!(files(root.path()).is_empty(), "{:?}", files(root.path()));
    }

    #[test]
    fn concurrent_commits_into_one_new_directory_all_land() {
        let root = tempfile::tempdir().unwrap();
        let s = Arc::new(sink(
            &format!(
                "{}/new/deeper/{{device}}/{{seq}}.bin",
                root.path().display()
            ),
            true,
        ));
        let start = Arc::new(Barrier::new(8));
        let workers: Vec<_> = (0..8u64)
            .map(|i| {
                let (s, start) = (Arc::clone(&s), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    s.commit(&frame("cam", i, &[i as u8; 100])).unwrap()
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for i in 0..8u64 {
            let path = root.path().join(format!("new/deeper/cam/{i}.bin"));
            assert_eq!(fs::read(path).unwrap(), [i as u8; 100]);
        }
        assert_eq!(files(root.path()).len(), 8);
    }
}
