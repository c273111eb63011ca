//! The audit log: one JSON line per decision, never a secret value.
//!
//! Fields: `time`, `host`, `method`, `path` (query dropped; replaced when the scanner fired on
//! the URL), `verdict` (`allow`/`deny`), `layer`, `rule`, `status`, and the injected
//! credential's env slot name when one was injected.
//!
//! [`Decision`] is the one type of this format: egress and the git-gate write it
//! ([`Audit::record`], one hand-rolled JSON line without an intermediate value), supervise and
//! the host read it back (`Decision::parse`), and a test holds the two directions together.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use super::EgressError;

/// One decision: one audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Decision<'a> {
    /// When it was written (RFC 3339, milliseconds). Writers leave it `None`: `record` stamps
    /// the current time.
    #[serde(default, borrow)]
    pub time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub host: Cow<'a, str>,
    #[serde(default, borrow)]
    pub method: Cow<'a, str>,
    #[serde(default, borrow)]
    pub path: Cow<'a, str>,
    /// Written as `"verdict": "allow" | "deny"`.
    #[serde(rename = "verdict", deserialize_with = "verdict")]
    pub allowed: bool,
    #[serde(default, borrow)]
    pub layer: Cow<'a, str>,
    #[serde(default, borrow)]
    pub rule: Cow<'a, str>,
    #[serde(default)]
    pub status: u16,
    /// `token_env` of the credential injected, if any (the name, never the value).
    #[serde(default, borrow)]
    pub injected: Option<Cow<'a, str>>,
}

fn verdict<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match <Cow<'de, str> as serde::Deserialize>::deserialize(d)?.as_ref() {
        "allow" => Ok(true),
        "deny" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "verdict `{other}` is neither allow nor deny"
        ))),
    }
}

impl<'a> Decision<'a> {
    /// One audit line read back; `None` for anything that is not one.
    pub(crate) fn parse(line: &'a str) -> Option<Decision<'a>> {
        serde_json::from_str(line).ok()
    }
}

enum Sink {
    File(Mutex<File>),
    Stderr,
}

/// Where audit lines go.
pub struct Audit {
    sink: Sink,
}

impl Audit {
    /// Append to `path`, or write to stderr when `None`.
    pub fn open(path: Option<&Path>) -> Result<Self, EgressError> {
        let sink = match path {
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| EgressError::Audit {
                        path: p.to_path_buf(),
                        source,
                    })?;
                Sink::File(Mutex::new(f))
            }
            None => Sink::Stderr,
        };
        Ok(Audit { sink })
    }

    /// Render one line (exposed for tests).
    pub fn line(d: &Decision<'_>) -> String {
        let mut buf = Vec::with_capacity(256);
        write_line(&mut buf, d);
        // Only JSON text (valid UTF-8 by construction) was written.
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Write the decision before returning: one `write` per line, so a line handed to the
    /// kernel survives a crash of this process. Lines are not batched across decisions:
    /// batching would save a syscall per request but lose the queued lines on a crash.
    pub fn record(&self, d: &Decision<'_>) {
        let mut buf = Vec::with_capacity(256);
        write_line(&mut buf, d);
        let result = match &self.sink {
            Sink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(&buf),
                Err(_) => Ok(()),
            },
            Sink::Stderr => std::io::stderr().lock().write_all(&buf),
        };
        if let Err(e) = result {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }
}

/// Append one JSON object and a newline to `buf`, straight from the fields (no intermediate
/// map: this runs once per request).
fn write_line(buf: &mut Vec<u8>, d: &Decision<'_>) {
    use std::fmt::Write as _;
    struct Bytes<'b>(&'b mut Vec<u8>);
    impl std::fmt::Write for Bytes<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    let text = |buf: &mut Vec<u8>, key: &str, value: &str| {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(b"\":");
        // Escaping a `str` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    };
    buf.extend_from_slice(b"{\"time\":");
    match &d.time {
        Some(t) => {
            let _ = serde_json::to_writer(&mut *buf, t.as_ref());
        }
        None => {
            buf.push(b'"');
            let _ = write!(
                Bytes(buf),
                "{}",
                humantime::format_rfc3339_millis(SystemTime::now())
            );
            buf.push(b'"');
        }
    }
    text(buf, "host", bounded(&d.host, 255));
    text(buf, "method", &d.method);
    text(buf, "path", &d.path);
    text(buf, "verdict", if d.allowed { "allow" } else { "deny" });
    text(buf, "layer", &d.layer);
    text(buf, "rule", &d.rule);
    let _ = write!(Bytes(buf), ",\"status\":{}", d.status);
    if let Some(slot) = &d.injected {
        text(buf, "injected", slot);
    }
    buf.extend_from_slice(b"}\n");
}

/// At most `max` bytes of agent-supplied text (cut on a character boundary).
fn bounded(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The path part of a request target for the log: no query, bounded length.
pub(crate) fn log_path(path_and_query: &str) -> &str {
    bounded(path_and_query.split('?').next().unwrap_or(""), 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_one_json_object_with_the_decision() {
        let line = Audit::line(&Decision {
            host: "api.test".into(),
            method: "GET".into(),
            path: "/v1".into(),
            allowed: false,
            layer: "allowlist".into(),
            rule: "host-not-in-routes".into(),
            status: 403,
            ..Decision::default()
        });
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["verdict"], "deny");
        assert_eq!(v["host"], "api.test");
        assert_eq!(v["status"], 403);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn agent_text_is_escaped_and_injected_slot_named() {
        let d = Decision {
            host: "a\"b\\c\n".into(),
            method: "POST".into(),
            path: "/x\u{1}y\u{e9}".into(),
            allowed: true,
            layer: "egress".into(),
            rule: "route-auth".into(),
            status: 200,
            injected: Some("TOKEN_ENV".into()),
            time: None,
        };
        let line = Audit::line(&d);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["host"], "a\"b\\c\n");
        assert_eq!(v["path"], "/x\u{1}y\u{e9}");
        assert_eq!(v["verdict"], "allow");
        assert_eq!(v["injected"], "TOKEN_ENV");
        assert_eq!(v.as_object().map(|o| o.len()), Some(9));
        // Read back, it is the same decision with the time it was stamped with.
        let back = Decision::parse(line.trim_end()).unwrap();
        assert!(back.time.as_deref().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            Decision {
                time: None,
                ..back.clone()
            },
            d
        );
        assert_eq!(Decision::parse(&Audit::line(&back.clone())), Some(back));
        assert_eq!(Decision::parse("not json"), None);
        assert_eq!(Decision::parse(r#"{"verdict":"maybe"}"#), None);
    }

    #[test]
    fn log_path_drops_query() {
        assert_eq!(log_path("/a/b?token=xyz"), "/a/b");
        assert_eq!(log_path("/"), "/");
    }
}
