//! `start` and `resume`: resolve the plan, show the preflight summary, and (unless
//! `--dry-run`) confirm and launch. The dry run creates nothing: no container, network,
//! image or state dir.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::backend::docker::launch::Launcher;
use crate::backend::docker::{ComposeCmd, DockerError};
use crate::backend::interrupt;
use crate::backend::smolmachines;
use crate::engine_probe;
use crate::envvars;
use crate::plan::{self, BackendKind, BottlePlan, HostEnv, StartOptions};
use crate::runner::RealRunner;

use super::context::{home_root, load_manifest, unknown_agent};
use super::output::{say, warn};
use super::{BackendArg, ResumeArgs, StartArgs};

/// How long the preflight waits for the engine's answer before calling it unknown.
const ENGINE_PROBE_TIMEOUT: Duration = Duration::from_millis(750);

pub fn start(args: &StartArgs) -> anyhow::Result<ExitCode> {
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

pub fn resume(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let root = home_root()?;
    let meta = crate::state::load_metadata(&root, &args.identity).with_context(|| {
        format!(
            "no resumable bottle `{}`; preserved bottles are under `{}`",
            args.identity,
            root.join("state").display()
        )
    })?;
    let backend = match meta.backend.as_str() {
        "smolmachines" => BackendKind::Smolmachines,
        _ => BackendKind::Docker,
    };
    let opts = StartOptions {
        identity: Some(meta.identity.clone()),
        copy_cwd: meta.copy_cwd,
        remote_control: false,
        backend,
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
    let manifest = load_manifest()?;
    if !manifest.agents.contains_key(agent) {
        return Err(unknown_agent(&manifest, agent));
    }
    let host = HostEnv::from_process();
    // smolvm is checked before anything else is shown, so a missing install is one line.
    let smolvm = if opts.backend == BackendKind::Smolmachines {
        match smolmachines::preflight(&RealRunner) {
            Ok(v) => Some(v),
            Err(e) if dry_run => {
                say(&format!("note: {e}"));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    if opts.backend == BackendKind::Docker {
        let docker_host = host.vars.get("DOCKER_HOST").map(String::as_str);
        // The answer is cached in the user's cache dir, never in the bot-bottle home: a dry
        // run leaves the home exactly as it was.
        let probe = match cache_dir(&host) {
            Some(dir) => engine_probe::probe_gvisor_cached(
                docker_host,
                ENGINE_PROBE_TIMEOUT,
                &dir.join("engine-probe"),
            ),
            None => engine_probe::probe_gvisor(docker_host, ENGINE_PROBE_TIMEOUT),
        };
        opts.gvisor = probe.map(|g| g == engine_probe::Gvisor::Usable);
        match probe {
            None => warn(
                "the Docker engine did not answer; runtime shown as `runc` (start Docker to launch)",
            ),
            Some(engine_probe::Gvisor::NoHostUds) => warn(
                "gVisor (`runsc`) is registered without `--host-uds=open`, which the agent's relay needs; running under runc (add \"runtimeArgs\": [\"--host-uds=open\"] to its daemon.json entry to use gVisor)",
            ),
            Some(_) => {}
        }
    }
    let mut plan = plan::resolve(&manifest, agent, &opts, &host)?;
    // The summary, then which gates this build runs, so the operator knows what enforces the
    // routes above.
    eprintln!("{}", plan.to_string().trim_end());
    eprintln!(
        "  gates      egress (allowlist, credential injection, secret scan, SSRF guard); pipelock: not bundled\n"
    );
    let missing = not_available(&plan);
    let smol_refusal = (plan.backend == BackendKind::Smolmachines)
        .then(|| smolmachines::check_plan(&plan).err())
        .flatten();
    if dry_run {
        for m in &missing {
            say(&format!(
                "note: {m} is not available yet; `start` will refuse this bottle"
            ));
        }
        if let Some(e) = &smol_refusal {
            say(&format!("note: {e}"));
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
    if let Some(e) = smol_refusal {
        return Err(e.into());
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
    launch(&plan, &host, smolvm.flatten())
}

/// `$XDG_CACHE_HOME/bot-bottle`, else `~/.cache/bot-bottle`.
fn cache_dir(host: &HostEnv) -> Option<std::path::PathBuf> {
    match host
        .vars
        .get("XDG_CACHE_HOME")
        .filter(|v| v.starts_with('/'))
    {
        Some(x) => Some(std::path::PathBuf::from(x).join("bot-bottle")),
        None => host
            .home
            .as_ref()
            .map(|h| h.join(".cache").join("bot-bottle")),
    }
}

/// Capabilities a bottle may declare that are not built yet: refused before anything runs.
fn not_available(plan: &BottlePlan) -> Vec<String> {
    let mut v = Vec::new();
    if !plan.git_upstreams.is_empty() {
        v.push("`git-gate.repos` (the git gate)".to_string());
    }
    if plan.supervise {
        v.push("`supervise: true` (the supervise server)".to_string());
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

fn launch(
    plan: &BottlePlan,
    host: &HostEnv,
    smolvm: Option<smolmachines::version::SmolvmVersion>,
) -> anyhow::Result<ExitCode> {
    interrupt::install();
    let result = match plan.backend {
        BackendKind::Docker => launch_inner(plan, host),
        BackendKind::Smolmachines => launch_smolmachines(plan, host, smolvm),
    };
    // A Ctrl-C ends the children too, so the step that was running fails; what counts for
    // the exit code is that the operator interrupted (everything created was undone).
    if interrupt::interrupted() {
        say("interrupted; everything created was removed");
        return Ok(ExitCode::from(130));
    }
    result
}

fn launch_inner(plan: &BottlePlan, host: &HostEnv) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    // The operator's extra CAs go into both images and, for upstream verification, to egress.
    let cas = crate::backend::docker::images::extra_cas(host)?;
    let extra_ca: Option<String> = (!cas.is_empty()).then(|| {
        cas.iter()
            .map(|c| String::from_utf8_lossy(c).trim_end().to_string() + "\n")
            .collect()
    });
    say("checking images");
    let images = crate::backend::docker::images::for_plan(&runner, plan, host, &cas)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let launcher = Launcher {
        runner: &runner,
        compose: std::cell::Cell::new(ComposeCmd::assume_v2()),
        agent_image: images.agent,
        sidecar_image: images.sidecar,
        extra_ca_pem: extra_ca,
        say: &|m| say(m),
        warn: &|m| warn(m),
        now,
    };
    let pinned = plan
        .names
        .container_pinned
        .then_some(plan.names.agent_container.as_str());
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    match launcher.run(plan, pinned, tty) {
        Ok(outcome) if outcome.exit_code == 0 => {
            say(&format!(
                "bottle `{}` ended and was removed",
                outcome.identity
            ));
            Ok(ExitCode::SUCCESS)
        }
        Ok(outcome) => {
            say(&format!(
                "the agent exited with code {}; state kept: `bot-bottle resume {}`",
                outcome.exit_code, outcome.identity
            ));
            Ok(ExitCode::from(1))
        }
        Err(DockerError::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => Err(e.into()),
    }
}

/// The smolmachines launch: the same images as Docker (the agent's is packed for smolvm),
/// then the backend's own sequence.
fn launch_smolmachines(
    plan: &BottlePlan,
    host: &HostEnv,
    version: Option<smolmachines::version::SmolvmVersion>,
) -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let cas = crate::backend::docker::images::extra_cas(host)?;
    let extra_ca: Option<String> = (!cas.is_empty()).then(|| {
        cas.iter()
            .map(|c| String::from_utf8_lossy(c).trim_end().to_string() + "\n")
            .collect()
    });
    let home = host
        .home
        .clone()
        .context("HOME is not set; the smolmachines backend keeps its artifacts under it")?;
    let cache = cache_dir(host)
        .context("HOME is not set; the smolmachines backend keeps its artifacts under it")?;
    say("checking images");
    let images = crate::backend::docker::images::for_plan(&runner, plan, host, &cas)?;
    let compose = ComposeCmd::detect(&runner)?;
    let macos = cfg!(target_os = "macos");
    let xdg_data = host.vars.get("XDG_DATA_HOME").map(std::path::PathBuf::from);
    let launcher = smolmachines::launch::Launcher {
        runner: &runner,
        host: smolmachines::launch::SmolHost {
            macos,
            cache_dir: cache.join("smolmachines"),
            smolvm_db: smolmachines::version::database_path(macos, &home, xdg_data.as_deref()),
            version,
        },
        compose,
        agent_image: images.agent,
        sidecar_image: images.sidecar,
        extra_ca_pem: extra_ca,
        say: &|m| say(m),
        warn: &|m| warn(m),
        now: host.now_unix,
    };
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    match launcher.run(plan, tty) {
        Ok(outcome) if outcome.exit_code == 0 => {
            say(&format!(
                "bottle `{}` ended and was removed",
                outcome.identity
            ));
            Ok(ExitCode::SUCCESS)
        }
        Ok(outcome) => {
            say(&format!(
                "the agent exited with code {}; state kept: `bot-bottle resume {}`",
                outcome.exit_code, outcome.identity
            ));
            Ok(ExitCode::from(1))
        }
        Err(smolmachines::SmolError::Interrupted) => Ok(ExitCode::from(130)),
        Err(e) => Err(e.into()),
    }
}

/// `build-images`: every provider image and the sidecar image, built or found cached.
pub fn build_images() -> anyhow::Result<ExitCode> {
    let runner = RealRunner;
    let host = HostEnv::from_process();
    crate::backend::docker::images::build_all(&runner, &host, &|m| say(m))?;
    Ok(ExitCode::SUCCESS)
}
