//! HTTP uploads on a `framing = "http"` listener: real curl (raw body, `-F` multipart,
//! chunked), the ESP32-CAM sketch replayed by Python's http.client, keep-alive and
//! pipelining, and every refusal with its status and reason. A `201` comes only after the
//! frame is stored, so each check of the file right after the response needs no wait.

mod common;
#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use common::*;
use http::*;

fn web(extra: &str) -> Daemon {
    Daemon::start(&[listener("web", "http", extra), FILE_SINK.to_string()].concat())
}

/// The stored file a 201 names, read right away: the response came after the commit.
fn stored(d: &Daemon, device: &str, seq: u64, ext: &str) -> Vec<u8> {
    let path = d
        .frames_root()
        .join(device)
        .join("web")
        .join(format!("{seq:08}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?} not stored when 201 came: {e}"))
}

#[test]
fn curl_raw_multipart_and_chunked_uploads_are_stored_byte_exact() {
    let d = web("");
    let addr = d.addr("web");
    let img = real_jpeg(1, 320, 240);
    let file = d.dir.join("img.jpg");
    std::fs::write(&file, &img).unwrap();
    let at = format!("@{}", file.display());

    // curl --data-binary: the raw body.
    let out = curl(&[
        "--data-binary",
        &at,
        "-H",
        "Content-Type: image/jpeg",
        &format!("http://{addr}/frames/door"),
        "-w",
        "\n%{http_code}",
    ]);
    assert_ok("curl --data-binary", &out);
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "201", "{text}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["device"], "door");
    assert_eq!(json["bytes"], img.len());
    let seq = json["seq"].as_u64().unwrap();
    assert_eq!(stored(&d, "door", seq, "jpg"), img);

    // curl -F imageFile=@img.jpg: multipart, device from the query.
    let out = curl(&[
        "-F",
        &format!("imageFile={at}"),
        &format!("http://{addr}/upload?device=yard"),
    ]);
    assert_ok("curl -F", &out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["device"].as_str(), json["bytes"].as_u64()),
        (Some("yard"), Some(img.len() as u64))
    );
    assert_eq!(
        stored(&d, "yard", json["seq"].as_u64().unwrap(), "jpg"),
        img
    );

    // Chunked transfer encoding, device from X-Device-Id.
    let out = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "X-Device-Id: gate",
        "-H",
        "Content-Type: image/jpeg",
        "--data-binary",
        &at,
        &format!("http://{addr}/any/path"),
    ]);
    assert_ok("curl chunked", &out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["device"], "gate");
    assert_eq!(
        stored(&d, "gate", json["seq"].as_u64().unwrap(), "jpg"),
        img
    );

    // No id anywhere: the peer's name (its IP without a [devices] entry).
    let out = curl(&["--data-binary", &at, &format!("http://{addr}/upload.php")]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["device"], "127.0.0.1");
}

#[test]
fn esp32_cam_sketch_replayed_by_http_client_is_stored_and_answered() {
    let d = Daemon::start(
        &[
            listener("web", "http", ""),
            FILE_SINK.to_string(),
            "[devices]\n\"127.0.0.1\" = \"esp32-cam\"\n".to_string(),
        ]
        .concat(),
    );
    let addr = d.addr("web");
    for (i, size) in [(0u32, 640u32), (1, 800)].into_iter() {
        let img = real_jpeg(i + 10, size, size * 3 / 4);
        let file = d.dir.join(format!("cam-{i}.jpg"));
        std::fs::write(&file, &img).unwrap();
        let out = std::process::Command::new("python3")
            .arg(device_script("esp32_cam.py"))
            .args([
                &addr.ip().to_string(),
                &addr.port().to_string(),
                "/upload.php",
            ])
            .arg(&file)
            .output()
            .expect("run python3");
        assert_ok("esp32_cam.py", &out);
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(line["status"], 201, "{line}");
        // The firmware gives up without a body within 10 s; it gets one at once.
        assert!(line["elapsed"].as_f64().unwrap() < 5.0, "{line}");
        let body: serde_json::Value = serde_json::from_str(line["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["device"], "esp32-cam", "the [devices] name of the IP");
        assert_eq!(body["bytes"], img.len());
        assert_eq!(
            stored(&d, "esp32-cam", body["seq"].as_u64().unwrap(), "jpg"),
            img
        );
    }
}

#[test]
fn keep_alive_and_pipelined_uploads_answer_in_order() {
    let d = web("");
    let mut c = Client::connect(d.addr("web"));
    let imgs: Vec<Vec<u8>> = (0..5)
        .map(|i| jpeg(100 + i, 20_000 + i as usize * 1000))
        .collect();
    // All five in one write: each answered after its commit, in order, on one connection.
    let mut wire = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        wire.extend(request(
            "POST",
            &format!("/frames/cam?n={i}"),
            &[("Content-Type", "image/jpeg")],
            img,
        ));
    }
    c.send(&wire);
    let mut seqs = Vec::new();
    for img in &imgs {
        let r = c.read_response();
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["bytes"], img.len());
        seqs.push(r.json()["seq"].as_u64().unwrap());
    }
    assert_strictly_increasing(&seqs);
    let frames = d.wait_for_frames("cam", "web", 5);
    assert_frames_eq(&frames, &imgs);
    // Still open: a GET on the same connection.
    let r = c.exchange(&request("GET", "/devices/cam/latest", &[], b""));
    assert_eq!((r.status, r.body.as_slice()), (200, imgs[4].as_slice()));
}

#[test]
fn refusals_carry_their_status_and_reason() {
    let d = web("max_frame_bytes = \"100KB\"");
    let addr = d.addr("web");
    let check = |r: Response, status: u16, words: &str| {
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
        let why = r.json()["error"].as_str().unwrap().to_string();
        assert!(why.contains(words), "{status}: {why:?} lacks {words:?}");
    };
    let img = jpeg(7, 5000);
    check(
        fetch(
            addr,
            "POST",
            "/frames/a",
            &[("Content-Type", "text/plain")],
            &img,
        ),
        415,
        "not an image",
    );
    check(
        fetch(addr, "POST", "/frames/a", &[], &jpeg(8, 150_000)),
        413,
        "max_frame_bytes",
    );
    let form = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n";
    check(
        fetch(
            addr,
            "POST",
            "/frames/a",
            &[("Content-Type", "multipart/form-data; boundary=b")],
            form,
        ),
        400,
        "no file part",
    );
    check(fetch(addr, "POST", "/frames/a", &[], b""), 400, "empty");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    check(
        fetch(addr, "POST", "/frames/a", &form, b"a=1&b=2"),
        415,
        "form data",
    );
    check(
        fetch(addr, "GET", "/etc/passwd", &[], b""),
        404,
        "no such page",
    );
    let r = fetch(addr, "DELETE", "/metrics", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    check(
        fetch(addr, "GET", "/devices/none/latest", &[], b""),
        404,
        "no frame",
    );
    // Not HTTP at all.
    let mut c = Client::connect(addr);
    let r = c.exchange(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n");
    assert_eq!(r.status, 400);
    assert!(d.stored_files().is_empty(), "nothing refused was stored");
}

#[test]
fn a_failing_sink_answers_503_with_the_reason() {
    let d = Daemon::start(
        &[
            listener("web", "http", ""),
            // A file where the sink wants a directory: every store fails (ENOTDIR).
            "[[sink]]\nname = \"broken\"\ntype = \"file\"\npath = \"@DIR@/blocker/{seq}.{ext}\"\n"
                .to_string(),
        ]
        .concat(),
    );
    std::fs::write(d.dir.join("blocker"), b"not a directory").unwrap();
    let r = fetch(
        d.addr("web"),
        "POST",
        "/frames/a",
        &[("Content-Type", "image/jpeg")],
        &jpeg(1, 1000),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.json()["error"].as_str().unwrap().contains("not stored"),
        "{:?}",
        r.json()
    );
}

#[test]
fn auth_token_is_required_when_configured() {
    let d = {
        let tmp_token = std::env::temp_dir().join(format!("fg-token-{}", std::process::id()));
        std::fs::write(&tmp_token, "s3cret\n").unwrap();
        let extra = format!("auth = {{ token_file = \"{}\" }}", tmp_token.display());
        let d = web(&extra);
        std::fs::remove_file(&tmp_token).unwrap();
        d
    };
    let addr = d.addr("web");
    let img = jpeg(3, 3000);
    let r = fetch(addr, "POST", "/frames/a", &[], &img);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"framegate\"")
    );
    let r = fetch(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = fetch(
        addr,
        "POST",
        "/frames/a",
        &[("Authorization", "Bearer s3cret")],
        &img,
    );
    assert_eq!(r.status, 201);
    assert_eq!(d.wait_for_frames("a", "web", 1)[0].bytes, img);
}

#[test]
fn a_slow_upload_is_cut_off_by_body_timeout() {
    let mut d = web("header_timeout = \"1s\"\nbody_timeout = \"1s\"");
    let mut c = Client::connect(d.addr("web"));
    c.send(b"POST /frames/slow HTTP/1.1\r\nContent-Length: 1000\r\n\r\nonly a few bytes");
    let r = c.read_response();
    assert_eq!(r.status, 408);
    assert!(r.json()["error"].as_str().unwrap().contains("body"));
    wait_closed_by_server(c.reader.get_mut(), Duration::from_secs(10)).unwrap();
    d.wait_for_log(&["408", "did not arrive"], WAIT);
    assert!(d.stored_files().is_empty());
}

#[test]
fn a_new_auth_token_applies_on_reload() {
    let config = |token: &str| {
        [
            listener("web", "http", &format!("auth = {{ token = \"{token}\" }}")),
            FILE_SINK.to_string(),
        ]
        .concat()
    };
    let mut d = web(&format!("auth = {{ token = \"{}\" }}", "first"));
    let addr = d.addr("web");
    let img = jpeg(5, 2000);
    let bearer = |t: &str| format!("Bearer {t}");
    let with = |t: &str| {
        fetch(
            addr,
            "POST",
            "/frames/a",
            &[("Authorization", &bearer(t))],
            &img,
        )
    };
    assert_eq!(with("first").status, 201);
    let text = format!(
        "state_dir = \"{}/state\"\n{}",
        d.dir.display(),
        config("second").replace(DIR, &d.dir.display().to_string())
    );
    std::fs::write(d.dir.join("framegate.toml"), text).unwrap();
    d.wait_for_log(&["reloaded"], WAIT);
    assert_eq!(with("first").status, 401);
    assert_eq!(with("second").status, 201);
}
