//! The Docker backend (SPEC F-DOCK): one compose project per bottle, an agent container with
//! no network at all, a sidecar bundle that holds every gate.
//!
//! Rendering is pure ([`compose`], [`sidecar_config`], [`provision`]); [`launch`] sequences
//! runner calls and undoes them in reverse; [`discover`] reads what exists in one engine call.

pub mod compose;
pub mod discover;
pub mod images;
pub mod launch;
pub mod provision;
pub mod sidecar_config;

use std::path::PathBuf;

use crate::runner::{Output, ProcessSpec, RunError, Runner};

/// Prefix of every resource name (security invariant 6: `cleanup` finds them all by it).
pub const NAME_PREFIX: &str = "bot-bottle-";

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
pub struct ComposeCmd {
    /// `true` for the v1 `docker-compose` program.
    pub v1: bool,
}

impl ComposeCmd {
    /// Ask `docker compose` first, then fall back to `docker-compose`.
    pub fn detect(runner: &dyn Runner) -> Result<Self, DockerError> {
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
    pub fn assume_v2() -> Self {
        ComposeCmd { v1: false }
    }

    /// Did a `docker compose …` call fail because the plugin is not installed?
    pub fn is_missing_v2(err: &DockerError) -> bool {
        matches!(err, DockerError::Command { stderr, .. }
            if stderr.contains("unknown command") || stderr.contains("is not a docker command"))
    }

    /// Is `docker-compose` (v1) there?
    pub fn v1_available(runner: &dyn Runner) -> bool {
        let v1 = ProcessSpec::new("docker-compose").args(["version", "--short"]);
        runner.run(&v1).is_ok_and(|o| o.success())
    }

    /// `compose -p <project> -f <file> <args…>`.
    pub fn spec(&self, project: &str, file: &std::path::Path, args: &[&str]) -> ProcessSpec {
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
pub fn check(runner: &dyn Runner, spec: &ProcessSpec) -> Result<Output, DockerError> {
    let out = runner.run(spec)?;
    if out.success() {
        Ok(out)
    } else {
        Err(command_error(spec, &out))
    }
}

pub fn command_error(spec: &ProcessSpec, out: &Output) -> DockerError {
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
