use super::*;

const VALID: &str = r#"
state_dir = "/tmp/fg-state"
max_connections = 500

[log]
level = "debug"

[[listener]]
name = "devices"
bind = "127.0.0.1:1919"
framing = "ascii-length"
max_frame_bytes = "8MiB"
idle_timeout = "1m 30s"

[devices]
"192.168.137.47" = "door-cam"

[[sink]]
name = "null"
type = "discard"
queue_capacity = 8
"#;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, "test.toml")
}

#[test]
fn valid_config_reads_every_key() {
    let config = parse(VALID).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/tmp/fg-state"));
    assert_eq!(config.max_connections, 500);
    assert_eq!(config.log_level, LevelFilter::Debug);
    let l = &config.listeners[0];
    assert_eq!(l.name, "devices");
    assert_eq!(l.bind, "127.0.0.1:1919".parse().unwrap());
    assert_eq!(l.framing, Framing::AsciiLength);
    assert_eq!(l.max_frame_bytes, 8 << 20);
    assert_eq!(l.idle_timeout, Duration::from_secs(90));
    assert_eq!(l.backlog, DEFAULT_BACKLOG);
    assert_eq!(
        config.devices[&"192.168.137.47".parse::<IpAddr>().unwrap()],
        "door-cam"
    );
    assert_eq!(config.sinks[0].queue_capacity, 8);
    assert!(matches!(config.sinks[0].kind, SinkKind::Discard));
}

#[test]
fn unknown_key_names_line_and_key() {
    let src = VALID.replace(
        "idle_timeout = \"1m 30s\"",
        "idle_timeout = \"1m\"\nidle_timout = \"5s\"",
    );
    let err = parse(&src).unwrap_err().to_string();
    assert!(err.starts_with("test.toml:14:"), "{err}");
    assert!(err.contains("idle_timout"), "{err}");
}

#[test]
fn bad_duration_names_line_and_key() {
    let src = VALID.replace("\"1m 30s\"", "\"sixty\"");
    let err = parse(&src).unwrap_err();
    assert_eq!(err.position.map(|p| p.0), Some(13), "{err}");
    assert_eq!(err.key.as_deref(), Some("idle_timeout"));
    assert!(err.message.contains("invalid duration \"sixty\""), "{err}");
}

#[test]
fn bad_size_names_the_key() {
    let src = VALID.replace("\"8MiB\"", "\"lots\"");
    let err = parse(&src).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("max_frame_bytes"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(12), "{err}");
}

#[test]
fn missing_sink_is_explained() {
    let src = &VALID[..VALID.find("[[sink]]").unwrap()];
    let err = parse(src).unwrap_err();
    assert!(err.message.contains("no [[sink]] table"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(16), "{err}");
    assert_eq!(err.key, None);
}

#[test]
fn discard_sink_rejects_file_keys() {
    let src = VALID.replace("queue_capacity = 8", "path = \"/tmp/x/{seq}\"");
    let err = parse(&src).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("path"));
    assert!(err.message.contains("only file sinks"), "{err}");
}

#[test]
fn bad_device_ip_and_framing() {
    let src = VALID.replace("\"192.168.137.47\"", "\"door\"");
    let err = parse(&src).unwrap_err();
    assert!(err.message.contains("peer IP"), "{err}");
    let src = VALID.replace("\"ascii-length\"", "\"ascii\"");
    let err = parse(&src).unwrap_err().to_string();
    assert!(err.contains("test.toml:11:"), "{err}");
}

#[test]
fn duplicate_names_are_rejected() {
    let src = format!("{VALID}\n[[sink]]\nname = \"null\"\ntype = \"discard\"\n");
    let err = parse(&src).unwrap_err();
    assert!(err.message.contains("another sink has this name"), "{err}");
}

#[test]
fn embedded_default_is_valid() {
    let config = Config::embedded_default();
    assert_eq!(config.listeners[0].bind, "0.0.0.0:1919".parse().unwrap());
    assert_eq!(config.listeners[0].framing, Framing::Auto);
    assert_eq!(config.state_dir, PathBuf::from("./state"));
    assert!(matches!(config.sinks[0].kind, SinkKind::File(_)));
}

#[test]
fn shipped_example_config_is_valid() {
    let config = Config::parse(
        include_str!("../../etc/framegate.toml"),
        "etc/framegate.toml",
    )
    .unwrap();
    assert_eq!(config.listeners[0].name, "devices");
    assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
}

#[test]
fn native_keys_secrets_and_allow_lists() {
    let config = parse(
        r#"
[[listener]]
name = "n"
bind = "127.0.0.1:0"
framing = "auto"
heartbeat = "5s"
max_in_flight = 8
require_auth = true
allow = ["192.168.1.0/24", "10.0.0.7", "fd00::/8"]

[device."door-cam"]
secret = "s3cret"

[[sink]]
name = "x"
type = "discard"
"#,
    )
    .unwrap();
    let l = &config.listeners[0];
    assert_eq!(l.heartbeat, Duration::from_secs(5));
    assert_eq!(l.max_in_flight, 8);
    assert!(l.require_auth);
    let allowed = |ip: &str| {
        l.allow
            .iter()
            .any(|n| n.contains(&ip.parse::<IpAddr>().unwrap()))
    };
    assert!(allowed("192.168.1.77") && allowed("10.0.0.7") && allowed("fd00::1"));
    assert!(!allowed("192.168.2.1") && !allowed("10.0.0.8"));
    assert_eq!(config.secrets["door-cam"], b"s3cret");

    let sink = "\n[[sink]]\nname = \"x\"\ntype = \"discard\"\n";
    let err = parse(&format!(
        "[[listener]]\nname = \"n\"\nbind = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/33\"]\n{sink}"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.toml:4:") && err.contains("not an address or network"),
        "{err}"
    );
    let err = parse(&format!(
        "[[listener]]\nname = \"n\"\nbind = \"127.0.0.1:0\"\nframing = \"u32le\"\nrequire_auth = true\n{sink}"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("carries no credentials"), "{err}");
    let err = parse(&format!(
        "[[listener]]\nname = \"n\"\nbind = \"127.0.0.1:0\"\n[device.\"cam\"]\n{sink}"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs secret or secret_file"), "{err}");
}

#[test]
fn log_output_keys() {
    let sink = "\n[[sink]]\nname = \"x\"\ntype = \"discard\"\n";
    let listener = "[[listener]]\nname = \"n\"\nbind = \"127.0.0.1:0\"\n";
    let config = parse(&format!(
        "[log]\ntarget = \"syslog\"\nfacility = \"local0\"\nident = \"gw\"\nsocket = \"/run/log\"\n{listener}{sink}"
    ))
    .unwrap();
    assert_eq!(config.log_output.target, crate::logging::Target::Syslog);
    assert_eq!(config.log_output.ident, "gw");
    assert_eq!(config.log_output.socket, PathBuf::from("/run/log"));
    assert_eq!(
        parse(&format!("{listener}{sink}"))
            .unwrap()
            .log_output
            .target,
        crate::logging::Target::Stderr
    );
    let err = parse(&format!("[log]\nfacility = \"nope\"\n{listener}{sink}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:2:") && err.contains("unknown syslog facility"),
        "{err}"
    );
    let err = parse(&format!("[log]\ntarget = \"journal\"\n{listener}{sink}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.toml:2:"), "{err}");
}

const EXEC: &str = r#"
[[listener]]
name = "lan"
bind = "127.0.0.1:0"

[[sink]]
name = "archive"
type = "file"
path = "/tmp/fg/{device}/{seq}.{ext}"

[[sink]]
name = "hook"
type = "exec"
command = ["/usr/local/bin/on-frame", "{path}", "--device={device}"]
after = "archive"
env = { SITE = "north" }
env_passthrough = ["TZ"]
concurrency = 3
timeout = "5s"
kill_grace = "1s"
retries = 2
retry_backoff = "100ms"
ack = "spawn"

[[sink]]
name = "thumbs"
type = "file"
path = "/tmp/fg/thumbs/{seq}.{ext}"
validate = "decode"
quarantine = "/tmp/fg/quarantine"
convert = "jpeg"
quality = 70
resize = { max_width = 320, max_height = 240 }
"#;

#[test]
fn exec_and_image_stage_keys() {
    let config = parse(EXEC).unwrap();
    let hook = &config.sinks[1];
    assert_eq!(hook.after(), Some("archive"));
    assert_eq!(
        hook.workers, 3,
        "an exec sink's workers default to its concurrency"
    );
    let SinkKind::Exec(exec) = &hook.kind else {
        panic!("not exec")
    };
    assert_eq!(exec.command.len(), 3);
    assert_eq!(exec.input, crate::sink::exec::Input::None);
    assert_eq!(exec.env, [("SITE".to_string(), "north".to_string())]);
    assert_eq!(exec.env_passthrough, ["TZ"]);
    assert_eq!(exec.timeout, Some(Duration::from_secs(5)));
    assert_eq!(exec.kill_grace, Duration::from_secs(1));
    assert_eq!((exec.retries, exec.ack), (2, crate::sink::exec::Ack::Spawn));
    let image = config.sinks[2].image.as_ref().unwrap();
    assert_eq!(image.resize, Some((320, 240)));
    assert_eq!(image.quality, 70);
    assert!(image.decodes());
    assert!(config.sinks[0].image.is_none());
}

#[test]
fn exec_and_image_mistakes_name_the_key() {
    let cases = [
        (
            "after = \"archive\"",
            "after = \"nope\"",
            "after",
            "no [[sink]]",
        ),
        (
            "after = \"archive\"",
            "after = \"thumbs\"\ninput = \"file\"",
            "input",
            "already gives",
        ),
        ("after = \"archive\"", "", "command", "{path} is only set"),
        (
            "\"--device={device}\"",
            "\"{devise}\"",
            "command",
            "unknown placeholder",
        ),
        (
            "\"/usr/local/bin/on-frame\"",
            "\"{device}\"",
            "command",
            "fixed text",
        ),
        (
            "SITE = \"north\"",
            "FRAMEGATE_SEQ = \"1\"",
            "env",
            "FRAMEGATE_",
        ),
        (
            "timeout = \"5s\"",
            "timeout = \"0s\"",
            "timeout",
            "more than 0",
        ),
        (
            "ack = \"spawn\"",
            "ack = \"later\"",
            "ack",
            "unknown variant",
        ),
        ("quality = 70", "quality = 0", "quality", "1 to 100"),
        (
            "max_width = 320, max_height = 240",
            "",
            "resize",
            "max_width",
        ),
        (
            "validate = \"decode\"",
            "validate = \"off\"",
            "quarantine",
            "validate",
        ),
        (
            "path = \"/tmp/fg/{device}/{seq}.{ext}\"",
            "path = \"/tmp/fg/{seq}\"\nretries = 1",
            "retries",
            "only exec sinks",
        ),
    ];
    for (from, to, key, says) in cases {
        let src = EXEC.replacen(from, to, 1);
        let err = parse(&src).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{from} -> {to}: {err}");
        assert!(err.message.contains(says), "{from} -> {to}: {err}");
    }
}
