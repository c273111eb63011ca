//! Reaching an upstream: the ssh command git runs, the known-hosts file the gate writes, and
//! the git environment every gate-run git command gets.
//!
//! The identity file is named on the ssh command line (a path inside the bundle; its content
//! is never read or copied by the gate). With a pinned host key the known-hosts file holds
//! only that key and `StrictHostKeyChecking yes` refuses anything else; without one the first
//! key seen is kept for the bottle's life (`accept-new`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::runner::{ProcessSpec, RealRunner, Runner, shell_escape};

use super::GateError;
use super::config::RepoConfig;

/// Paths and programs every git command of the gate needs.
#[derive(Debug, Clone)]
pub(crate) struct GitEnv {
    pub git: String,
    pub ssh: String,
    /// Gate state directory: `mirrors/`, `hooks/`, `ssh/`, `home/`.
    pub state: PathBuf,
}

impl GitEnv {
    pub(crate) fn mirror(&self, repo: &str) -> PathBuf {
        self.state.join("mirrors").join(format!("{repo}.git"))
    }

    pub(crate) fn hooks_dir(&self) -> PathBuf {
        self.state.join("hooks")
    }

    pub(crate) fn known_hosts(&self, repo: &str) -> PathBuf {
        self.state.join("ssh").join(format!("{repo}.known_hosts"))
    }

    /// Environment for git children: no system or global config (nothing outside the gate's
    /// own command line configures git), no prompts, the repo's ssh command.
    pub(crate) fn vars(&self, repo: &RepoConfig) -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        v.insert("HOME".into(), self.state.join("home").display().to_string());
        v.insert("GIT_CONFIG_NOSYSTEM".into(), "1".into());
        v.insert("GIT_CONFIG_GLOBAL".into(), "/dev/null".into());
        v.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
        v.insert("GIT_ASKPASS".into(), "/bin/false".into());
        v.insert("SSH_ASKPASS".into(), "/bin/false".into());
        v.insert("GIT_SSH_COMMAND".into(), self.ssh_command(repo));
        v
    }

    pub(crate) fn ssh_command(&self, repo: &RepoConfig) -> String {
        let strict = if repo.host_key.is_some() {
            "yes"
        } else {
            "accept-new"
        };
        format!(
            "{} -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o StrictHostKeyChecking={strict} -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=15 -o LogLevel=ERROR",
            shell_escape(&self.ssh),
            shell_escape(&repo.identity.display().to_string()),
            shell_escape(&self.known_hosts(&repo.name).display().to_string()),
        )
    }

    /// Create the state layout, one bare mirror per repo, the hook and known-hosts files.
    pub(crate) fn prepare(
        &self,
        repos: &BTreeMap<String, RepoConfig>,
        hook_program: &Path,
    ) -> Result<(), GateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GateError::State { path, source }
        };
        for d in ["mirrors", "hooks", "ssh", "home"] {
            let p = self.state.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let hook = self.hooks_dir().join("pre-receive");
        let script = format!(
            "#!/bin/sh\nexec {} pre-receive\n",
            shell_escape(&hook_program.display().to_string())
        );
        std::fs::write(&hook, script).map_err(io(&hook))?;
        set_mode(&hook, 0o755).map_err(io(&hook))?;
        for repo in repos.values() {
            let kh = self.known_hosts(&repo.name);
            let text = match &repo.host_key {
                Some(line) => known_hosts_line(repo, line)?,
                None => String::new(),
            };
            std::fs::write(&kh, text).map_err(io(&kh))?;
            let mirror = self.mirror(&repo.name);
            if !mirror.join("HEAD").is_file() {
                let mut init = ProcessSpec::new(self.git.as_str())
                    .args(["init", "--bare", "--quiet"])
                    .arg(mirror.display().to_string());
                for (k, v) in self.vars(repo) {
                    init = init.env(k, v);
                }
                let out = RealRunner
                    .run(&init)
                    .map_err(|e| GateError::spawn(&self.git, e))?;
                if !out.success() {
                    return Err(GateError::Git {
                        what: format!("git init --bare {}", mirror.display()),
                        stderr: last_line(&out.stderr),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The known-hosts line for a pinned key: `[host] keytype key [comment]` from the manifest,
/// rewritten to name the upstream's host (and port when not 22), so the pin cannot be
/// attached to another name.
pub(crate) fn known_hosts_line(repo: &RepoConfig, pinned: &str) -> Result<String, GateError> {
    let (_, host, port, _) =
        crate::plan::parse_ssh_url(&repo.url).map_err(|r| GateError::HostKey {
            repo: repo.name.clone(),
            reason: r.to_string(),
        })?;
    let fields: Vec<&str> = pinned.split_whitespace().collect();
    let is_type =
        |s: &str| s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-");
    let (kind, key) = match fields.as_slice() {
        [t, k, ..] if is_type(t) => (*t, *k),
        [_, t, k, ..] if is_type(t) => (*t, *k),
        _ => {
            return Err(GateError::HostKey {
                repo: repo.name.clone(),
                reason: "expected `[host] ssh-ed25519 AAAA…` (key type, then base64 key)".into(),
            });
        }
    };
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(GateError::HostKey {
            repo: repo.name.clone(),
            reason: "the key is not base64".into(),
        });
    }
    let pattern = if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    };
    Ok(format!("{pattern} {kind} {key}\n"))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The last non-empty line of a child's stderr, bounded, for an error message.
pub(crate) fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no error output");
    line.chars().take(300).collect()
}

/// Everything the sync error shows the agent: the last lines git and ssh printed, bounded.
pub(crate) fn tail_lines(stderr: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    // git's generic advice and ssh's banner art say nothing about the cause.
    let noise = |l: &str| {
        l.starts_with('@')
            || l.starts_with("Please make sure you have the correct access rights")
            || l.starts_with("and the repository exists")
            || l.starts_with("fatal: Could not read from remote repository")
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !noise(l))
        .collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("; ").chars().take(600).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::git_gate::policy::RefPolicy;

    fn repo(url: &str) -> RepoConfig {
        RepoConfig {
            name: "p".into(),
            url: url.into(),
            identity: "/keys/it's".into(),
            host_key: None,
            refs: RefPolicy::default(),
        }
    }

    #[test]
    fn pinned_key_names_the_upstream_host_and_port() {
        let r = repo("ssh://git@h.example:2222/x.git");
        assert_eq!(
            known_hosts_line(&r, "other.example ssh-ed25519 AAAAC3Nz comment").unwrap(),
            "[h.example]:2222 ssh-ed25519 AAAAC3Nz\n"
        );
        let r22 = repo("ssh://git@h.example/x.git");
        assert_eq!(
            known_hosts_line(&r22, "ssh-ed25519 AAAAC3Nz").unwrap(),
            "h.example ssh-ed25519 AAAAC3Nz\n"
        );
        assert!(known_hosts_line(&r22, "garbage").is_err());
        assert!(known_hosts_line(&r22, "ssh-ed25519 AA;rm").is_err());
    }

    #[test]
    fn ssh_command_quotes_paths_and_pins_strictly() {
        let env = GitEnv {
            git: "git".into(),
            ssh: "ssh".into(),
            state: "/st".into(),
        };
        let mut r = repo("ssh://git@h/x");
        let cmd = env.ssh_command(&r);
        assert!(cmd.contains("-i '/keys/it'\\''s'"), "{cmd}");
        assert!(cmd.contains("StrictHostKeyChecking=accept-new"));
        r.host_key = Some("ssh-ed25519 AAAA".into());
        assert!(env.ssh_command(&r).contains("StrictHostKeyChecking=yes"));
        assert!(env.ssh_command(&r).contains("IdentityAgent=none"));
    }
}
