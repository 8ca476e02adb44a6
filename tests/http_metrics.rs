//! `/metrics` parses with Prometheus' own Python parser (prometheus_client, in a venv the test
//! makes), and its counters match what was sent: per device (with the label cap), per
//! listener, per sink with the commit latency histogram.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "devices/venv.rs"]
mod venv;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use http::*;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

fn parse(python: &std::path::Path, text: &str) -> Vec<Sample> {
    let mut child = Command::new(python)
        .arg(device_script("parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok("prometheus_client parser", &out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Sample {
                name: v["name"].as_str().unwrap().to_string(),
                labels: v["labels"].as_object().unwrap().clone(),
                value: v["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels.len() == s.labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(|x| x.as_str()) == Some(v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
        .value
}

#[test]
fn metrics_parse_and_count_what_was_sent() {
    let python = venv::python_with("prometheus-venv", &["prometheus-client=prometheus_client"]);
    let d = Daemon::start(
        &[
            listener("web", "http", ""),
            listener("raw", "u32le", ""),
            FILE_SINK.to_string(),
            "[metrics]\nmax_device_labels = 2\n".to_string(),
        ]
        .concat(),
    );
    let web = d.addr("web");
    let mut http_bytes = 0;
    for i in 0..7 {
        let img = jpeg(i, 1000 + 100 * i as usize);
        http_bytes += img.len();
        let r = fetch(
            web,
            "POST",
            "/frames/cam",
            &[("Content-Type", "image/jpeg")],
            &img,
        );
        assert_eq!(r.status, 201);
    }
    let r = fetch(web, "POST", "/frames/tiny", &[], &jpeg(99, 10));
    assert_eq!(r.status, 201);
    let r = fetch(
        web,
        "POST",
        "/frames/cam",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(r.status, 415);
    let raw_frames = frames(5, 5, 500, 5000);
    send_and_finish(connect(d.addr("raw")), &encode(Wire::U32Le, &raw_frames));
    d.wait_for_frames("127.0.0.1", "raw", 5);
    let raw_bytes: usize = raw_frames.iter().map(Vec::len).sum();

    let text = String::from_utf8(fetch(web, "GET", "/metrics", &[], b"").body).unwrap();
    let s = parse(&python, &text);
    assert_eq!(
        value(
            &s,
            "framegate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Devices: cam (7) and 127.0.0.1 (5) keep labels, tiny is summed into _other.
    assert_eq!(
        value(&s, "framegate_device_frames_total", &[("device", "cam")]),
        7.0
    );
    assert_eq!(
        value(&s, "framegate_device_bytes_total", &[("device", "cam")]),
        http_bytes as f64
    );
    assert_eq!(
        value(
            &s,
            "framegate_device_frames_total",
            &[("device", "127.0.0.1")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_device_bytes_total",
            &[("device", "127.0.0.1")]
        ),
        raw_bytes as f64
    );
    assert_eq!(
        value(&s, "framegate_device_frames_total", &[("device", "_other")]),
        1.0
    );
    assert!(!s
        .iter()
        .any(|x| x.labels.get("device").and_then(|v| v.as_str()) == Some("tiny")));
    // The refused upload is an error of the peer (it named no device the daemon accepted).
    assert_eq!(
        value(
            &s,
            "framegate_device_errors_total",
            &[("device", "127.0.0.1")]
        ),
        1.0
    );
    // Listeners.
    assert_eq!(
        value(
            &s,
            "framegate_listener_frames_total",
            &[("listener", "web")]
        ),
        8.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_listener_frames_total",
            &[("listener", "raw")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_listener_errors_total",
            &[("listener", "web")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_http_responses_total",
            &[("listener", "web"), ("code", "201")]
        ),
        8.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_http_responses_total",
            &[("listener", "web"), ("code", "415")]
        ),
        1.0
    );
    // Sinks: 13 commits, each in the latency histogram.
    assert_eq!(
        value(&s, "framegate_sink_commits_total", &[("sink", "files")]),
        13.0
    );
    assert_eq!(
        value(&s, "framegate_sink_failures_total", &[("sink", "files")]),
        0.0
    );
    assert_eq!(
        value(&s, "framegate_sink_queue_depth", &[("sink", "files")]),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_sink_commit_latency_seconds_count",
            &[("sink", "files")]
        ),
        13.0
    );
    assert_eq!(
        value(
            &s,
            "framegate_sink_commit_latency_seconds_bucket",
            &[("sink", "files"), ("le", "+Inf")]
        ),
        13.0
    );
    // The connection asking for /metrics is open.
    assert!(value(&s, "framegate_connections_open", &[("listener", "web")]) >= 1.0);
}
