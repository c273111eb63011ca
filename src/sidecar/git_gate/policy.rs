//! The ref policy (F-REFS): which ref updates of a push the gate lets through.
//!
//! Default (the seed's behaviour): any branch, never forced, no tags, no deletions. A repo may
//! narrow branches to an allowlist of globs (`agent/*`) and may allow force-pushes and tag
//! pushes. Deletions are always refused. Globs are matched against the branch name without
//! `refs/heads/` (or the tag name without `refs/tags/`); `*` stops at `/`, `**` does not.

use serde::{Deserialize, Serialize};

/// The all-zero object id git uses for "no such ref" (creation or deletion).
pub(crate) fn is_zero_oid(oid: &str) -> bool {
    !oid.is_empty() && oid.bytes().all(|b| b == b'0')
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefPolicy {
    /// Branch (and, when `tags`, tag) name globs the agent may push; empty: any branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Non-fast-forward updates allowed.
    #[serde(default)]
    pub force: bool,
    /// Tag pushes allowed.
    #[serde(default)]
    pub(crate) tags: bool,
}

/// One ref update as the pre-receive hook reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

impl RefUpdate {
    /// Parse one `old new ref` line of the hook's stdin.
    pub(crate) fn parse(line: &str) -> Option<RefUpdate> {
        let mut it = line.split(' ');
        let (old, new, name) = (it.next()?, it.next()?, it.next()?);
        let oid =
            |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if it.next().is_some() || !oid(old) || !oid(new) || name.is_empty() {
            return None;
        }
        Some(RefUpdate {
            old: old.into(),
            new: new.into(),
            name: name.into(),
        })
    }

    pub(crate) fn is_delete(&self) -> bool {
        is_zero_oid(&self.new)
    }

    pub(crate) fn is_create(&self) -> bool {
        is_zero_oid(&self.old)
    }
}

/// Why an update is refused: a stable rule id for the audit line and a sentence for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub rule: &'static str,
    pub message: String,
}

impl RefPolicy {
    /// Globs must be non-empty, printable and free of characters git refuses in ref names.
    pub(crate) fn check(&self) -> Result<(), String> {
        for g in &self.allow {
            if g.is_empty()
                || g.starts_with('/')
                || g.starts_with("refs/")
                || g.bytes().any(|b| {
                    b <= b' ' || matches!(b, b'~' | b'^' | b':' | b'?' | b'[' | b'\\' | 0x7f)
                })
            {
                return Err(format!(
                    "allow glob `{}` is not a branch-name glob like `agent/*` (no `refs/` prefix)",
                    g.escape_debug()
                ));
            }
        }
        Ok(())
    }

    /// Judge one update. `fast_forward` is whether `old` is an ancestor of `new` (ignored for
    /// creations and deletions).
    pub(crate) fn judge(&self, u: &RefUpdate, fast_forward: bool) -> Result<(), Refusal> {
        if u.is_delete() {
            return Err(Refusal {
                rule: "ref-delete",
                message: format!("deleting {} is not allowed through the git-gate", u.name),
            });
        }
        let (short, is_tag) = if let Some(b) = u.name.strip_prefix("refs/heads/") {
            (b, false)
        } else if let Some(t) = u.name.strip_prefix("refs/tags/") {
            (t, true)
        } else {
            return Err(Refusal {
                rule: "ref-namespace",
                message: format!(
                    "{} is neither a branch nor a tag; push to refs/heads/…",
                    u.name
                ),
            });
        };
        if is_tag && !self.tags {
            return Err(Refusal {
                rule: "ref-tag",
                message: format!(
                    "tag pushes are not allowed for this repo ({}); ask the operator to set `refs.tags: true`",
                    u.name
                ),
            });
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|g| glob_match(g, short)) {
            return Err(Refusal {
                rule: "ref-not-allowed",
                message: format!(
                    "{} is not in this repo's allowed refs ({}); push to a matching branch",
                    u.name,
                    self.allow.join(", ")
                ),
            });
        }
        if !u.is_create() && (is_tag || !fast_forward) && !self.force {
            return Err(Refusal {
                rule: "ref-force",
                message: format!(
                    "{} would be rewritten (not a fast-forward); force-pushes are not allowed for this repo",
                    u.name
                ),
            });
        }
        Ok(())
    }
}

/// `*` matches within one path component, `**` across components; everything else literally.
pub(crate) fn glob_match(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match g.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => {
                let (deep, rest) = match rest.split_first() {
                    Some((b'*', r)) => (true, r),
                    _ => (false, rest),
                };
                for i in 0..=n.len() {
                    if go(rest, &n[i..]) {
                        return true;
                    }
                    if i < n.len() && !deep && n[i] == b'/' {
                        return false;
                    }
                }
                false
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn up(old: &str, new: &str, name: &str) -> RefUpdate {
        RefUpdate::parse(&format!("{old} {new} {name}")).unwrap()
    }

    #[test]
    fn parse_refuses_malformed_lines() {
        assert!(RefUpdate::parse(&format!("{A} {B} refs/heads/x")).is_some());
        for bad in [
            "",
            "a b c",
            &format!("{A} {B}"),
            &format!("{A} {B} r extra"),
        ] {
            assert!(RefUpdate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn default_is_any_branch_no_force_no_tags_no_delete() {
        let p = RefPolicy::default();
        assert!(p.judge(&up(Z, B, "refs/heads/feature/x"), false).is_ok());
        assert!(p.judge(&up(A, B, "refs/heads/main"), true).is_ok());
        assert_eq!(
            p.judge(&up(A, B, "refs/heads/main"), false)
                .unwrap_err()
                .rule,
            "ref-force"
        );
        assert_eq!(
            p.judge(&up(Z, B, "refs/tags/v1"), false).unwrap_err().rule,
            "ref-tag"
        );
        assert_eq!(
            p.judge(&up(A, Z, "refs/heads/main"), false)
                .unwrap_err()
                .rule,
            "ref-delete"
        );
        assert_eq!(
            p.judge(&up(Z, B, "refs/notes/x"), false).unwrap_err().rule,
            "ref-namespace"
        );
    }

    #[test]
    fn allowlist_force_and_tags() {
        let p = RefPolicy {
            allow: vec!["agent/*".into(), "v*".into()],
            force: true,
            tags: true,
        };
        assert!(p.judge(&up(A, B, "refs/heads/agent/x"), false).is_ok());
        assert_eq!(
            p.judge(&up(Z, B, "refs/heads/main"), true)
                .unwrap_err()
                .rule,
            "ref-not-allowed"
        );
        assert_eq!(
            p.judge(&up(Z, B, "refs/heads/agent/x/y"), true)
                .unwrap_err()
                .rule,
            "ref-not-allowed"
        );
        assert!(p.judge(&up(Z, B, "refs/tags/v1"), false).is_ok());
        assert_eq!(
            p.judge(&up(A, Z, "refs/heads/agent/x"), true)
                .unwrap_err()
                .rule,
            "ref-delete"
        );
        // A tag moved is a rewrite even if the new one descends from the old one.
        let no_force = RefPolicy { force: false, ..p };
        assert_eq!(
            no_force
                .judge(&up(A, B, "refs/tags/v1"), true)
                .unwrap_err()
                .rule,
            "ref-force"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("agent/*", "agent/a"));
        assert!(!glob_match("agent/*", "agent/a/b"));
        assert!(glob_match("agent/**", "agent/a/b"));
        assert!(glob_match("*", "main"));
        assert!(!glob_match("main", "main2"));
        assert!(glob_match("fix-*-x", "fix-12-x"));
        assert!(
            RefPolicy {
                allow: vec!["refs/heads/x".into()],
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(
            RefPolicy {
                allow: vec!["a b".into()],
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(
            RefPolicy {
                allow: vec!["agent/*".into()],
                ..Default::default()
            }
            .check()
            .is_ok()
        );
    }
}
