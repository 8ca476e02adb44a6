//! Python venvs made by tests/devices/imagezmq_venv.sh: the one that runs real imagezmq
//! senders, shared by tests/imagezmq.rs and benches/imagezmq.rs, and others with the
//! packages a test names (each includes this file with `#[path]`).
#![allow(dead_code)] // each includer uses one of them

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The venv's python (pyzmq, imagezmq, numpy), made once per target directory by
/// tests/devices/imagezmq_venv.sh (needs PyPI the first time).
pub fn imagezmq_python() -> PathBuf {
    python_with("imagezmq-venv", &[])
}

/// The python of a venv `name` under the target directory with `packages` (`PACKAGE=MODULE`
/// or `PACKAGE`), made once (needs PyPI the first time); no packages: the imagezmq set.
pub fn python_with(name: &str, packages: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/devices/imagezmq_venv.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .args(packages)
        .stderr(Stdio::inherit())
        .output()
        .expect("run imagezmq_venv.sh");
    assert!(out.status.success(), "making the venv {name} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
