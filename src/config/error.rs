//! Config errors that point at the file, line and key.

use std::fmt;
use std::ops::Range;

/// A config problem, located so the operator can go straight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file's path, or `<embedded default>`.
    pub file: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The key involved, when there is one.
    pub key: Option<String>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (no line).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            position: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error at byte `span` of `source`; the key is read off the line when it is a
    /// `key = value` line.
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_no = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = &source[line_start..line_end];
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        ConfigError {
            file: file.to_string(),
            position: Some((line_no, column)),
            key,
            message: message.into(),
        }
    }
}

impl ConfigError {
    /// An error about something missing from the file: placed at its end, where the missing
    /// part would be added, with no key.
    pub fn at_end(file: &str, source: &str, message: impl Into<String>) -> Self {
        let end = source.trim_end().len();
        ConfigError {
            key: None,
            ..ConfigError::at(file, source, end..end, message)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            // A message from toml often names the key already; avoid saying it twice.
            if !self.message.contains(&format!("`{key}`")) {
                write!(f, "{key}: ")?;
            }
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_column_and_key() {
        let src = "a = 1\n[x]\n  idle_timeout = \"sixty\"\n";
        let at = src.find("\"sixty\"").unwrap();
        let err = ConfigError::at("f.toml", src, at..at + 7, "invalid duration");
        assert_eq!(err.position, Some((3, 18)));
        assert_eq!(err.key.as_deref(), Some("idle_timeout"));
        assert_eq!(
            err.to_string(),
            "f.toml:3:18: idle_timeout: invalid duration"
        );
    }

    #[test]
    fn table_headers_are_not_keys() {
        let src = "[[sink]]\nname = \"a\"\n";
        let err = ConfigError::at("f.toml", src, 0..8, "missing field `path`");
        assert_eq!(err.key, None);
        assert_eq!(err.to_string(), "f.toml:1:1: missing field `path`");
    }
}
