//! The markdown the bench prints: the throughput table and the idle-connection RSS lines.

use std::time::Duration;

use super::daemon::SinkKind;
use super::idle::{IdleResult, RSS_TARGET};
use super::load::Load;
use super::run::{Generator, Receiver, Timing};

/// The target: `discard` reaches this share of the baseline's MB/s.
const DISCARD_TARGET: f64 = 0.85;

/// Prints the throughput table: one row per scenario and receiver, medians over rounds.
/// `timings[i]` holds the runs of `receivers[i]`; `receivers[0]` is the baseline.
pub fn throughput_table(rows: &[(&str, Load, Vec<Vec<Timing>>)], receivers: &[Receiver]) {
    println!("## Throughput");
    println!();
    println!("MB/s = payload bytes / (start until the receiver is done: for framegate, until it exited after SIGTERM, sinks drained). \"EOF-only\" stops the clock when the last device saw its connection closed (every frame read).");
    println!();
    println!("\"loop busy\": median share of wall time (until the last EOF) the daemon's event-loop thread was on a CPU; 100% = that one thread is the bottleneck. \"receiver CPU s/GB\": CPU seconds the receiver spent per GB of payload (framegate: its whole process from the start to the last EOF; baseline: its reader threads, start-up and exit excluded); unlike MB/s it is not lowered by other tenants of a shared machine.");
    println!();
    println!("| scenario | receiver | frames/s | MB/s (median) | MB/s (min–max) | EOF-only MB/s | vs reader | target (discard ≥ 85%) | loop busy | receiver CPU s/GB |");
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|---:|");
    for (name, load, timings) in rows {
        let baseline = median_mb_s(load, &timings[0], |t| t.total);
        for (receiver, runs) in receivers.iter().zip(timings) {
            if runs.is_empty() {
                println!("| {name} | {} | failed | | | | | | | |", receiver.label());
                continue;
            }
            // Non-empty runs always have a median.
            let speed = median_mb_s(load, runs, |t| t.total).unwrap_or(0.0);
            let eof = median_mb_s(load, runs, |t| t.to_eof).unwrap_or(0.0);
            let (lo, hi) = range_mb_s(load, runs);
            let frames_s = speed * 1e6 / load.frame_bytes as f64;
            let ratio = baseline.map(|b| speed / b);
            let ratio_text = ratio.map_or("n/a".into(), |r| format!("{:.0}%", r * 100.0));
            let target = match (receiver, ratio) {
                (Receiver::Daemon(SinkKind::Discard), Some(r)) if r >= DISCARD_TARGET => "met",
                (Receiver::Daemon(SinkKind::Discard), Some(_)) => "**not met**",
                (Receiver::Daemon(SinkKind::Discard), None) => "unknown (baseline failed)",
                _ => "—",
            };
            let busy = median(runs.iter().filter_map(|t| t.cpu).map(|c| c.event_loop))
                .map_or("—".into(), |b| format!("{:.0}%", b * 100.0));
            let cpu_per_gb = median(runs.iter().map(|t| t.cpu_seconds)).unwrap_or(0.0)
                / (load.bytes() as f64 / 1e9);
            println!(
                "| {name} | {} | {frames_s:.0} | {speed:.0} | {lo:.0}–{hi:.0} | {eof:.0} | {ratio_text} | {target} | {busy} | {cpu_per_gb:.2} |",
                receiver.label()
            );
        }
    }
    println!();
}

/// The target for the native protocol: its ACK path costs at most 10% of u32le's
/// throughput, both into `discard`.
const NATIVE_TARGET: f64 = 0.90;

/// One native-vs-u32le scenario: its name, its load, and per round the u32le run and the
/// native run (`None` where a run failed).
pub type NativeRow<'a> = (&'a str, Load, Vec<[Option<Timing>; 2]>);

/// Prints the native-vs-u32le table (medians over rounds) and the per-round ratios.
pub fn native_table(generator: Generator, rows: &[NativeRow]) {
    let window = std::env::var("FG_BENCH_MAX_IN_FLIGHT")
        .ok()
        .filter(|n| !n.is_empty())
        .map_or("16, the default".to_string(), |n| {
            format!("{n}, set by FG_BENCH_MAX_IN_FLIGHT")
        });
    println!(
        "## Native protocol with ACKs vs u32le, both into `discard`; devices: {}; network: {}",
        generator.label(),
        super::daemon::network()
    );
    println!();
    println!("Same payload, connections, frames per connection and device generator; rounds interleaved, the order alternating. MB/s = payload bytes / (start until the daemon exited after SIGTERM). \"device clock\": until the last device saw EOF (u32le) or its last ACK (native: every frame committed and recorded). Native devices do HELLO/WELCOME before the clock starts and keep WELCOME's max_in_flight ({window}) frames unanswered.");
    println!();
    println!("| scenario | listener | frames/s | MB/s (median) | MB/s (min–max) | device-clock MB/s | native / u32le | target (≥ 90%) | loop busy | daemon CPU s/GB | generator CPU s/GB |");
    println!("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for (name, load, pairs) in rows {
        let name = format!("{name} ({} frames/conn)", load.frames_per_connection);
        let runs = |i: usize| -> Vec<Timing> { pairs.iter().filter_map(|p| p[i]).collect() };
        let (u32le, native) = (runs(0), runs(1));
        let speed = |runs: &[Timing]| median_mb_s(load, runs, |t| t.total);
        let ratio = speed(&native).zip(speed(&u32le)).map(|(n, u)| n / u);
        let eof_ratio = median_mb_s(load, &native, |t| t.to_eof)
            .zip(median_mb_s(load, &u32le, |t| t.to_eof))
            .map(|(n, u)| n / u);
        for (label, runs) in [("u32le", &u32le), ("native + ACKs", &native)] {
            let Some(mb_s) = speed(runs) else {
                println!("| {name} | {label} | failed | | | | | | | | |");
                continue;
            };
            let eof = median_mb_s(load, runs, |t| t.to_eof).unwrap_or(0.0);
            let (lo, hi) = range_mb_s(load, runs);
            let frames_s = mb_s * 1e6 / load.frame_bytes as f64;
            let busy = median(runs.iter().filter_map(|t| t.cpu).map(|c| c.event_loop))
                .map_or("—".into(), |b| format!("{:.0}%", b * 100.0));
            let per_gb = |cpu: fn(&Timing) -> f64| {
                median(runs.iter().map(cpu)).unwrap_or(0.0) / (load.bytes() as f64 / 1e9)
            };
            let cpu_per_gb = per_gb(|t| t.cpu_seconds);
            let generator_per_gb = per_gb(|t| t.generator_cpu_seconds);
            let (ratio_text, target) = if label == "u32le" {
                ("100%".to_string(), "—")
            } else {
                let pct = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{:.0}%", r * 100.0));
                (
                    format!("{} (device clock {})", pct(ratio), pct(eof_ratio)),
                    match ratio {
                        Some(r) if r >= NATIVE_TARGET => "met",
                        Some(_) => "**not met**",
                        None => "unknown",
                    },
                )
            };
            println!(
                "| {name} | {label} | {frames_s:.0} | {mb_s:.0} | {lo:.0}–{hi:.0} | {eof:.0} | {ratio_text} | {target} | {busy} | {cpu_per_gb:.2} | {generator_per_gb:.2} |"
            );
        }
    }
    println!();
    println!("Per round, native MB/s / the same round's u32le MB/s:");
    println!();
    for (name, load, pairs) in rows {
        let ratios: Vec<String> = pairs
            .iter()
            .map(|p| match p {
                [Some(u), Some(n)] => format!(
                    "{:.0}%",
                    mb_per_s(load.bytes(), n.total) / mb_per_s(load.bytes(), u.total) * 100.0
                ),
                _ => "failed".into(),
            })
            .collect();
        println!("- {name}: {}", ratios.join(", "));
    }
    println!();
}

/// Prints the idle-connection RSS lines.
pub fn idle(r: &IdleResult) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per_conn = r.rss_idle.saturating_sub(r.rss_start) as f64 / r.connections as f64;
    println!("## Idle connections");
    println!();
    println!("- framegate VmRSS after start: {:.1} MiB", mib(r.rss_start));
    println!(
        "- with {} connected, silent devices: {:.1} MiB (peak VmHWM {:.1} MiB); {:.0} bytes per connection — target < 64 MiB: {}",
        r.connections,
        mib(r.rss_idle),
        mib(r.hwm_idle),
        per_conn,
        if r.rss_idle < RSS_TARGET { "met" } else { "**not met**" }
    );
    println!(
        "- after one 1 KB frame on every 10th connection (then silent again): {:.1} MiB",
        mib(r.rss_after_frames)
    );
    println!();
}

fn median_mb_s(load: &Load, runs: &[Timing], pick: impl Fn(&Timing) -> Duration) -> Option<f64> {
    median(runs.iter().map(|t| mb_per_s(load.bytes(), pick(t))))
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[n / 2]),
        n => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn range_mb_s(load: &Load, runs: &[Timing]) -> (f64, f64) {
    runs.iter()
        .map(|t| mb_per_s(load.bytes(), t.total))
        .fold((f64::MAX, 0.0), |(lo, hi), s| (lo.min(s), hi.max(s)))
}

/// Decimal MB per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Milliseconds, for progress lines.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
