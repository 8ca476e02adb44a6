//! Validation of `type = "forward"` sinks: `to`, `secret` / `secret_file`, `via`,
//! `connect_timeout`, `spool_max_bytes`, `spool_fsync_interval`.

use std::time::Duration;

use toml::Spanned;

use super::file::SinkSection;
use super::{ConfigError, Validator};
use crate::sink::forward::{self, ForwardSinkConfig};

/// Longest `spool_fsync_interval`: longer would hold every commit (and the devices' ACKs)
/// back for no gain.
const MAX_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `via` value.
const MAX_VIA: usize = 255;

impl Validator<'_> {
    /// A forward sink's settings; `spool_dir` is filled in by
    /// [`forward::place_spools`] once `state_dir` is known.
    pub(super) fn forward(
        &self,
        section: &Spanned<SinkSection>,
        name: &str,
    ) -> Result<ForwardSinkConfig, ConfigError> {
        let raw = section.get_ref();
        // The name names the spool's directory.
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.len() > 100 || name.starts_with('.') || !name.chars().all(safe) {
            return Err(self.err(
                &raw.name,
                "a forward sink's name is its spool's directory (state_dir/spool/NAME): use letters, digits, '-', '_' and '.' (not first), at most 100",
            ));
        }
        let to = raw.to.as_ref().ok_or_else(|| {
            self.err(
                section,
                format!("forward sink {name:?} has no `to`; add e.g. to = [\"central-1:1919\", \"central-2:1919\"]"),
            )
        })?;
        if to.get_ref().is_empty() {
            return Err(self.err(to, "`to` needs at least one \"host:port\""));
        }
        let mut addresses = Vec::new();
        for entry in to.get_ref() {
            check_host_port(entry.get_ref()).map_err(|why| self.err(entry, why))?;
            addresses.push(entry.get_ref().trim().to_string());
        }
        let secret = match (&raw.secret, &raw.secret_file) {
            (Some(s), None) => Some(s.get_ref().as_bytes().to_vec()),
            (None, Some(path)) => Some(
                std::fs::read(path.get_ref())
                    .map(|bytes| bytes.trim_ascii_end().to_vec())
                    .map_err(|e| {
                        self.err(
                            path,
                            format!("cannot read secret_file {}: {e}", path.get_ref().display()),
                        )
                    })?,
            ),
            (Some(s), Some(_)) => {
                return Err(self.err(s, "give either secret or secret_file, not both"))
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(Vec::is_empty) {
            let at = raw
                .secret
                .as_ref()
                .map(|s| s.span())
                .or(raw.secret_file.as_ref().map(|s| s.span()))
                .expect("one of them is set");
            return Err(ConfigError::at(
                self.label,
                self.source,
                at,
                "the secret is empty",
            ));
        }
        let via = match &raw.via {
            None => None,
            Some(v) => {
                let text = v.get_ref();
                if text.is_empty() || text.len() > MAX_VIA || text.chars().any(char::is_control) {
                    return Err(self.err(
                        v,
                        format!("via is a name of 1 to {MAX_VIA} bytes without control characters, e.g. via = \"gateway-3\""),
                    ));
                }
                Some(text.clone())
            }
        };
        let connect_timeout = match &raw.connect_timeout {
            None => forward::DEFAULT_CONNECT_TIMEOUT,
            Some(d) if d.get_ref().0 < Duration::from_millis(100) => {
                return Err(self.err(d, "connect_timeout must be at least 100ms"))
            }
            Some(d) => d.get_ref().0,
        };
        let spool_max_bytes = match &raw.spool_max_bytes {
            None => forward::DEFAULT_SPOOL_MAX_BYTES,
            Some(size) if size.get_ref().as_u64() < 1 << 20 => {
                return Err(self.err(size, "spool_max_bytes must be at least 1MiB"))
            }
            Some(size) => size.get_ref().as_u64(),
        };
        let spool_fsync_interval = match &raw.spool_fsync_interval {
            None => forward::DEFAULT_FSYNC_INTERVAL,
            Some(d) if d.get_ref().0 > MAX_FSYNC_INTERVAL => {
                return Err(self.err(d, "spool_fsync_interval must be at most 1s"))
            }
            Some(d) => d.get_ref().0,
        };
        Ok(ForwardSinkConfig {
            to: addresses,
            secret,
            via,
            connect_timeout,
            spool_dir: Default::default(),
            spool_max_bytes,
            spool_fsync_interval,
        })
    }
}

/// Checks the shape of a `to` entry: `host:port` or `[v6]:port`, port 1–65535. Names are
/// resolved when connecting, not here: DNS may be down when the gateway starts.
fn check_host_port(entry: &str) -> Result<(), String> {
    let example =
        "write \"host:port\", e.g. \"central-1:1919\", \"10.0.0.5:1919\" or \"[fd00::5]:1919\"";
    let (host, port) = entry
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("{entry:?} has no port; {example}"))?;
    if host.is_empty() || host == "[]" {
        return Err(format!("{entry:?} has no host; {example}"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{entry:?}: put an IPv6 address in brackets; {example}"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "{entry:?}: {port:?} is not a port (1–65535); {example}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::{Config, SinkKind};

    const BASE: &str = r#"
state_dir = "/tmp/fg-gw"

[[listener]]
name = "devices"
bind = "127.0.0.1:1919"
"#;

    fn parse(sink: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}\n[[sink]]\n{sink}"), "gw.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_forward_sink_reads_every_key_and_spools_under_state_dir() {
        let config = parse(
            r#"name = "central"
type = "forward"
to = ["central-1:1920", "[fd00::5]:1920"]
secret = "s3cret"
via = "gw-7"
connect_timeout = "2s"
spool_max_bytes = "10MiB"
spool_fsync_interval = "5ms""#,
        )
        .unwrap();
        let sink = &config.sinks[0];
        assert_eq!(sink.workers, crate::sink::forward::DEFAULT_WORKERS);
        let SinkKind::Forward(f) = &sink.kind else {
            panic!("{:?}", sink.kind);
        };
        assert_eq!(f.to, ["central-1:1920", "[fd00::5]:1920"]);
        assert_eq!(f.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(f.via.as_deref(), Some("gw-7"));
        assert_eq!(f.connect_timeout, Duration::from_secs(2));
        assert_eq!(f.spool_max_bytes, 10 << 20);
        assert_eq!(f.spool_fsync_interval, Duration::from_millis(5));
        assert_eq!(f.spool_dir, PathBuf::from("/tmp/fg-gw/spool/central"));
        assert!(
            !format!("{f:?}").contains("s3cret"),
            "the secret stays out of Debug"
        );

        let config = parse("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]").unwrap();
        let SinkKind::Forward(f) = &config.sinks[0].kind else {
            panic!();
        };
        assert_eq!(
            f.spool_max_bytes,
            crate::sink::forward::DEFAULT_SPOOL_MAX_BYTES
        );
        assert_eq!((f.secret.as_ref(), f.via.as_ref()), (None, None));
    }

    #[test]
    fn the_example_configs_forward_sink_is_valid_when_uncommented() {
        let example = include_str!("../../etc/framegate.toml");
        let start = example.find("# [[sink]]\n# name = \"central\"").unwrap();
        let end = start + example[start..].find("\n\n").unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "s3cret\n").unwrap();
        let key = |l: &&str| {
            let l = l.trim_start_matches("# ");
            l == "[[sink]]" || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
        };
        let sink: String = example[start..end]
            .lines()
            .filter(key)
            .map(|l| l.trim_start_matches("# ").to_string() + "\n")
            .collect::<String>()
            .replace(
                "/etc/framegate/secrets/gateway",
                &secret.path().display().to_string(),
            );
        let config = Config::parse(&format!("{BASE}\n{sink}"), "example").unwrap();
        let SinkKind::Forward(f) = &config.sinks[0].kind else {
            panic!("{sink}");
        };
        assert_eq!(f.to.len(), 2);
        assert_eq!(f.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(f.via.as_deref(), Some("site-3"));
        assert_eq!(config.sinks[0].workers, 32);
    }

    #[test]
    fn mistakes_name_their_line_and_key() {
        let cases = [
            ("name = \"c\"\ntype = \"forward\"", ":8:1:", "has no `to`"),
            ("name = \"c\"\ntype = \"forward\"\nto = []", ":11:6:", "at least one"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"central\"]", ":11:7: to:", "no port"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:0\"]", "to:", "not a port"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"::1:5\"]", "to:", "brackets"),
            ("name = \"a/b\"\ntype = \"forward\"\nto = [\"h:1\"]", "name:", "spool's directory"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\npath = \"/x/{seq}\"", ":12:", "only file sinks take `path`"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\nsecret = \"a\"\nsecret_file = \"/x\"", "secret:", "not both"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\nsecret = \"\"", "secret:", "empty"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\nspool_fsync_interval = \"2s\"", "spool_fsync_interval:", "at most 1s"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\nspool_max_bytes = \"1KiB\"", "spool_max_bytes:", "at least 1MiB"),
            ("name = \"c\"\ntype = \"forward\"\nto = [\"h:1\"]\nvia = \"\"", "via:", "1 to 255"),
            ("name = \"c\"\ntype = \"discard\"\nto = [\"h:1\"]", ":11:", "only forward sinks take `to`"),
            ("name = \"c\"\ntype = \"file\"\npath = \"/x/{seq}\"\nspool_max_bytes = \"1GiB\"", ":12:", "only forward sinks take `spool_max_bytes`"),
        ];
        for (sink, place, what) in cases {
            let err = parse(sink).unwrap_err();
            assert!(err.starts_with("gw.toml:"), "{sink}: {err}");
            assert!(err.contains(place), "{sink}: {err} (expected {place})");
            assert!(err.contains(what), "{sink}: {err} (expected {what})");
        }
    }
}
