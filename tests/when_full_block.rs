//! `when_full = "block"` with a slow hook: the daemon stops reading the device instead of
//! buffering, so its memory stays bounded while far more data than that is sent, and every
//! frame still reaches the hook. And the memory a burst used goes back to the kernel once
//! traffic pauses.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Resident memory of `pid` in KiB (`VmRSS`, or `VmHWM` for the peak).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The frames both tests send: about 1 MiB each.
const FRAME_BYTES: usize = 1 << 20;

/// A daemon in `dir` with a u32le listener `lan` (frames up to 2 MiB) and one exec sink `slow`
/// whose hook sleeps `sleep` seconds, then appends the frame's seq to `dir/seen`; `queue` is
/// the rest of the sink's settings.
fn slow_hook_daemon(dir: &Path, sleep: &str, queue: &str) -> Daemon {
    hook_script(
        dir,
        "slow.sh",
        &format!("sleep {sleep}\necho \"$FRAMEGATE_SEQ\" >> \"$(dirname \"$0\")/seen\"\n"),
    );
    let sink = format!(
        r#"
[[sink]]
name = "slow"
type = "exec"
command = ["@DIR@/slow.sh"]
input = "none"
concurrency = 1
{queue}
"#
    );
    Daemon::start_in(
        dir,
        &[listener("lan", "u32le", "max_frame_bytes = \"2MiB\""), sink].concat(),
    )
}

/// Sends `count` frames (seeded by `seed`) on one connection and waits, at most 120 s, until
/// the hook saw them all. Returns the bytes sent and the highest VmRSS sampled meanwhile.
fn send_through_hook(d: &Daemon, dir: &Path, seed: u64, count: usize) -> (usize, u64) {
    let pid = d.pid();
    let sent = frames(seed, count, FRAME_BYTES - 1000, FRAME_BYTES);
    let total: usize = sent.iter().map(Vec::len).sum();
    let bytes = encode(Wire::U32Le, &sent);
    let stream = connect(d.addr("lan"));
    let sender = std::thread::spawn(move || send_and_finish(stream, &bytes));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_sampled = 0;
    loop {
        peak_sampled = peak_sampled.max(memory_kib(pid, "VmRSS:"));
        let seen = std::fs::read_to_string(dir.join("seen")).map_or(0, |s| s.lines().count());
        if seen == count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {count} frames reached the hook"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sender.join().unwrap();
    (total, peak_sampled)
}

#[test]
fn a_slow_hook_holds_devices_back_and_memory_stays_bounded() {
    const FRAMES: usize = 60;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut d = slow_hook_daemon(dir, "0.05", "queue_capacity = 4\nwhen_full = \"block\"");
    let pid = d.pid();
    let baseline = memory_kib(pid, "VmRSS:");
    let (total, peak_sampled) = send_through_hook(&d, dir, 11, FRAMES);
    let peak = memory_kib(pid, "VmHWM:").max(peak_sampled);
    let grew_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    let sent_mib = total as f64 / (1 << 20) as f64;
    eprintln!(
        "baseline {baseline} KiB, peak {peak} KiB: grew {grew_mib:.1} MiB while {sent_mib:.1} MiB were sent"
    );
    // Queue of 4 frames + the one being read + buffers: a handful of MiB, never the 60 sent.
    assert!(
        grew_mib < 24.0,
        "memory grew {grew_mib:.1} MiB for {sent_mib:.1} MiB sent"
    );
    let seen = std::fs::read_to_string(dir.join("seen")).unwrap();
    let mut seqs: Vec<u64> = seen.lines().map(|l| l.parse().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=FRAMES as u64).collect::<Vec<_>>(),
        "every frame, once"
    );
    assert_eq!(d.terminate().code(), Some(0));
}

/// Frame buffers the daemon keeps for reuse while frames flow (see `framegate::heap`) go back
/// to the kernel once traffic pauses: after a burst that a slow hook queued up, the resident
/// size falls back without any new traffic.
#[test]
fn memory_a_burst_left_free_goes_back_once_traffic_pauses() {
    const FRAMES: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut d = slow_hook_daemon(dir, "0.02", "queue_capacity = 64");
    let pid = d.pid();
    let baseline = memory_kib(pid, "VmRSS:");
    let (_, peak_sampled) = send_through_hook(&d, dir, 12, FRAMES);
    let peak = peak_sampled.max(baseline);
    let grew = peak.saturating_sub(baseline);
    // The queue held most of the 40 MiB at once; far less would not show a release.
    assert!(grew > 16 * 1024, "the burst raised RSS by only {grew} KiB");
    // The loop looks every 5 s; allow three looks.
    let deadline = Instant::now() + Duration::from_secs(16);
    let settled = loop {
        let now = memory_kib(pid, "VmRSS:");
        if now <= baseline + grew / 4 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "RSS still {now} KiB, {} KiB above the {baseline} KiB before a burst that peaked at {peak} KiB",
            now - baseline
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("RSS: {baseline} KiB before, {peak} KiB at the peak, {settled} KiB after the pause");
    assert_eq!(d.terminate().code(), Some(0));
}
