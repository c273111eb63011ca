//! `list available` (and, with the Docker backend, `list active`).

use std::process::ExitCode;

use super::context::load_manifest;
use super::output::stdout_write;

pub fn available(json: bool) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest()?;
    let text = if json {
        let items: Vec<serde_json::Value> = manifest
            .agents
            .values()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "bottle": a.bottle,
                    "source": match a.source {
                        crate::manifest::AgentSource::Home => "home",
                        crate::manifest::AgentSource::Cwd => "cwd",
                    },
                    "path": a.path,
                    "description": a.description,
                })
            })
            .collect();
        format!("{}\n", serde_json::Value::Array(items))
    } else {
        manifest.agents.keys().map(|n| format!("{n}\n")).collect()
    };
    stdout_write(&text)?;
    Ok(ExitCode::SUCCESS)
}
