//! `info <agent>`: what the agent would run with, from the same resolved plan the preflight
//! shows (routes with their options, provider routes included, and which credentials are
//! set), resolved without launching anything. No credential value is ever printed; a missing
//! credential is shown as not set rather than refused.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::manifest::{AgentSource, EnvValue};
use crate::plan::{self, BackendKind, BottlePlan, HostEnv, StartOptions};

use super::context::{load_manifest_for, unknown_agent};
use super::output::stdout_write;

pub(crate) fn info(args: &super::InfoArgs) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest_for(Some(&args.agent))?;
    let Some((agent, bottle)) = manifest.agent_and_bottle(&args.agent) else {
        return Err(unknown_agent(&manifest, &args.agent));
    };
    let opts = StartOptions::fresh(BackendKind::Docker);
    let plan = plan::resolve_for_info(&manifest, &args.agent, &opts, &HostEnv::from_process())?;
    let source = match agent.source {
        AgentSource::Home => "home",
        AgentSource::Cwd => "cwd",
    };
    // How each env name the agent sees gets its value (never the value).
    let env: Vec<(&str, &str)> = plan
        .visible_env_names()
        .into_iter()
        .map(|n| {
            let how = match bottle.env.get(n) {
                Some(EnvValue::Prompt(_)) => "prompt",
                Some(EnvValue::Interpolate(_)) => "host",
                Some(EnvValue::Literal(_)) => "literal",
                None => "provider",
            };
            (n, how)
        })
        .collect();
    let text = if args.json {
        let value = serde_json::json!({
            "name": agent.name,
            "path": agent.path,
            "source": source,
            "description": agent.description,
            "bottle": bottle.name,
            "bottle_path": bottle.path,
            "provider": plan.provider.kind.as_str(),
            "skills": agent.skills,
            "env": env
                .iter()
                .map(|(name, how)| serde_json::json!({"name": name, "from": how}))
                .collect::<Vec<_>>(),
            "egress_routes": plan.routes_json(),
            "credentials": plan.credentials,
            "git_user": git_user_json(&plan),
            "git_repos": plan.git_upstreams.iter().map(|u| serde_json::json!({
                "name": u.name,
                "host": u.host,
                "port": u.port,
                "host_key_pinned": u.host_key.is_some(),
                "extra_hosts": u.extra_hosts,
                "refs": {"allow": u.refs.allow, "force": u.refs.force, "tags": u.refs.tags},
            })).collect::<Vec<_>>(),
            "supervise": plan.supervise,
            "limits": {
                "agent": plan.limits.agent.json(),
                "bundle": plan.limits.bundle.json(),
            },
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
        let _ = writeln!(s, "provider  {}", plan.provider.kind.as_str());
        let _ = writeln!(s, "skills    {}", list_or_none(&agent.skills));
        let env_text: Vec<String> = env
            .iter()
            .map(|(n, how)| match *how {
                "literal" | "provider" => (*n).to_string(),
                how => format!("{n} ({how})"),
            })
            .collect();
        let _ = writeln!(s, "env       {}", list_or_none(&env_text));
        block(&mut s, "egress", &plan.route_lines());
        block(&mut s, "creds", &plan.credential_lines());
        if !plan.git_user.is_empty() {
            let _ = writeln!(s, "git user  {}", plan.git_user);
        }
        let upstreams: Vec<String> = plan
            .git_upstreams
            .iter()
            .map(crate::plan::GitUpstream::summary)
            .collect();
        block(&mut s, "git-gate", &upstreams);
        let _ = writeln!(s, "supervise {}", if plan.supervise { "on" } else { "off" });
        block(&mut s, "limits", &plan.limit_lines());
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

fn git_user_json(plan: &BottlePlan) -> serde_json::Value {
    let field = |f: &Option<(String, plan::Provenance)>| {
        f.as_ref()
            .map(|(v, p)| serde_json::json!({"value": v, "from": p.as_str()}))
    };
    serde_json::json!({
        "name": field(&plan.git_user.name),
        "email": field(&plan.git_user.email),
    })
}

/// `key` then the first item on one line, the rest aligned under it; `(none)` when empty.
fn block(s: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(s, "{key:<9} (none)");
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let k = if i == 0 { key } else { "" };
        let _ = writeln!(s, "{k:<9} {item}");
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}
