//! The smolmachines backend (SPEC F-SMOL; macOS, experimental): the agent runs in a smolvm
//! micro-VM, the sidecar bundle stays in Docker.
//!
//! The VM's only network allowlist entry is the bottle's loopback alias (/32), and the
//! bundle publishes egress on that alias alone ([`alias`], [`bundle`]). The agent image is
//! packed into a smolmachine artifact through a throwaway local registry and cached by image
//! id ([`pack`]). smolvm versions that drop `--allow-cidr` get the allowlist written into
//! their machine database before the VM starts ([`version`]). [`launch`] sequences it all
//! with an undo stack; [`discover`] finds VMs for `list active` and `cleanup`. Every command
//! is a [`ProcessSpec`] through the runner.

pub mod alias;
pub mod bundle;
pub mod discover;
pub mod launch;
pub mod pack;
pub mod version;
pub mod vm;

use std::path::PathBuf;

use crate::backend::docker::DockerError;
use crate::runner::{ProcessSpec, RunError, Runner};

pub use crate::backend::docker::compose::{LABEL_BACKEND, LABEL_IDENTITY, LABEL_SERVICE};

/// The backend's name in labels, metadata and `list active`.
pub const BACKEND_NAME: &str = "smolmachines";
/// `label=value` of the backend label, for `--label` and `--filter`.
pub const LABEL_BACKEND_KV: &str = "dev.bot-bottle.backend=smolmachines";
/// Label on the bundle naming the loopback alias it publishes on (read by allocation).
pub const LABEL_ALIAS: &str = "dev.bot-bottle.alias";
/// What to install when `smolvm` is missing.
pub const INSTALL_HINT: &str = "the smolmachines backend needs `smolvm` on PATH (macOS): install it with `curl -sSL https://smolmachines.com/install.sh | sh`, or use `--backend docker`";

#[derive(Debug, thiserror::Error)]
pub enum SmolError {
    #[error("{INSTALL_HINT}")]
    NotInstalled,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("`{command}` failed with exit code {code}: {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error(
        "bottle `{bottle}` forwards {names} from the host; the smolmachines backend cannot pass a secret into the VM without putting it on a command line, so nothing was started (route the credential through `egress.routes[].auth`, or use `--backend docker`)"
    )]
    ForwardedEnv { bottle: String, names: String },
    #[error(
        "all 16 loopback aliases (127.0.0.16-127.0.0.31) are in use by running smolmachines bottles; end one (`bot-bottle list active`) and start again"
    )]
    PoolExhausted,
    #[error(
        "adding the loopback aliases failed (exit {0}); add them by hand with `sudo ifconfig lo0 alias 127.0.0.N/32 up` for N in 16..31, then start again"
    )]
    AliasSetup(i32),
    #[error(
        "smolvm {version} drops `--allow-cidr`, and its machine database `{}` {reason}; nothing was started (upgrade smolvm)", db.display()
    )]
    Allowlist {
        version: String,
        db: PathBuf,
        reason: String,
    },
    #[error(
        "`{image}` has no usable image id (`{got}`); rebuild it with `bot-bottle build-images`"
    )]
    ImageId { image: String, got: String },
    #[error("the VM `{0}` did not answer `machine exec` after it started; see `smolvm machine ls`")]
    NotReady(String),
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("interrupted")]
    Interrupted,
}

impl SmolError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SmolError::Io {
            path: path.into(),
            source,
        }
    }
}

/// `smolvm <args…>`.
pub fn smolvm<I, S>(args: I) -> ProcessSpec
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    ProcessSpec::new("smolvm").args(args)
}

/// Run and turn a non-zero exit into an error carrying the command and its stderr.
pub(crate) fn check(
    runner: &dyn Runner,
    spec: &ProcessSpec,
) -> Result<crate::runner::Output, SmolError> {
    let out = runner.run(spec)?;
    if out.success() {
        Ok(out)
    } else {
        match crate::backend::docker::command_error(spec, &out) {
            DockerError::Command {
                command,
                code,
                stderr,
            } => Err(SmolError::Command {
                command,
                code,
                stderr,
            }),
            other => Err(other.into()),
        }
    }
}

/// `smolvm --version`: whether smolvm is installed, and which version (for the allowlist
/// workaround). A missing program is [`SmolError::NotInstalled`].
pub fn preflight(runner: &dyn Runner) -> Result<Option<version::SmolvmVersion>, SmolError> {
    match runner.run(&smolvm(["--version"])) {
        Ok(out) if out.success() => Ok(version::parse(&out.stdout_str())),
        Ok(out) => Err(SmolError::Command {
            command: "smolvm --version".into(),
            code: out.code,
            stderr: out.stderr_str().trim().to_string(),
        }),
        Err(RunError::NotFound { .. }) => Err(SmolError::NotInstalled),
        Err(e) => Err(e.into()),
    }
}

/// Refuses bottles that forward host values into the agent: smolvm takes a VM's
/// environment only on its command line.
pub fn check_plan(plan: &crate::plan::BottlePlan) -> Result<(), SmolError> {
    let names: Vec<&str> = plan
        .env
        .forwarded
        .keys()
        .chain(plan.env.prompted.keys())
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(SmolError::ForwardedEnv {
        bottle: plan.bottle.clone(),
        names: names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::testutil::{agent, bottle, host, manifest};
    use crate::plan::{BackendKind, BottlePlan, StartOptions};
    use crate::runner::{Output, RecordingRunner};

    pub(crate) fn plan() -> BottlePlan {
        let m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
        let opts = StartOptions {
            identity: None,
            copy_cwd: false,
            remote_control: false,
            backend: BackendKind::Smolmachines,
            gvisor: None,
            resume: false,
        };
        crate::plan::resolve(&m, "reviewer", &opts, &host()).unwrap()
    }

    #[test]
    fn a_missing_smolvm_says_what_to_install() {
        let rec = RecordingRunner::fallible(|s| {
            Err(RunError::NotFound {
                program: s.program.clone(),
            })
        });
        let err = preflight(&rec).unwrap_err();
        assert!(matches!(err, SmolError::NotInstalled));
        let msg = err.to_string();
        assert!(msg.contains("smolvm") && msg.contains("install"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn preflight_reads_the_version() {
        let rec = RecordingRunner::new(|_| Output::ok("smolvm 0.8.0\n"));
        let v = preflight(&rec).unwrap();
        assert_eq!(v.map(|v| v.to_string()).as_deref(), Some("0.8.0"));
        assert_eq!(rec.calls()[0].argv(), vec!["smolvm", "--version"]);
    }

    #[test]
    fn forwarded_env_is_refused() {
        let mut p = plan();
        assert!(check_plan(&p).is_ok());
        p.env
            .forwarded
            .insert("API_KEY".into(), crate::secret::Secret::new("v"));
        let msg = check_plan(&p).unwrap_err().to_string();
        assert!(
            msg.contains("`API_KEY`") && msg.contains("egress.routes"),
            "{msg}"
        );
    }
}
