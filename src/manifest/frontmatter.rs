//! Splits a manifest file into its `---` YAML frontmatter and Markdown body.
//!
//! Tolerates a UTF-8 byte-order mark and CRLF line endings (both are common from Windows
//! editors); everything after the split uses `\n`.

/// A split file: the YAML text, the file line it starts on, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub yaml: String,
    /// 1-based line of the file where `yaml` begins (to report YAML errors in file lines).
    pub(crate) first_line: usize,
    pub body: String,
}

/// Why a file has no usable frontmatter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrontmatterError {
    #[error(
        "no frontmatter: the file must start with a `---` line, then YAML, then a closing `---` line"
    )]
    Missing,
    #[error("frontmatter is not closed: add a `---` line after the YAML")]
    Unclosed,
}

fn is_fence(line: &str) -> bool {
    line.trim_end_matches([' ', '\t']) == "---"
}

/// Splits `text` into frontmatter and body.
pub(crate) fn split(text: &str) -> Result<Split, FrontmatterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if is_fence(first.trim_end_matches('\n')) => {}
        _ => return Err(FrontmatterError::Missing),
    }
    let mut yaml = String::new();
    for line in lines.by_ref() {
        if is_fence(line.trim_end_matches('\n')) {
            let body: String = lines.collect();
            return Ok(Split {
                yaml,
                first_line: 2,
                body,
            });
        }
        yaml.push_str(line);
    }
    Err(FrontmatterError::Unclosed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_yaml_and_body() {
        let s = split("---\nbottle: dev\n---\n\nYou help.\n").unwrap();
        assert_eq!(s.yaml, "bottle: dev\n");
        assert_eq!(s.body, "\nYou help.\n");
        assert_eq!(s.first_line, 2);
    }

    #[test]
    fn tolerates_bom_and_crlf() {
        let s = split("\u{feff}---\r\nbottle: dev\r\n---\r\nBody\r\n").unwrap();
        assert_eq!(s.yaml, "bottle: dev\n");
        assert_eq!(s.body, "Body\n");
    }

    #[test]
    fn empty_frontmatter_and_no_body() {
        let s = split("---\n---").unwrap();
        assert_eq!(s.yaml, "");
        assert_eq!(s.body, "");
    }

    #[test]
    fn missing_and_unclosed() {
        assert_eq!(split("bottle: dev\n"), Err(FrontmatterError::Missing));
        assert_eq!(split(""), Err(FrontmatterError::Missing));
        assert_eq!(split("----\na: 1\n---\n"), Err(FrontmatterError::Missing));
        assert_eq!(split("---\nbottle: dev\n"), Err(FrontmatterError::Unclosed));
    }

    #[test]
    fn later_fences_stay_in_body() {
        let s = split("---\na: 1\n---\ntext\n---\nmore\n").unwrap();
        assert_eq!(s.body, "text\n---\nmore\n");
    }
}
