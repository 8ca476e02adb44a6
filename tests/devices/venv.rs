//! The Python that runs real imagezmq senders, shared by tests/imagezmq.rs and
//! benches/imagezmq.rs (each includes this file with `#[path]`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The venv's python (pyzmq, imagezmq, numpy), made once per target directory by
/// tests/devices/imagezmq_venv.sh (needs PyPI the first time).
pub fn imagezmq_python() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("imagezmq-venv");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/devices/imagezmq_venv.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("run imagezmq_venv.sh");
    assert!(out.status.success(), "making the imagezmq venv failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
