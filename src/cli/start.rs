//! `start` and `resume`: resolve the plan, show the preflight summary, and (unless
//! `--dry-run`) confirm and hand the plan to its backend. The dry run creates nothing: no
//! container, network, image or state dir.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::backend::{BackendError, backend_for, interrupt};
use crate::envvars;
use crate::plan::{self, BackendKind, BottlePlan, HostEnv, StartOptions};
use crate::runner::RealRunner;

use super::context::{home_root, load_manifest_for, unknown_agent};
use super::output::{CliUi, say, warn};
use super::{BackendArg, ResumeArgs, StartArgs};

pub(crate) fn start(args: &StartArgs) -> anyhow::Result<ExitCode> {
    let dry_run = args.dry_run || std::env::var(envvars::DRY_RUN).is_ok_and(|v| v == "1");
    let backend = match args.backend {
        BackendArg::Docker => BackendKind::Docker,
        BackendArg::Smolmachines => BackendKind::Smolmachines,
    };
    let opts = StartOptions {
        identity: None,
        copy_cwd: args.cwd,
        remote_control: args.remote_control,
        backend,
        gvisor: None,
        resume: false,
    };
    run_start(&args.agent, opts, dry_run, args.yes)
}

pub(crate) fn resume(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let root = home_root()?;
    let meta = crate::state::load_metadata(&root, &args.identity).with_context(|| {
        format!(
            "no resumable bottle `{}`; `bot-bottle list preserved` shows the ones you can resume",
            args.identity
        )
    })?;
    let opts = StartOptions {
        identity: Some(meta.identity.clone()),
        copy_cwd: meta.copy_cwd,
        remote_control: false,
        // The backend recorded at start; state from before the field existed is Docker's.
        backend: BackendKind::parse(&meta.backend).unwrap_or(BackendKind::Docker),
        gvisor: None,
        resume: true,
    };
    std::env::set_current_dir(&meta.cwd).with_context(|| {
        format!(
            "the bottle's recorded working directory `{}` is gone",
            meta.cwd.display()
        )
    })?;
    run_start(&meta.agent, opts, args.dry_run, args.yes)
}

fn run_start(
    agent: &str,
    mut opts: StartOptions,
    dry_run: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let manifest = load_manifest_for(Some(agent))?;
    if !manifest.agents.contains_key(agent) {
        return Err(unknown_agent(&manifest, agent));
    }
    let host = HostEnv::from_process();
    let runner = RealRunner;
    let backend = backend_for(opts.backend, &runner);
    match backend.check_host(&host) {
        Ok(check) => {
            check.warnings.iter().for_each(|w| warn(w));
            opts.gvisor = check.gvisor;
        }
        // The dry run still shows the plan on a host that cannot launch it.
        Err(e) if dry_run => warn(&e.to_string()),
        Err(e) => return Err(e.into()),
    }
    let mut plan = plan::resolve(&manifest, agent, &opts, &host)?;
    // From here on the plan holds every decision: nothing reads the environment or the clock.
    eprint!("{plan}");
    let missing = not_available(&plan);
    if dry_run {
        for m in &missing {
            say(&format!(
                "note: {m} is not available yet; `start` will refuse this bottle"
            ));
        }
        say("dry run: nothing was created");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(m) = missing.first() {
        anyhow::bail!(
            "bottle `{}` declares {m}, which this version cannot provide yet; nothing was started (remove it from the bottle to launch without it)",
            plan.bottle
        );
    }
    if !yes && !confirm()? {
        say("not started");
        return Ok(ExitCode::from(1));
    }
    plan::answer_prompts(&mut plan, &mut |name, message| {
        if !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(format!(
                "`{name}` must be typed on a terminal; run `bot-bottle start` interactively"
            )));
        }
        rpassword::prompt_password(format!("bot-bottle: {message} ({name}): "))
    })?;
    interrupt::install();
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let result = backend
        .prepare(&plan, &CliUi)
        .and_then(|prepared| backend.launch(&plan, &prepared, &CliUi, tty));
    // A Ctrl-C ends the children too, so the step that was running fails; what counts for
    // the exit code is that the operator interrupted (everything created was undone).
    if interrupt::interrupted() {
        say("interrupted; everything created was removed");
        return Ok(ExitCode::from(130));
    }
    match result {
        Ok(outcome) if outcome.stopped => {
            let kept = if outcome.preserved {
                format!("state kept: `bot-bottle resume {}`", outcome.identity)
            } else {
                "its state is gone and it cannot be resumed".to_string()
            };
            say(&format!(
                "bottle `{}` was stopped outside this session (the dashboard's stop or the engine) and removed; {kept}",
                outcome.identity
            ));
            Ok(ExitCode::from(1))
        }
        Ok(outcome) if outcome.exit_code == 0 => {
            say(&format!(
                "bottle `{}` ended and was removed",
                outcome.identity
            ));
            Ok(ExitCode::SUCCESS)
        }
        Ok(outcome) if outcome.preserved => {
            say(&format!(
                "the agent exited with code {}; state kept: `bot-bottle resume {}`",
                outcome.exit_code, outcome.identity
            ));
            Ok(ExitCode::from(1))
        }
        Ok(outcome) => {
            say(&format!(
                "the agent exited with code {}; bottle `{}` is gone and cannot be resumed",
                outcome.exit_code, outcome.identity
            ));
            Ok(ExitCode::from(1))
        }
        Err(BackendError::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => Err(e.into()),
    }
}

/// Capabilities a bottle may declare that are not built yet: refused before anything runs.
fn not_available(plan: &BottlePlan) -> Vec<String> {
    let mut v = Vec::new();
    // The Docker backend runs the git gate in the bundle; the smolmachines guest has no
    // relay to it yet.
    if !plan.git_upstreams.is_empty() && plan.backend == BackendKind::Smolmachines {
        v.push("`git-gate.repos` (the git gate) on the smolmachines backend".to_string());
    }
    if plan.supervise && plan.backend == crate::plan::BackendKind::Smolmachines {
        // The VM reaches only egress's published port; supervise is wired for Docker.
        v.push(
            "`supervise: true` on the smolmachines backend (use `--backend docker`)".to_string(),
        );
    }
    v
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("cannot ask for confirmation without a terminal; pass `--yes` to launch");
    }
    eprint!("bot-bottle: launch this bottle? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// `build-images`: every provider image and the sidecar image, built or found cached, by
/// the Docker backend (the images are Docker images on every backend).
pub(crate) fn build_images() -> anyhow::Result<ExitCode> {
    let build = plan::BuildPlan::resolve(&HostEnv::from_process())?;
    backend_for(BackendKind::Docker, &RealRunner).prepare_all(&build, &CliUi)?;
    Ok(ExitCode::SUCCESS)
}
