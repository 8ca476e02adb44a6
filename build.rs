//! Tells the code which optional CPU intrinsics the compiler has: the 256-bit carry-less
//! multiplication the CRC-32C folding uses (`src/protocol/crc.rs`) is stable since Rust 1.89,
//! while the crate builds from 1.85 (Debian 13's rustc); older compilers use the `crc32c`
//! crate alone.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(framegate_vpclmulqdq)");
    println!("cargo:rerun-if-env-changed=RUSTC");
    if rustc_minor().is_some_and(|minor| minor >= 89) {
        println!("cargo:rustc-cfg=framegate_vpclmulqdq");
    }
}

/// The minor version of the compiler cargo runs (`rustc 1.89.0 (...)` → 89).
fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let output = Command::new(rustc).arg("--version").output().ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    version.split('.').nth(1)?.parse().ok()
}
