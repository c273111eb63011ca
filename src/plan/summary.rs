//! The preflight summary (`Display` for [`BottlePlan`]): one screen the operator reads before
//! confirming. It names things (env names, hosts, paths) and never shows a value that could be
//! a secret: env values, token values and prompt answers are never printed, and provider
//! placeholder variables are left out so they are not mistaken for credentials.

use std::fmt;

use super::{BottlePlan, GitUpstream, ImageSource};

const WIDTH: usize = 10;

fn line(f: &mut fmt::Formatter<'_>, key: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {key:<WIDTH$} {value}")
}

fn list(f: &mut fmt::Formatter<'_>, key: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return line(f, key, "-");
    }
    let mut first = true;
    for item in items {
        if first {
            line(f, key, item)?;
            first = false;
        } else {
            line(f, "", item)?;
        }
    }
    Ok(())
}

impl fmt::Display for BottlePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        line(f, "identity", &self.identity)?;
        line(f, "agent", &self.agent)?;
        line(f, "bottle", &self.bottle)?;
        line(f, "provider", self.provider.kind.as_str())?;
        line(f, "backend", self.backend.as_str())?;
        let image_note = match &self.image.source {
            ImageSource::Provider(_) => String::new(),
            ImageSource::Dockerfile(p) => format!(" (from {})", p.display()),
            ImageSource::Rebuilt(_) => " (approved Dockerfile)".to_string(),
            ImageSource::Override => " (BOT_BOTTLE_IMAGE)".to_string(),
        };
        line(f, "image", format_args!("{}{image_note}", self.image.tag))?;
        let pinned = if self.names.container_pinned {
            " (BOT_BOTTLE_CONTAINER)"
        } else {
            ""
        };
        line(
            f,
            "container",
            format_args!("{}{pinned}", self.names.agent_container),
        )?;
        line(f, "runtime", self.runtime.label())?;
        if let Some(w) = self.weakened {
            line(
                f,
                "WEAKENED",
                format_args!(
                    "{} (test knob BOT_BOTTLE_TEST_WEAKEN; this bottle is not safe)",
                    w.as_str()
                ),
            )?;
        }
        if self.copy_cwd {
            line(
                f,
                "workspace",
                format_args!("{} (copied in)", self.cwd.display()),
            )?;
        } else {
            line(
                f,
                "workspace",
                format_args!("empty (start with --cwd to copy {} in)", self.cwd.display()),
            )?;
        }
        let env: Vec<&str> = self.visible_env_names();
        let env_text = if env.is_empty() {
            "-".to_string()
        } else {
            env.iter()
                .map(|n| {
                    if self.env.prompted.contains_key(*n) {
                        format!("{n} (prompt)")
                    } else {
                        (*n).to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(f, "env", env_text)?;
        let skills: Vec<&str> = self.skills.iter().map(|s| s.name.as_str()).collect();
        line(
            f,
            "skills",
            if skills.is_empty() {
                "-".to_string()
            } else {
                skills.join(", ")
            },
        )?;
        if !self.git_user.is_empty() {
            line(f, "git user", &self.git_user)?;
        }
        let upstreams: Vec<String> = self
            .git_upstreams
            .iter()
            .map(GitUpstream::summary)
            .collect();
        if !upstreams.is_empty() {
            list(f, "git-gate", &upstreams)?;
            line(f, "gitleaks", self.sidecar_image.gitleaks_note())?;
        }
        list(f, "egress", &self.route_lines())?;
        list(f, "creds", &self.credential_lines())?;
        line(f, "supervise", if self.supervise { "on" } else { "off" })?;
        list(f, "limits", &self.limit_lines())?;
        if self.remote_control {
            line(f, "remote", "on (--remote-control)")?;
        }
        if self.resume {
            line(f, "resume", "continuing the last session")?;
        }
        line(f, "gates", GATES)?;
        writeln!(f)
    }
}

/// Which layer enforces the routes above. The route keys under `pipelock:` are applied by the
/// egress proxy itself; no separate pipelock process runs.
pub(crate) const GATES: &str = "egress enforces the routes: host and path allowlists, credential injection, secret scan, SSRF guard, and the `pipelock:` keys (tls_passthrough, ssrf_ip_allowlist)";

impl BottlePlan {
    /// One line per egress route, provider routes first: host, path allowlist, auth scheme
    /// and where its credential comes from (whether it is set), TLS passthrough, SSRF
    /// allowlist. Shared by the preflight and `info`.
    pub(crate) fn route_lines(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| {
                let mut s = r.host.clone();
                if !r.path_allowlist.is_empty() {
                    s.push_str(&format!(" paths {}", r.path_allowlist.join(" ")));
                }
                if let Some(a) = &r.auth {
                    let set = if self.credential_set(&a.token_ref) {
                        "set"
                    } else {
                        "NOT SET"
                    };
                    s.push_str(&format!(
                        " [auth:{} from {}, {set}]",
                        a.scheme.as_str(),
                        a.token_ref
                    ));
                }
                // A credentialed route is intercepted to inject, whatever its passthrough flag.
                if r.tls_passthrough && r.auth.is_none() {
                    s.push_str(" [tls passthrough: not inspected]");
                }
                if !r.ssrf_ip_allowlist.is_empty() {
                    let nets: Vec<String> =
                        r.ssrf_ip_allowlist.iter().map(|n| n.to_string()).collect();
                    s.push_str(&format!(" [ssrf allow {}]", nets.join(" ")));
                }
                s
            })
            .collect()
    }

    /// The agent's and the bundle's limits, one line each; on smolmachines the agent is a VM,
    /// which takes CPUs and memory but has no pids limit. Shared by the preflight and `info`.
    pub(crate) fn limit_lines(&self) -> Vec<String> {
        let vm = self.backend == super::BackendKind::Smolmachines;
        let agent = if vm { "agent VM" } else { "agent" };
        vec![
            format!("{agent:<8} {}", self.limits.agent.describe(!vm)),
            format!("{:<8} {}", "bundle", self.limits.bundle.describe(true)),
        ]
    }

    /// One line per credential: what uses it, where it comes from, whether it is set.
    pub(crate) fn credential_lines(&self) -> Vec<String> {
        self.credentials
            .iter()
            .map(|c| {
                format!(
                    "{} ← {} ({})",
                    c.used_by,
                    c.source,
                    if c.set { "set" } else { "NOT SET" }
                )
            })
            .collect()
    }

    /// Whether every recorded use of `source` found a value (true when none was recorded).
    pub(crate) fn credential_set(&self, source: &str) -> bool {
        self.credentials
            .iter()
            .filter(|c| c.source == source)
            .all(|c| c.set)
    }

    /// The routes as structured JSON for `info --json`: no notes inside strings.
    pub(crate) fn routes_json(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "host": r.host,
                    "path_allowlist": r.path_allowlist,
                    "auth": r.auth.as_ref().map(|a| serde_json::json!({
                        "scheme": a.scheme.as_str(),
                        "token_ref": a.token_ref,
                        "set": self.credential_set(&a.token_ref),
                    })),
                    "tls_passthrough": r.tls_passthrough,
                    "ssrf_ip_allowlist": r
                        .ssrf_ip_allowlist
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::Value::Array(routes)
    }
}
