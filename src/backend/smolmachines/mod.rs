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

pub(crate) mod alias;
pub(crate) mod bundle;
pub(crate) mod discover;
pub(crate) mod launch;
pub(crate) mod pack;
pub(crate) mod version;
pub(crate) mod vm;

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::backend::docker::{ComposeCmd, DockerError};
use crate::backend::{
    Backend, BackendError, CleanupItem, CleanupPlan, HostCheck, Outcome, Prepared, Ui,
};
use crate::plan::{BottlePlan, BuildPlan, HostEnv};
use crate::runner::{ProcessSpec, RunError, Runner};

pub(crate) use crate::backend::docker::compose::{LABEL_IDENTITY, LABEL_SERVICE};

/// The backend's name in labels, metadata and `list active`.
pub(crate) const BACKEND_NAME: &str = "smolmachines";
/// `label=value` of the backend label, for `--label` and `--filter`.
pub(crate) const LABEL_BACKEND_KV: &str = "dev.bot-bottle.backend=smolmachines";
/// Label on the bundle naming the loopback alias it publishes on (read by allocation).
pub(crate) const LABEL_ALIAS: &str = "dev.bot-bottle.alias";
/// Label on the bundle holding the agent's environment (non-secret values only: this backend
/// refuses forwarded ones), for `exec` into the VM ([`bundle::encode_env`]).
pub(crate) const LABEL_AGENT_ENV: &str = "dev.bot-bottle.agent-env";
/// What to install when `smolvm` is missing.
pub(crate) const INSTALL_HINT: &str = "the smolmachines backend needs `smolvm` on PATH (macOS): install it with `curl -sSL https://smolmachines.com/install.sh | sh`, or use `--backend docker`";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SmolError {
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
pub(crate) fn smolvm<I, S>(args: I) -> ProcessSpec
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
pub(crate) fn preflight(runner: &dyn Runner) -> Result<Option<version::SmolvmVersion>, SmolError> {
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
pub(crate) fn check_plan(plan: &crate::plan::BottlePlan) -> Result<(), SmolError> {
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

impl From<SmolError> for BackendError {
    fn from(e: SmolError) -> Self {
        match e {
            SmolError::Interrupted => BackendError::Interrupted,
            SmolError::NotInstalled => BackendError::HostNotReady(INSTALL_HINT.to_string()),
            SmolError::Docker(d) => d.into(),
            other => BackendError::Smolmachines(other),
        }
    }
}

/// The smolmachines backend behind the [`Backend`] trait. [`Backend::check_host`] records
/// what the launch needs from the host (smolvm's version, the cache dir, smolvm's database),
/// so nothing later reads the environment.
pub(crate) struct SmolmachinesBackend<'r> {
    runner: &'r dyn Runner,
    host: OnceCell<launch::SmolHost>,
}

impl<'r> SmolmachinesBackend<'r> {
    pub(crate) fn new(runner: &'r dyn Runner) -> Self {
        SmolmachinesBackend {
            runner,
            host: OnceCell::new(),
        }
    }

    /// The host facts `check_host` recorded.
    fn host(&self) -> Result<&launch::SmolHost, BackendError> {
        self.host.get().ok_or_else(|| {
            BackendError::HostNotReady("the smolmachines host check did not run".into())
        })
    }
}

/// The host facts a launch needs, from the [`HostEnv`] and `smolvm --version`.
pub(crate) fn host_facts(
    host: &HostEnv,
    version: Option<version::SmolvmVersion>,
) -> Result<launch::SmolHost, SmolError> {
    let home = host.home.clone().ok_or_else(|| {
        SmolError::Refused(
            "HOME is not set; the smolmachines backend keeps its artifacts under it".into(),
        )
    })?;
    let cache = match host
        .var_nonempty("XDG_CACHE_HOME")
        .filter(|v| v.starts_with('/'))
    {
        Some(x) => PathBuf::from(x).join("bot-bottle"),
        None => home.join(".cache").join("bot-bottle"),
    };
    let macos = cfg!(target_os = "macos");
    let xdg_data = host.var_nonempty("XDG_DATA_HOME").map(PathBuf::from);
    Ok(launch::SmolHost {
        macos,
        cache_dir: cache.join("smolmachines"),
        smolvm_db: version::database_path(macos, &home, xdg_data.as_deref()),
        version,
    })
}

impl Backend for SmolmachinesBackend<'_> {
    fn check_host(&self, host: &HostEnv) -> Result<HostCheck, BackendError> {
        let version = preflight(self.runner)?;
        let facts = host_facts(host, version)?;
        let mut warnings = Vec::new();
        if !facts.macos {
            warnings.push(
                "the smolmachines backend is built for macOS and is experimental elsewhere"
                    .to_string(),
            );
        }
        let _ = self.host.set(facts);
        Ok(HostCheck {
            gvisor: None,
            warnings,
        })
    }

    fn prepare(&self, plan: &BottlePlan, ui: &dyn Ui) -> Result<Prepared, BackendError> {
        check_plan(plan)?;
        ui.say("checking images");
        Ok(crate::backend::docker::images::for_plan(
            self.runner,
            plan,
            ui,
        )?)
    }

    /// The images are Docker images on this backend too (the agent's is packed for smolvm
    /// at launch, cached by image id).
    fn prepare_all(&self, build: &BuildPlan, ui: &dyn Ui) -> Result<(), BackendError> {
        crate::backend::docker::DockerBackend::new(self.runner).prepare_all(build, ui)
    }

    fn launch(
        &self,
        plan: &BottlePlan,
        prepared: &Prepared,
        ui: &dyn Ui,
        tty: bool,
    ) -> Result<Outcome, BackendError> {
        let compose = ComposeCmd::detect(self.runner)?;
        let launcher = launch::Launcher {
            runner: self.runner,
            host: self.host()?,
            compose,
            prepared,
            ui,
        };
        Ok(launcher.run(plan, tty)?)
    }

    fn exec(&self, identity: &str, command: &[String], tty: bool) -> Result<i32, BackendError> {
        let machine = launch::machine_name(identity);
        let running = discover::machines(self.runner)?
            .iter()
            .any(|m| m.name == machine && m.state.eq_ignore_ascii_case("running"));
        // The bundle says which alias the bottle's proxy is on, and carries the agent's
        // environment, which `machine exec` must set again on every call.
        let ps = check(self.runner, &launch::bundles_spec())?;
        let bundle = crate::backend::docker::discover::parse_ps(&ps.stdout_str())
            .into_iter()
            .find(|c| c.labels.get(LABEL_IDENTITY).map(String::as_str) == Some(identity));
        let alias = bundle
            .as_ref()
            .and_then(|c| c.labels.get(LABEL_ALIAS).and_then(|a| a.parse().ok()));
        let (true, Some(alias), Some(bundle)) = (running, alias, bundle) else {
            return Err(DockerError::NotRunning(identity.to_string()).into());
        };
        // A bundle from before the label gets the proxy settings alone.
        let env = bundle
            .labels
            .get(LABEL_AGENT_ENV)
            .and_then(|v| bundle::decode_env(v))
            .unwrap_or_else(|| launch::proxy_env(identity, alias));
        let spec = vm::agent_exec_spec(&machine, &env, command, tty);
        Ok(self
            .runner
            .run_interactive(&spec)
            .map_err(SmolError::from)?)
    }

    fn cleanup_plan(&self) -> Result<CleanupPlan, BackendError> {
        let items = discover::machines(self.runner)?
            .into_iter()
            .map(|m| CleanupItem {
                kind: "vm",
                name: m.name,
            })
            .collect();
        Ok(CleanupPlan {
            items,
            state_dirs: Vec::new(),
        })
    }

    fn cleanup(&self, plan: &CleanupPlan, _ui: &dyn Ui) -> Result<(), BackendError> {
        let machines: Vec<discover::Machine> = plan
            .items
            .iter()
            .filter(|i| i.kind == "vm")
            .map(|i| discover::Machine {
                name: i.name.clone(),
                state: String::new(),
            })
            .collect();
        Ok(discover::remove(self.runner, &machines)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::testutil::{agent, bottle, host, manifest};
    use crate::plan::{BackendKind, BottlePlan, StartOptions};
    use crate::runner::{Output, RecordingRunner};

    pub(crate) fn plan() -> BottlePlan {
        let m = manifest(vec![bottle("dev")], vec![agent("reviewer", "dev")]);
        let opts = StartOptions::fresh(BackendKind::Smolmachines);
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
