//! `list available` (and, with the Docker backend, `list active`).

use std::process::ExitCode;

use crate::manifest::AgentSource;

use super::context::load_manifest;
use super::output::{say, stdout_write};

fn source(s: AgentSource) -> &'static str {
    match s {
        AgentSource::Home => "home",
        AgentSource::Cwd => "cwd",
    }
}

/// Startable agents on stdout (one name per line, or JSON); broken agent files are warned
/// about on stderr (and carried in the JSON with `"broken": true`), so a script reading the
/// names only ever gets agents it can start.
pub(crate) fn available(json: bool) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest()?;
    let text = if json {
        let mut items: Vec<serde_json::Value> = manifest
            .agents
            .values()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "bottle": a.bottle,
                    "source": source(a.source),
                    "path": a.path,
                    "description": a.description,
                    "broken": false,
                })
            })
            .collect();
        items.extend(manifest.broken.values().map(|b| {
            serde_json::json!({
                "name": b.name,
                "source": source(b.source),
                "path": b.path,
                "broken": true,
                "error": b.error,
            })
        }));
        format!("{}\n", serde_json::Value::Array(items))
    } else {
        manifest.agents.keys().map(|n| format!("{n}\n")).collect()
    };
    stdout_write(&text)?;
    if !json {
        for b in manifest.broken.values() {
            say(&format!(
                "broken: {} ({}); fix the file, then `bot-bottle info {}`",
                b.name,
                b.path.display(),
                b.name
            ));
        }
    }
    if manifest.agents.is_empty() && manifest.broken.is_empty() {
        say(&format!(
            "no agents yet in {}; create one with `bot-bottle init`",
            manifest.root.join("agents").display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
