//! `info <agent>`: the agent, its bottle and what the bottle grants, without resolving
//! host values (no secret is read).

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::manifest::{AgentSource, Bottle, EnvValue};

use super::context::{load_manifest, unknown_agent};
use super::output::stdout_write;

pub fn info(args: &super::InfoArgs) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest()?;
    let Some((agent, bottle)) = manifest.agent_and_bottle(&args.agent) else {
        return Err(unknown_agent(&manifest, &args.agent));
    };
    let source = match agent.source {
        AgentSource::Home => "home",
        AgentSource::Cwd => "cwd",
    };
    let text = if args.json {
        let routes: Vec<serde_json::Value> = bottle
            .egress
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "host": r.host,
                    "path_allowlist": r.path_allowlist,
                    "auth": r.auth.as_ref().map(|a| a.scheme.as_str()),
                    "tls_passthrough": r.pipelock.tls_passthrough,
                })
            })
            .collect();
        let value = serde_json::json!({
            "name": agent.name,
            "path": agent.path,
            "source": source,
            "description": agent.description,
            "bottle": bottle.name,
            "bottle_path": bottle.path,
            "provider": bottle.agent_provider.template.as_str(),
            "skills": agent.skills,
            "env": env_summary(bottle),
            "egress_routes": routes,
            "git_repos": bottle.git_gate.repos.keys().collect::<Vec<_>>(),
            "git_refs": bottle.git_gate.repos.iter().map(|(name, r)| (name.clone(), serde_json::json!({
                "allow": r.refs.allow, "force": r.refs.force, "tags": r.refs.tags,
            }))).collect::<serde_json::Map<_, _>>(),
            "supervise": bottle.supervise,
            "prompt_chars": agent.prompt.chars().count(),
        });
        format!("{value:#}\n")
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "agent     {} ({source}: {})",
            agent.name,
            agent.path.display()
        );
        if let Some(d) = &agent.description {
            let _ = writeln!(s, "about     {d}");
        }
        let _ = writeln!(s, "bottle    {} ({})", bottle.name, bottle.path.display());
        let _ = writeln!(s, "provider  {}", bottle.agent_provider.template.as_str());
        let _ = writeln!(s, "skills    {}", list_or_none(&agent.skills));
        let _ = writeln!(s, "env       {}", list_or_none(&env_summary(bottle)));
        let hosts: Vec<String> = bottle
            .egress
            .routes
            .iter()
            .map(|r| match &r.auth {
                Some(a) => format!("{} [auth:{}]", r.host, a.scheme.as_str()),
                None => r.host.clone(),
            })
            .collect();
        let _ = writeln!(s, "egress    {}", list_or_none(&hosts));
        let repos: Vec<String> = bottle
            .git_gate
            .repos
            .iter()
            .map(|(name, r)| format!("{name} (push: {})", r.refs))
            .collect();
        let _ = writeln!(s, "git-gate  {}", list_or_none(&repos));
        let _ = writeln!(
            s,
            "supervise {}",
            if bottle.supervise { "on" } else { "off" }
        );
        let first = agent.prompt.lines().next().unwrap_or("");
        let _ = writeln!(
            s,
            "prompt    {} chars; first line: {}",
            agent.prompt.chars().count(),
            if first.is_empty() { "(empty)" } else { first }
        );
        s
    };
    stdout_write(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Env names with how each gets its value; never the value itself.
fn env_summary(bottle: &Bottle) -> Vec<String> {
    bottle
        .env
        .iter()
        .map(|(k, v)| match v {
            EnvValue::Literal(_) => k.clone(),
            EnvValue::Prompt(_) => format!("{k} (prompt)"),
            EnvValue::Interpolate(_) => format!("{k} (host)"),
        })
        .collect()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}
