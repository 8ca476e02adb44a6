//! File sink path templates: parsing `path = "..."` once at config time, rendering it per frame.
//!
//! Syntax (a template is literal text with placeholders in braces):
//!
//! | placeholder  | value                                                            |
//! |--------------|------------------------------------------------------------------|
//! | `{listener}` | the listener's name                                              |
//! | `{device}`   | the device's `[devices]` name, else its peer IP address          |
//! | `{seq}`      | the per-device sequence number, `{seq:08}` zero-pads to width 8 (1–20) |
//! | `{ext}`      | `jpg`, `png`, `gif`, `bmp`, `webp`, `tiff`, else `bin`           |
//! | `{format}`   | `jpeg`, `png`, …, else `unknown`                                 |
//! | `{size}`     | the payload size in bytes                                        |
//! | `{width}`, `{height}` | pixels, from the image header (after a sink's `convert`/`resize`); `0` when unknown |
//! | `{date}`     | the frame's date, `YYYY-MM-DD`                                   |
//! | `{time}`     | the frame's time, `HHMMSS.mmm`                                   |
//! | `{%...}`     | strftime (chrono) of the frame's time, e.g. `{%Y/%m/%d}`        |
//!
//! `{{` and `}}` are literal braces. The frame's time is [`Frame::stamp`] (the capture time a
//! native device stated, else the receive time) in the sink's [`TimeZone`].
//!
//! The *root* is the template's literal text before the first placeholder, cut at its last `/`
//! (`./frames/{device}/{seq}.{ext}` → `./frames`; no `/` there → `.`). Every rendered path lies
//! below it: values that come from the frame are sanitised (see [`sanitize`]) and the rendered
//! part below the root is checked once more before anything is written.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Local, Utc};
use serde::Deserialize;

use crate::frame::Frame;

/// Which clock `{date}`, `{time}` and strftime placeholders use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeZone {
    /// Coordinated universal time.
    #[default]
    Utc,
    /// The gateway's local time zone.
    Local,
}

/// Longest value (in bytes) a frame can put into one placeholder; keeps file names well below
/// the usual 255-byte limit even with a few placeholders in one name.
pub const MAX_VALUE_BYTES: usize = 100;

/// Widest `{seq:0N}`: a u64 has at most 20 digits, wider padding is surely a typo.
const MAX_SEQ_WIDTH: usize = 20;

/// What the operator can write between braces, for error messages.
const KNOWN: &str =
    "{listener} {device} {seq} {seq:0N} {ext} {format} {size} {width} {height} {date} {time} {%strftime}";

/// One parsed part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Listener,
    Device,
    Seq {
        width: usize,
    },
    Ext,
    Format,
    Size,
    Width,
    Height,
    Date,
    Time,
    /// A strftime pattern, already checked to hold no invalid specifier.
    Strftime(String),
}

/// A parsed `path` template.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTemplate {
    /// The template as the operator wrote it, for messages.
    source: String,
    /// The fixed directory: never rendered, so no frame can change it.
    root: PathBuf,
    /// Everything below the root, rendered per frame.
    rest: Vec<Piece>,
}

impl PathTemplate {
    /// Parses a template; the error names the bad placeholder.
    ///
    /// Rejected: an empty template, a template ending in `/`, an unclosed `{`, a lone `}`, an
    /// unknown placeholder, `{seq:...}` other than `{seq:0N}`, an invalid strftime specifier, and
    /// a template whose fixed text alone leaves the root (a `.` or `..` component after the first
    /// placeholder). A template that lets frames share a file name is accepted; see
    /// [`PathTemplate::collision_warning`].
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        if template.is_empty() {
            return Err(
                "empty path template; write e.g. \"/var/lib/framegate/frames/{device}/{seq}.{ext}\""
                    .to_string(),
            );
        }
        if template.ends_with('/') {
            return Err(format!(
                "path template {template:?} ends in `/`, so it names a directory, not a file; \
                 add a file name such as {{seq}}.{{ext}}"
            ));
        }
        let pieces = tokenize(template)?;
        let (root, rest) = split_root(pieces);
        let parsed = PathTemplate {
            source: template.to_string(),
            root,
            rest,
        };
        // Render once now so that templates whose fixed text is unusable (`{device}/../x`,
        // `{%Y/}`) fail at `framegate check` rather than on every frame.
        parsed
            .render(&sample_frame(), TimeZone::Utc)
            .map_err(|why| format!("path template {template:?} is unusable: {why}"))?;
        Ok(parsed)
    }

    /// The fixed directory no rendered path can leave.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The template as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Why different frames may render to the same file name, if they can; worth a warning.
    ///
    /// Such frames are not lost (the file sink appends `~1`, `~2`, …), but the names stop
    /// telling frames apart and the number of alternatives is bounded.
    pub fn collision_warning(&self) -> Option<String> {
        let has = |p: fn(&Piece) -> bool| self.rest.iter().any(p);
        if !has(|p| matches!(p, Piece::Seq { .. })) {
            return Some(format!(
                "path template {:?} has no {{seq}}: frames that render the same name are stored \
                 as name~1, name~2, …; add {{seq}} to give each frame its own name",
                self.source
            ));
        }
        if !has(|p| matches!(p, Piece::Device)) {
            return Some(format!(
                "path template {:?} has {{seq}} but no {{device}}: sequence numbers count per \
                 device, so frames of different devices can share a name and get ~1, ~2, … \
                 suffixes; add {{device}}",
                self.source
            ));
        }
        None
    }

    /// The path for one frame.
    ///
    /// Errors when the result would not be a file below [`PathTemplate::root`]; nothing may be
    /// written then.
    pub fn render(&self, frame: &Frame, zone: TimeZone) -> Result<PathBuf, String> {
        let relative = match zone {
            TimeZone::Utc => self.render_relative(frame, &DateTime::<Utc>::from(frame.stamp())),
            TimeZone::Local => self.render_relative(frame, &DateTime::<Local>::from(frame.stamp())),
        }?;
        self.below_root(&relative)
    }

    /// Renders the part below the root as text, `/` still in it.
    fn render_relative<Tz>(&self, frame: &Frame, when: &DateTime<Tz>) -> Result<String, String>
    where
        Tz: chrono::TimeZone,
        Tz::Offset: fmt::Display,
    {
        let mut out = String::new();
        // Read from the image header once, and only if the template asks for it.
        let mut dimensions = None;
        for piece in &self.rest {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Listener => out.push_str(&sanitize(&frame.listener)),
                Piece::Device => out.push_str(&sanitize(&frame.device)),
                Piece::Seq { width } => {
                    let _ = write!(out, "{:0width$}", frame.seq, width = *width);
                }
                Piece::Ext => out.push_str(&sanitize(frame.extension())),
                Piece::Format => out.push_str(&sanitize(&frame.format_name())),
                Piece::Size => {
                    let _ = write!(out, "{}", frame.size());
                }
                Piece::Width | Piece::Height => {
                    let (w, h) =
                        *dimensions.get_or_insert_with(|| frame.dimensions().unwrap_or((0, 0)));
                    let _ = write!(out, "{}", if *piece == Piece::Width { w } else { h });
                }
                Piece::Date => strftime(&mut out, when, "%Y-%m-%d")?,
                Piece::Time => strftime(&mut out, when, "%H%M%S%.3f")?,
                // Operator-written, so `/` in its output is wanted (`{%Y/%m/%d}`); the
                // component check in `below_root` still guards against `.` and `..`.
                Piece::Strftime(pattern) => strftime(&mut out, when, pattern)?,
            }
        }
        Ok(out)
    }

    /// Joins the rendered text below the root, one component at a time, refusing any
    /// component that could climb out of it or would leave no file name.
    fn below_root(&self, relative: &str) -> Result<PathBuf, String> {
        if relative.is_empty() || relative.ends_with('/') {
            return Err(format!(
                "rendered path {relative:?} below {} names no file",
                self.root.display()
            ));
        }
        if relative.starts_with('/') {
            return Err(format!(
                "rendered path {relative:?} is absolute and would leave {}",
                self.root.display()
            ));
        }
        let mut path = self.root.clone();
        // Pushing `/`-free segments one by one means no segment can replace the root, which
        // `PathBuf::push` would do for an absolute one.
        for segment in relative.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(format!(
                    "rendered path {relative:?} has a {segment:?} component and could leave {}",
                    self.root.display()
                ));
            }
            path.push(segment);
        }
        if !path.starts_with(&self.root) {
            return Err(format!(
                "rendered path {} is not below {}",
                path.display(),
                self.root.display()
            ));
        }
        Ok(path)
    }
}

/// Makes a frame-supplied value safe to use inside one path component.
///
/// `/`, `\`, NUL and other control characters become `_`; the value is cut to
/// [`MAX_VALUE_BYTES`] on a char boundary; an empty value becomes `_` and one made only of dots
/// (`.`, `..`, …) becomes as many underscores, so it can never name the current or parent
/// directory.
pub fn sanitize(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE_BYTES));
    for c in value.chars() {
        let c = if c == '/' || c == '\\' || c.is_control() {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_VALUE_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        return "_".to_string();
    }
    if out.bytes().all(|b| b == b'.') {
        return "_".repeat(out.len());
    }
    out
}

/// Splits the template into literal text and placeholders.
fn tokenize(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(format!(
                    "lone `}}` at byte {at} of path template {template:?}; write `}}}}` for a literal brace"
                ));
            }
            '{' => {
                let body_start = at + 1;
                let Some(len) = template[body_start..].find('}') else {
                    return Err(format!(
                        "unclosed `{{` at byte {at} of path template {template:?}; close the \
                         placeholder with `}}` or write `{{{{` for a literal brace"
                    ));
                };
                let body = &template[body_start..body_start + len];
                if body.contains('{') {
                    return Err(format!(
                        "unclosed `{{` at byte {at} of path template {template:?} (another `{{` \
                         follows before `}}`); write `{{{{` for a literal brace"
                    ));
                }
                // Skip the body and its `}`; the body holds no `{`, so nothing is missed.
                while chars.next_if(|&(i, _)| i <= body_start + len).is_some() {}
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(placeholder(body)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// Parses the text between `{` and `}`.
fn placeholder(body: &str) -> Result<Piece, String> {
    Ok(match body {
        "listener" => Piece::Listener,
        "device" => Piece::Device,
        "seq" => Piece::Seq { width: 0 },
        "ext" => Piece::Ext,
        "format" => Piece::Format,
        "size" => Piece::Size,
        "width" => Piece::Width,
        "height" => Piece::Height,
        "date" => Piece::Date,
        "time" => Piece::Time,
        _ if body.starts_with('%') => {
            check_strftime(body)?;
            Piece::Strftime(body.to_string())
        }
        _ => {
            if let Some(spec) = body.strip_prefix("seq:") {
                return seq_width(spec).map(|width| Piece::Seq { width });
            }
            return Err(format!("unknown placeholder {{{body}}}; known: {KNOWN}"));
        }
    })
}

/// Parses the `0N` of `{seq:0N}`.
fn seq_width(spec: &str) -> Result<usize, String> {
    let width = spec
        .strip_prefix('0')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<usize>().ok())
        .filter(|w| (1..=MAX_SEQ_WIDTH).contains(w));
    width.ok_or_else(|| {
        format!(
            "bad placeholder {{seq:{spec}}}: write {{seq:0N}} with a width N from 1 to \
             {MAX_SEQ_WIDTH}, e.g. {{seq:08}}"
        )
    })
}

/// Rejects strftime patterns chrono cannot format, so the error shows up at config time.
fn check_strftime(pattern: &str) -> Result<(), String> {
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "invalid strftime pattern in placeholder {{{pattern}}}: it has an unknown or \
             incomplete %-specifier (see https://docs.rs/chrono/latest/chrono/format/strftime/; \
             write %% for a literal %)"
        ));
    }
    Ok(())
}

/// Appends `when` formatted by `pattern`; chrono reports (rather than panics on) a pattern it
/// cannot format when written through `write!`.
fn strftime<Tz>(out: &mut String, when: &DateTime<Tz>, pattern: &str) -> Result<(), String>
where
    Tz: chrono::TimeZone,
    Tz::Offset: fmt::Display,
{
    write!(
        out,
        "{}",
        when.format_with_items(StrftimeItems::new(pattern))
    )
    .map_err(|_| format!("cannot format the receive time with {pattern:?}"))
}

/// Moves the literal text before the first placeholder, up to its last `/`, into the root.
fn split_root(mut pieces: Vec<Piece>) -> (PathBuf, Vec<Piece>) {
    let Some(Piece::Literal(head)) = pieces.first() else {
        return (PathBuf::from("."), pieces);
    };
    let Some(slash) = head.rfind('/') else {
        return (PathBuf::from("."), pieces);
    };
    let root = if slash == 0 { "/" } else { &head[..slash] };
    let root = PathBuf::from(root);
    let tail = head[slash + 1..].to_string();
    if tail.is_empty() {
        pieces.remove(0);
    } else {
        pieces[0] = Piece::Literal(tail);
    }
    (root, pieces)
}

/// A frame with plain values, rendered once at parse time to catch unusable fixed text.
fn sample_frame() -> Frame {
    Frame {
        listener: Arc::from("listener"),
        device: Arc::from("device"),
        peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        seq: 1,
        received_at: SystemTime::UNIX_EPOCH,
        format: None,
        payload: Vec::new(),
        native: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageFormat;
    use std::time::Duration;

    /// 2023-11-14T22:13:20.123Z
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_000_000)
    }

    fn frame(device: &str) -> Frame {
        Frame {
            listener: Arc::from("lst"),
            device: Arc::from(device),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
            seq: 42,
            received_at: at(),
            format: Some(ImageFormat::Jpeg),
            payload: vec![0; 1234],
            native: None,
        }
    }

    fn render(template: &str, device: &str) -> PathBuf {
        PathTemplate::parse(template)
            .unwrap()
            .render(&frame(device), TimeZone::Utc)
            .unwrap()
    }

    #[test]
    fn renders_each_placeholder() {
        let cases = [
            ("/r/{listener}", "/r/lst"),
            ("/r/{device}", "/r/cam"),
            ("/r/{seq}", "/r/42"),
            ("/r/{seq:08}", "/r/00000042"),
            ("/r/{seq:01}", "/r/42"),
            ("/r/{ext}", "/r/jpg"),
            ("/r/{format}", "/r/jpeg"),
            ("/r/{size}", "/r/1234"),
            ("/r/{date}", "/r/2023-11-14"),
            ("/r/{time}", "/r/221320.123"),
            ("/r/{%Y%m%d-%H}", "/r/20231114-22"),
            ("/r/{{x}}-{seq}", "/r/{x}-42"),
            ("/r/a{{b/{seq}}}", "/r/a{b/42}"),
            (
                "/r/{device}/{date}/{time}-{seq}.{ext}",
                "/r/cam/2023-11-14/221320.123-42.jpg",
            ),
        ];
        for (template, want) in cases {
            assert_eq!(render(template, "cam"), Path::new(want), "{template}");
        }
    }

    #[test]
    fn unknown_format_renders_bin_and_unknown() {
        let mut f = frame("cam");
        f.format = None;
        let t = PathTemplate::parse("/r/{format}.{ext}").unwrap();
        assert_eq!(
            t.render(&f, TimeZone::Utc).unwrap(),
            Path::new("/r/unknown.bin")
        );
    }

    #[test]
    fn strftime_may_make_directories() {
        assert_eq!(
            render("/r/{%Y/%m/%d}/{seq}.{ext}", "cam"),
            Path::new("/r/2023/11/14/42.jpg")
        );
    }

    #[test]
    fn local_time_zone_uses_the_local_clock() {
        let t = PathTemplate::parse("/r/{date}/{time}/{%H}").unwrap();
        let local = DateTime::<Local>::from(at());
        let want = format!(
            "/r/{}/{}/{}",
            local.format("%Y-%m-%d"),
            local.format("%H%M%S%.3f"),
            local.format("%H")
        );
        assert_eq!(
            t.render(&frame("cam"), TimeZone::Local).unwrap(),
            PathBuf::from(want)
        );
    }

    #[test]
    fn root_is_the_fixed_directory() {
        let root = |t: &str| PathTemplate::parse(t).unwrap().root().to_path_buf();
        assert_eq!(root("./frames/{device}/{seq}.{ext}"), Path::new("./frames"));
        assert_eq!(root("/var/fg/cam-{device}/{seq}"), Path::new("/var/fg"));
        assert_eq!(root("/{device}"), Path::new("/"));
        assert_eq!(root("{device}.{ext}"), Path::new("."));
        assert_eq!(root("frames{seq}"), Path::new("."));
        assert_eq!(root("/a/{{b}}/{seq}"), Path::new("/a/{b}"));
        assert_eq!(root("/a/b/fixed.jpg"), Path::new("/a/b"));
        assert_eq!(
            render("./frames/{device}/{seq}.{ext}", "cam"),
            Path::new("./frames/cam/42.jpg")
        );
        assert_eq!(render("{device}.{ext}", "cam"), Path::new("./cam.jpg"));
    }

    #[test]
    fn hostile_device_names_stay_inside_root() {
        let template = PathTemplate::parse("/r/x/{device}/{seq}.{ext}").unwrap();
        for device in [
            "../../etc",
            "..",
            ".",
            "...",
            "a/b",
            "x\0y",
            "\n",
            "",
            "\\..\\..",
            "/abs",
        ] {
            let path = template.render(&frame(device), TimeZone::Utc).unwrap();
            assert!(path.starts_with("/r/x"), "{device:?} -> {path:?}");
            let below: Vec<_> = path.strip_prefix("/r/x").unwrap().components().collect();
            assert_eq!(below.len(), 2, "{device:?} -> {path:?}");
            assert!(
                below
                    .iter()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{device:?} -> {path:?}"
            );
        }
        let name = |d: &str| render("/r/{device}", d);
        assert_eq!(name("../../etc"), Path::new("/r/.._.._etc"));
        assert_eq!(name(".."), Path::new("/r/__"));
        assert_eq!(name("a/b"), Path::new("/r/a_b"));
        assert_eq!(name("x\0y"), Path::new("/r/x_y"));
        assert_eq!(name("\n"), Path::new("/r/_"));
        assert_eq!(name(""), Path::new("/r/_"));
    }

    #[test]
    fn hostile_listener_names_are_sanitised_too() {
        let mut f = frame("cam");
        f.listener = Arc::from("../..");
        let t = PathTemplate::parse("/r/{listener}/{seq}").unwrap();
        assert_eq!(
            t.render(&f, TimeZone::Utc).unwrap(),
            Path::new("/r/.._../42")
        );
    }

    #[test]
    fn sanitize_limits_length_on_a_char_boundary() {
        assert_eq!(sanitize(&"a".repeat(300)).len(), MAX_VALUE_BYTES);
        // 'é' is two bytes; 99 + 2 would exceed the limit, so it is dropped whole.
        let s = sanitize(&format!("{}é", "a".repeat(99)));
        assert_eq!(s, "a".repeat(99));
        assert_eq!(sanitize("\u{7f}\u{85}ok"), "__ok");
        assert_eq!(sanitize(".hidden"), ".hidden");
        assert_eq!(sanitize("...."), "____");
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = |t: &str| PathTemplate::parse(t).unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("/r/{device}/").contains("ends in `/`"));
        assert!(err("/r/{devce}.jpg").contains("unknown placeholder {devce}"));
        assert!(err("/r/{}.jpg").contains("unknown placeholder {}"));
        assert!(err("/r/{device.jpg").contains("unclosed `{`"));
        assert!(err("/r/{dev{ice}.jpg").contains("unclosed `{`"));
        assert!(err("/r/dev}.jpg").contains("lone `}`"));
        assert!(err("/r/{seq:8}").contains("{seq:0N}"));
        assert!(err("/r/{seq:0}").contains("{seq:0N}"));
        assert!(err("/r/{seq:021}").contains("{seq:0N}"));
        assert!(err("/r/{seq:0x}").contains("{seq:0N}"));
        assert!(err("/r/{%Q}").contains("invalid strftime pattern in placeholder {%Q}"));
        assert!(err("/r/{%}").contains("invalid strftime"));
        assert!(err("/r/{%Y-%}").contains("invalid strftime"));
        assert!(err("/r/{device}/../{seq}").contains("\"..\" component"));
        assert!(err("/r/{device}/./{seq}").contains("\".\" component"));
        assert!(err("/r/{%Y/}").contains("names no file"));
    }

    #[test]
    fn collision_warning_when_names_can_repeat() {
        let warn = |t: &str| PathTemplate::parse(t).unwrap().collision_warning();
        assert!(warn("/r/{device}/{time}.{ext}")
            .unwrap()
            .contains("no {seq}"));
        assert!(warn("/r/fixed.jpg").unwrap().contains("no {seq}"));
        assert!(warn("/r/{seq}.{ext}").unwrap().contains("no {device}"));
        assert_eq!(warn("/r/{device}/{seq:06}.{ext}"), None);
    }
}
