//! Manifest errors: one line each, naming the file, the key path and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::{clip, one_line};

/// Why the manifest tree could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A value in a file is invalid; `key` is the dotted key path (empty for the whole file).
    #[error("{}: {}{}", shown(path), KeyPrefix(key), one_line(message))]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// The frontmatter is not valid (strict) YAML; `line` is counted in the whole file.
    #[error("{}:{line}:{column}: {}", shown(path), one_line(message))]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: cannot read: {}", shown(path), one_line(&source.to_string()))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: file is {size} bytes, over the {limit}-byte limit; manifest files must be small",
        shown(path)
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "no bot-bottle home at {}; run `bot-bottle init` to create it, or set BOT_BOTTLE_HOME",
        shown(path)
    )]
    NoHomeRoot { path: PathBuf },
    #[error(
        "cannot locate the bot-bottle home: neither BOT_BOTTLE_HOME nor HOME is set; set one of them"
    )]
    NoHome,
    #[error(
        "{}: legacy manifest found but {} does not exist; rewrite it as per-file Markdown under {}/bottles/ (bottles, home only) and {}/agents/ (agents)",
        shown(legacy),
        shown(dir),
        shown(root),
        shown(dir)
    )]
    LegacyJson {
        legacy: PathBuf,
        dir: PathBuf,
        root: PathBuf,
    },
}

impl ManifestError {
    pub(crate) fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Invalid {
            path: path.to_path_buf(),
            key: clip(&key.into(), 200),
            message: message.into(),
        }
    }
}

fn shown(p: &Path) -> String {
    one_line(&p.display().to_string())
}

struct KeyPrefix<'a>(&'a str);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "`{}`: ", one_line(self.0))
        }
    }
}

/// Levenshtein distance over chars (keys are short, so the quadratic cost is irrelevant).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The allowed key closest to `unknown`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(unknown: &str, allowed: &[&'a str]) -> Option<&'a str> {
    if unknown.chars().count() > 64 {
        return None;
    }
    let lower = unknown.to_lowercase();
    allowed
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("hots", "host"), 2);
        assert_eq!(edit_distance("egres", "egress"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn hint_only_when_close() {
        let allowed = ["env", "extends", "egress", "supervise"];
        assert_eq!(did_you_mean("egres", &allowed), Some("egress"));
        assert_eq!(did_you_mean("Supervise", &allowed), Some("supervise"));
        assert_eq!(did_you_mean("zzzzzzzz", &allowed), None);
    }

    #[test]
    fn display_is_one_line_even_with_control_chars() {
        let e = ManifestError::invalid(Path::new("/x/a\nb.md"), "env.A\nB", "bad\nvalue");
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(
            s.starts_with("/x/a\\nb.md: `env.A\\nB`: bad\\nvalue"),
            "{s}"
        );
        let e = ManifestError::invalid(Path::new("/x/a.md"), "", "whole file");
        assert_eq!(e.to_string(), "/x/a.md: whole file");
    }
}
