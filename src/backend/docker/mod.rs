//! The Docker backend (SPEC F-DOCK): one compose project per bottle, an agent container with
//! no network at all, a sidecar bundle that holds every gate.
//!
//! Rendering is pure ([`compose`], [`sidecar_config`], [`provision`]); [`launch`] sequences
//! runner calls and undoes them in reverse; [`discover`] reads what exists in one engine call;
//! [`build`] and [`images`] make the images; [`engine_probe`] answers the preflight.
//! [`DockerBackend`] ties them to the [`Backend`] trait.

pub mod build;
pub mod compose;
pub(crate) mod discover;
pub(crate) mod engine_probe;
pub mod images;
pub mod launch;
pub mod provision;
pub(crate) mod sidecar_config;

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{
    Backend, BackendError, CleanupItem, CleanupPlan, HostCheck, Outcome, Prepared, Ui,
};
use crate::plan::{BottlePlan, BuildPlan, HostEnv};
use crate::runner::{Output, ProcessSpec, RunError, Runner};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("`{command}` failed with exit code {code}: {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error(
        "neither `docker compose` (v2) nor `docker-compose` (v1) answers; install the Docker compose plugin"
    )]
    NoCompose,
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "container name `{0}` is taken (pinned by BOT_BOTTLE_CONTAINER); remove it or unset the variable"
    )]
    PinnedNameTaken(String),
    #[error("no free name for `{0}` after 100 tries; run `bot-bottle cleanup`")]
    NoFreeName(String),
    #[error("no running bottle `{0}`; see `bot-bottle list active`")]
    NotRunning(String),
    #[error("{0}")]
    Refused(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

impl DockerError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DockerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// How to invoke compose on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ComposeCmd {
    /// `true` for the v1 `docker-compose` program.
    pub v1: bool,
}

impl ComposeCmd {
    /// Ask `docker compose` first, then fall back to `docker-compose`.
    pub(crate) fn detect(runner: &dyn Runner) -> Result<Self, DockerError> {
        let v2 = ProcessSpec::new("docker").args(["compose", "version", "--short"]);
        if runner.run(&v2).is_ok_and(|o| o.success()) {
            return Ok(ComposeCmd { v1: false });
        }
        let v1 = ProcessSpec::new("docker-compose").args(["version", "--short"]);
        if runner.run(&v1).is_ok_and(|o| o.success()) {
            return Ok(ComposeCmd { v1: true });
        }
        Err(DockerError::NoCompose)
    }

    /// The common case, assumed until the engine says otherwise: a launch starts with
    /// `docker compose` and falls back to v1 only when the CLI reports no such command, which
    /// saves a `docker compose version` call (~70 ms) on every start.
    pub(crate) fn assume_v2() -> Self {
        ComposeCmd { v1: false }
    }

    /// Did a `docker compose …` call fail because the plugin is not installed?
    pub(crate) fn is_missing_v2(err: &DockerError) -> bool {
        matches!(err, DockerError::Command { stderr, .. }
            if stderr.contains("unknown command") || stderr.contains("is not a docker command"))
    }

    /// Is `docker-compose` (v1) there?
    pub(crate) fn v1_available(runner: &dyn Runner) -> bool {
        let v1 = ProcessSpec::new("docker-compose").args(["version", "--short"]);
        runner.run(&v1).is_ok_and(|o| o.success())
    }

    /// `compose -p <project> -f <file> <args…>`.
    pub(crate) fn spec(&self, project: &str, file: &std::path::Path, args: &[&str]) -> ProcessSpec {
        let base = if self.v1 {
            ProcessSpec::new("docker-compose")
        } else {
            ProcessSpec::new("docker").arg("compose")
        };
        base.args(["-p", project, "-f"])
            .arg(file.display().to_string())
            .args(args.iter().copied())
    }
}

/// `docker <args…>`.
pub fn docker<I, S>(args: I) -> ProcessSpec
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    ProcessSpec::new("docker").args(args)
}

/// Run and turn a non-zero exit into an error that carries the command and its stderr.
pub(crate) fn check(runner: &dyn Runner, spec: &ProcessSpec) -> Result<Output, DockerError> {
    let out = runner.run(spec)?;
    if out.success() {
        Ok(out)
    } else {
        Err(command_error(spec, &out))
    }
}

pub(crate) fn command_error(spec: &ProcessSpec, out: &Output) -> DockerError {
    let stderr = out.stderr_str();
    let stderr = stderr.trim();
    // The last few lines carry the cause (tar and compose print a summary line last).
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last = lines[lines.len().saturating_sub(4)..].join("; ");
    DockerError::Command {
        command: spec.to_string(),
        code: out.code,
        stderr: last,
    }
}

/// How long the preflight waits for the engine's answer before calling it unknown.
const ENGINE_PROBE_TIMEOUT: Duration = Duration::from_millis(750);

/// The Docker backend: one compose project per bottle on the engine `docker` talks to.
pub(crate) struct DockerBackend<'r> {
    runner: &'r dyn Runner,
}

impl<'r> DockerBackend<'r> {
    pub(crate) fn new(runner: &'r dyn Runner) -> Self {
        DockerBackend { runner }
    }
}

/// `$XDG_CACHE_HOME/bot-bottle`, else `~/.cache/bot-bottle`: where the engine probe's answer
/// is cached (never in the bot-bottle home, so a dry run leaves the home as it was).
fn cache_dir(host: &HostEnv) -> Option<PathBuf> {
    match host
        .var_nonempty("XDG_CACHE_HOME")
        .filter(|v| v.starts_with('/'))
    {
        Some(x) => Some(PathBuf::from(x).join("bot-bottle")),
        None => host
            .home
            .as_ref()
            .map(|h| h.join(".cache").join("bot-bottle")),
    }
}

impl Backend for DockerBackend<'_> {
    fn check_host(&self, host: &HostEnv) -> Result<HostCheck, BackendError> {
        let docker_host = host.var_nonempty("DOCKER_HOST");
        let probe = match cache_dir(host) {
            Some(dir) => engine_probe::probe_gvisor_cached(
                docker_host,
                ENGINE_PROBE_TIMEOUT,
                &dir.join("engine-probe"),
            ),
            None => engine_probe::probe_gvisor(docker_host, ENGINE_PROBE_TIMEOUT),
        };
        let mut warnings = Vec::new();
        match probe {
            None => warnings.push(
                "the Docker engine did not answer; runtime shown as `runc` (start Docker to launch)"
                    .to_string(),
            ),
            Some(engine_probe::Gvisor::NoHostUds) => warnings.push(
                "gVisor (`runsc`) is registered without `--host-uds=open`, which the agent's relay needs; running under runc (add \"runtimeArgs\": [\"--host-uds=open\"] to its daemon.json entry to use gVisor)"
                    .to_string(),
            ),
            Some(_) => {}
        }
        Ok(HostCheck {
            gvisor: probe.map(|g| g == engine_probe::Gvisor::Usable),
            warnings,
        })
    }

    fn prepare(&self, plan: &BottlePlan, ui: &dyn Ui) -> Result<Prepared, BackendError> {
        ui.say("checking images");
        Ok(images::for_plan(self.runner, plan, ui)?)
    }

    fn prepare_all(&self, build: &BuildPlan, ui: &dyn Ui) -> Result<(), BackendError> {
        Ok(images::build_all(
            self.runner,
            &build.sidecar_image,
            &build.extra_cas,
            ui,
        )?)
    }

    fn launch(
        &self,
        plan: &BottlePlan,
        prepared: &Prepared,
        ui: &dyn Ui,
        tty: bool,
    ) -> Result<Outcome, BackendError> {
        let launcher = launch::Launcher {
            runner: self.runner,
            compose: std::cell::Cell::new(ComposeCmd::assume_v2()),
            prepared,
            ui,
        };
        Ok(launcher.run(plan, tty)?)
    }

    fn exec(&self, identity: &str, command: &[String], tty: bool) -> Result<i32, BackendError> {
        let container = discover::agent_container(self.runner, identity)?;
        let spec = launch::exec_spec(&container, command, tty);
        Ok(self
            .runner
            .run_interactive(&spec)
            .map_err(DockerError::from)?)
    }

    fn cleanup_plan(&self) -> Result<CleanupPlan, BackendError> {
        let left = discover::leftovers(self.runner)?;
        let mut items = Vec::new();
        for (kind, names) in [
            ("container", &left.containers),
            ("network", &left.networks),
            ("volume", &left.volumes),
        ] {
            items.extend(names.iter().map(|n| CleanupItem {
                kind,
                name: n.clone(),
            }));
        }
        Ok(CleanupPlan {
            items,
            state_dirs: Vec::new(),
        })
    }

    fn cleanup(&self, plan: &CleanupPlan, _ui: &dyn Ui) -> Result<(), BackendError> {
        let of = |kind: &str| -> Vec<String> {
            plan.items
                .iter()
                .filter(|i| i.kind == kind)
                .map(|i| i.name.clone())
                .collect()
        };
        let left = discover::Leftovers {
            containers: of("container"),
            networks: of("network"),
            volumes: of("volume"),
            identities: Vec::new(),
        };
        Ok(discover::remove(self.runner, &left)?)
    }
}
