//! The one place YAML is parsed or written.
//!
//! Parsing drives `yaml-rust2`'s event parser directly (never its recursive loader) so that
//! nesting depth, node count and input size stay bounded, and so that anchors, aliases,
//! tags, non-string keys and duplicate keys are refused with a line and column. Plain
//! scalars are typed by the YAML 1.2 core schema: `yes` stays a string, `true` is a bool.
//! See `docs/decisions/0002-yaml.md`.

use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest YAML text accepted (bytes).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences accepted.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most nodes (scalars, mappings, sequences) in one document.
pub const MAX_NODES: usize = 100_000;

/// Why a YAML text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlErrorKind {
    #[error("{0}")]
    Syntax(String),
    #[error("anchors (`&name`) are not supported; repeat the value instead")]
    Anchor,
    #[error("aliases (`*name`) are not supported; repeat the value instead")]
    Alias,
    #[error("tags (`!tag`) are not supported; remove the tag and quote strings if needed")]
    Tag,
    #[error("duplicate key `{0}`; each key may appear once")]
    DuplicateKey(String),
    #[error("mapping keys must be strings; quote the key if it is meant as text")]
    NonStringKey,
    #[error("nesting deeper than {MAX_DEPTH} levels; flatten the document")]
    TooDeep,
    #[error("more than {MAX_NODES} values; the document is too large")]
    TooManyNodes,
    #[error("input is {0} bytes, over the {MAX_INPUT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("number `{0}` cannot be represented; quote it if it is meant as text")]
    BadNumber(String),
    #[error(
        "`{open}` opened here is never closed; add the matching `{close}` (or quote the value if the bracket is text)",
        open = .0,
        close = closing(*.0)
    )]
    Unclosed(char),
    #[error("only one YAML document is allowed")]
    MultipleDocuments,
    #[error("the YAML parser failed on this input; check the syntax")]
    Internal,
}

/// A refused YAML text, with where the problem was found (1-based; 0 when not known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    pub kind: YamlErrorKind,
    pub line: usize,
    pub(crate) column: usize,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = one_line(&self.kind.to_string());
        if self.line == 0 {
            write!(f, "{msg}")
        } else {
            write!(f, "line {}, column {}: {msg}", self.line, self.column)
        }
    }
}

impl YamlError {
    fn at(kind: YamlErrorKind, mark: Marker) -> YamlError {
        YamlError {
            kind,
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// Shortens user text quoted in an error so a hostile file cannot produce a huge message.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Replaces control characters so any text fits on one line.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses one YAML document into a JSON value (an empty document is `null`).
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            kind: YamlErrorKind::TooLarge(text.len()),
            line: 0,
            column: 0,
        });
    }
    // The event parser is not expected to panic, but no input may crash the caller.
    let text = text.to_owned();
    match std::panic::catch_unwind(move || Builder::default().run(&text)) {
        Ok(r) => r,
        Err(_) => Err(YamlError {
            kind: YamlErrorKind::Internal,
            line: 0,
            column: 0,
        }),
    }
}

enum Frame {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    nodes: usize,
    documents: usize,
}

impl Builder {
    fn run(mut self, text: &str) -> Result<Value, YamlError> {
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, mark) = parser.next_token().map_err(|e| {
                // The scanner bounds flow nesting itself; report it like our own bound.
                if e.info().contains("recursion limit") {
                    return YamlError::at(YamlErrorKind::TooDeep, *e.marker());
                }
                let err = YamlError::at(YamlErrorKind::Syntax(e.info().to_owned()), *e.marker());
                // The scanner notices an unclosed `[`/`{` only lines later, where its message
                // (often "invalid indentation") points away from the cause.
                match unclosed_flow_open(text) {
                    Some((line, column, open)) if line <= err.line => YamlError {
                        kind: YamlErrorKind::Unclosed(open),
                        line,
                        column,
                    },
                    _ => err,
                }
            })?;
            match event {
                Event::StreamEnd => break,
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(YamlError::at(YamlErrorKind::MultipleDocuments, mark));
                    }
                }
                Event::Alias(_) => return Err(YamlError::at(YamlErrorKind::Alias, mark)),
                Event::Scalar(value, style, anchor, tag) => {
                    self.check_node(anchor, tag.is_some(), mark)?;
                    let expecting_key = self.expecting_key();
                    let v = if style == TScalarStyle::Plain {
                        resolve_plain(&value, mark)?
                    } else {
                        Value::String(value)
                    };
                    if expecting_key && !v.is_string() {
                        return Err(YamlError::at(YamlErrorKind::NonStringKey, mark));
                    }
                    self.push(v, mark)?;
                }
                Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    self.check_node(anchor, tag.is_some(), mark)?;
                    if self.expecting_key() {
                        return Err(YamlError::at(YamlErrorKind::NonStringKey, mark));
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(YamlError::at(YamlErrorKind::TooDeep, mark));
                    }
                    self.stack.push(if is_map {
                        Frame::Map {
                            map: Map::new(),
                            key: None,
                        }
                    } else {
                        Frame::Seq(Vec::new())
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let v = match self.stack.pop() {
                        Some(Frame::Seq(items)) => Value::Array(items),
                        Some(Frame::Map { map, .. }) => Value::Object(map),
                        None => return Err(YamlError::at(YamlErrorKind::Internal, mark)),
                    };
                    self.push(v, mark)?;
                }
            }
        }
        Ok(self.root.unwrap_or(Value::Null))
    }

    fn check_node(&mut self, anchor: usize, tagged: bool, mark: Marker) -> Result<(), YamlError> {
        if anchor != 0 {
            return Err(YamlError::at(YamlErrorKind::Anchor, mark));
        }
        if tagged {
            return Err(YamlError::at(YamlErrorKind::Tag, mark));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(YamlError::at(YamlErrorKind::TooManyNodes, mark));
        }
        Ok(())
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn push(&mut self, v: Value, mark: Marker) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq(items)) => items.push(v),
            Some(Frame::Map { map, key }) => match key.take() {
                Some(k) => {
                    map.insert(k, v);
                }
                None => {
                    let Value::String(k) = v else {
                        return Err(YamlError::at(YamlErrorKind::NonStringKey, mark));
                    };
                    if map.contains_key(&k) {
                        return Err(YamlError::at(
                            YamlErrorKind::DuplicateKey(clip(&k, 80)),
                            mark,
                        ));
                    }
                    *key = Some(k);
                }
            },
        }
        Ok(())
    }
}

fn closing(open: char) -> char {
    if open == '{' { '}' } else { ']' }
}

/// Where the innermost flow collection (`[` or `{`) that is never closed opens (1-based line
/// and column), by a light scan that knows quotes and comments. Only used to explain a syntax
/// error: a bracket inside a plain block scalar (`a: x[1]`) does not open a collection.
fn unclosed_flow_open(text: &str) -> Option<(usize, usize, char)> {
    let mut stack: Vec<(usize, usize, char)> = Vec::new();
    let mut quote: Option<char> = None;
    for (ln, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut token_start = true;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some('\'') => {
                    if c == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            i += 1;
                        } else {
                            quote = None;
                        }
                    }
                }
                Some(_) => {
                    if c == '\\' {
                        i += 1;
                    } else if c == '"' {
                        quote = None;
                    }
                }
                None => {
                    if token_start && c == '#' {
                        break;
                    }
                    if token_start && (c == '\'' || c == '"') {
                        quote = Some(c);
                    } else if (c == '[' || c == '{') && (token_start || !stack.is_empty()) {
                        stack.push((ln + 1, i + 1, c));
                    } else if (c == ']' || c == '}') && !stack.is_empty() {
                        stack.pop();
                    }
                    token_start = c.is_whitespace()
                        || (!stack.is_empty() && matches!(c, '[' | '{' | ','))
                        || (stack.is_empty() && (c == '[' || c == '{'));
                }
            }
            i += 1;
        }
    }
    stack.pop()
}

/// Types a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(s: &str, mark: Marker) -> Result<Value, YamlError> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let bad = || YamlError::at(YamlErrorKind::BadNumber(clip(s, 80)), mark);
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u64::from_str_radix(hex, 16)
                .map(|n| Value::Number(n.into()))
                .map_err(|_| bad());
        }
        return Ok(Value::String(s.to_owned()));
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u64::from_str_radix(oct, 8)
                .map(|n| Value::Number(n.into()))
                .map_err(|_| bad());
        }
        return Ok(Value::String(s.to_owned()));
    }
    if is_core_int(s) {
        if let Ok(n) = s.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return Err(bad());
    }
    if is_core_float(s) {
        let lower = s.to_ascii_lowercase();
        if lower.ends_with(".inf") || lower == ".nan" {
            return Err(bad());
        }
        return s
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(bad);
    }
    Ok(Value::String(s.to_owned()))
}

fn is_core_int(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_core_float(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(body, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    // [0-9]* ( \. [0-9]* )? ( [eE] [-+]? [0-9]+ )?  with at least one digit before the exponent
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !frac.is_none_or(all_digits) {
        return false;
    }
    if int_part.is_empty() && frac.is_none_or(str::is_empty) {
        return false;
    }
    match exp {
        None => frac.is_some(),
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    }
}

/// Renders a value as block-style YAML, quoting every string a YAML 1.1 or 1.2 reader
/// could take for something else.
pub fn to_yaml_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn write_map(out: &mut String, m: &Map<String, Value>, level: usize) {
    for (k, v) in m {
        indent(out, level);
        out.push_str(&quote_if_needed(k));
        out.push(':');
        write_child(out, v, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for v in items {
        indent(out, level);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First key on the dash line, the rest aligned under it.
                let mut inner = String::new();
                write_map(&mut inner, m, level + 2);
                out.push(' ');
                out.push_str(inner.get(level + 2..).unwrap_or(""));
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(out, a, level + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_child(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, level + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote_if_needed(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Words YAML 1.1 readers (still common in tooling) give a special meaning.
const YAML11_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn quote_if_needed(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'/')
        && !YAML11_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain_ok {
        s.to_owned()
    } else {
        double_quoted(s)
    }
}

/// A YAML double-quoted scalar; every character a reader might treat as a break, a BOM or
/// a non-printable is escaped.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> YamlError {
        match parse_value(text) {
            Err(e) => e,
            Ok(v) => panic!("expected an error for {text:?}, got {v}"),
        }
    }

    #[test]
    fn core_schema_typing() {
        let v = parse_value(
            "a: yes\nb: true\nc: 8080\nd: '8080'\ne: 1.5\nf: ~\ng: no\nh: 0x1F\ni: 0o17\nj: -3\nk: 1e3\nl: 2026-05-24\nm:\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "yes", "b": true, "c": 8080, "d": "8080", "e": 1.5, "f": null,
                   "g": "no", "h": 31, "i": 15, "j": -3, "k": 1000.0, "l": "2026-05-24", "m": null})
        );
    }

    #[test]
    fn block_scalars_and_flow_collections() {
        let v = parse_value("a: |\n  x\n  y\nb: [1, two]\nc: {d: e}\n").unwrap();
        assert_eq!(v, json!({"a": "x\ny\n", "b": [1, "two"], "c": {"d": "e"}}));
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse_value("").unwrap(), Value::Null);
        assert_eq!(parse_value("# only a comment\n").unwrap(), Value::Null);
    }

    #[test]
    fn refuses_anchor_and_alias_with_position() {
        let e = err("a: &x 1\nb: *x\n");
        assert_eq!(e.kind, YamlErrorKind::Anchor);
        assert_eq!(e.line, 1);
        let e = err("a: *x\n");
        assert!(matches!(
            e.kind,
            YamlErrorKind::Alias | YamlErrorKind::Syntax(_)
        ));
    }

    #[test]
    fn refuses_tags() {
        assert_eq!(err("a: !!str 1\n").kind, YamlErrorKind::Tag);
        assert_eq!(err("a: !custom {b: 1}\n").kind, YamlErrorKind::Tag);
    }

    #[test]
    fn refuses_duplicate_key_with_line() {
        let e = err("a: 1\nb: 2\na: 3\n");
        assert_eq!(e.kind, YamlErrorKind::DuplicateKey("a".into()));
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("line 3, column 1:"), "{e}");
    }

    #[test]
    fn refuses_non_string_keys() {
        assert_eq!(err("1: a\n").kind, YamlErrorKind::NonStringKey);
        assert_eq!(err("true: a\n").kind, YamlErrorKind::NonStringKey);
        assert_eq!(err("? [a]\n: b\n").kind, YamlErrorKind::NonStringKey);
        assert_eq!(parse_value("'1': a\n").unwrap(), json!({"1": "a"}));
    }

    #[test]
    fn bounds_depth() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(err(&deep).kind, YamlErrorKind::TooDeep);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_value(&ok).is_ok());
    }

    #[test]
    fn bounds_size_and_nodes() {
        let big = "a".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(err(&big).kind, YamlErrorKind::TooLarge(MAX_INPUT_BYTES + 1));
        let many = format!("[{}]", "1,".repeat(MAX_NODES + 1));
        assert_eq!(err(&many).kind, YamlErrorKind::TooManyNodes);
    }

    #[test]
    fn refuses_multiple_documents_and_bad_numbers() {
        assert_eq!(
            err("a: 1\n---\nb: 2\n").kind,
            YamlErrorKind::MultipleDocuments
        );
        assert!(matches!(err("a: .inf\n").kind, YamlErrorKind::BadNumber(_)));
        assert!(matches!(
            err("a: 99999999999999999999999\n").kind,
            YamlErrorKind::BadNumber(_)
        ));
    }

    #[test]
    fn unclosed_bracket_is_reported_where_it_opens() {
        let mut text: String = (1..=11).map(|i| format!("k{i}: v\n")).collect();
        text.push_str("list: [a, b\nnext: 1\nlast: 2\n");
        let e = err(&text);
        assert_eq!((e.line, e.column), (12, 7), "{e}");
        assert_eq!(e.kind, YamlErrorKind::Unclosed('['));
        assert!(e.to_string().contains("add the matching `]`"), "{e}");
        let e = err("a: {x: 1\nb: 2\n");
        assert_eq!(
            (e.line, e.column, e.kind),
            (1, 4, YamlErrorKind::Unclosed('{'))
        );
        // Closed, quoted or plain-scalar brackets are not blamed.
        assert_eq!(unclosed_flow_open("a: [x, \"]\", '[']\nb: x[1\n"), None);
        assert_eq!(unclosed_flow_open("a: \"[\"  # [\n"), None);
        assert_eq!(unclosed_flow_open("a:\n  - [x, [y]\n"), Some((2, 5, '[')));
    }

    #[test]
    fn syntax_error_is_one_line_with_position() {
        let e = err("a: b: c\n");
        assert!(matches!(e.kind, YamlErrorKind::Syntax(_)));
        assert!(e.line >= 1);
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn writer_round_trips_tricky_strings() {
        let v = json!({
            "services": {"a": {"ports": ["8080:80"], "environment": ["A=1"], "init": true,
                "command": ["sleep", "infinity"], "empty": {}, "none": [], "n": null}},
            "odd": ["yes", "no", "On", "", " lead", "x: y", "# c", "-", "1.5", "0x10", "~",
                    "multi\nline", "quote\"s", "tab\t", "del\u{7f}", "nel\u{85}", "ls\u{2028}", "\u{feff}bom", "back\\slash", "ünï", "null", "[a]"],
            "nested": [[1, [2]], {"k": [{"j": 1, "l": 2}]}],
            "007": 7
        });
        let text = to_yaml_string(&v);
        assert_eq!(parse_value(&text).unwrap(), v, "{text}");
        assert!(text.contains("\"8080:80\""));
        assert!(text.contains("\"yes\""));
    }

    #[test]
    fn writer_scalars_at_top_level() {
        assert_eq!(to_yaml_string(&json!("plain")), "plain\n");
        assert_eq!(to_yaml_string(&json!({})), "{}\n");
        assert_eq!(parse_value(&to_yaml_string(&json!([]))).unwrap(), json!([]));
    }
}
