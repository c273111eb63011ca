//! Commands over running bottles: `list active`, `exec`, `cleanup`.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use crate::backend::docker::{discover, launch};
use crate::backend::smolmachines;
use crate::runner::{RealRunner, Runner as _};

use super::output::{say, stdout_write};

pub fn list_active(json: bool) -> anyhow::Result<ExitCode> {
    let mut bottles = discover::active(&RealRunner)?;
    // smolmachines bundles are in the Docker listing already; their VMs join them here.
    if let Err(e) = smolmachines::discover::annotate(&RealRunner, &mut bottles) {
        super::output::warn(&format!("smolmachines VMs not listed: {e}"));
    }
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
    let machines = smolmachines::discover::machines(&runner).unwrap_or_else(|e| {
        super::output::warn(&format!("smolmachines VMs not listed: {e}"));
        Vec::new()
    });
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
    if left.is_empty() && orphans.is_empty() && machines.is_empty() {
        say("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    for m in &machines {
        eprintln!("  vm        {}", m.name);
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
    // VMs first: they reach their bundles' published ports until they stop.
    smolmachines::discover::remove(&runner, &machines)?;
    discover::remove(&runner, &left)?;
    for o in &orphans {
        if let Err(e) = std::fs::remove_dir_all(o) {
            super::output::warn(&format!("cannot remove `{}`: {e}", o.display()));
        }
    }
    let vms = if machines.is_empty() {
        String::new()
    } else {
        format!("{} VMs, ", machines.len())
    };
    say(&format!(
        "removed {vms}{} containers, {} networks, {} volumes, {} state dirs",
        left.containers.len(),
        left.networks.len(),
        left.volumes.len(),
        orphans.len()
    ));
    Ok(ExitCode::SUCCESS)
}
