//! The keys of `framing = "http"` listeners (`auth`, `header_timeout`, `body_timeout`) and the
//! `[live]` and `[metrics]` sections, validated like the rest: errors name file, line and key.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::file::{AuthSection, FileConfig, ListenerSection};
use super::{ConfigError, Validator};
use crate::framing::Framing;

/// Default `header_timeout`: a request line and headers must arrive within this.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `body_timeout`: a request body must arrive within this after its head.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `[live] max_bytes`.
pub const DEFAULT_LIVE_MAX_BYTES: u64 = 64 << 20;
/// Default `[metrics] max_device_labels`.
pub const DEFAULT_MAX_DEVICE_LABELS: usize = 100;

/// What an HTTP listener asks of its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Bearer TOKEN`.
    Bearer(Vec<u8>),
    /// `Authorization: Basic base64(user:password)` (browsers ask for it themselves).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Vec<u8>,
    },
}

/// An HTTP listener's settings (defaults on other listeners, which ignore them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Credentials every request must carry; `None`: open.
    pub auth: Option<HttpAuth>,
    /// Longest time from a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// Longest time from the end of a head to the end of its body.
    pub body_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            auth: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

impl Validator<'_> {
    /// The HTTP keys of one listener; they are errors on other framings.
    pub(super) fn http_settings(&self, raw: &ListenerSection) -> Result<HttpSettings, ConfigError> {
        if raw.framing != Framing::Http {
            let http_only = [
                raw.auth.as_ref().map(Spanned::span),
                raw.header_timeout.as_ref().map(Spanned::span),
                raw.body_timeout.as_ref().map(Spanned::span),
            ];
            if let Some(span) = http_only.into_iter().flatten().next() {
                return Err(ConfigError::at(
                    self.label,
                    self.source,
                    span,
                    "only framing = \"http\" listeners take auth, header_timeout and body_timeout; remove it or set framing = \"http\"",
                ));
            }
            return Ok(HttpSettings::default());
        }
        if raw.require_auth == Some(true) {
            return Err(self.err(
                &raw.name,
                "require_auth is for native devices; an http listener takes auth = { token_file = \"…\" } instead",
            ));
        }
        let timeout = |d: &Option<Spanned<super::file::HumanDuration>>, default, key: &str| match d
        {
            None => Ok(default),
            Some(d) if d.get_ref().0.is_zero() => {
                Err(self.err(d, format!("{key} must be more than 0")))
            }
            Some(d) => Ok(d.get_ref().0),
        };
        Ok(HttpSettings {
            auth: raw.auth.as_ref().map(|a| self.auth(a)).transpose()?,
            header_timeout: timeout(
                &raw.header_timeout,
                DEFAULT_HEADER_TIMEOUT,
                "header_timeout",
            )?,
            body_timeout: timeout(&raw.body_timeout, DEFAULT_BODY_TIMEOUT, "body_timeout")?,
        })
    }

    fn auth(&self, section: &Spanned<AuthSection>) -> Result<HttpAuth, ConfigError> {
        let a = section.get_ref();
        let secret = |text: &Option<Spanned<String>>,
                      file: &Option<Spanned<std::path::PathBuf>>,
                      what: &str|
         -> Result<Option<Vec<u8>>, ConfigError> {
            let value = match (text, file) {
                (Some(t), None) => t.get_ref().as_bytes().to_vec(),
                (None, Some(path)) => read_secret(path.get_ref()).map_err(|e| {
                    self.err(
                        path,
                        format!("cannot read {what}_file {}: {e}", path.get_ref().display()),
                    )
                })?,
                (Some(t), Some(_)) => {
                    return Err(self.err(t, format!("give either {what} or {what}_file, not both")))
                }
                (None, None) => return Ok(None),
            };
            if value.is_empty() {
                return Err(self.err(section, format!("the {what} is empty")));
            }
            Ok(Some(value))
        };
        let token = secret(&a.token, &a.token_file, "token")?;
        let password = secret(&a.password, &a.password_file, "password")?;
        match (token, &a.user, password) {
            (Some(token), None, None) => Ok(HttpAuth::Bearer(token)),
            (None, Some(user), Some(password)) => {
                if user.get_ref().is_empty() || user.get_ref().contains(':') {
                    return Err(self.err(user, "the user must be non-empty and without ':'"));
                }
                Ok(HttpAuth::Basic {
                    user: user.get_ref().clone(),
                    password,
                })
            }
            _ => Err(self.err(
                section,
                "auth takes either token (or token_file) for bearer tokens, or user with password (or password_file) for basic auth",
            )),
        }
    }

    /// `[live] max_bytes` and `[metrics] max_device_labels`.
    pub(super) fn live_and_metrics(&self, raw: &FileConfig) -> Result<(u64, usize), ConfigError> {
        let live = match &raw.live.max_bytes {
            None => DEFAULT_LIVE_MAX_BYTES,
            Some(size) => size.get_ref().as_u64(),
        };
        let labels = match &raw.metrics.max_device_labels {
            None => DEFAULT_MAX_DEVICE_LABELS,
            Some(n) if *n.get_ref() == 0 => {
                return Err(self.err(n, "max_device_labels must be at least 1"))
            }
            Some(n) => *n.get_ref(),
        };
        Ok((live, labels))
    }
}

/// A secret file's bytes, its trailing newline ignored (as for device secrets).
fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path).map(|bytes| bytes.trim_ascii_end().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const SINK: &str = "[[sink]]\nname = \"n\"\ntype = \"discard\"\n";

    fn parse(listener: &str, rest: &str) -> Result<Config, String> {
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n{listener}\n{SINK}{rest}"
        );
        Config::parse(&text, "test.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn http_keys_parse_with_defaults() {
        let c = parse(
            "framing = \"http\"\nauth = { user = \"cam\", password = \"pw\" }\nheader_timeout = \"2s\"",
            "[live]\nmax_bytes = \"1MiB\"\n[metrics]\nmax_device_labels = 7\n",
        )
        .unwrap();
        let http = &c.listeners[0].http;
        assert_eq!(
            http.auth,
            Some(HttpAuth::Basic {
                user: "cam".into(),
                password: b"pw".to_vec()
            })
        );
        assert_eq!(http.header_timeout, Duration::from_secs(2));
        assert_eq!(http.body_timeout, DEFAULT_BODY_TIMEOUT);
        assert_eq!((c.live_max_bytes, c.max_device_labels), (1 << 20, 7));
        let c = parse("framing = \"http\"", "").unwrap();
        assert_eq!(c.live_max_bytes, DEFAULT_LIVE_MAX_BYTES);
        assert_eq!(c.listeners[0].http, HttpSettings::default());
    }

    #[test]
    fn http_errors_name_line_and_key() {
        let e = parse("framing = \"u32le\"\nauth = { token = \"t\" }", "").unwrap_err();
        assert!(
            e.contains("test.toml:5") && e.contains("only framing = \"http\""),
            "{e}"
        );
        let e = parse(
            "framing = \"http\"\nauth = { token = \"t\", token_file = \"/x\" }",
            "",
        )
        .unwrap_err();
        assert!(e.contains("test.toml:5") && e.contains("not both"), "{e}");
        let e = parse("framing = \"http\"\nauth = { token = \"\" }", "").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = parse("framing = \"http\"\nauth = { user = \"a\" }", "").unwrap_err();
        assert!(e.contains("either token"), "{e}");
        let e = parse(
            "framing = \"http\"\nauth = { token_file = \"/nonexistent/t\" }",
            "",
        )
        .unwrap_err();
        assert!(e.contains("cannot read token_file /nonexistent/t"), "{e}");
        let e = parse("framing = \"http\"\nbody_timeout = \"0s\"", "").unwrap_err();
        assert!(
            e.contains("test.toml:5") && e.contains("body_timeout must be more than 0"),
            "{e}"
        );
        let e = parse("framing = \"http\"\nrequire_auth = true", "").unwrap_err();
        assert!(e.contains("auth = { token_file"), "{e}");
        let e = parse("framing = \"http\"", "[metrics]\nmax_device_labels = 0\n").unwrap_err();
        assert!(e.contains("max_device_labels must be at least 1"), "{e}");
    }
}
