//! Recent refusals, read back from the gates' audit logs.
//!
//! Egress and the git-gate write one JSON line per decision (`egress::audit::Decision`, the
//! one type of that format); the refused ones become [`RefusalEvent`]s with the bottle's
//! name, a count of identical refusals, and the same layer, rule and advice the agent got.
//! Only the tail of a log is read, so a long-lived bottle's log costs the same as a fresh one.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sidecar::egress::audit::Decision;
use crate::sidecar::egress::refuse::Layer;
use crate::sidecar::git_gate::refusal as git_refusal;

/// Bytes read from the end of the audit log.
pub(crate) const TAIL_BYTES: u64 = 256 * 1024;

/// One kind of refusal, with how often it happened in the window read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalEvent {
    /// The bottle (identity) the refusal happened in; empty when not known.
    #[serde(default)]
    pub bottle: String,
    /// Time of the latest occurrence (RFC 3339).
    pub time: String,
    pub host: String,
    pub method: String,
    pub path: String,
    pub layer: String,
    pub rule: String,
    pub status: u16,
    /// Occurrences of this host/method/path/layer/rule in the window.
    pub count: u64,
    /// The reason as the agent read it: layer, rule and what to do.
    pub reason: String,
}

impl RefusalEvent {
    /// Whether the refusal came from the git-gate (a push or fetch, not an HTTP request).
    pub(crate) fn is_git(&self) -> bool {
        self.layer == git_refusal::LAYER
    }
}

/// The in-band reason for `layer`/`rule`, as the refusal body (egress) or the `remote:` line
/// (git-gate) states it.
pub(crate) fn reason_text(layer: &str, rule: &str) -> String {
    let hint = match Layer::parse(layer) {
        Some(l) => Some(l.hint()),
        None if layer == git_refusal::LAYER => Some(git_refusal::hint(rule)),
        None => None,
    };
    match hint {
        Some(h) => format!("layer: {layer}; rule: {rule}; what to do: {h}"),
        None => format!("layer: {layer}; rule: {rule}"),
    }
}

/// Refusals in `text` (audit lines), grouped, most recent last, at most `limit`.
pub fn from_audit_text(bottle: &str, text: &str, limit: usize) -> Vec<RefusalEvent> {
    let mut out: Vec<RefusalEvent> = Vec::new();
    for line in text.lines() {
        let Some(a) = Decision::parse(line) else {
            continue;
        };
        if a.allowed {
            continue;
        }
        if let Some(i) = out.iter().position(|e| {
            e.host == a.host
                && e.method == a.method
                && e.path == a.path
                && e.layer == a.layer
                && e.rule == a.rule
        }) {
            let mut e = out.remove(i);
            e.count += 1;
            e.time = a.time.unwrap_or_default().into_owned();
            e.status = a.status;
            out.push(e);
            continue;
        }
        out.push(RefusalEvent {
            bottle: bottle.to_string(),
            reason: reason_text(&a.layer, &a.rule),
            time: a.time.unwrap_or_default().into_owned(),
            host: a.host.into_owned(),
            method: a.method.into_owned(),
            path: a.path.into_owned(),
            layer: a.layer.into_owned(),
            rule: a.rule.into_owned(),
            status: a.status,
            count: 1,
        });
    }
    let skip = out.len().saturating_sub(limit);
    out.split_off(skip)
}

/// The tail of the audit log at `path` (a missing log has no refusals yet).
pub(crate) fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(TAIL_BYTES).read_to_end(&mut buf)?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        // The first line was cut by the seek.
        text = text
            .split_once('\n')
            .map(|x| x.1.to_string())
            .unwrap_or_default();
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::egress::audit::Audit;

    fn line(host: &str, path: &str, allowed: bool, layer: &str, rule: &str) -> String {
        Audit::line(&Decision {
            host: host.into(),
            method: "GET".into(),
            path: path.into(),
            allowed,
            layer: layer.into(),
            rule: rule.into(),
            status: if allowed { 200 } else { 403 },
            ..Decision::default()
        })
    }

    #[test]
    fn denies_are_grouped_with_the_agents_reason() {
        let text = [
            line("a.test", "/", false, "allowlist", "host-not-in-routes"),
            line("ok.test", "/", true, "egress", "route"),
            line("b.test", "/x", false, "path-allowlist", "path-not-allowed"),
            line("a.test", "/", false, "allowlist", "host-not-in-routes"),
            "not json".to_string(),
        ]
        .concat();
        let ev = from_audit_text("bot-1", &text, 10);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].host, "b.test");
        assert_eq!(ev[1].host, "a.test");
        assert_eq!(ev[1].count, 2);
        assert_eq!(ev[1].bottle, "bot-1");
        // The agent's refusal body carries the same advice.
        let body = crate::sidecar::egress::refuse::Refusal::forbidden(
            Layer::Allowlist,
            "host-not-in-routes",
            "",
        )
        .body();
        assert!(body.contains(Layer::Allowlist.hint()));
        assert!(ev[1].reason.contains(Layer::Allowlist.hint()));
        assert_eq!(from_audit_text("b", &text, 1).len(), 1);
    }

    #[test]
    fn tail_drops_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        assert_eq!(read_tail(&p).unwrap(), "");
        let one = line("a.test", "/", false, "allowlist", "host-not-in-routes");
        let n = (TAIL_BYTES as usize / one.len()) + 10;
        std::fs::write(&p, one.repeat(n)).unwrap();
        let t = read_tail(&p).unwrap();
        assert!(
            t.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
        assert_eq!(
            from_audit_text("", &t, 5)[0].count as usize,
            t.lines().count()
        );
    }
}
