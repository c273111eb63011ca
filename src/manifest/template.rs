//! `${NAME}` references in bottle `env` values: parsed once at load (to refuse malformed
//! ones) and expanded from the host environment at plan time.

use super::validate::is_env_name;

/// One piece of an env value template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a value into text and `${NAME}` references; a `$` not followed by `{` is text.
pub(crate) fn parse(s: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 {
            parts.push(Part::Text(&rest[..i]));
        }
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err("has `${` without a closing `}`; write `${NAME}`".into());
        };
        let name = &after[..end];
        if !is_env_name(name) {
            let shown: String = name.chars().take(40).collect();
            return Err(format!(
                "`${{{shown}}}` is not a valid reference; use `${{NAME}}` with NAME like [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        parts.push(Part::Var(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// The host variables a template reads, in order of appearance (empty if malformed).
pub(crate) fn references(s: &str) -> Vec<&str> {
    parse(s)
        .map(|parts| {
            parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Var(v) => Some(v),
                    Part::Text(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why a template could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateError {
    #[error("{0}")]
    Malformed(String),
    #[error("host environment variable `{0}` is not set; export it before starting")]
    Unset(String),
}

/// Expands every `${NAME}` with `lookup(NAME)`; an unset variable is an error, never "".
pub(crate) fn interpolate(
    s: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(s.len());
    for part in parse(s).map_err(TemplateError::Malformed)? {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(v) => match lookup(v) {
                Some(val) => out.push_str(&val),
                None => return Err(TemplateError::Unset(v.to_owned())),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        assert_eq!(
            parse("a-${X}-$b-${Y_1}").unwrap(),
            vec![
                Part::Text("a-"),
                Part::Var("X"),
                Part::Text("-$b-"),
                Part::Var("Y_1")
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(parse("${").is_err());
        assert!(parse("${}").is_err());
        assert!(parse("${9}").is_err());
        assert_eq!(references("${A}${B}x"), vec!["A", "B"]);
    }

    #[test]
    fn interpolates_and_reports_unset() {
        let env = |k: &str| (k == "HOST").then(|| "h".to_owned());
        assert_eq!(interpolate("x${HOST}y", env).unwrap(), "xhy");
        assert_eq!(
            interpolate("${NOPE}", env),
            Err(TemplateError::Unset("NOPE".into()))
        );
        assert!(matches!(
            interpolate("${", env),
            Err(TemplateError::Malformed(_))
        ));
    }
}
