//! Typed, validated manifest entities: what the loader produces and `plan` consumes.
//!
//! Every value here has passed validation; `extends` chains are already resolved, so a
//! `Bottle` is the effective bottle. Paths are kept as written (`~` not yet expanded):
//! resolving them against the host is the plan's job.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything loaded from the home root (bottles, agents) and the cwd (agents only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The home root the bottles and home agents came from.
    pub root: PathBuf,
    /// Effective bottles by name (`extends` applied).
    pub bottles: BTreeMap<String, Bottle>,
    /// Agents by name (a cwd agent replaces a home agent of the same name).
    pub agents: BTreeMap<String, Agent>,
    /// Agent files that failed to load, by name: each is reported on its own and never
    /// stops the other agents from loading.
    pub(crate) broken: BTreeMap<String, BrokenAgent>,
    /// Non-fatal findings (ignored cwd `bottles/`, badly named files) for the CLI to print.
    pub(crate) warnings: Vec<String>,
}

/// One bottle: the credentials, routes and remotes an agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bottle {
    pub name: String,
    /// The file this bottle was declared in.
    pub path: PathBuf,
    pub env: BTreeMap<String, EnvValue>,
    pub agent_provider: AgentProvider,
    pub git_gate: GitGate,
    pub egress: Egress,
    pub supervise: bool,
    /// Resource limits the bottle sets; a field left out takes the default (F-LIMITS).
    pub limits: Limits,
}

/// A bottle `env` entry, classified at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A plain value; may be written to a mode-0600 env file.
    Literal(String),
    /// `"?message"`: asked on the terminal at launch without echo; holds the message.
    Prompt(String),
    /// A value containing `${HOST_VAR}` references, interpolated from the host environment
    /// at plan time. Holds the raw template; its references were checked to be well formed.
    Interpolate(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProviderKind {
    #[default]
    Claude,
    Codex,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Claude => "claude",
            ProviderKind::Codex => "codex",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProvider {
    pub template: ProviderKind,
    /// Custom Dockerfile path as written (relative to cwd, `~` allowed).
    pub dockerfile: Option<String>,
    /// Host env var holding the Claude OAuth token (claude only).
    pub(crate) auth_token: Option<String>,
    /// Forward the host's Codex login (codex only).
    pub forward_host_credentials: bool,
}

/// Git identity fields; either may be absent (an agent overlays a bottle per field).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitUser {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitGate {
    pub user: GitUser,
    /// Declared upstreams by repo name (`[A-Za-z0-9._-]+`).
    pub repos: BTreeMap<String, GitRepo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepo {
    /// `ssh://user@host[:port]/path`, validated for that shape.
    pub url: String,
    /// Path of the private key file as written (`~` allowed).
    pub identity: String,
    /// Optional known-hosts line to pin the upstream's host key.
    pub host_key: Option<String>,
    /// What the agent may push (F-REFS); default: any branch, no force, no tags.
    pub refs: GitRefs,
    /// Host name → address pinned in the git-gate's `/etc/hosts` (compose `extra_hosts`), for
    /// upstreams whose name the bundle cannot resolve (e.g. reachable only by IP).
    pub(crate) extra_hosts: BTreeMap<String, std::net::IpAddr>,
}

/// `git-gate.repos.<name>.refs`: the ref policy the git-gate enforces on pushes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitRefs {
    /// Branch-name globs (`agent/*`); empty: any branch.
    pub allow: Vec<String>,
    /// Non-fast-forward pushes allowed.
    pub force: bool,
    /// Tag pushes allowed.
    pub(crate) tags: bool,
}

impl std::fmt::Display for GitRefs {
    /// `branches agent/*, no force, no tags` (the preflight's and `info`'s wording).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.allow.is_empty() {
            write!(f, "any branch")?;
        } else {
            write!(f, "branches {}", self.allow.join(" "))?;
        }
        write!(
            f,
            ", {}, {}, no deletes",
            if self.force {
                "force allowed"
            } else {
                "no force"
            },
            if self.tags { "tags allowed" } else { "no tags" }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host name, lower-cased; unique within a bottle.
    pub host: String,
    /// Path prefixes (each starts with `/`); empty means every path.
    pub path_allowlist: Vec<String>,
    pub auth: Option<RouteAuth>,
    pub(crate) pipelock: PipelockOpts,
}

/// One definition for the manifest, the plan and the egress routes file.
pub(crate) use crate::sidecar::wire::AuthScheme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    pub(crate) scheme: AuthScheme,
    /// Name of the host env var whose value egress injects.
    pub(crate) token_ref: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PipelockOpts {
    pub tls_passthrough: bool,
    /// Validated `ip` or `ip/prefix` strings.
    pub(crate) ssrf_ip_allowlist: Vec<ipnet::IpNet>,
}

/// `limits`: resource limits per container, each field optional (the plan fills defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// The agent container (or micro-VM).
    pub(crate) agent: LimitSet,
    /// The sidecar bundle.
    pub(crate) bundle: LimitSet,
}

/// One container's limits as declared; `None` means "the default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LimitSet {
    /// CPUs in hundredths (`1.5` is 150): Docker's resolution, and `Eq` without floats.
    pub(crate) cpus_centi: Option<u32>,
    /// Memory in bytes (swap included: no swap beyond it).
    pub memory_bytes: Option<u64>,
    /// Most processes and threads at once.
    pub pids: Option<u32>,
}

impl LimitSet {
    /// Each field of `self`, else the one of `base` (the `extends` overlay).
    pub(crate) fn or(self, base: LimitSet) -> LimitSet {
        LimitSet {
            cpus_centi: self.cpus_centi.or(base.cpus_centi),
            memory_bytes: self.memory_bytes.or(base.memory_bytes),
            pids: self.pids.or(base.pids),
        }
    }
}

/// An agent file that could not be loaded (invalid YAML or keys, or a missing bottle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokenAgent {
    pub name: String,
    pub path: PathBuf,
    pub(crate) source: AgentSource,
    /// The one-line error, naming the file, the key and the fix.
    pub error: String,
}

/// Where an agent file was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentSource {
    Home,
    Cwd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub path: PathBuf,
    pub(crate) source: AgentSource,
    /// Name of the bottle this agent runs in (checked to exist).
    pub bottle: String,
    pub skills: Vec<String>,
    /// Per-field overlay on the bottle's `git-gate.user`.
    pub(crate) git_user: GitUser,
    /// The Markdown body, trimmed: the agent's system prompt.
    pub prompt: String,
    /// Optional Claude Code subagent `description` (shown by `info`).
    pub(crate) description: Option<String>,
}

impl Manifest {
    /// The agent and its effective bottle, if the agent exists.
    pub(crate) fn agent_and_bottle(&self, agent: &str) -> Option<(&Agent, &Bottle)> {
        let a = self.agents.get(agent)?;
        let b = self.bottles.get(&a.bottle)?;
        Some((a, b))
    }
}
