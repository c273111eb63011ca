//! Commands over running and preserved bottles: `list active`, `list preserved`, `exec`,
//! `cleanup`.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use crate::backend::docker::{discover, launch};
use crate::runner::{RealRunner, Runner as _};

use super::output::{say, stdout_write};

pub fn list_active(json: bool) -> anyhow::Result<ExitCode> {
    let bottles = discover::active(&RealRunner)?;
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
pub fn list_preserved(json: bool) -> anyhow::Result<ExitCode> {
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

pub fn exec(args: &super::ExecArgs) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let container = discover::agent_container(&runner, &args.identity)?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = runner.run_interactive(&launch::exec_spec(&container, &args.command, tty))?;
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

pub fn cleanup(args: &super::CleanupArgs) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let left = discover::leftovers(&runner)?;
    let root = super::context::home_root().ok();
    let orphans: Vec<std::path::PathBuf> = match &root {
        Some(root) => crate::state::list(root)?
            .into_iter()
            // Cleanup removes every bottle, so every unpreserved state dir is an orphan.
            .filter(|e| !e.preserved)
            .map(|e| e.path)
            .collect(),
        None => Vec::new(),
    };
    if left.is_empty() && orphans.is_empty() {
        say("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    for c in &left.containers {
        eprintln!("  container {c}");
    }
    for n in &left.networks {
        eprintln!("  network   {n}");
    }
    for v in &left.volumes {
        eprintln!("  volume    {v}");
    }
    for o in &orphans {
        eprintln!("  state     {}", o.display());
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
    discover::remove(&runner, &left)?;
    for o in &orphans {
        if let Err(e) = std::fs::remove_dir_all(o) {
            super::output::warn(&format!("cannot remove `{}`: {e}", o.display()));
        }
    }
    say(&format!(
        "removed {} containers, {} networks, {} volumes, {} state dirs",
        left.containers.len(),
        left.networks.len(),
        left.volumes.len(),
        orphans.len()
    ));
    Ok(ExitCode::SUCCESS)
}
