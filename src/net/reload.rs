//! Watching the config file for changes (the `notify` crate), so an edit reloads it like
//! SIGHUP does. Editors often replace the file (write a new one, rename it over), so the
//! watch is on the directory and events are filtered by the file's name; the loop debounces.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};

/// Keeps the watcher alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Calls `changed` (on the watcher's thread) whenever something happens to `path`.
pub fn watch(path: &Path, changed: impl Fn() + Send + 'static) -> notify::Result<ConfigWatch> {
    let name = path.file_name().map(|n| n.to_os_string());
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return; // reads (ours included) change nothing
        }
        if event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
        {
            changed();
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(ConfigWatch { _watcher: watcher })
}
