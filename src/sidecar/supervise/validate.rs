//! Validation of what the agent proposes, held to the same rules as manifest input.
//!
//! The agent is untrusted: every field is bounded, control characters are refused, and each
//! error names the field and says what a valid value looks like, so the agent can retry.

use serde::{Deserialize, Serialize};

/// Longest accepted reason, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 1000;
/// Largest accepted Dockerfile, in bytes.
pub(crate) const MAX_DOCKERFILE_BYTES: usize = 64 * 1024;
/// Most path prefixes one route request may carry.
pub(crate) const MAX_PATH_PREFIXES: usize = 16;
/// Longest accepted path prefix, in bytes.
pub(crate) const MAX_PATH_PREFIX_BYTES: usize = 512;
/// Methods a route request may name.
pub(crate) const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A route the agent asks for, after validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteProposal {
    /// Lower-case host name.
    pub host: String,
    /// Path prefixes, each starting with `/`; empty means the whole host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_prefixes: Vec<String>,
    /// Methods; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// The host, lower-cased and checked like a manifest route host.
pub fn host(raw: &str) -> Result<String, String> {
    let h = raw.trim().to_ascii_lowercase();
    if h.is_empty() {
        return Err("`host` is empty; give a host name such as api.github.com".into());
    }
    crate::manifest::validate::check_host(&h).map_err(|e| format!("`host`: {e}"))?;
    Ok(h)
}

/// Path prefixes: each starts with `/`, no spaces or control characters, bounded.
pub fn path_prefixes(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_PATH_PREFIXES {
        return Err(format!(
            "`path_prefixes`: at most {MAX_PATH_PREFIXES} prefixes, got {}",
            raw.len()
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(format!(
                "`path_prefixes[{i}]` must be a path prefix starting with `/`, e.g. /repos/"
            ));
        }
        if p.len() > MAX_PATH_PREFIX_BYTES {
            return Err(format!(
                "`path_prefixes[{i}]` is longer than {MAX_PATH_PREFIX_BYTES} bytes"
            ));
        }
        if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "`path_prefixes[{i}]` must not contain spaces or control characters"
            ));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Methods: upper-case names from [`METHODS`], without duplicates.
pub fn methods(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            return Err(format!(
                "`methods[{i}]` must be one of {}; got `{}`",
                METHODS.join(", "),
                clip(m)
            ));
        }
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    Ok(out)
}

/// A reason: non-empty, bounded, no control characters (it is shown on the operator's terminal).
pub fn reason(raw: &str) -> Result<String, String> {
    let r = raw.trim();
    if r.is_empty() {
        return Err("`reason` is empty; say in one sentence why the change is needed".into());
    }
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters; shorten it"
        ));
    }
    if r.chars().any(char::is_control) {
        return Err("`reason` must not contain control characters (one line of text)".into());
    }
    Ok(r.to_string())
}

/// A Dockerfile: non-empty, bounded, with a `FROM` line, no control characters but newlines
/// and tabs.
pub fn dockerfile(raw: &str) -> Result<String, String> {
    if raw.len() > MAX_DOCKERFILE_BYTES {
        return Err(format!(
            "`dockerfile` is larger than {} KiB",
            MAX_DOCKERFILE_BYTES / 1024
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("`dockerfile` must not contain control characters".into());
    }
    let has_from = raw.lines().any(|l| {
        let l = l.trim_start();
        l.len() >= 5 && l[..5].eq_ignore_ascii_case("from ")
    });
    if !has_from {
        return Err("`dockerfile` has no `FROM` line; send the whole Dockerfile".into());
    }
    Ok(raw.to_string())
}

/// A whole route proposal.
pub fn route(
    raw_host: &str,
    raw_prefixes: &[String],
    raw_methods: &[String],
) -> Result<RouteProposal, String> {
    Ok(RouteProposal {
        host: host(raw_host)?,
        path_prefixes: path_prefixes(raw_prefixes)?,
        methods: methods(raw_methods)?,
    })
}

/// Agent text quoted in an error: bounded and printable.
fn clip(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_is_lowercased_and_urls_refused() {
        assert_eq!(host(" API.GitHub.com ").unwrap(), "api.github.com");
        assert!(host("https://api.github.com").unwrap_err().contains("URL"));
        assert!(host("a..b").is_err());
        assert!(host("a.b:443").is_err());
        assert!(host("").is_err());
        assert!(host(&"a".repeat(300)).is_err());
    }

    #[test]
    fn path_prefixes_start_with_slash_and_have_no_spaces() {
        assert_eq!(
            path_prefixes(&v(&["/a", "/b/", "/a"])).unwrap(),
            v(&["/a", "/b/"])
        );
        assert!(path_prefixes(&v(&["a"])).unwrap_err().contains("[0]"));
        assert!(path_prefixes(&v(&["/a b"])).is_err());
        assert!(path_prefixes(&v(&["/a\u{7}"])).is_err());
        assert!(path_prefixes(&vec!["/x".to_string(); MAX_PATH_PREFIXES + 1]).is_err());
    }

    #[test]
    fn methods_come_from_the_fixed_set() {
        assert_eq!(
            methods(&v(&["GET", "POST", "GET"])).unwrap(),
            v(&["GET", "POST"])
        );
        assert!(methods(&v(&["get"])).is_err());
        assert!(methods(&v(&["CONNECT"])).is_err());
    }

    #[test]
    fn reason_is_bounded_single_line_text() {
        assert_eq!(reason("  need it ").unwrap(), "need it");
        assert!(reason(" ").is_err());
        assert!(reason("a\nb").is_err());
        assert!(reason("a\u{1b}[2J").is_err());
        assert!(reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert!(reason(&"é".repeat(MAX_REASON_CHARS)).is_ok());
    }

    #[test]
    fn dockerfile_needs_from_and_a_bound() {
        assert!(dockerfile("FROM debian\nRUN true\n").is_ok());
        assert!(dockerfile("  from debian").is_ok());
        assert!(dockerfile("RUN true").is_err());
        assert!(dockerfile("FROM x\n\u{0}").is_err());
        let big = format!("FROM x\n{}", "#".repeat(MAX_DOCKERFILE_BYTES));
        assert!(dockerfile(&big).is_err());
    }
}
