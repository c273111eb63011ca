//! Adding an egress route to a bottle file (`approve --save`), keeping the operator's text.
//!
//! The route is inserted as text where the file already keeps its routes (or an `egress:` /
//! `routes:` block is added), so comments, key order, quoting and the Markdown body stay as
//! they were. The result is checked by parsing both versions strictly (`crate::yaml`): the
//! new frontmatter must equal the old one plus exactly the new route. When the layout is one
//! the text edit does not handle (flow-style `egress`/`routes`, a host that already has a
//! route), the frontmatter is rendered anew from its parsed value instead: the content is
//! kept, its comments and formatting are not, and [`Edit::rewritten`] says so.

use serde_json::{Map, Value, json};

/// Why the route cannot be saved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EditError {
    #[error("`{path}`: {message}; fix the file by hand, then approve again")]
    Invalid { path: String, message: String },
}

/// The edited file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub text: String,
    /// `true` when the frontmatter was rendered anew (its comments are gone).
    pub(crate) rewritten: bool,
    /// `false` when the file already allowed the route (nothing to write).
    pub(crate) changed: bool,
}

/// A short diff of two texts: the unchanged lines around the change, `-` and `+` lines.
pub(crate) fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suf)
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = String::new();
    for l in &a[pre.saturating_sub(2)..pre] {
        out.push_str(&format!("  {l}\n"));
    }
    for l in &a[pre..a.len() - suf] {
        out.push_str(&format!("- {l}\n"));
    }
    for l in &b[pre..b.len() - suf] {
        out.push_str(&format!("+ {l}\n"));
    }
    for l in a[a.len() - suf..].iter().take(2) {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_content(l: &str) -> bool {
    let t = l.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// `key:` alone (or with a comment) on the line, at any indent.
fn is_block_key(l: &str, key: &str) -> bool {
    let t = l.trim_start();
    t.strip_prefix(key)
        .and_then(|r| r.strip_prefix(':'))
        .is_some_and(|r| r.trim().is_empty() || r.trim_start().starts_with('#'))
}

/// The route as YAML item lines at `indent`.
fn item_lines(indent: usize, host: &str, paths: &[String]) -> Vec<String> {
    let pad = " ".repeat(indent);
    let mut v = vec![format!("{pad}- host: {host}")];
    if !paths.is_empty() {
        let list: Vec<String> = paths
            .iter()
            .map(|p| serde_json::to_string(p).unwrap_or_default())
            .collect();
        v.push(format!("{pad}  path_allowlist: [{}]", list.join(", ")));
    }
    v
}

/// Insert the route into the frontmatter lines; `None` when the layout is not one handled.
fn insert_text(lines: &[String], host: &str, paths: &[String]) -> Option<Vec<String>> {
    let mut out = lines.to_vec();
    let Some(e) = lines.iter().position(|l| l.starts_with("egress:")) else {
        out.push("egress:".into());
        out.push("  routes:".into());
        out.extend(item_lines(4, host, paths));
        return Some(out);
    };
    if !is_block_key(&lines[e], "egress") {
        return None;
    }
    // The egress block: until the next content line at indent 0.
    let end = lines[e + 1..]
        .iter()
        .position(|l| is_content(l) && indent_of(l) == 0)
        .map_or(lines.len(), |i| e + 1 + i);
    let child = lines[e + 1..end]
        .iter()
        .find(|l| is_content(l))
        .map_or(2, |l| indent_of(l));
    let Some(r) = (e + 1..end)
        .find(|&i| indent_of(&lines[i]) == child && lines[i].trim_start().starts_with("routes:"))
    else {
        let mut add = vec![format!("{}routes:", " ".repeat(child))];
        add.extend(item_lines(child + 2, host, paths));
        out.splice(e + 1..e + 1, add);
        return Some(out);
    };
    if !is_block_key(&lines[r], "routes") {
        return None;
    }
    let first_item = lines[r + 1..end]
        .iter()
        .find(|l| is_content(l))
        .filter(|l| l.trim_start().starts_with("- ") && indent_of(l) >= child);
    let Some(first) = first_item else {
        // `routes:` with no items.
        out.splice(r + 1..r + 1, item_lines(child + 2, host, paths));
        return Some(out);
    };
    let item = indent_of(first);
    // Last content line still inside the sequence.
    let mut last = r;
    for (i, l) in lines.iter().enumerate().take(end).skip(r + 1) {
        if !is_content(l) {
            continue;
        }
        let ind = indent_of(l);
        if ind < item || (ind == item && !l.trim_start().starts_with("- ")) {
            break;
        }
        last = i;
    }
    out.splice(last + 1..last + 1, item_lines(item, host, paths));
    Some(out)
}

/// The parsed frontmatter with the route added (`None` when it already allows it).
fn with_route(doc: &Value, host: &str, paths: &[String]) -> Result<Option<Value>, String> {
    let mut doc = match doc {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => doc.clone(),
        _ => return Err("the frontmatter is not a mapping".into()),
    };
    let egress = doc
        .as_object_mut()
        .map(|m| {
            m.entry("egress")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .ok_or("the frontmatter is not a mapping")?;
    if egress.is_null() {
        *egress = Value::Object(Map::new());
    }
    let egress = egress.as_object_mut().ok_or("`egress` is not a mapping")?;
    let routes = egress.entry("routes").or_insert_with(|| json!([]));
    if routes.is_null() {
        *routes = json!([]);
    }
    let routes = routes
        .as_array_mut()
        .ok_or("`egress.routes` is not a list")?;
    let same = |r: &Value| {
        r.get("host")
            .and_then(Value::as_str)
            .is_some_and(|h| h.eq_ignore_ascii_case(host))
    };
    if let Some(existing) = routes.iter_mut().find(|r| same(r)) {
        let list = existing
            .as_object_mut()
            .ok_or("a route is not a mapping")?
            .entry("path_allowlist")
            .or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or("`path_allowlist` is not a list")?;
        if list.is_empty() {
            return Ok(None);
        }
        if paths.is_empty() {
            list.clear();
        } else {
            let before = list.len();
            for p in paths {
                if !list.iter().any(|x| x.as_str() == Some(p)) {
                    list.push(json!(p));
                }
            }
            if list.len() == before {
                return Ok(None);
            }
        }
        // An emptied list means the whole host: drop the key.
        if list.is_empty()
            && let Some(m) = existing.as_object_mut()
        {
            m.remove("path_allowlist");
        }
        return Ok(Some(doc));
    }
    let mut item = Map::new();
    item.insert("host".into(), json!(host));
    if !paths.is_empty() {
        item.insert("path_allowlist".into(), json!(paths));
    }
    routes.push(Value::Object(item));
    Ok(Some(doc))
}

/// `text` (a whole bottle file at `path`) with a route to `host` limited to `paths` (all
/// paths when empty).
pub(crate) fn add_route(
    path: &str,
    text: &str,
    host: &str,
    paths: &[String],
) -> Result<Edit, EditError> {
    let bad = |message: String| EditError::Invalid {
        path: path.to_string(),
        message,
    };
    let crlf = text.contains("\r\n");
    let bom = text.starts_with('\u{feff}');
    let split = super::frontmatter::split(text).map_err(|e| bad(e.to_string()))?;
    let old = crate::yaml::parse_value(&split.yaml).map_err(|e| bad(e.to_string()))?;
    let Some(want) = with_route(&old, host, paths).map_err(bad)? else {
        return Ok(Edit {
            text: text.to_string(),
            rewritten: false,
            changed: false,
        });
    };
    let lines: Vec<String> = split.yaml.lines().map(str::to_string).collect();
    let new_host_only = !old
        .pointer("/egress/routes")
        .and_then(Value::as_array)
        .is_some_and(|rs| {
            rs.iter().any(|r| {
                r.get("host")
                    .and_then(Value::as_str)
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
        });
    let edited = new_host_only
        .then(|| insert_text(&lines, host, paths))
        .flatten()
        .map(|ls| {
            let mut y = ls.join("\n");
            y.push('\n');
            y
        })
        .filter(|y| crate::yaml::parse_value(y).is_ok_and(|v| v == want));
    let (yaml, rewritten) = match edited {
        Some(y) => (y, false),
        None => (crate::yaml::to_yaml_string(&want), true),
    };
    let mut out = String::new();
    if bom {
        out.push('\u{feff}');
    }
    out.push_str("---\n");
    out.push_str(&yaml);
    out.push_str("---\n");
    out.push_str(&split.body);
    if crlf {
        out = out.replace('\n', "\r\n");
    }
    Ok(Edit {
        text: out,
        rewritten,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn routes_of(text: &str) -> Value {
        let s = super::super::frontmatter::split(text).unwrap();
        crate::yaml::parse_value(&s.yaml).unwrap()["egress"]["routes"].clone()
    }

    #[test]
    fn a_route_is_appended_keeping_comments_and_body() {
        let file = "---\n# my bottle\nenv:\n  A: \"1\"  # keep\negress:\n  # the usual\n  routes:\n    - host: a.test\n      path_allowlist: [\"/x/\"]\n    # trailing note\nsupervise: true\n---\n\nBody text.\n";
        let e = add_route("b.md", file, "new.test", &v(&["/api/"])).unwrap();
        assert!(e.changed && !e.rewritten);
        assert!(e.text.contains("# my bottle") && e.text.contains("# keep"));
        assert!(e.text.contains("# the usual") && e.text.ends_with("\nBody text.\n"));
        assert_eq!(
            routes_of(&e.text),
            json!([{"host": "a.test", "path_allowlist": ["/x/"]},
                   {"host": "new.test", "path_allowlist": ["/api/"]}])
        );
        let d = diff(file, &e.text);
        assert!(d.contains("+     - host: new.test"), "{d}");
        assert!(!d.lines().any(|l| l.starts_with("- ")), "{d}");
    }

    #[test]
    fn missing_blocks_are_added_and_sequences_at_key_indent_work() {
        let e = add_route("b.md", "---\nsupervise: true\n---\n", "n.test", &[]).unwrap();
        assert_eq!(routes_of(&e.text), json!([{"host": "n.test"}]));
        assert!(!e.rewritten);
        let e = add_route("b.md", "---\negress:\n  x: 1\n---\n", "n.test", &[]);
        // Unknown keys are the validator's business; the edit keeps them.
        assert!(e.unwrap().text.contains("x: 1"));
        let file = "---\negress:\n  routes:\n  - host: a.test\nenv: {}\n---\n";
        let e = add_route("b.md", file, "n.test", &[]).unwrap();
        assert!(!e.rewritten, "{}", e.text);
        assert_eq!(
            routes_of(&e.text),
            json!([{"host": "a.test"}, {"host": "n.test"}])
        );
        let e = add_route("b.md", "---\negress:\n  routes:\n---\n", "n.test", &[]).unwrap();
        assert_eq!(routes_of(&e.text), json!([{"host": "n.test"}]));
    }

    #[test]
    fn flow_style_and_existing_hosts_are_rendered_anew() {
        let file = "---\n# gone\negress: {routes: [{host: a.test, path_allowlist: [\"/x/\"]}]}\n---\nbody\n";
        let e = add_route("b.md", file, "a.test", &v(&["/y/"])).unwrap();
        assert!(e.rewritten && !e.text.contains("# gone") && e.text.ends_with("body\n"));
        assert_eq!(
            routes_of(&e.text),
            json!([{"host": "a.test", "path_allowlist": ["/x/", "/y/"]}])
        );
        // Already allowed: nothing to write.
        let file = "---\negress:\n  routes:\n    - host: a.test\n---\n";
        assert!(
            !add_route("b.md", file, "a.test", &v(&["/z/"]))
                .unwrap()
                .changed
        );
    }

    #[test]
    fn invalid_files_are_errors_naming_the_file() {
        let e = add_route("b.md", "no frontmatter", "a.test", &[]).unwrap_err();
        assert!(e.to_string().starts_with("`b.md`"));
        assert!(add_route("b.md", "---\negress: [1]\n---\n", "a.test", &[]).is_err());
    }
}
