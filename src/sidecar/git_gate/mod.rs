//! The git-gate: the agent's only way to reach its declared git upstreams.
//!
//! One bare mirror per declared repo, served over git smart HTTP ([`server`]). A fetch, clone
//! or pull first syncs the mirror from the upstream and fails closed when it cannot. A push
//! goes through the pre-receive [`hook`]: the ref policy ([`policy`], F-REFS), the secret scan
//! of every new commit ([`scan`], the egress scanner), then the push to the upstream over SSH
//! with the bottle's identity file and pinned host key ([`upstream`]); [`gitleaks`] adds a
//! second opinion when the image has it. Every decision is one
//! audit line in egress's format; every refusal has the layer `git-gate` and a rule naming
//! the check ([`refusal`]), so the host reads it as a refusal event like egress's.
//! `src/bin/bot-bottle-git-gate.rs` is a thin main.
//!
//! git runs here as a child of the gate inside the sidecar bundle, never on the host; the
//! host-side runner (`src/runner.rs`) is not involved.

pub mod config;
pub mod gitleaks;
pub mod hook;
pub(crate) mod policy;
pub(crate) mod refusal;
pub mod scan;
pub mod server;
pub mod upstream;

pub use config::GateArgs;
pub(crate) use config::{RepoConfig, ReposFile};
pub(crate) use policy::RefPolicy;
pub use server::GateServer;

use std::path::PathBuf;

/// Everything that can stop the gate from starting or a push from being judged.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read `{path}`: {source}; check the path and its permissions")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("repos file `{path}`: {message}")]
    Config { path: PathBuf, message: String },
    #[error("repo `{repo}`: host_key: {reason}")]
    HostKey { repo: String, reason: String },
    #[error("cannot prepare the gate state at `{path}`: {source}; check the directory is writable")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{program}`: {source}; is git installed in the sidecar image?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Git { what: String, stderr: String },
    #[error("cannot listen on `{addr}`: {source}; pick a free address or remove the stale socket")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the audit log: {0}")]
    Audit(String),
    #[error("the pre-receive hook runs only under the gate (missing or invalid {0})")]
    HookContext(String),
}

impl GateError {
    /// A git (or other) child that could not be started through the runner.
    pub(crate) fn spawn(program: &str, e: crate::runner::RunError) -> GateError {
        let source = match e {
            crate::runner::RunError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        };
        GateError::Spawn {
            program: program.to_string(),
            source,
        }
    }
}
