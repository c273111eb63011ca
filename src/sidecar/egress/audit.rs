//! The audit log: one JSON line per decision, never a secret value.
//!
//! Fields: `time`, `host`, `method`, `path` (query dropped; replaced when the scanner fired on
//! the URL), `verdict` (`allow`/`deny`), `layer`, `rule`, `status`, and the injected
//! credential's env slot name when one was injected.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::json;

use super::EgressError;

/// One decision.
#[derive(Debug, Clone, Default)]
pub struct Decision<'a> {
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub allowed: bool,
    pub layer: &'a str,
    pub rule: &'a str,
    pub status: u16,
    /// `token_env` of the credential injected, if any (the name, never the value).
    pub injected: Option<&'a str>,
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
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut v = json!({
            "time": time,
            "host": bounded(d.host, 255),
            "method": d.method,
            "path": d.path,
            "verdict": if d.allowed { "allow" } else { "deny" },
            "layer": d.layer,
            "rule": d.rule,
            "status": d.status,
        });
        if let (Some(slot), Some(obj)) = (d.injected, v.as_object_mut()) {
            obj.insert("injected".into(), json!(slot));
        }
        let mut s = v.to_string();
        s.push('\n');
        s
    }

    pub fn record(&self, d: &Decision<'_>) {
        let line = Audit::line(d);
        let result = match &self.sink {
            Sink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(line.as_bytes()),
                Err(_) => Ok(()),
            },
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
        };
        if let Err(e) = result {
            tracing::warn!("cannot write the audit log: {e}");
        }
    }
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
pub fn log_path(path_and_query: &str) -> &str {
    bounded(path_and_query.split('?').next().unwrap_or(""), 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_one_json_object_with_the_decision() {
        let line = Audit::line(&Decision {
            host: "api.test",
            method: "GET",
            path: "/v1",
            allowed: false,
            layer: "allowlist",
            rule: "host-not-in-routes",
            status: 403,
            injected: None,
        });
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["verdict"], "deny");
        assert_eq!(v["host"], "api.test");
        assert_eq!(v["status"], 403);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn log_path_drops_query() {
        assert_eq!(log_path("/a/b?token=xyz"), "/a/b");
        assert_eq!(log_path("/"), "/");
    }
}
