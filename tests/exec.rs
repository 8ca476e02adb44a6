//! The exec sink with real shell hooks: what a hook gets (argv, environment, stdin, a temp
//! file, the path a file sink committed), timeouts, the concurrency limit, retries, and
//! `ack = "spawn"`.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use framegate::protocol::{Message, Reason};

/// A daemon in `dir` with one listener (`name`, `framing`) and the `[[sink]]` tables `sinks`.
fn daemon(dir: &Path, name: &str, framing: &str, sinks: &str) -> Daemon {
    Daemon::start_in(
        dir,
        &[listener(name, framing, ""), sinks.to_string()].concat(),
    )
}

/// The pid a hook wrote to `dir/pid`.
fn read_pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// True once process `pid` is gone (or a zombie nobody reaped yet).
fn is_gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A real 64x48 JPEG.
fn real_jpeg(seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed.wrapping_mul(3)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&image)
        .unwrap();
    out
}

/// Waits until `path` exists.
fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_hook_gets_argv_environment_and_stdin_and_its_output_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hook_script(
        dir,
        "hook.sh",
        r#"m="$(dirname "$0")/markers/$FRAMEGATE_SEQ"
mkdir -p "$m.tmp"
for a in "$@"; do printf '%s\n' "$a"; done > "$m.tmp/argv"
env > "$m.tmp/env"
cat > "$m.tmp/stdin"
echo "saw $FRAMEGATE_DEVICE $FRAMEGATE_WIDTH x $FRAMEGATE_HEIGHT"
echo "a warning" >&2
mv "$m.tmp" "$m"
"#,
    );
    let mut d = Daemon::start_in(
        dir,
        &[
            listener("lan", "u32le", ""),
            "\n[devices]\n\"127.0.0.2\" = \"door cam; rm -rf /\"\n".into(),
            r#"
[[sink]]
name = "hook"
type = "exec"
command = ["@DIR@/hook.sh", "{device}", "seq={seq}", "{format}", "{size}", "{width}x{height}", "{{literal}}"]
env = { SITE = "north yard" }
env_passthrough = ["CARGO_PKG_NAME"]
"#
            .into(),
        ]
        .concat(),
    );
    let frames = [real_jpeg(1), real_jpeg(2)];
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 2]), d.addr("lan")),
        &encode(Wire::U32Le, &frames),
    );
    for (i, frame) in frames.iter().enumerate() {
        let m = dir.join("markers").join((i + 1).to_string());
        wait_for_file(&m);
        let argv = std::fs::read_to_string(m.join("argv")).unwrap();
        let expected = [
            "door cam; rm -rf /".to_string(),
            format!("seq={}", i + 1),
            "jpeg".into(),
            frame.len().to_string(),
            "64x48".into(),
            "{literal}".into(),
        ];
        assert_eq!(argv.lines().collect::<Vec<_>>(), expected);
        assert_eq!(&std::fs::read(m.join("stdin")).unwrap(), frame);
        let env = env_map(&std::fs::read_to_string(m.join("env")).unwrap());
        assert_eq!(env["FRAMEGATE_DEVICE"], "door cam; rm -rf /");
        assert_eq!(env["FRAMEGATE_SEQ"], (i + 1).to_string());
        assert_eq!(env["FRAMEGATE_LISTENER"], "lan");
        assert_eq!(env["FRAMEGATE_FORMAT"], "jpeg");
        assert_eq!(env["FRAMEGATE_SIZE"], frame.len().to_string());
        assert_eq!(
            (&*env["FRAMEGATE_WIDTH"], &*env["FRAMEGATE_HEIGHT"]),
            ("64", "48")
        );
        assert_eq!(env["FRAMEGATE_PATH"], "", "input = stdin: no file");
        assert!(env["FRAMEGATE_RECEIVED_AT"].ends_with('Z'));
        assert!(env["FRAMEGATE_PEER"].starts_with("127.0.0.2:"));
        assert_eq!(env["SITE"], "north yard");
        assert_eq!(env["CARGO_PKG_NAME"], "framegate", "passed through");
        assert!(env.contains_key("PATH"));
        // The rest of the daemon's environment is not inherited.
        assert!(!env.contains_key("HOME"), "{env:?}");
        assert!(!env.contains_key("CARGO_MANIFEST_DIR"), "{env:?}");
    }
    d.wait_for_log(
        &["hook for door cam; rm -rf /#2 stdout: saw door cam; rm -rf / 64 x 48"],
        WAIT,
    );
    d.wait_for_log(&["hook for door cam; rm -rf /#2 stderr: a warning"], WAIT);
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn input_file_is_removed_after_the_hook_and_after_gets_the_committed_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Records the path it was given and a copy of the file.
    hook_script(
        dir,
        "copy.sh",
        r#"out="$(dirname "$0")/$1/$FRAMEGATE_SEQ"
mkdir -p "$(dirname "$out")"
cp "$2" "$out.tmp" && printf '%s' "$2" > "$out.path" && mv "$out.tmp" "$out""#,
    );
    let mut d = daemon(
        dir,
        "lan",
        "u32le",
        r#"
[[sink]]
name = "archive"
type = "file"
path = "@DIR@/archive/{device}/{seq}.{ext}"

[[sink]]
name = "from-temp"
type = "exec"
input = "file"
command = ["@DIR@/copy.sh", "temp", "{path}"]

[[sink]]
name = "after-archive"
type = "exec"
after = "archive"
command = ["@DIR@/copy.sh", "after", "{path}"]
"#,
    );
    let frames = frames(7, 5, 1000, 20_000);
    send_and_finish(connect(d.addr("lan")), &encode(Wire::U32Le, &frames));
    for (i, frame) in frames.iter().enumerate() {
        let seq = (i + 1).to_string();
        for kind in ["temp", "after"] {
            let copy = dir.join(kind).join(&seq);
            wait_for_file(&copy);
            assert_eq!(&std::fs::read(&copy).unwrap(), frame, "{kind} {seq}");
        }
        let archived =
            std::fs::read_to_string(dir.join("after").join(format!("{seq}.path"))).unwrap();
        assert_eq!(
            Path::new(&archived),
            dir.join("archive/127.0.0.1")
                .join(format!("{seq}.{}", ext_of(frame))),
            "after = archive gets the file the archive committed"
        );
        let temp = std::fs::read_to_string(dir.join("temp").join(format!("{seq}.path"))).unwrap();
        assert!(temp.ends_with(&format!(".{}", ext_of(frame))), "{temp}");
        // Removed once the hook ended (the hook's exit is what the test waited for).
        let deadline = Instant::now() + WAIT;
        while Path::new(&temp).exists() {
            assert!(Instant::now() < deadline, "{temp} left behind");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn a_hook_that_overruns_its_timeout_is_killed_and_the_frame_nacked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Ignores SIGTERM, so it takes SIGKILL; records its pid first.
    hook_script(
        dir,
        "hang.sh",
        r#"echo $$ > "$(dirname "$0")/pid.tmp"; mv "$(dirname "$0")/pid.tmp" "$(dirname "$0")/pid"
trap '' TERM
sleep 30
sleep 30"#,
    );
    let mut d = daemon(
        dir,
        "native",
        "native",
        r#"
[[sink]]
name = "hang"
type = "exec"
command = ["@DIR@/hang.sh"]
timeout = "500ms"
kill_grace = "300ms"
"#,
    );
    let started = Instant::now();
    let answer = native_frame(d.addr("native"), "cam", &jpeg(1, 5000));
    let (reason, text) = nack_of_first_frame(answer);
    assert_eq!(reason, Reason::RejectedBySink);
    assert!(text.contains("timed out after 500ms"), "{text}");
    assert!(text.contains("SIGKILL"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the 30 s sleep did not run out"
    );
    let pid = read_pid(dir);
    assert!(is_gone(pid), "the hook {pid} still runs");
    d.wait_for_log(&["sink hang", "cam#1", "timed out"], WAIT);
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn no_more_than_concurrency_hooks_run_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("running")).unwrap();
    // Each run marks itself running, records how many runs it sees, then holds a while.
    hook_script(
        dir,
        "busy.sh",
        r#"d="$(dirname "$0")"
touch "$d/running/$FRAMEGATE_SEQ"
ls "$d/running" | wc -l >> "$d/counts"
sleep 0.3
rm "$d/running/$FRAMEGATE_SEQ"
echo done >> "$d/finished""#,
    );
    let mut d = daemon(
        dir,
        "lan",
        "u32le",
        r#"
[[sink]]
name = "busy"
type = "exec"
command = ["@DIR@/busy.sh"]
input = "none"
concurrency = 3
"#,
    );
    let frames = frames(3, 12, 100, 1000);
    send_and_finish(connect(d.addr("lan")), &encode(Wire::U32Le, &frames));
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(dir.join("finished")).map_or(0, |s| s.lines().count()) < 12 {
        assert!(Instant::now() < deadline, "not all 12 hooks finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts: Vec<usize> = std::fs::read_to_string(dir.join("counts"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 12);
    let most = counts.iter().max().copied().unwrap();
    assert!(most <= 3, "{most} hooks ran at once: {counts:?}");
    assert!(most > 1, "hooks never overlapped: {counts:?}");
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn a_failing_hook_is_retried_then_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hook_script(
        dir,
        "fail.sh",
        r#"echo "attempt" >> "$(dirname "$0")/attempts"; echo "no space left" >&2; exit 3"#,
    );
    let mut d = daemon(
        dir,
        "native",
        "native",
        r#"
[[sink]]
name = "fail"
type = "exec"
command = ["@DIR@/fail.sh"]
retries = 2
retry_backoff = "50ms"
"#,
    );
    let answer = native_frame(d.addr("native"), "cam", &jpeg(2, 3000));
    let (reason, text) = nack_of_first_frame(answer);
    assert_eq!(reason, Reason::RejectedBySink);
    assert!(
        text.contains("exited with status 3 (3 attempt(s))"),
        "{text}"
    );
    let attempts = std::fs::read_to_string(dir.join("attempts")).unwrap();
    assert_eq!(attempts.lines().count(), 3, "one run and two retries");
    d.wait_for_log_count(&["hook for cam#1", "retry"], 2);
    d.wait_for_log_count(&["hook for cam#1 stderr: no space left"], 3);
    let status = framegate(&[
        "status",
        "--config",
        d.dir.join("framegate.toml").to_str().unwrap(),
        "--json",
    ]);
    assert_ok("status", &status);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let sink = &status["sinks"][0];
    assert_eq!(sink["failed"], 1, "{status}");
    assert_eq!(sink["details"]["hook_runs"], 3, "{status}");
    assert_eq!(sink["details"]["hook_failures"], 3, "{status}");
    assert_eq!(sink["details"]["hook_timeouts"], 0, "{status}");
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn with_ack_spawn_the_frame_is_acknowledged_while_the_hook_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Waits (bounded) for the test to say go, then finishes.
    hook_script(
        dir,
        "later.sh",
        r#"d="$(dirname "$0")"
i=0
while [ ! -e "$d/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
touch "$d/done""#,
    );
    let mut d = daemon(
        dir,
        "native",
        "native",
        r#"
[[sink]]
name = "later"
type = "exec"
command = ["@DIR@/later.sh"]
ack = "spawn"
"#,
    );
    let answer = native_frame(d.addr("native"), "cam", &jpeg(3, 3000));
    assert_eq!(answer, Message::Ack { seq: 1 });
    assert!(!dir.join("done").exists(), "ACKed before the hook finished");
    std::fs::write(dir.join("go"), b"").unwrap();
    wait_for_file(&dir.join("done"));
    assert_eq!(d.terminate().code(), Some(0));
}

#[test]
fn a_hung_hook_holds_back_only_the_devices_whose_frames_it_takes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hook_script(
        dir,
        "hang.sh",
        r#"touch "$(dirname "$0")/hung-$FRAMEGATE_SEQ"; sleep 30"#,
    );
    let mut d = Daemon::start_in(
        dir,
        &[
            listener("lan", "u32le", ""),
            "\n[devices]\n\"127.0.0.2\" = \"slow\"\n\"127.0.0.3\" = \"fast\"\n".into(),
            r#"
[[sink]]
name = "hang"
type = "exec"
command = ["@DIR@/hang.sh"]
input = "none"
concurrency = 1
queue_capacity = 1
timeout = "8s"
kill_grace = "100ms"
match = { devices = ["slow"] }

[[sink]]
name = "files"
type = "file"
path = "@DIR@/frames/{device}/{seq}.{ext}"
match = { devices = ["fast"] }
"#
            .into(),
        ]
        .concat(),
    );
    let lan = d.addr("lan");
    // The slow device's frames fill the hook's queue; its connection is paused.
    let slow = std::thread::spawn(move || {
        send_and_finish(
            connect_from(IpAddr::from([127, 0, 0, 2]), lan),
            &encode(Wire::U32Le, &frames(5, 2, 100, 200)),
        )
    });
    wait_for_file(&dir.join("hung-1"));
    // Meanwhile the fast device is not held back: its frames are stored at once.
    let fast = frames(6, 20, 1000, 5000);
    send_and_finish(
        connect_from(IpAddr::from([127, 0, 0, 3]), lan),
        &encode(Wire::U32Le, &fast),
    );
    let stored = d.wait_for_files(20, WAIT);
    assert_eq!(stored.len(), 20);
    assert!(
        !dir.join("hung-2").exists(),
        "the fast device's frames were stored while the hook still hung on the slow one's first"
    );
    // Not waiting out the hung hooks: that is the timeout test's job.
    d.kill9();
    slow.join().unwrap();
}

#[test]
fn shutdown_does_not_wait_past_its_timeout_for_a_hung_hook() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    hook_script(
        dir,
        "hang.sh",
        r#"echo $$ > "$(dirname "$0")/pid.tmp"; mv "$(dirname "$0")/pid.tmp" "$(dirname "$0")/pid"; sleep 60"#,
    );
    let mut d = Daemon::start_in(
        dir,
        &[
            "shutdown_timeout = \"1s\"\n".to_string(),
            listener("native", "native", ""),
            r#"
[[sink]]
name = "hang"
type = "exec"
command = ["@DIR@/hang.sh"]
timeout = "10m"
"#
            .into(),
        ]
        .concat(),
    );
    let addr = d.addr("native");
    let device = std::thread::spawn(move || native_frame(addr, "cam", &jpeg(4, 2000)));
    wait_for_file(&dir.join("pid"));
    let pid = read_pid(dir);
    let started = Instant::now();
    assert_eq!(d.terminate().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} for the hook",
        started.elapsed()
    );
    let answer = device.join().unwrap();
    assert!(
        matches!(
            answer,
            Message::Nack {
                seq: 1,
                reason: Reason::ShuttingDown,
                ..
            }
        ),
        "{answer:?}"
    );
    let deadline = Instant::now() + WAIT;
    while !is_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "the hook {pid} outlived the daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
