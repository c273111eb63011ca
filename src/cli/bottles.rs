//! Commands over running and preserved bottles: `list active`, `list preserved`, `exec`,
//! `cleanup`. Each running-bottle command goes through the backend trait; one engine listing
//! covers every backend.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use crate::backend::{self, backend_for};
use crate::plan::BackendKind;
use crate::runner::RealRunner;

use super::output::{CliUi, say, stdout_write};

pub(crate) fn list_active(json: bool) -> anyhow::Result<ExitCode> {
    let bottles = backend::list_active(&RealRunner)?;
    let text = if json {
        format!("{}\n", serde_json::to_string(&bottles)?)
    } else {
        bottles
            .iter()
            .map(|b| {
                format!(
                    "{}\t{}\t{}\t{}\n",
                    b.backend,
                    b.identity,
                    b.agent,
                    b.services.join(",")
                )
            })
            .collect()
    };
    stdout_write(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Preserved bottles (state kept after a session that did not end cleanly), from the state
/// dirs under the home root: what `resume` accepts.
pub(crate) fn list_preserved(json: bool) -> anyhow::Result<ExitCode> {
    let root = super::context::home_root()?;
    let entries: Vec<crate::state::Metadata> = crate::state::list(&root)?
        .into_iter()
        .filter(|e| e.preserved)
        .filter_map(|e| e.metadata)
        .collect();
    let text = if json {
        format!("{}\n", serde_json::to_string(&entries)?)
    } else {
        entries
            .iter()
            .map(|m| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    m.identity, m.agent, m.bottle, m.backend, m.started_at
                )
            })
            .collect()
    };
    stdout_write(&text)?;
    if entries.is_empty() && !json {
        say(&format!(
            "no preserved bottles under {}",
            crate::state::state_root(&root).display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn exec(args: &super::ExecArgs) -> anyhow::Result<ExitCode> {
    // The backend recorded in the bottle's state; a bottle without one is Docker's.
    let kind = super::context::home_root()
        .ok()
        .and_then(|root| crate::state::load_metadata(&root, &args.identity).ok())
        .and_then(|m| BackendKind::parse(&m.backend).ok())
        .unwrap_or(BackendKind::Docker);
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = backend_for(kind, &RealRunner).exec(&args.identity, &args.command, tty)?;
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

pub(crate) fn cleanup(args: &super::CleanupArgs) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let root = super::context::home_root().ok();
    let plan = backend::cleanup_plan(&runner, root.as_deref())?;
    if plan.is_empty() {
        say("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    for item in &plan.items {
        eprintln!("  {:<9} {}", item.kind, item.name);
    }
    for dir in &plan.state_dirs {
        eprintln!("  {:<9} {}", "state", dir.path().display());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "cannot ask for confirmation without a terminal; pass `--yes` to remove these"
            );
        }
        eprint!("bot-bottle: remove all of the above? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            say("nothing removed");
            return Ok(ExitCode::from(1));
        }
    }
    backend::cleanup(&runner, &plan, &CliUi)?;
    // VMs are named only when there were some, so a Docker-only cleanup reads as before.
    let vms = match plan.count("vm") {
        0 => String::new(),
        n => format!("{n} VMs, "),
    };
    say(&format!(
        "removed {vms}{} containers, {} networks, {} volumes, {} state dirs",
        plan.count("container"),
        plan.count("network"),
        plan.count("volume"),
        plan.state_dirs.len()
    ));
    Ok(ExitCode::SUCCESS)
}
