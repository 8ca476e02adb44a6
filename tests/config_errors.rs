//! `framegate check` and `framegate run` on bad configs: a non-zero exit and a message naming
//! the file, the line the mistake is on, and the key. Also a valid config and `--version`.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tempfile::TempDir;

/// A valid config; each case below breaks one line of it. Line numbers are 1-based.
const VALID: &str = r#"state_dir = "@DIR@/state"

[[listener]]
name = "cams"
bind = "127.0.0.1:0"
framing = "auto"
max_frame_bytes = "2MiB"
idle_timeout = "60s"

[devices]
"127.0.0.2" = "door-cam"

[[sink]]
name = "archive"
type = "file"
path = "@DIR@/frames/{device}/{seq:08}.{ext}"
"#;

/// Writes `text` (with `@DIR@` replaced) as `dir/name` and returns its path.
fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    let text = text.replace(DIR, &dir.path().display().to_string());
    std::fs::write(&path, text).unwrap();
    path
}

/// VALID with line `line` replaced by `with` (an empty `with` removes the line's content).
fn break_line(line: usize, with: &str) -> String {
    let mut lines: Vec<&str> = VALID.lines().collect();
    lines[line - 1] = with;
    lines.join("\n") + "\n"
}

fn check(path: &Path) -> (bool, String, String) {
    let out = framegate(&["check", "--config", path.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` and `run` both refuse `text`, with `error: FILE:LINE:` (check) and
/// `invalid config: FILE:LINE:` (run), and the message mentions each of `mentions`.
fn assert_rejected(text: &str, line: usize, mentions: &[&str]) {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "bad.toml", text);
    let location = format!("{}:{line}:", path.display());

    let (ok, stdout, stderr) = check(&path);
    assert!(!ok, "check accepted:\n{text}\nstdout: {stdout}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("error: {location}")),
        "check should say `error: {location}…`, said:\n{stderr}"
    );
    for m in mentions {
        assert!(first.contains(m), "check's error lacks {m:?}: {first}");
    }

    let out = framegate(&["run", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run accepted:\n{text}\n{stderr}");
    assert!(
        stderr.contains(&format!("invalid config: {location}")),
        "run should say `invalid config: {location}…`, said:\n{stderr}"
    );
    for m in mentions {
        assert!(stderr.contains(m), "run's error lacks {m:?}: {stderr}");
    }
    assert!(
        !dir.path().join("state").exists(),
        "a refused config must not create state"
    );
}

#[test]
fn valid_config_is_summarised() {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, "good.toml", VALID);
    let (ok, stdout, stderr) = check(&path);
    assert!(ok, "check refused a valid config:\n{stderr}");
    assert!(
        stdout.contains(&format!("{}: OK", path.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "listener \"cams\": 127.0.0.1:0 framing auto max_frame_bytes 2.0 MiB idle_timeout 1m"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("device 127.0.0.2 = \"door-cam\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "sink \"archive\": file path {0}/frames/{{device}}/{{seq:08}}.{{ext}} (root {0}/frames)",
            dir.path().display()
        )),
        "{stdout}"
    );
}

#[test]
fn unknown_key() {
    assert_rejected(
        &break_line(7, "max_frame_byte = \"2MiB\""),
        7,
        &["max_frame_byte"],
    );
    // At the top level too.
    assert_rejected(&break_line(2, "statedir = \"/tmp\""), 2, &["statedir"]);
    // And in a sink.
    assert_rejected(&break_line(15, "kind = \"file\""), 15, &["kind"]);
}

#[test]
fn bad_duration() {
    assert_rejected(
        &break_line(8, "idle_timeout = \"sixty\""),
        8,
        &["idle_timeout", "sixty"],
    );
}

#[test]
fn bad_size() {
    assert_rejected(
        &break_line(7, "max_frame_bytes = \"lots\""),
        7,
        &["max_frame_bytes", "lots"],
    );
}

#[test]
fn unknown_framing() {
    assert_rejected(
        &break_line(6, "framing = \"u16le\""),
        6,
        &["framing", "u16le", "ascii-length"],
    );
}

#[test]
fn file_sink_without_path() {
    // The error points at the [[sink]] table that lacks it.
    assert_rejected(&break_line(16, ""), 13, &["path", "archive"]);
}

#[test]
fn missing_sink() {
    // Everything from [[sink]] on removed: reported at the end of what is left.
    let text: String = VALID.lines().take(12).map(|l| format!("{l}\n")).collect();
    let last = text.trim_end().lines().count();
    assert_eq!(last, 11);
    assert_rejected(&text, last, &["no [[sink]]"]);
}

#[test]
fn unreadable_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nope.toml");
    let (ok, _, stderr) = check(&missing);
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!("error: {}: cannot read", missing.display())),
        "{stderr}"
    );
}

#[test]
fn version() {
    let out = framegate(&["--version"]);
    assert_ok("framegate --version", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("framegate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definitions() {
    let out = framegate(&["completions", "bash"]);
    assert_ok("framegate completions bash", &out);
    let script = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check", "send", "--watch", "--framing"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let out = framegate(&["man"]);
    assert_ok("framegate man", &out);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH framegate 1"), "{page}");
    assert!(page.contains("send"), "{page}");
}
