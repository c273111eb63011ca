//! The git-gate's configuration: command-line flags and the repos file.
//!
//! The repos file is JSON rendered by the CLI (unknown fields refused, so a writer/reader
//! mismatch is an error, not a silently dropped policy). It names each repo's upstream, the
//! path of its identity file inside the bundle and its ref policy; it never holds key material.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GateError;
use super::policy::RefPolicy;
use crate::sidecar::egress::ListenAddr;

/// Default bound on one request body (a push pack or a fetch negotiation).
pub const DEFAULT_MAX_BODY: u64 = 512 << 20;

/// Flags of `bot-bottle-git-gate` (the `pre-receive` hook mode takes none; see the binary).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bot-bottle-git-gate",
    about = "Serve the bottle's declared git repos over smart HTTP; scan and gate every push"
)]
pub struct GateArgs {
    /// Where to listen: `HOST:PORT` or `unix:/path/to.sock`.
    #[arg(long)]
    pub listen: ListenAddr,
    /// The repos file (JSON) rendered by the CLI.
    #[arg(long)]
    pub repos: PathBuf,
    /// Directory for the mirrors, hooks and known-hosts files (created when missing).
    #[arg(long)]
    pub state: PathBuf,
    /// Append audit lines here (stderr when omitted).
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Largest request body accepted, in bytes (after gzip decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: u64,
    /// The `git` program to run.
    #[arg(long, default_value = "git")]
    pub git: String,
    /// The `ssh` program git uses to reach upstreams.
    #[arg(long, default_value = "ssh")]
    pub ssh: String,
    /// gitleaks as a second opinion on pushes: `auto` (when on PATH), `off`, or its path.
    #[arg(long, default_value = "auto")]
    pub(crate) gitleaks: super::gitleaks::GitleaksOpt,
}

/// The repos file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReposFile {
    pub repos: Vec<RepoConfig>,
}

/// One declared repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepoConfig {
    /// Served as `/<name>.git`; `[A-Za-z0-9._-]+`, not `.`/`..`.
    pub name: String,
    /// `ssh://user@host[:port]/path`.
    pub url: String,
    /// Private key file inside the bundle (read-only mount).
    pub identity: PathBuf,
    /// Pinned host key: `[host] keytype base64`. Without one the first key seen is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(default)]
    pub refs: RefPolicy,
}

/// Repo names the gate serves: a plain file-name component, never a path.
pub(crate) fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ReposFile {
    /// Read and check the repos file: names valid and unique, URLs `ssh://`, globs valid.
    pub(crate) fn load(path: &Path) -> Result<BTreeMap<String, RepoConfig>, GateError> {
        let text = std::fs::read_to_string(path).map_err(|source| GateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ReposFile = serde_json::from_str(&text).map_err(|e| GateError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        file.into_map().map_err(|message| GateError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    pub(crate) fn into_map(self) -> Result<BTreeMap<String, RepoConfig>, String> {
        let mut out = BTreeMap::new();
        for repo in self.repos {
            if !valid_repo_name(&repo.name) {
                return Err(format!(
                    "repo name `{}` is not [A-Za-z0-9._-]+",
                    repo.name.escape_debug()
                ));
            }
            crate::plan::parse_ssh_url(&repo.url)
                .map_err(|r| format!("repos.{}.url: {r}", repo.name))?;
            repo.refs
                .check()
                .map_err(|r| format!("repos.{}.refs: {r}", repo.name))?;
            let name = repo.name.clone();
            if out.insert(name.clone(), repo).is_some() {
                return Err(format!("repo `{name}` is declared twice"));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        for ok in ["proj", "a.b-c_d", "x.git"] {
            assert!(valid_repo_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "%2e%2e", "a b", "é"] {
            assert!(!valid_repo_name(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_entries_are_refused() {
        let bad = r#"{"repos":[{"name":"p","url":"ssh://g@h/p","identity":"/k","extra":1}]}"#;
        assert!(serde_json::from_str::<ReposFile>(bad).is_err());
        let dup = ReposFile {
            repos: vec![
                RepoConfig {
                    name: "p".into(),
                    url: "ssh://g@h/p".into(),
                    identity: "/k".into(),
                    host_key: None,
                    refs: RefPolicy::default(),
                };
                2
            ],
        };
        assert!(dup.into_map().unwrap_err().contains("twice"));
        let url = ReposFile {
            repos: vec![RepoConfig {
                name: "p".into(),
                url: "https://h/p".into(),
                identity: "/k".into(),
                host_key: None,
                refs: RefPolicy::default(),
            }],
        };
        assert!(url.into_map().unwrap_err().contains("repos.p.url"));
    }
}
