//! The hook's argv: each element a template, filled per frame into exactly one argument.
//!
//! | placeholder     | value                                                           |
//! |-----------------|-----------------------------------------------------------------|
//! | `{path}`        | the image's file: the temp file (`input = "file"`) or the path the followed sink committed (`after`); empty otherwise |
//! | `{device}`      | the device id                                                   |
//! | `{seq}`         | the sequence number                                             |
//! | `{listener}`    | the listener's name                                             |
//! | `{format}`      | `jpeg`, `png`, …, else `unknown`                                |
//! | `{ext}`         | `jpg`, `png`, …, else `bin`                                     |
//! | `{size}`        | payload bytes                                                   |
//! | `{width}`, `{height}` | pixels, from the image header; empty when unknown         |
//! | `{received_at}` | receive time, RFC 3339 in UTC                                   |
//! | `{peer}`        | the device's `IP:port`                                          |
//!
//! `{{` and `}}` are literal braces. No shell ever sees the result: a value with spaces,
//! quotes or `;` stays one argument.

/// A value that varies per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `{path}`.
    Path,
    /// `{device}`.
    Device,
    /// `{seq}`.
    Seq,
    /// `{listener}`.
    Listener,
    /// `{format}`.
    Format,
    /// `{ext}`.
    Ext,
    /// `{size}`.
    Size,
    /// `{width}`.
    Width,
    /// `{height}`.
    Height,
    /// `{received_at}`.
    ReceivedAt,
    /// `{peer}`.
    Peer,
}

const FIELDS: [(&str, Field); 11] = [
    ("path", Field::Path),
    ("device", Field::Device),
    ("seq", Field::Seq),
    ("listener", Field::Listener),
    ("format", Field::Format),
    ("ext", Field::Ext),
    ("size", Field::Size),
    ("width", Field::Width),
    ("height", Field::Height),
    ("received_at", Field::ReceivedAt),
    ("peer", Field::Peer),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Field),
}

/// One argv element as written in `command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgTemplate {
    source: String,
    pieces: Vec<Piece>,
}

impl ArgTemplate {
    /// Parses one element; the error names the bad placeholder and the known ones.
    pub fn parse(text: &str) -> Result<ArgTemplate, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push(tail.as_bytes()[0] as char);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "lone `}}` in {text:?}; write `}}}}` for a literal brace"
                ));
            }
            let Some(close) = tail.find('}') else {
                return Err(format!(
                    "unclosed `{{` in {text:?}; close the placeholder or write `{{{{`"
                ));
            };
            let name = &tail[1..close];
            let field = FIELDS
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, field)| *field)
                .ok_or_else(|| {
                    let known: Vec<String> =
                        FIELDS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                    format!(
                        "unknown placeholder {{{name}}} in {text:?}; known: {}",
                        known.join(", ")
                    )
                })?;
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Field(field));
            rest = &tail[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(ArgTemplate {
            source: text.to_string(),
            pieces,
        })
    }

    /// The element as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True if the element uses `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.pieces.contains(&Piece::Field(field))
    }

    /// The argument for one frame; `value` gives each field's text.
    pub fn render(&self, value: &dyn Fn(Field) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field(field) => out.push_str(&value(*field)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(field: Field) -> String {
        match field {
            Field::Device => "door cam; rm -rf /".to_string(),
            Field::Seq => "42".to_string(),
            other => format!("<{other:?}>"),
        }
    }

    #[test]
    fn placeholders_fill_one_argument_each_and_braces_escape() {
        let arg = ArgTemplate::parse("--dev={device}#{seq} {{x}}").unwrap();
        assert_eq!(arg.render(&fill), "--dev=door cam; rm -rf /#42 {x}");
        assert!(arg.uses(Field::Device) && !arg.uses(Field::Path));
        assert_eq!(ArgTemplate::parse("plain").unwrap().render(&fill), "plain");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(ArgTemplate::parse("{nope}").unwrap_err().contains("{path}"));
        assert!(ArgTemplate::parse("{device")
            .unwrap_err()
            .contains("unclosed"));
        assert!(ArgTemplate::parse("a}b").unwrap_err().contains("lone"));
    }
}
