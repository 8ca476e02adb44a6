//! What the bench reads from Linux: RSS and open descriptors of a process, tmpfs mounts, the
//! machine's description, and the open-file limit.

use std::fs;
use std::path::Path;

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`), as bytes.
pub fn status_bytes(pid: i32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How many descriptors `pid` has open.
pub fn open_fds(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// True if `dir` is the mount point of a tmpfs, per /proc/mounts.
pub fn is_tmpfs(dir: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return false;
    };
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, point, kind) = (f.next(), f.next(), f.next());
        point == dir.to_str() && kind == Some("tmpfs")
    })
}

/// `nproc`, CPU model and kernel, for the report header.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

/// CPU time in ns that thread `tid` of `pid` has run, from its schedstat (exact, unlike the
/// 10 ms ticks of /proc/PID/stat).
pub fn thread_cpu_ns(pid: i32, tid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// CPU time in ns of every thread of `pid` together.
pub fn process_cpu_ns(pid: i32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let tid: i32 = task.ok()?.file_name().to_str()?.parse().ok()?;
        total += thread_cpu_ns(pid, tid)?;
    }
    Some(total)
}

/// CPU time in ns the calling thread has used so far.
pub fn own_thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time in ns this process has used so far, threads that ended included (the load
/// generator's device threads).
pub fn own_process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct we pass.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
