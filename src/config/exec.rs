//! Validation of `type = "exec"` sinks, and of which keys each sink type takes.

use std::ops::Range;

use toml::Spanned;

use super::file::{SinkSection, SinkType};
use super::{ConfigError, SinkConfig, SinkKind, Validator};
use crate::sink::exec::args::{ArgTemplate, Field};
use crate::sink::exec::{self, ExecSinkConfig, Input};

/// Environment variable names a hook may be given: portable shell names.
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator<'_> {
    fn at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.label, self.source, span, message)
    }

    /// Rejects keys the sink's type does not take, naming the type that does.
    pub(super) fn only_for_type(&self, raw: &SinkSection) -> Result<(), ConfigError> {
        let span = |v: Option<Range<usize>>, key: &'static str| v.map(|s| (s, key));
        let file = [
            span(raw.path.as_ref().map(Spanned::span), "path"),
            span(raw.fsync.as_ref().map(Spanned::span), "fsync"),
            span(raw.time_zone.as_ref().map(Spanned::span), "time_zone"),
            span(raw.keep.as_ref().map(Spanned::span), "keep"),
        ];
        let exec = [
            span(raw.command.as_ref().map(Spanned::span), "command"),
            span(raw.input.as_ref().map(Spanned::span), "input"),
            span(raw.after.as_ref().map(Spanned::span), "after"),
            span(raw.env.as_ref().map(Spanned::span), "env"),
            span(
                raw.env_passthrough.as_ref().map(Spanned::span),
                "env_passthrough",
            ),
            span(raw.concurrency.as_ref().map(Spanned::span), "concurrency"),
            span(raw.timeout.as_ref().map(Spanned::span), "timeout"),
            span(raw.kill_grace.as_ref().map(Spanned::span), "kill_grace"),
            span(raw.retries.as_ref().map(Spanned::span), "retries"),
            span(
                raw.retry_backoff.as_ref().map(Spanned::span),
                "retry_backoff",
            ),
            span(raw.ack.as_ref().map(Spanned::span), "ack"),
        ];
        let forward = [
            span(raw.to.as_ref().map(Spanned::span), "to"),
            span(raw.secret.as_ref().map(Spanned::span), "secret"),
            span(raw.secret_file.as_ref().map(Spanned::span), "secret_file"),
            span(raw.via.as_ref().map(Spanned::span), "via"),
            span(
                raw.connect_timeout.as_ref().map(Spanned::span),
                "connect_timeout",
            ),
            span(
                raw.spool_max_bytes.as_ref().map(Spanned::span),
                "spool_max_bytes",
            ),
            span(
                raw.spool_fsync_interval.as_ref().map(Spanned::span),
                "spool_fsync_interval",
            ),
        ];
        for (ty, name, keys) in [
            (SinkType::File, "file", &file[..]),
            (SinkType::Exec, "exec", &exec[..]),
            (SinkType::Forward, "forward", &forward[..]),
        ] {
            if raw.kind == ty {
                continue;
            }
            if let Some((span, key)) = keys.iter().flatten().next() {
                return Err(self.at(
                    span.clone(),
                    format!("only {name} sinks take `{key}`; remove it or set type = \"{name}\""),
                ));
            }
        }
        Ok(())
    }

    /// The settings of an exec sink.
    pub(super) fn exec(
        &self,
        section: &Spanned<SinkSection>,
        concurrency: usize,
    ) -> Result<ExecSinkConfig, ConfigError> {
        let raw = section.get_ref();
        let command = raw.command.as_ref().ok_or_else(|| {
            self.err(
                section,
                "an exec sink needs `command`, an argv array such as command = [\"/usr/local/bin/on-frame\", \"{path}\", \"{device}\"]",
            )
        })?;
        if command.get_ref().is_empty() || command.get_ref()[0].get_ref().is_empty() {
            return Err(self.err(
                command,
                "`command` needs at least the program to run, e.g. [\"/usr/local/bin/on-frame\"]",
            ));
        }
        let mut argv = Vec::new();
        for arg in command.get_ref() {
            argv.push(ArgTemplate::parse(arg.get_ref()).map_err(|why| self.err(arg, why))?);
        }
        if argv[0].render(&|_| String::new()) != argv[0].as_str() {
            return Err(self.err(
                &command.get_ref()[0],
                "the program (first element of `command`) must be fixed text, without placeholders",
            ));
        }
        let after = raw.after.as_ref().map(|a| a.get_ref().clone());
        let input = match (&raw.input, &after) {
            (Some(input), Some(_)) if *input.get_ref() == Input::File => {
                return Err(self.err(
                    input,
                    "`after` already gives the hook the committed file as {path}; use input = \"none\" or \"stdin\" with it",
                ))
            }
            (Some(input), _) => *input.get_ref(),
            (None, Some(_)) => Input::None,
            (None, None) => Input::Stdin,
        };
        let path_used = argv.iter().any(|a| a.uses(Field::Path));
        if path_used && input != Input::File && after.is_none() {
            return Err(self.err(
                command,
                "{path} is only set with input = \"file\" or after = \"<file sink>\"; add one of them",
            ));
        }
        let mut env = Vec::new();
        if let Some(table) = &raw.env {
            for (key, value) in table.get_ref() {
                if !valid_env_name(key) || key.starts_with("FRAMEGATE_") {
                    return Err(self.err(
                        table,
                        format!("env key {key:?} is not usable: use letters, digits and _ (not starting with a digit), and not the FRAMEGATE_ prefix, which framegate sets"),
                    ));
                }
                env.push((key.clone(), value.get_ref().clone()));
            }
        }
        let mut env_passthrough = Vec::new();
        for name in raw.env_passthrough.iter().flat_map(|v| v.get_ref()) {
            if !valid_env_name(name.get_ref()) {
                return Err(self.err(name, "not an environment variable name"));
            }
            env_passthrough.push(name.get_ref().clone());
        }
        let duration = |v: &Option<Spanned<super::file::HumanDuration>>, default, key: &str| match v
        {
            None => Ok(default),
            Some(d) if d.get_ref().0.is_zero() => {
                Err(self.err(d, format!("{key} must be more than 0")))
            }
            Some(d) => Ok(d.get_ref().0),
        };
        Ok(ExecSinkConfig {
            command: argv,
            input,
            after,
            env,
            env_passthrough,
            concurrency,
            timeout: Some(duration(&raw.timeout, exec::DEFAULT_TIMEOUT, "timeout")?),
            kill_grace: duration(&raw.kill_grace, exec::DEFAULT_KILL_GRACE, "kill_grace")?,
            retries: raw.retries.as_ref().map_or(0, |r| *r.get_ref()),
            retry_backoff: duration(
                &raw.retry_backoff,
                exec::DEFAULT_RETRY_BACKOFF,
                "retry_backoff",
            )?,
            ack: raw.ack.as_ref().map(|a| *a.get_ref()).unwrap_or_default(),
        })
    }

    /// Every `after` names a file sink of this config.
    pub(super) fn check_followers(
        &self,
        sections: &[Spanned<SinkSection>],
        sinks: &[SinkConfig],
    ) -> Result<(), ConfigError> {
        for (section, sink) in sections.iter().zip(sinks) {
            let (Some(after), Some(key)) = (sink.after(), &section.get_ref().after) else {
                continue;
            };
            match sinks.iter().find(|s| s.name == after) {
                Some(SinkConfig {
                    kind: SinkKind::File(_),
                    ..
                }) => {}
                Some(other) => {
                    return Err(self.err(
                        key,
                        format!(
                            "`after` must name a file sink; {after:?} is a {} sink",
                            other.kind.type_name()
                        ),
                    ))
                }
                None => {
                    return Err(self.err(
                        key,
                        "no [[sink]] has this name; `after` names the file sink whose committed files the hook gets",
                    ))
                }
            }
        }
        Ok(())
    }
}
