//! The one error type of plan resolution: every message is one line saying what is wrong and
//! what to do about it, and never carries a secret value (only names of variables and paths).

use std::path::PathBuf;

use super::codex_auth::CodexAuthError;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "unknown backend `{0}`; use `docker` or `smolmachines` (`--backend` or BOT_BOTTLE_BACKEND)"
    )]
    UnknownBackend(String),
    #[error("unknown agent `{0}`; run `bot-bottle list available` to see the agents")]
    UnknownAgent(String),
    #[error(
        "agent `{agent}` uses bottle `{bottle}`, which does not exist; create `bottles/{bottle}.md` in the home root or fix the agent's `bottle`"
    )]
    UnknownBottle { agent: String, bottle: String },
    #[error(
        "identity `{0}` is not valid; use the identity printed by `bot-bottle list active` or the resume hint"
    )]
    InvalidIdentity(String),
    #[error("$HOME is not set; set HOME so `~` paths and skills can be resolved")]
    NoHome,
    #[error(
        "env `{name}` refers to host variable `{var}`, which is not set; export {var} before starting or remove the reference"
    )]
    MissingHostVar { name: String, var: String },
    #[error(
        "env `{name}` has a malformed `${{...}}` reference; write `${{HOST_VAR}}` with a name of letters, digits and `_`"
    )]
    BadInterpolation { name: String },
    #[error(
        "egress route `{host}` takes its token from host variable `{var}`, which is not set or empty; export {var} before starting"
    )]
    MissingTokenRef { host: String, var: String },
    #[error(
        "`agent_provider.auth_token` names host variable `{var}`, which is not set or empty; export {var} (e.g. from `claude setup-token`) before starting"
    )]
    MissingAuthToken { var: String },
    #[error(
        "`agent_provider.auth_token` is for the claude template only; remove it from bottle `{bottle}` or use `template: claude`"
    )]
    AuthTokenNotClaude { bottle: String },
    #[error(
        "`agent_provider.forward_host_credentials` is for the codex template only; remove it from bottle `{bottle}` or use `template: codex`"
    )]
    ForwardCredentialsNotCodex { bottle: String },
    #[error(
        "`--remote-control` is supported by the claude provider only; drop the flag for this {provider} agent"
    )]
    RemoteControlUnsupported { provider: &'static str },
    #[error("skill `{name}` is not a directory at {}; create it or remove the skill from the agent", path.display())]
    SkillMissing { name: String, path: PathBuf },
    #[error("skill name `{0}` is not valid; use letters, digits, `.`, `_` and `-` only")]
    BadSkillName(String),
    #[error("git-gate repo `{repo}`: identity file not found at {}; fix `identity` in the bottle or create the key", path.display())]
    GitIdentityMissing { repo: String, path: PathBuf },
    #[error(
        "git-gate repo `{repo}`: url `{url}` is not `ssh://user@host[:port]/path` ({reason}); fix `url` in the bottle"
    )]
    GitUrl {
        repo: String,
        url: String,
        reason: &'static str,
    },
    #[error(
        "git-gate repos `{first}` and `{second}` pin host `{host}` to different addresses; give it one address in `extra_hosts`"
    )]
    GitHostPinConflict {
        host: String,
        first: String,
        second: String,
    },
    #[error("custom Dockerfile for bottle `{bottle}` not found at {}; fix `agent_provider.dockerfile` or create the file", path.display())]
    DockerfileMissing { bottle: String, path: PathBuf },
    #[error(
        "BOT_BOTTLE_CONTAINER=`{0}` is not a usable container name; use a name starting with `bot-bottle-` made of letters, digits, `_`, `.` and `-`"
    )]
    BadPinnedContainer(String),
    #[error("cannot read extra CA certificates at {}: {source}; fix {} or the file's permissions", .path.display(), crate::envvars::EXTRA_CA_CERTS)]
    ExtraCaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate; point {} at PEM files or a directory of them", .path.display(), crate::envvars::EXTRA_CA_CERTS)]
    ExtraCaNotPem { path: PathBuf },
    /// A bottle-declared credential or host value is missing; `path` is the bottle file.
    #[error("{}: {inner}", path.display())]
    InBottle {
        path: PathBuf,
        inner: Box<PlanError>,
    },
    #[error(transparent)]
    CodexAuth(#[from] CodexAuthError),
    #[error("could not read a value for env `{name}`: {reason}; run `start` from a terminal")]
    Prompt { name: String, reason: String },
}
