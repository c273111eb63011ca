//! Git for the bottle: the commit identity (agent fields over bottle fields, with where each
//! came from) and the upstreams the git-gate may reach, with their key files found on the host.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{HostEnv, PlanError};
use crate::manifest::{GitRepo, GitUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provenance {
    Agent,
    Bottle,
}

impl Provenance {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provenance::Agent => "agent",
            Provenance::Bottle => "bottle",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GitIdentity {
    pub name: Option<(String, Provenance)>,
    pub email: Option<(String, Provenance)>,
}

impl GitIdentity {
    /// Per field: the agent's non-empty value wins, else the bottle's.
    pub(crate) fn overlay(agent: &GitUser, bottle: &GitUser) -> GitIdentity {
        let pick = |a: &Option<String>, b: &Option<String>| {
            let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
            nonempty(a)
                .map(|v| (v, Provenance::Agent))
                .or_else(|| nonempty(b).map(|v| (v, Provenance::Bottle)))
        };
        GitIdentity {
            name: pick(&agent.name, &bottle.name),
            email: pick(&agent.email, &bottle.email),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none()
    }
}

/// `name=x (agent), email=y (bottle)`; empty when neither is set.
impl fmt::Display for GitIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (key, field) in [("name", &self.name), ("email", &self.email)] {
            if let Some((v, p)) = field {
                write!(f, "{sep}{key}={v} ({})", p.as_str())?;
                sep = ", ";
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitUpstream {
    /// The repo name (bare repo `<name>.git` on the gate).
    pub name: String,
    pub url: String,
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The path after `host[:port]/`, without the leading `/`.
    pub path: String,
    /// Private key file on the host (expanded, checked to exist).
    pub identity: PathBuf,
    pub host_key: Option<String>,
    /// The ref policy the gate enforces on pushes (F-REFS).
    pub refs: crate::manifest::GitRefs,
    /// Host name → address pinned in the bundle's `/etc/hosts` (compose `extra_hosts`).
    pub(crate) extra_hosts: BTreeMap<String, IpAddr>,
}

impl GitUpstream {
    /// One line for the preflight and `info`: upstream, host-key pinning, address pinning and
    /// ref policy.
    pub(crate) fn summary(&self) -> String {
        let key = if self.host_key.is_some() {
            "host key pinned"
        } else {
            "host key NOT pinned (first key seen is trusted)"
        };
        let mut s = format!("{} → {}:{} ({key}", self.name, self.host, self.port);
        for (host, ip) in &self.extra_hosts {
            s.push_str(&format!("; {host} at {ip}"));
        }
        s.push_str(&format!("; push: {})", self.refs));
        s
    }
}

/// Every `extra_hosts` pin of the bottle's repos as `host:ip` (compose's spelling), sorted.
/// Two repos that pin one host to different addresses are refused.
pub(crate) fn extra_hosts(upstreams: &[GitUpstream]) -> Result<Vec<String>, PlanError> {
    let mut seen: BTreeMap<&str, (IpAddr, &str)> = BTreeMap::new();
    for u in upstreams {
        for (host, ip) in &u.extra_hosts {
            match seen.get(host.as_str()) {
                Some((other, first)) if other != ip => {
                    return Err(PlanError::GitHostPinConflict {
                        host: host.clone(),
                        first: (*first).to_string(),
                        second: u.name.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(host, (*ip, &u.name));
                }
            }
        }
    }
    Ok(seen
        .into_iter()
        .map(|(host, (ip, _))| format!("{host}:{ip}"))
        .collect())
}

/// Split `ssh://user@host[:port]/path`. Errors say which part is wrong.
pub(crate) fn parse_ssh_url(url: &str) -> Result<(String, String, u16, String), &'static str> {
    let rest = url.strip_prefix("ssh://").ok_or("scheme must be ssh://")?;
    let (authority, path) = rest.split_once('/').ok_or("path is missing")?;
    if path.is_empty() {
        return Err("path is empty");
    }
    let (user, hostport) = authority.split_once('@').ok_or("user is missing")?;
    if user.is_empty() {
        return Err("user is empty");
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| "port is not a number 1-65535")?,
        ),
        None => (hostport, 22),
    };
    if port == 0 {
        return Err("port is not a number 1-65535");
    }
    if host.is_empty() {
        return Err("host is empty");
    }
    Ok((user.to_string(), host.to_string(), port, path.to_string()))
}

/// Key paths: `~` expanded; a relative path is taken against `base` (the directory of the
/// bottle file), so where `start` runs, or what the repo there holds, never picks the key.
pub(crate) fn resolve_upstreams(
    repos: &BTreeMap<String, GitRepo>,
    base: &Path,
    host: &HostEnv,
) -> Result<Vec<GitUpstream>, PlanError> {
    let mut out = Vec::with_capacity(repos.len());
    for (name, repo) in repos {
        let (user, h, port, path) =
            parse_ssh_url(&repo.url).map_err(|reason| PlanError::GitUrl {
                repo: name.clone(),
                url: repo.url.clone(),
                reason,
            })?;
        let identity = host.resolve_path_from(&repo.identity, base)?;
        if !identity.is_file() {
            return Err(PlanError::GitIdentityMissing {
                repo: name.clone(),
                path: identity,
            });
        }
        out.push(GitUpstream {
            name: name.clone(),
            url: repo.url.clone(),
            user,
            host: h,
            port,
            path,
            identity,
            host_key: repo.host_key.clone(),
            refs: repo.refs.clone(),
            extra_hosts: repo.extra_hosts.clone(),
        });
    }
    extra_hosts(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::host;

    fn user(name: Option<&str>, email: Option<&str>) -> GitUser {
        GitUser {
            name: name.map(String::from),
            email: email.map(String::from),
        }
    }

    #[test]
    fn agent_fields_win_per_field_with_provenance() {
        let id = GitIdentity::overlay(
            &user(Some("bot"), None),
            &user(Some("ann"), Some("ann@x.example")),
        );
        assert_eq!(id.name, Some(("bot".into(), Provenance::Agent)));
        assert_eq!(id.email, Some(("ann@x.example".into(), Provenance::Bottle)));
        assert_eq!(
            id.to_string(),
            "name=bot (agent), email=ann@x.example (bottle)"
        );
    }

    #[test]
    fn empty_agent_values_fall_through_and_nothing_is_empty() {
        let id = GitIdentity::overlay(&user(Some(""), Some("a@x")), &user(Some("b"), None));
        assert_eq!(id.to_string(), "name=b (bottle), email=a@x (agent)");
        let none = GitIdentity::overlay(&user(None, None), &user(None, None));
        assert!(none.is_empty());
        assert_eq!(none.to_string(), "");
        let only_email = GitIdentity::overlay(&user(None, None), &user(None, Some("e@x")));
        assert_eq!(only_email.to_string(), "email=e@x (bottle)");
    }

    #[test]
    fn parses_ssh_urls_with_and_without_port() {
        assert_eq!(
            parse_ssh_url("ssh://git@github.com/org/repo.git").unwrap(),
            ("git".into(), "github.com".into(), 22, "org/repo.git".into())
        );
        assert_eq!(
            parse_ssh_url("ssh://gitea@code.example:2222/me/p.git").unwrap(),
            (
                "gitea".into(),
                "code.example".into(),
                2222,
                "me/p.git".into()
            )
        );
    }

    #[test]
    fn rejects_malformed_ssh_urls() {
        for bad in [
            "https://github.com/o/r",
            "ssh://github.com/o/r",
            "ssh://@h/o",
            "ssh://git@h",
            "ssh://git@h/",
            "ssh://git@:22/o",
            "ssh://git@h:abc/o",
            "ssh://git@h:0/o",
            "ssh://git@h:70000/o",
        ] {
            assert!(parse_ssh_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_identity_is_expanded_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".ssh")).unwrap();
        std::fs::write(dir.path().join(".ssh/id_gate"), "key").unwrap();
        let mut h = host();
        h.home = Some(dir.path().to_path_buf());
        let repos = BTreeMap::from([(
            "proj".to_string(),
            GitRepo {
                url: "ssh://git@h.example:2200/a/b.git".into(),
                identity: "~/.ssh/id_gate".into(),
                host_key: Some("h.example ssh-ed25519 AAAA".into()),
                refs: Default::default(),
                extra_hosts: Default::default(),
            },
        )]);
        let ups = resolve_upstreams(&repos, Path::new("/nonexistent"), &h).unwrap();
        assert_eq!(ups[0].identity, dir.path().join(".ssh/id_gate"));
        assert_eq!((ups[0].host.as_str(), ups[0].port), ("h.example", 2200));
        assert_eq!(
            ups[0].host_key.as_deref(),
            Some("h.example ssh-ed25519 AAAA")
        );

        let mut missing = repos.clone();
        missing.get_mut("proj").unwrap().identity = "~/.ssh/nope".into();
        let err = resolve_upstreams(&missing, Path::new("/nonexistent"), &h).unwrap_err();
        assert!(matches!(&err, PlanError::GitIdentityMissing { repo, .. } if repo == "proj"));
        assert!(err.to_string().contains("nope"));

        // A directory is not a key file.
        let mut dir_key = repos.clone();
        dir_key.get_mut("proj").unwrap().identity = "~/.ssh".into();
        assert!(resolve_upstreams(&dir_key, Path::new("/nonexistent"), &h).is_err());
    }

    #[test]
    fn relative_identity_is_taken_against_the_bottle_dir_not_the_cwd() {
        let bottles = tempfile::tempdir().unwrap();
        let cwd = tempfile::tempdir().unwrap();
        std::fs::write(cwd.path().join("key"), "planted").unwrap();
        let mut h = host();
        h.cwd = cwd.path().to_path_buf();
        let repos = BTreeMap::from([(
            "p".to_string(),
            GitRepo {
                url: "ssh://git@h/x.git".into(),
                identity: "key".into(),
                host_key: None,
                refs: Default::default(),
                extra_hosts: Default::default(),
            },
        )]);
        assert!(matches!(
            resolve_upstreams(&repos, bottles.path(), &h),
            Err(PlanError::GitIdentityMissing { .. })
        ));
        std::fs::write(bottles.path().join("key"), "k").unwrap();
        let ups = resolve_upstreams(&repos, bottles.path(), &h).unwrap();
        assert_eq!(ups[0].identity, bottles.path().join("key"));
    }

    #[test]
    fn bad_url_error_names_the_repo() {
        let repos = BTreeMap::from([(
            "r1".to_string(),
            GitRepo {
                url: "git@github.com:o/r".into(),
                identity: "/nonexistent".into(),
                host_key: None,
                refs: Default::default(),
                extra_hosts: Default::default(),
            },
        )]);
        let err = resolve_upstreams(&repos, Path::new("/nonexistent"), &host()).unwrap_err();
        assert!(matches!(err, PlanError::GitUrl { .. }));
        assert!(err.to_string().contains("r1"));
    }

    fn pinned(name: &str, host: &str, ip: &str) -> GitUpstream {
        GitUpstream {
            name: name.into(),
            url: format!("ssh://git@{host}/x.git"),
            user: "git".into(),
            host: host.into(),
            port: 22,
            path: "x.git".into(),
            identity: "/k".into(),
            host_key: None,
            refs: Default::default(),
            extra_hosts: BTreeMap::from([(host.to_string(), ip.parse().unwrap())]),
        }
    }

    #[test]
    fn pins_are_merged_and_a_conflict_names_both_repos() {
        let a = pinned("a", "git.internal", "192.0.2.7");
        let b = pinned("b", "git.internal", "192.0.2.7");
        let c = pinned("c", "other.internal", "192.0.2.9");
        assert_eq!(
            extra_hosts(&[a.clone(), b, c]).unwrap(),
            ["git.internal:192.0.2.7", "other.internal:192.0.2.9"]
        );
        let clash = pinned("d", "git.internal", "192.0.2.8");
        let err = extra_hosts(&[a, clash]).unwrap_err();
        assert!(
            matches!(&err, PlanError::GitHostPinConflict { host, .. } if host == "git.internal")
        );
        let text = err.to_string();
        assert!(text.contains("`a`") && text.contains("`d`"), "{text}");
        assert!(
            pinned("a", "git.internal", "192.0.2.7")
                .summary()
                .contains("git.internal at 192.0.2.7")
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_ssh_url_never_panics(u in "(ssh://)?[a-z@:/0-9.]{0,40}") {
            if let Ok((user, host, port, path)) = parse_ssh_url(&u) {
                proptest::prop_assert!(!user.is_empty() && !host.is_empty() && !path.is_empty() && port > 0);
            }
        }
    }
}
