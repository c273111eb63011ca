//! Plan resolution: everything a launch needs, resolved on the host before anything runs.
//!
//! [`resolve`] turns a validated [`Manifest`], an agent name, the start options and a
//! [`HostEnv`] into a [`BottlePlan`]: names, image, env (literal / forwarded / prompted),
//! provider command and files, skills, git identity and upstreams, and the effective egress
//! routes with their token slots, and the resource limits. Every host check (skill dirs, key files, Dockerfiles, the
//! Codex login) happens here, so a bad setup stops before any container exists. Nothing in
//! this module reads the process environment or the clock except [`HostEnv::from_process`].
//! `Display` on the plan is the preflight summary; it never prints a value that could be a
//! secret.

mod cas;
pub(crate) mod codex_auth;
mod creds;
mod env;
mod error;
mod git;
mod host;
mod image;
mod limits;
mod names;
pub mod provider;
mod routes;
mod skills;
mod summary;
#[cfg(test)]
pub(crate) mod testutil;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cas::extra_cas;
pub(crate) use creds::CredentialUse;
pub(crate) use env::EnvPlan;
pub use error::PlanError;
pub(crate) use git::{
    GitIdentity, GitUpstream, Provenance, extra_hosts as git_extra_hosts, parse_ssh_url,
};
pub use host::HostEnv;
pub use image::SIDECAR_TAG;
pub(crate) use image::{
    BuildPlan, GITLEAKS_BIN, ImagePlan, ImageSource, REBUILT_DOCKERFILE, SidecarImage,
};
pub(crate) use limits::{ContainerLimits, LimitsPlan};
pub use names::Names;
pub(crate) use names::{PREFIX, mint_identity};
pub(crate) use provider::ProviderPlan;
pub(crate) use routes::EgressRoute;
pub(crate) use skills::Skill;

use crate::envvars;
use crate::manifest::Manifest;
pub use crate::manifest::ProviderKind;
use crate::secret::Secret;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BackendKind {
    Docker,
    Smolmachines,
}

impl BackendKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Smolmachines => "smolmachines",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<BackendKind, PlanError> {
        match name {
            "docker" => Ok(BackendKind::Docker),
            "smolmachines" => Ok(BackendKind::Smolmachines),
            other => Err(PlanError::UnknownBackend(other.to_string())),
        }
    }
}

/// A deliberate hole in a bottle, for tests that prove `doctor` and the escape suite notice
/// one. Only debug builds read it ([`Weakening::from_host`]), so an operator's release build
/// can never be weakened by a stray variable (decision 0035).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weakening {
    /// The agent container gets Docker's default bridge network instead of none, under runc:
    /// the engine starts gVisor's sandbox without a network, so under it the hole would not
    /// open.
    Network,
    /// The agent runs under runc even when gVisor is registered.
    Runc,
}

impl Weakening {
    /// `BOT_BOTTLE_TEST_WEAKEN` in a debug build; always `None` in a release build.
    pub(crate) fn from_host(host: &HostEnv) -> Option<Weakening> {
        if !cfg!(debug_assertions) {
            return None;
        }
        match host.vars.get(envvars::TEST_WEAKEN).map(String::as_str) {
            Some("network") => Some(Weakening::Network),
            Some("runc") => Some(Weakening::Runc),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Weakening::Network => "network",
            Weakening::Runc => "runc",
        }
    }
}

/// The container runtime the agent runs under.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Runtime {
    /// gVisor is registered with Docker.
    Runsc,
    /// Docker answered without gVisor.
    Runc,
    /// Docker did not answer; shown as runc, launching will need the engine anyway.
    RuncUnknown,
    /// The smolmachines micro-VM.
    MicroVm,
}

impl Runtime {
    pub(crate) fn from_probe(backend: BackendKind, gvisor: Option<bool>) -> Runtime {
        match (backend, gvisor) {
            (BackendKind::Smolmachines, _) => Runtime::MicroVm,
            (BackendKind::Docker, Some(true)) => Runtime::Runsc,
            (BackendKind::Docker, Some(false)) => Runtime::Runc,
            (BackendKind::Docker, None) => Runtime::RuncUnknown,
        }
    }

    /// Whether the agent container gets `--runtime runsc`.
    pub(crate) fn is_runsc(self) -> bool {
        self == Runtime::Runsc
    }

    pub fn label(self) -> &'static str {
        match self {
            Runtime::Runsc => "runsc (gVisor)",
            Runtime::Runc => "runc",
            Runtime::RuncUnknown => "runc (engine not answering)",
            Runtime::MicroVm => "smolvm micro-VM",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StartOptions {
    /// `Some(id)` on resume: the pinned identity.
    pub identity: Option<String>,
    /// `--cwd`: copy the host cwd into the image.
    pub copy_cwd: bool,
    /// `--remote-control` (claude only).
    pub(crate) remote_control: bool,
    pub(crate) backend: BackendKind,
    /// Whether Docker has gVisor registered; `None` when the engine did not answer.
    pub gvisor: Option<bool>,
    pub resume: bool,
}

impl StartOptions {
    /// A new bottle on `backend`: no pinned identity, nothing copied in, no remote control,
    /// the engine's gVisor support not asked yet.
    pub(crate) fn fresh(backend: BackendKind) -> Self {
        StartOptions {
            identity: None,
            copy_cwd: false,
            remote_control: false,
            backend,
            gvisor: None,
            resume: false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BottlePlan {
    /// `<agent-slug>-<random>` or the pinned (resumed) identity.
    pub identity: String,
    pub agent: String,
    pub bottle: String,
    /// The home root.
    pub root: PathBuf,
    pub cwd: PathBuf,
    pub copy_cwd: bool,
    pub resume: bool,
    pub backend: BackendKind,
    pub runtime: Runtime,
    pub names: Names,
    pub image: ImagePlan,
    /// The sidecar bundle image (`BOT_BOTTLE_SIDECAR_IMAGE` or the bundled one).
    pub(crate) sidecar_image: SidecarImage,
    /// The operator's extra CA certificates (PEM blocks), for both images and egress.
    pub extra_cas: Vec<Vec<u8>>,
    /// Unix seconds when the plan was made: the metadata's `started_at` and the provisioning
    /// stream's mtimes. Nothing after plan resolution reads the clock.
    pub started_at: u64,
    pub provider: ProviderPlan,
    pub env: EnvPlan,
    pub skills: Vec<Skill>,
    pub routes: Vec<EgressRoute>,
    /// `EGRESS_TOKEN_<n>` → credential, for the egress sidecar's environment only.
    pub(crate) egress_tokens: BTreeMap<String, Secret>,
    pub(crate) git_user: GitIdentity,
    pub(crate) git_upstreams: Vec<GitUpstream>,
    pub supervise: bool,
    /// pids, memory and CPU limits of the agent and the bundle (F-LIMITS).
    pub limits: LimitsPlan,
    pub(crate) remote_control: bool,
    /// The agent's system prompt (the Markdown body).
    pub prompt: String,
    /// Every credential the bottle uses and whether the host has it (never a value).
    pub(crate) credentials: Vec<CredentialUse>,
    /// A test's deliberate weakening (debug builds only); shown in the preflight.
    pub(crate) weakened: Option<Weakening>,
}

impl BottlePlan {
    /// The extra CAs as one PEM text, for egress's upstream trust; `None` without any.
    pub(crate) fn extra_ca_pem(&self) -> Option<String> {
        (!self.extra_cas.is_empty()).then(|| {
            self.extra_cas
                .iter()
                .map(|c| String::from_utf8_lossy(c).trim_end().to_string() + "\n")
                .collect()
        })
    }

    /// Names of the env the agent sees (bottle and provider), sorted, placeholders left out.
    pub(crate) fn visible_env_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .env
            .names()
            .chain(self.provider.env.keys().map(String::as_str))
            .filter(|n| !self.provider.hidden_env.contains(*n))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Resolve the complete plan for starting `agent`; a credential the host lacks is an error
/// naming the bottle file.
pub(crate) fn resolve(
    m: &Manifest,
    agent: &str,
    opts: &StartOptions,
    host: &HostEnv,
) -> Result<BottlePlan, PlanError> {
    resolve_with(m, agent, opts, host, &mut creds::Creds::strict())
}

/// The same plan for describing an agent (`info`): a missing credential is recorded as not
/// set in [`BottlePlan::credentials`] instead of refused, and its slot holds an empty value.
/// Such a plan must never be launched.
pub(crate) fn resolve_for_info(
    m: &Manifest,
    agent: &str,
    opts: &StartOptions,
    host: &HostEnv,
) -> Result<BottlePlan, PlanError> {
    let mut creds = creds::Creds {
        record_unset: true,
        ..Default::default()
    };
    resolve_with(m, agent, opts, host, &mut creds)
}

fn resolve_with(
    m: &Manifest,
    agent: &str,
    opts: &StartOptions,
    host: &HostEnv,
    creds: &mut creds::Creds,
) -> Result<BottlePlan, PlanError> {
    let a = m
        .agents
        .get(agent)
        .ok_or_else(|| PlanError::UnknownAgent(agent.to_string()))?;
    let b = m
        .bottles
        .get(&a.bottle)
        .ok_or_else(|| PlanError::UnknownBottle {
            agent: agent.to_string(),
            bottle: a.bottle.clone(),
        })?;

    let identity = match &opts.identity {
        Some(id) => {
            names::check_identity(id)?;
            id.clone()
        }
        None => mint_identity(&a.name, &host.random_suffix),
    };
    let names = Names::new(
        &identity,
        host.vars.get(envvars::CONTAINER).map(String::as_str),
        opts.resume,
    )?;
    let state_dir = m.root.join("state").join(&identity);

    // A missing host credential is named with the bottle file that asks for it.
    let in_bottle = |e: PlanError| match e {
        PlanError::MissingAuthToken { .. }
        | PlanError::MissingTokenRef { .. }
        | PlanError::MissingHostVar { .. } => PlanError::InBottle {
            path: b.path.clone(),
            inner: Box::new(e),
        },
        other => other,
    };
    let (provider, provider_routes) =
        provider::resolve_provider_with(b, opts.resume, opts.remote_control, host, creds)
            .map_err(in_bottle)?;
    let env = env::resolve_env_with(&b.env, host, creds).map_err(in_bottle)?;
    let (routes, egress_tokens) =
        routes::effective_routes_with(&provider_routes, &b.egress.routes, host, creds)
            .map_err(in_bottle)?;
    let image = image::resolve_image(b, &identity, &state_dir, host)?;
    let extra_cas = cas::extra_cas(host)?;
    let skills = skills::resolve_skills(&a.skills, host)?;
    let git_user = GitIdentity::overlay(&a.git_user, &b.git_gate.user);
    let bottle_dir = b.path.parent().unwrap_or(&m.root);
    let git_upstreams = git::resolve_upstreams(&b.git_gate.repos, bottle_dir, host)?;
    let weakened = Weakening::from_host(host);

    Ok(BottlePlan {
        identity,
        agent: a.name.clone(),
        bottle: b.name.clone(),
        root: m.root.clone(),
        cwd: host.cwd.clone(),
        copy_cwd: opts.copy_cwd,
        resume: opts.resume,
        backend: opts.backend,
        runtime: match Runtime::from_probe(opts.backend, opts.gvisor) {
            // Either hole is made under runc (see [`Weakening::Network`]).
            Runtime::Runsc if weakened.is_some() => Runtime::Runc,
            r => r,
        },
        names,
        image,
        sidecar_image: SidecarImage::resolve(host),
        extra_cas,
        started_at: host.now_unix,
        provider,
        env,
        skills,
        routes,
        egress_tokens,
        git_user,
        git_upstreams,
        supervise: b.supervise,
        limits: LimitsPlan::resolve(&b.limits, host),
        remote_control: opts.remote_control,
        prompt: a.prompt.clone(),
        credentials: std::mem::take(&mut creds.uses),
        weakened,
    })
}

/// Ask each prompted env value (`ask(name, message)`) and move it into `env.forwarded`.
/// Values already answered stay answered if a later question fails.
pub(crate) fn answer_prompts(
    plan: &mut BottlePlan,
    ask: &mut dyn FnMut(&str, &str) -> std::io::Result<String>,
) -> Result<(), PlanError> {
    while let Some((name, message)) = plan.env.prompted.pop_first() {
        match ask(&name, &message) {
            Ok(value) => {
                plan.env.forwarded.insert(name, Secret::new(value));
            }
            Err(e) => {
                let reason = e.to_string();
                plan.env.prompted.insert(name.clone(), message);
                return Err(PlanError::Prompt { name, reason });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
